//! The proposals a controller waits on: its own (answered on a channel) and its observers'
//! (answered with a frame on their connection).

use std::collections::BTreeMap;
use std::time::Instant;

use super::frames::{Frame, Outcome};
use super::transport::{ProposeError, Proposed, PROPOSAL_TIMEOUT};

/// Who waits on a proposal.
pub enum Reply {
    Local(flume::Sender<Proposed>),
    /// An observer (broker-only node), by node id.
    Remote(u64),
}

/// The proposals this node made and waits on, by tag: this node's id, a number drawn at start
/// (a restarted node's tags never match its previous life's entries) and a sequence number.
///
/// A proposal is known lost, before its timeout, once an entry of a later term than the one it
/// was proposed in is applied: a leader's log holds the earlier terms' entries it will ever
/// commit before its own term's first entry, so one not applied by then never will be (a
/// follower that forwarded it to a leader that has since died learns so within an election).
pub struct Proposals {
    prefix: [u8; 16],
    next: u64,
    /// tag -> (deadline, term proposed in, who waits).
    waiting: BTreeMap<Vec<u8>, (Instant, u64, Reply)>,
}

impl Proposals {
    pub fn new(node: u64) -> Proposals {
        let mut prefix = [0u8; 16];
        prefix[..8].copy_from_slice(&node.to_be_bytes());
        prefix[8..].copy_from_slice(&crate::metadata::random_uuid().as_bytes()[..8]);
        Proposals {
            prefix,
            next: 0,
            waiting: BTreeMap::new(),
        }
    }

    /// A fresh tag that nobody waits on (the leader's own fencing decisions).
    pub fn untracked(&mut self) -> Vec<u8> {
        self.next += 1;
        let mut tag = self.prefix.to_vec();
        tag.extend_from_slice(&self.next.to_be_bytes());
        tag
    }

    /// A fresh tag, proposed in `term`, whose outcome goes to `reply`.
    pub fn track(&mut self, term: u64, reply: flume::Sender<Proposed>) -> Vec<u8> {
        let tag = self.untracked();
        self.track_as(tag.clone(), term, Reply::Local(reply));
        tag
    }

    /// An observer's proposal under its own `tag`, answered to it.
    pub fn track_as(&mut self, tag: Vec<u8>, term: u64, reply: Reply) {
        let deadline = Instant::now() + PROPOSAL_TIMEOUT;
        self.waiting.insert(tag, (deadline, term, reply));
    }

    /// Answers the proposal tagged `tag`, if this node waits on it; an observer's answer is
    /// returned, to be sent to it.
    pub fn answer(&mut self, tag: &[u8], answer: Proposed) -> Option<(u64, Frame)> {
        match self.waiting.remove(tag)? {
            (_, _, Reply::Local(reply)) => {
                let _ = reply.send(answer);
                None
            }
            (_, _, Reply::Remote(node)) => {
                let outcome = match answer {
                    Ok(_) => Outcome::Applied,
                    Err(ProposeError::Refused(why)) => Outcome::Refused(why),
                    Err(ProposeError::NotLeader { .. }) => Outcome::NotLeader,
                    Err(ProposeError::Lost | ProposeError::Stopped) => Outcome::Lost,
                };
                let tag = tag.to_vec();
                Some((node, Frame::Answer { tag, outcome }))
            }
        }
    }

    /// Answers `Lost` to the proposals whose entries have not been applied in time, or were
    /// proposed in a term before `applied_term`, the term of an entry just applied.
    pub fn expire(&mut self, now: Instant, applied_term: u64) -> Vec<(u64, Frame)> {
        let lost: Vec<Vec<u8>> = self
            .waiting
            .iter()
            .filter(|(_, (deadline, term, _))| *deadline <= now || *term < applied_term)
            .map(|(tag, _)| tag.clone())
            .collect();
        lost.iter()
            .filter_map(|tag| self.answer(tag, Err(ProposeError::Lost)))
            .collect()
    }

    pub fn stop(self) {
        for (_, (_, _, reply)) in self.waiting {
            if let Reply::Local(reply) = reply {
                let _ = reply.send(Err(ProposeError::Stopped));
            }
        }
    }
}
