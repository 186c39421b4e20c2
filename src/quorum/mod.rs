//! The metadata quorum (issue 12): the controllers replicate the metadata log with Raft, and
//! every node applies the same [`MetadataRecord`]s in the same order to the same image.
//!
//! Consensus is raft-rs (TiKV's `raft` crate), not ours. It is sans-I/O: it never reads a
//! clock, a socket or a disk, so it fits a thread-per-core broker (the metadata shard drives it
//! with ticks, messages and its own persistence) and it can be tested deterministically, the
//! way its authors test it, by a harness that delivers, drops, delays and partitions messages
//! (`tests.rs`). [`QuorumNode`] wraps one `RawNode`:
//!
//! - a proposal is a batch of metadata records carried as one Raft entry. The broker proposes
//!   from any node with [`QuorumNode::propose_tagged`] (a follower forwards it to the leader)
//!   and recognises its entry by the tag in the entry's context; [`QuorumNode::propose`], the
//!   leader's own, identifies it by the entry's (term, index) (the deterministic tests use it);
//! - a committed entry is applied to the image atomically: all its records, or, when one does
//!   not fit (two leaders' decisions racing across an election), none, and the same on every
//!   node, since every node applies the same entries to the same image;
//! - a leader takes proposals only once it has applied an entry of its own term (the empty entry
//!   raft appends on election), so its decisions see everything committed before it;
//! - every `snapshot_entries` applied entries the image becomes the log's snapshot and the
//!   entries before it are dropped; a follower too far behind receives the snapshot.
//!
//! The active controller decides broker fencing (`leases.rs`) and, in the same entry, the
//! partition leadership changes it calls for (`elections.rs`).
//!
//! The log is durable with [`QuorumNode::open`] (`disk.rs`); [`transport`] runs a node on a
//! glommio executor and talks TCP with the other controllers and with broker-only nodes
//! ([`observer`]); `crate::cluster` runs it in `tidelog serve`.

mod disk;
pub mod elections;
pub mod frames;
mod leases;
mod logger;
pub mod observer;
mod proposals;
pub mod reassignment;
pub mod storage;
pub mod transport;

use raft::eraftpb::{Entry, EntryType, Message, Snapshot};
use raft::{Config, RawNode, StateRole, Storage};

use crate::metadata::records::{self, MetadataRecord};
use crate::metadata::MetadataImage;
use storage::QuorumStorage;

/// Where a proposal went into the leader's log: its term and index. An entry is unique in
/// Raft's history by (term, index), so the entry applied at `index` is this proposal exactly
/// when its term is `term`; another term there means the proposal was lost to an election
/// (the client is told to retry). Unlike a per-node counter, this survives restarts: a node's
/// new proposals can never be mistaken for its old incarnation's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProposalId {
    pub term: u64,
    pub index: u64,
}

/// Why a proposal was not taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotTaken {
    /// This node is not the leader; `leader` is the one it knows of (0: none).
    NotLeader { leader: u64 },
    /// This node leads but has not applied its own term's first entry yet.
    NotReady { leader: u64 },
}

/// An entry applied to the image.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    /// The entry's place in the log: the [`ProposalId`] it was proposed under.
    pub proposal: ProposalId,
    /// The tag it was proposed with ([`QuorumNode::propose_tagged`]; empty for
    /// [`QuorumNode::propose`]).
    pub tag: Vec<u8>,
    /// `Ok`: every record applied; `Err`: none, and why (the same on every node).
    pub outcome: Result<(), String>,
}

/// What one round of [`QuorumNode::drive`] produced.
#[derive(Default)]
pub struct Output {
    /// Messages to send to other controllers, after the storage holds what they depend on.
    pub messages: Vec<Message>,
    /// Entries applied to the image, in order.
    pub applied: Vec<Applied>,
    /// The term of the last entry applied in this round, any kind (a new leader's empty
    /// entry too); 0 when none was.
    pub applied_term: u64,
}

/// One controller's Raft node and the metadata image it has applied.
pub struct QuorumNode {
    raw: RawNode<QuorumStorage>,
    image: MetadataImage,
    applied_index: u64,
    snapshot_entries: u64,
}

/// raft-rs's election and heartbeat timing in ticks; the broker ticks every 100 ms, so a
/// leader is suspected after 1-2 s of silence (Kafka's `controller.quorum.election.timeout.ms`
/// is 1 s, its fetch timeout 2 s).
const ELECTION_TICKS: usize = 10;
const HEARTBEAT_TICKS: usize = 2;

impl QuorumNode {
    /// Node `id` of a static quorum of `voters`, starting from `image` (the cluster id and what
    /// the formatted log holds). `snapshot_entries`: how many applied entries between
    /// snapshots.
    pub fn new(
        id: u64,
        voters: &[u64],
        image: MetadataImage,
        snapshot_entries: u64,
    ) -> Result<QuorumNode, String> {
        QuorumNode::start(id, QuorumStorage::new(voters), image, snapshot_entries)
    }

    /// Node `id` over the durable log in `dir`: recovered from it when it holds one (the image
    /// from its snapshot, the committed entries after it applied again by the first Ready),
    /// else fresh with `image`.
    pub fn open(
        dir: &std::path::Path,
        id: u64,
        voters: &[u64],
        image: MetadataImage,
        snapshot_entries: u64,
    ) -> Result<QuorumNode, String> {
        let storage =
            QuorumStorage::open(dir, voters).map_err(|e| format!("{}: {e}", dir.display()))?;
        let snap = storage.latest_snapshot();
        let image = if snap.get_metadata().index > 0 {
            MetadataImage::from_snapshot(&snap.data)?
        } else {
            image
        };
        QuorumNode::start(id, storage, image, snapshot_entries)
    }

    fn start(
        id: u64,
        storage: QuorumStorage,
        image: MetadataImage,
        snapshot_entries: u64,
    ) -> Result<QuorumNode, String> {
        let applied = storage.latest_snapshot().get_metadata().index;
        let config = Config {
            id,
            election_tick: ELECTION_TICKS,
            heartbeat_tick: HEARTBEAT_TICKS,
            // A node cut off from the quorum steps down instead of leading alone, and a
            // returning node does not disturb a healthy leader (Kafka's KIP-996 pre-vote).
            check_quorum: true,
            pre_vote: true,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            applied,
            ..Config::default()
        };
        config.validate().map_err(|e| e.to_string())?;
        let raw =
            RawNode::new(&config, storage, &logger::to_tracing(id)).map_err(|e| e.to_string())?;
        Ok(QuorumNode {
            raw,
            image,
            applied_index: applied,
            snapshot_entries: snapshot_entries.max(1),
        })
    }

    pub fn id(&self) -> u64 {
        self.raw.raft.id
    }

    /// The image with every applied entry.
    pub fn image(&self) -> &MetadataImage {
        &self.image
    }

    /// The Raft index of the last applied entry.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The current term and the leader this node knows of (0: none).
    pub fn term_and_leader(&self) -> (u64, u64) {
        (self.raw.raft.term, self.raw.raft.leader_id)
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// On the leader, each voter's replicated log position (its Raft `matched` index), by
    /// node id; empty on a follower, which does not know them.
    pub fn progress(&self) -> Vec<(u64, u64)> {
        if !self.is_leader() {
            return Vec::new();
        }
        let mut out: Vec<(u64, u64)> = self
            .raw
            .raft
            .prs()
            .iter()
            .map(|(&id, pr)| (id, pr.matched))
            .collect();
        out.sort_unstable();
        out
    }

    /// Entries kept after the latest snapshot.
    pub fn log_entries(&self) -> usize {
        self.raw.store().entry_count()
    }

    /// One tick of the election and heartbeat clocks.
    pub fn tick(&mut self) {
        self.raw.tick();
    }

    /// Hands a message from another controller to Raft.
    pub fn step(&mut self, msg: Message) {
        // Errors here are messages for another node, from a peer not in the quorum, or stale;
        // Raft drops them, as it should.
        if let Err(e) = self.raw.step(msg) {
            tracing::debug!(node = self.id(), "raft dropped a message: {e}");
        }
    }

    /// Tells Raft whether a snapshot message to `to` went out (the transport's job, as raft-rs
    /// asks): a leader waits for this before it sends `to` anything else, so a snapshot lost on
    /// the way must be reported or the follower is never caught up.
    pub fn report_snapshot(&mut self, to: u64, delivered: bool) {
        let status = if delivered {
            raft::SnapshotStatus::Finish
        } else {
            raft::SnapshotStatus::Failure
        };
        self.raw.report_snapshot(to, status);
    }

    /// Tells Raft a message to `to` could not be delivered, so a leader probes it again
    /// instead of streaming entries it will not get.
    pub fn report_unreachable(&mut self, to: u64) {
        self.raw.report_unreachable(to);
    }

    /// Whether [`QuorumNode::propose`] would take a proposal now: this node leads, and has
    /// applied an entry of its own term.
    pub fn can_propose(&self) -> Result<(), NotTaken> {
        if !self.is_leader() {
            return Err(NotTaken::NotLeader {
                leader: self.raw.raft.leader_id,
            });
        }
        let term = self.raw.raft.term;
        if self.raw.store().term(self.applied_index).ok() != Some(term) {
            return Err(NotTaken::NotReady { leader: self.id() });
        }
        Ok(())
    }

    /// Proposes `records` as one entry; the leader only, once ready.
    pub fn propose(&mut self, records: &[MetadataRecord]) -> Result<ProposalId, NotTaken> {
        self.can_propose()?;
        self.raw
            .propose(Vec::new(), records::encode_batch(records))
            .map_err(|_| NotTaken::NotLeader {
                leader: self.raw.raft.leader_id,
            })?;
        Ok(ProposalId {
            term: self.raw.raft.term,
            index: self.raw.raft.raft_log.last_index(),
        })
    }

    /// Proposes `records` as one entry carrying `tag`, from any node: a follower hands it to
    /// the leader it knows (raft-rs forwards proposals), so a broker need not find the active
    /// controller itself. The proposer learns the outcome when an entry with its tag is
    /// applied ([`Applied::tag`]); a proposal lost on the way (no leader, an election) is
    /// never applied, and the proposer gives up after a while and may retry.
    ///
    /// Such a proposal was decided against the proposer's image, which may lag the leader's:
    /// [`records::apply`] refuses records that no longer fit, the whole entry with them, on
    /// every node alike (two creations of one topic: the second is refused).
    pub fn propose_tagged(
        &mut self,
        tag: Vec<u8>,
        records: &[MetadataRecord],
    ) -> Result<(), NotTaken> {
        self.raw
            .propose(tag, records::encode_batch(records))
            .map_err(|_| NotTaken::NotLeader {
                leader: self.raw.raft.leader_id,
            })
    }

    /// Runs Raft's ready loop once: persists what it asks, applies committed entries to the
    /// image, takes a snapshot when due, and returns the messages to send and the entries
    /// applied. An error is the storage failing: the node must stop taking part (what it
    /// promised may not be durable).
    pub fn drive(&mut self) -> Result<Output, String> {
        let mut out = Output::default();
        if !self.raw.has_ready() {
            return Ok(out);
        }
        let mut ready = self.raw.ready();
        out.messages.extend(ready.take_messages());
        if !ready.snapshot().is_empty() {
            self.install_snapshot(ready.snapshot().clone())?;
        }
        let committed = ready.take_committed_entries();
        self.apply(committed, &mut out);
        let io = |e: std::io::Error| format!("metadata quorum log: {e}");
        self.raw.mut_store().append(ready.entries()).map_err(io)?;
        if let Some(hs) = ready.hs() {
            self.raw
                .mut_store()
                .set_hard_state(hs.clone())
                .map_err(io)?;
        }
        out.messages.extend(ready.take_persisted_messages());
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit);
        }
        out.messages.extend(light.take_messages());
        let committed = light.take_committed_entries();
        self.apply(committed, &mut out);
        self.raw.advance_apply_to(self.applied_index);
        self.maybe_snapshot()?;
        Ok(out)
    }

    /// A snapshot from the leader replaces the log and the image. One that does not decode
    /// came from a broken leader: the node stops rather than run with a wrong image.
    fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<(), String> {
        let index = snapshot.get_metadata().index;
        let image = MetadataImage::from_snapshot(&snapshot.data)
            .map_err(|e| format!("metadata snapshot at {index}: {e}"))?;
        self.raw
            .mut_store()
            .apply_snapshot(snapshot)
            .map_err(|e| format!("metadata quorum log: {e}"))?;
        self.image = image;
        self.applied_index = index;
        Ok(())
    }

    fn apply(&mut self, entries: Vec<Entry>, out: &mut Output) {
        for entry in entries {
            if entry.index <= self.applied_index {
                continue; // covered by an installed snapshot
            }
            self.applied_index = entry.index;
            out.applied_term = entry.term;
            if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
                continue; // a new leader's empty entry, or a configuration change
            }
            let proposal = ProposalId {
                term: entry.term,
                index: entry.index,
            };
            let tag = entry.context.to_vec();
            let outcome = records::decode_batch(&entry.data).and_then(|records| {
                let mut next = self.image.clone();
                for r in &records {
                    records::apply(&mut next, r)?;
                }
                self.image = next;
                Ok(())
            });
            out.applied.push(Applied {
                proposal,
                tag,
                outcome,
            });
        }
    }

    fn maybe_snapshot(&mut self) -> Result<(), String> {
        let first = self.raw.store().first_index().unwrap_or(1);
        if self.applied_index + 1 >= first + self.snapshot_entries {
            let data = self.image.to_snapshot();
            self.raw
                .mut_store()
                .compact(self.applied_index, data)
                .map_err(|e| format!("metadata snapshot at {}: {e}", self.applied_index))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_transport;
