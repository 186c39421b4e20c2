//! The Raft log of the metadata quorum: raft-rs's `Storage` over entries in memory, with the
//! snapshot that carries the metadata image.
//!
//! raft-rs's own `MemStorage` is for its tests: its snapshots carry no data and compacting it
//! loses the term of the entry before the first kept one. This one keeps the latest snapshot
//! (the image at an applied index, with that index's term) and the entries after it, which is
//! everything raft-rs asks of a storage. In memory only (the simulation tests), or backed by
//! [`Disk`], which makes every change durable before the mutator returns, so that what a
//! Ready asks to persist is on disk before its persisted messages go out.

use std::path::Path;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{Error, GetEntriesContext, RaftState, Result, Storage, StorageError};

use super::disk::Disk;

/// Hard state, the latest snapshot, and the entries after it.
pub struct QuorumStorage {
    hard_state: HardState,
    /// The latest snapshot; index 0 (the empty snapshot) before the first one. Its metadata's
    /// conf state is the voters.
    snapshot: Snapshot,
    /// Entries `snapshot.index + 1 ..`, in order.
    entries: Vec<Entry>,
    /// Where it is durable; `None`: memory only.
    disk: Option<Disk>,
}

impl QuorumStorage {
    /// A fresh log of a static quorum of `voters` (`controller.quorum.voters`).
    pub fn new(voters: &[u64]) -> QuorumStorage {
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().set_conf_state(ConfState {
            voters: voters.to_vec(),
            ..ConfState::default()
        });
        QuorumStorage {
            hard_state: HardState::default(),
            snapshot,
            entries: Vec::new(),
            disk: None,
        }
    }

    /// The log kept in `dir`, recovered from what is there (a fresh one when empty).
    pub fn open(dir: &Path, voters: &[u64]) -> std::io::Result<QuorumStorage> {
        let r = Disk::open(dir, voters)?;
        Ok(QuorumStorage {
            hard_state: r.hard_state,
            snapshot: r.snapshot,
            entries: r.entries,
            disk: Some(r.disk),
        })
    }

    /// The latest snapshot (its data is the image at its index; empty before the first).
    pub fn latest_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    /// Appends entries from a Ready, replacing any conflicting suffix (a new leader's log wins
    /// over what an old one sent but never committed).
    pub fn append(&mut self, entries: &[Entry]) -> std::io::Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        assert!(
            first.index > self.snapshot_index(),
            "appending entry {} inside snapshot {}",
            first.index,
            self.snapshot_index()
        );
        let keep = (first.index - self.snapshot_index() - 1) as usize;
        assert!(
            keep <= self.entries.len(),
            "a gap before entry {}",
            first.index
        );
        if let Some(d) = &mut self.disk {
            d.append(keep, entries)?;
        }
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    /// Term, vote and commit; durable before it returns.
    pub fn set_hard_state(&mut self, hs: HardState) -> std::io::Result<()> {
        if let Some(d) = &self.disk {
            d.save_hard_state(&hs)?;
        }
        self.hard_state = hs;
        Ok(())
    }

    /// The commit index learnt after the entries were persisted. Not written on its own: a
    /// restart with an older commit index learns it again from the leader (or, leading,
    /// commits again), and the image is rebuilt from the entries either way.
    pub fn set_commit(&mut self, commit: u64) {
        self.hard_state.commit = commit;
    }

    /// Installs a snapshot received from the leader: it replaces the whole log.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> std::io::Result<()> {
        if let Some(d) = &mut self.disk {
            d.save_snapshot(&snapshot, &[])?;
        }
        let meta = snapshot.get_metadata();
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.entries.clear();
        self.snapshot = snapshot;
        Ok(())
    }

    /// Takes a snapshot of the state at `index` (applied here) holding `data`, and drops the
    /// entries up to it.
    pub fn compact(&mut self, index: u64, data: Vec<u8>) -> Result<()> {
        if index <= self.snapshot_index() {
            return Ok(());
        }
        let term = self.term(index)?;
        let conf_state = self.snapshot.get_metadata().get_conf_state().clone();
        let mut snapshot = Snapshot {
            data: data.into(),
            ..Snapshot::default()
        };
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(conf_state);
        let drop = (index - self.snapshot_index()) as usize;
        if let Some(d) = &mut self.disk {
            d.save_snapshot(&snapshot, &self.entries[drop..])
                .map_err(|e| Error::Store(StorageError::Other(Box::new(e))))?;
        }
        self.entries.drain(..drop);
        self.snapshot = snapshot;
        Ok(())
    }

    /// Entries held after the snapshot (for tests and metrics).
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }
}

impl Storage for QuorumStorage {
    fn initial_state(&self) -> Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.snapshot.get_metadata().get_conf_state().clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> Result<Vec<Entry>> {
        if low <= self.snapshot_index() {
            return Err(Error::Store(StorageError::Compacted));
        }
        let last = self.snapshot_index() + self.entries.len() as u64;
        assert!(
            high <= last + 1,
            "entries up to {high} asked, the log ends at {last}"
        );
        let from = (low - self.snapshot_index() - 1) as usize;
        let to = (high - self.snapshot_index() - 1) as usize;
        let mut out = self.entries[from..to].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> Result<u64> {
        let snap = self.snapshot_index();
        if idx == snap {
            return Ok(self.snapshot.get_metadata().term);
        }
        if idx < snap {
            return Err(Error::Store(StorageError::Compacted));
        }
        self.entries
            .get((idx - snap - 1) as usize)
            .map(|e| e.term)
            .ok_or(Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> Result<u64> {
        Ok(self.snapshot_index() + 1)
    }

    fn last_index(&self) -> Result<u64> {
        Ok(self.snapshot_index() + self.entries.len() as u64)
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> Result<Snapshot> {
        if self.snapshot_index() < request_index {
            return Err(Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        }
        Ok(self.snapshot.clone())
    }
}
