//! The metadata quorum under a deterministic network, in raft-rs's own test style (its
//! `Network` harness: messages delivered, dropped or cut by the test, never by a clock): one
//! leader per term, the same entries applied in the same order everywhere, no acknowledged
//! change lost through leader loss, partitions and message loss, and a node that fell behind
//! the snapshot catching up from it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use super::*;
use crate::util::TestRng;

fn topic(name: &str, serial: u64) -> MetadataRecord {
    MetadataRecord::Topic {
        name: name.to_string(),
        id: uuid::Uuid::from_u64_pair(serial, serial),
        partitions: 1,
        configs: BTreeMap::new(),
    }
}

struct Sim {
    nodes: Vec<QuorumNode>,
    queue: VecDeque<Message>,
    rng: TestRng,
    drop_percent: u64,
    /// Nodes cut off: every message to or from them is lost.
    cut: BTreeSet<u64>,
    /// term -> the one leader seen in it.
    leaders: BTreeMap<u64, u64>,
    /// Raft index -> (entry term, outcome) as first applied anywhere; every other node must
    /// apply the same there.
    applied: BTreeMap<u64, (u64, Result<(), String>)>,
    /// Proposals in flight: (proposer, id) -> topic name.
    proposed: HashMap<(u64, ProposalId), String>,
    /// Topics whose proposal was applied (Ok) on its proposer: what a client was told.
    acknowledged: Vec<String>,
    /// Entries each node reported applying one by one (a snapshot skips them).
    applied_by: BTreeMap<u64, usize>,
    serial: u64,
}

impl Sim {
    fn new(n: u64, seed: u64, snapshot_entries: u64) -> Sim {
        let voters: Vec<u64> = (1..=n).collect();
        let image = MetadataImage {
            cluster_id: "MkU3OEVBNTcwNTJENDM2Qk".into(),
            ..MetadataImage::default()
        };
        Sim {
            nodes: voters
                .iter()
                .map(|&id| QuorumNode::new(id, &voters, image.clone(), snapshot_entries).unwrap())
                .collect(),
            queue: VecDeque::new(),
            rng: TestRng(seed),
            drop_percent: 0,
            cut: BTreeSet::new(),
            leaders: BTreeMap::new(),
            applied: BTreeMap::new(),
            proposed: HashMap::new(),
            acknowledged: Vec::new(),
            applied_by: BTreeMap::new(),
            serial: 0,
        }
    }

    /// The same, each node over a durable log in its own directory under `root`.
    fn durable(n: u64, seed: u64, snapshot_entries: u64, root: &std::path::Path) -> Sim {
        let mut sim = Sim::new(n, seed, snapshot_entries);
        for id in 1..=n {
            sim.restart(id, root, snapshot_entries);
        }
        sim
    }

    /// Node `id` stops (its memory lost) and starts again from its directory under `root`.
    fn restart(&mut self, id: u64, root: &std::path::Path, snapshot_entries: u64) {
        let voters: Vec<u64> = (1..=self.nodes.len() as u64).collect();
        let fresh = MetadataImage {
            cluster_id: "MkU3OEVBNTcwNTJENDM2Qk".into(),
            ..MetadataImage::default()
        };
        // Its clients lose their connections: nothing in flight through it is acknowledged.
        self.proposed.retain(|(n, _), _| *n != id);
        let dir = root.join(format!("node-{id}"));
        self.nodes[id as usize - 1] =
            QuorumNode::open(&dir, id, &voters, fresh, snapshot_entries).unwrap();
    }

    fn node(&mut self, id: u64) -> &mut QuorumNode {
        &mut self.nodes[id as usize - 1]
    }

    /// One round: every node ticks and drives its Ready, then the queued messages are
    /// delivered (or lost), a few swapped out of order.
    fn round(&mut self) {
        for i in 0..self.nodes.len() {
            self.nodes[i].tick();
            self.drive(i);
        }
        let mut batch: Vec<Message> = self.queue.drain(..).collect();
        if batch.len() > 1 && self.rng.percent(20) {
            let a = (self.rng.next() % batch.len() as u64) as usize;
            let b = (self.rng.next() % batch.len() as u64) as usize;
            batch.swap(a, b);
        }
        for m in batch {
            let lost = self.cut.contains(&m.from)
                || self.cut.contains(&m.to)
                || self.rng.percent(self.drop_percent);
            if m.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot {
                // What the transport reports once it has tried to send a snapshot.
                let (from, to) = (m.from, m.to);
                self.node(from).report_snapshot(to, !lost);
            }
            if !lost {
                self.node(m.to).step(m);
            }
        }
        for i in 0..self.nodes.len() {
            self.drive(i);
        }
        self.check_one_leader_per_term();
    }

    fn drive(&mut self, i: usize) {
        let out = self.nodes[i].drive().expect("storage");
        let me = self.nodes[i].id();
        self.queue.extend(out.messages);
        *self.applied_by.entry(me).or_default() += out.applied.len();
        for a in out.applied {
            let p = a.proposal;
            let seen = self
                .applied
                .entry(p.index)
                .or_insert((p.term, a.outcome.clone()));
            assert_eq!(
                *seen,
                (p.term, a.outcome.clone()),
                "node {me} applied something else at index {}",
                p.index
            );
            // The proposer answers its client: the entry at its index is its proposal exactly
            // when the terms agree; otherwise the proposal was lost and the client retries.
            let lost: Vec<_> = self
                .proposed
                .keys()
                .filter(|(n, q)| *n == me && q.index == p.index && q.term != p.term)
                .copied()
                .collect();
            for k in lost {
                self.proposed.remove(&k);
            }
            if let Some(name) = self.proposed.remove(&(me, p)) {
                if a.outcome.is_ok() {
                    self.acknowledged.push(name);
                }
            }
        }
    }

    fn check_one_leader_per_term(&mut self) {
        for n in &self.nodes {
            if n.is_leader() {
                let (term, _) = n.term_and_leader();
                let first = *self.leaders.entry(term).or_insert(n.id());
                assert_eq!(first, n.id(), "two leaders in term {term}");
            }
        }
    }

    /// The leader that takes proposals now, if any.
    fn ready_leader(&mut self) -> Option<u64> {
        let ids: Vec<u64> = self.nodes.iter().map(|n| n.id()).collect();
        ids.into_iter()
            .find(|&id| self.node(id).can_propose().is_ok())
    }

    /// Proposes a new topic through node `id`.
    fn propose_topic(&mut self, id: u64) -> Result<ProposalId, NotTaken> {
        self.serial += 1;
        let name = format!("t{}", self.serial);
        let record = topic(&name, self.serial);
        let p = self.node(id).propose(&[record])?;
        self.proposed.insert((id, p), name);
        Ok(p)
    }

    fn run_until(&mut self, rounds: usize, mut done: impl FnMut(&mut Sim) -> bool) -> bool {
        for _ in 0..rounds {
            if done(self) {
                return true;
            }
            self.round();
        }
        done(self)
    }

    /// Every node has applied the same index and holds the same image.
    fn converged(&self) -> bool {
        let first = &self.nodes[0];
        self.nodes
            .iter()
            .all(|n| n.applied_index() == first.applied_index() && n.image() == first.image())
    }
}

#[test]
fn three_controllers_elect_one_leader_and_apply_the_same_records_in_the_same_order() {
    let mut sim = Sim::new(3, 1, 1000);
    assert!(
        sim.run_until(200, |s| s.ready_leader().is_some()),
        "no leader"
    );
    let leader = sim.ready_leader().unwrap();
    for _ in 0..20 {
        sim.propose_topic(leader).unwrap();
        sim.round();
    }
    assert!(sim.run_until(100, |s| s.proposed.is_empty() && s.converged()));
    assert_eq!(sim.acknowledged.len(), 20);
    let image = sim.nodes[0].image();
    assert_eq!(image.topics.len(), 20);
    assert_eq!(image.applied, 20, "one record each");
    // A follower takes no proposal and names the leader.
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    assert_eq!(
        sim.node(follower).propose(&[topic("x", 999)]),
        Err(NotTaken::NotLeader { leader })
    );
}

#[test]
fn an_entry_whose_records_do_not_fit_applies_nowhere_and_says_why_everywhere() {
    let mut sim = Sim::new(3, 2, 1000);
    assert!(sim.run_until(200, |s| s.ready_leader().is_some()));
    let leader = sim.ready_leader().unwrap();
    // Two creations of one name in one entry: the second does not fit the first.
    let p = sim
        .node(leader)
        .propose(&[topic("dup", 1), topic("dup", 2)])
        .unwrap();
    assert!(sim.run_until(100, |s| s.converged() && s.applied.contains_key(&p.index)));
    let (term, outcome) = &sim.applied[&p.index];
    assert_eq!(*term, p.term);
    assert!(outcome.as_ref().unwrap_err().contains("exists already"));
    assert!(sim.nodes.iter().all(|n| n.image().topics.is_empty()));
}

#[test]
fn a_cut_off_leader_is_replaced_and_its_uncommitted_proposal_never_applies() {
    let mut sim = Sim::new(3, 3, 1000);
    assert!(sim.run_until(200, |s| s.ready_leader().is_some()));
    let old = sim.ready_leader().unwrap();
    for _ in 0..5 {
        sim.propose_topic(old).unwrap();
        sim.round();
    }
    assert!(sim.run_until(100, |s| s.proposed.is_empty()));
    let (old_term, _) = sim.node(old).term_and_leader();
    sim.cut.insert(old);
    // The old leader still believes it leads for a moment: what it takes now cannot commit.
    let lost = sim.propose_topic(old).unwrap();
    assert!(
        sim.run_until(300, |s| s.ready_leader().is_some_and(|l| l != old)),
        "no new leader among the two"
    );
    let new = sim.ready_leader().unwrap();
    assert!(sim.node(new).term_and_leader().0 > old_term);
    assert!(
        !sim.node(old).is_leader(),
        "check_quorum stepped the cut-off leader down"
    );
    for _ in 0..5 {
        sim.propose_topic(new).unwrap();
        sim.round();
    }
    sim.cut.clear();
    assert!(sim.run_until(300, |s| s.converged() && s.proposed.len() == 1));
    assert!(
        sim.proposed.contains_key(&(old, lost)),
        "the cut-off proposal was never acknowledged"
    );
    let image = sim.nodes[0].image();
    assert_eq!(
        image.topics.len(),
        10,
        "5 before, 5 after; not the lost one"
    );
    for name in &sim.acknowledged {
        assert!(image.topic(name).is_some(), "{name} was acknowledged");
    }
}

#[test]
fn loss_partitions_and_elections_never_split_the_brain_or_lose_an_acknowledged_change() {
    // Four seeds in the test command; `QUORUM_SEEDS=500 cargo test --lib quorum` for a long run.
    let seeds: u64 = std::env::var("QUORUM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    for seed in 11..11 + seeds {
        let mut sim = Sim::new(5, seed, 16);
        sim.drop_percent = 15;
        for round in 0..1500 {
            if round % 60 == 0 {
                // Cut off up to two nodes (a minority) or heal.
                sim.cut.clear();
                for _ in 0..(sim.rng.next() % 3) {
                    let id = 1 + sim.rng.next() % 5;
                    sim.cut.insert(id);
                }
            }
            if sim.rng.percent(30) {
                let id = 1 + sim.rng.next() % 5;
                let _ = sim.propose_topic(id);
            }
            sim.round();
        }
        sim.cut.clear();
        sim.drop_percent = 0;
        assert!(
            sim.run_until(1000, |s| s.converged()),
            "seed {seed}: no convergence after healing"
        );
        let image = sim.nodes[0].image().clone();
        assert!(
            sim.acknowledged.len() >= 50,
            "seed {seed}: only {} changes made it through",
            sim.acknowledged.len()
        );
        for name in &sim.acknowledged {
            assert!(
                image.topic(name).is_some(),
                "seed {seed}: acknowledged {name} lost"
            );
        }
        assert!(
            sim.nodes.iter().all(|n| n.log_entries() < 64),
            "seed {seed}: the logs were folded into snapshots"
        );
    }
}

#[test]
fn a_node_behind_the_leaders_snapshot_catches_up_from_it() {
    let mut sim = Sim::new(3, 5, 5);
    assert!(sim.run_until(200, |s| s.ready_leader().is_some()));
    let leader = sim.ready_leader().unwrap();
    let behind = (1..=3).find(|&id| id != leader).unwrap();
    sim.cut.insert(behind);
    for _ in 0..30 {
        sim.propose_topic(leader).unwrap();
        sim.round();
    }
    assert!(sim.run_until(100, |s| s.proposed.is_empty()));
    assert!(
        sim.node(leader).log_entries() < 10,
        "the leader compacted its log"
    );
    let one_by_one = sim.applied_by.get(&behind).copied().unwrap_or(0);
    sim.cut.clear();
    assert!(sim.run_until(300, |s| s.converged()));
    assert_eq!(sim.node(behind).image().topics.len(), 30);
    let after = sim.applied_by[&behind] - one_by_one;
    assert!(
        after < 10,
        "{after} entries applied one by one: the snapshot carried the rest"
    );
}

#[test]
fn nodes_restarted_from_their_logs_come_back_with_the_same_image() {
    let root = tempfile::tempdir().unwrap();
    let mut sim = Sim::durable(3, 21, 7, root.path());
    assert!(sim.run_until(200, |s| s.ready_leader().is_some()));
    for _ in 0..25 {
        let leader = sim.ready_leader();
        if let Some(l) = leader {
            sim.propose_topic(l).unwrap();
        }
        sim.round();
    }
    assert!(sim.run_until(300, |s| s.proposed.is_empty() && s.converged()));
    let before = sim.nodes[0].image().clone();
    assert_eq!(before.topics.len(), 25);
    // One at a time, then all at once (every node's memory gone together).
    for id in 1..=3 {
        sim.restart(id, root.path(), 7);
        assert!(sim.run_until(300, |s| s.converged() && s.ready_leader().is_some()));
        assert_eq!(sim.nodes[0].image(), &before);
    }
    for id in 1..=3 {
        sim.restart(id, root.path(), 7);
    }
    assert!(sim.run_until(300, |s| s.converged() && s.ready_leader().is_some()));
    assert_eq!(sim.nodes[0].image(), &before);
    let leader = sim.ready_leader().unwrap();
    sim.propose_topic(leader).unwrap();
    assert!(sim.run_until(300, |s| s.proposed.is_empty() && s.converged()));
    assert_eq!(sim.nodes[2].image().topics.len(), 26);
}

#[test]
fn a_torn_entry_at_the_end_of_a_log_is_cut_and_the_node_catches_up() {
    let root = tempfile::tempdir().unwrap();
    let mut sim = Sim::durable(3, 22, 1000, root.path());
    assert!(sim.run_until(200, |s| s.ready_leader().is_some()));
    let leader = sim.ready_leader().unwrap();
    for _ in 0..10 {
        sim.propose_topic(leader).unwrap();
        sim.round();
    }
    assert!(sim.run_until(300, |s| s.proposed.is_empty() && s.converged()));
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    let log = root.path().join(format!("node-{follower}/entries.log"));
    let whole = std::fs::read(&log).unwrap();
    // A crash in the middle of an append leaves part of a frame after the synced ones.
    let mut torn = whole.clone();
    torn.extend_from_slice(&100u32.to_be_bytes());
    torn.extend_from_slice(&[7; 30]);
    std::fs::write(&log, &torn).unwrap();
    sim.restart(follower, root.path(), 1000);
    assert_eq!(
        std::fs::read(&log).unwrap(),
        whole,
        "cut back to the synced frames"
    );
    assert!(sim.run_until(300, |s| s.converged()));
    // Synced entries lost below the commit index: the node refuses to start.
    std::fs::write(&log, &whole[..whole.len() - 5]).unwrap();
    let voters = [1, 2, 3];
    let err = QuorumNode::open(
        &root.path().join(format!("node-{follower}")),
        follower,
        &voters,
        MetadataImage::default(),
        1000,
    )
    .err()
    .expect("a log missing committed entries is refused");
    assert!(err.contains("acknowledged entries are missing"), "{err}");
    std::fs::write(&log, &whole).unwrap();
    sim.restart(follower, root.path(), 1000);
    assert!(sim.run_until(300, |s| s.converged()));
    assert_eq!(sim.node(follower).image().topics.len(), 10);
}

#[test]
fn restarts_loss_and_partitions_together_keep_every_acknowledged_change() {
    let seeds: u64 = std::env::var("QUORUM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    for seed in 31..31 + seeds {
        let root = tempfile::tempdir().unwrap();
        let mut sim = Sim::durable(3, seed, 16, root.path());
        sim.drop_percent = 10;
        for round in 0..1200 {
            if round % 80 == 40 {
                let id = 1 + sim.rng.next() % 3;
                sim.restart(id, root.path(), 16);
            }
            if round % 100 == 0 {
                sim.cut.clear();
                if sim.rng.percent(50) {
                    sim.cut.insert(1 + sim.rng.next() % 3);
                }
            }
            if sim.rng.percent(30) {
                let id = 1 + sim.rng.next() % 3;
                let _ = sim.propose_topic(id);
            }
            sim.round();
        }
        sim.cut.clear();
        sim.drop_percent = 0;
        assert!(sim.run_until(1000, |s| s.converged()), "seed {seed}");
        let image = sim.nodes[0].image().clone();
        assert!(
            sim.acknowledged.len() >= 30,
            "seed {seed}: {}",
            sim.acknowledged.len()
        );
        for name in &sim.acknowledged {
            assert!(
                image.topic(name).is_some(),
                "seed {seed}: acknowledged {name} lost"
            );
        }
    }
}
