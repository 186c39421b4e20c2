//! The quorum's Raft log on disk: what raft-rs requires to be durable before a Ready's
//! persisted messages go out (entries, term and vote), and the snapshot that bounds the log.
//!
//! Files in the node's directory (`<data_dir>/__cluster_metadata/raft/`):
//!
//! - `entries.log`: the entries after the snapshot, each a frame `len: u32`, `crc32c: u32` of
//!   the payload, then the entry in raft's protobuf encoding; appended and fdatasynced. An
//!   append that replaces a suffix (a new leader's entries over ones an old leader sent) first
//!   truncates the file at the first replaced entry.
//! - `hardstate`: term, vote and commit (`crc32c: u32`, then protobuf), replaced atomically.
//! - `snapshot`: the latest snapshot with the image (`crc32c: u32`, then protobuf), replaced
//!   atomically; after it is in place, `entries.log` is rewritten with the entries after it.
//!
//! Recovery reads the snapshot, the hard state and the entries; a frame cut short or failing
//! its CRC ends the log (an append never acknowledged), and the file is truncated there. A
//! commit index past the end of what survived means acknowledged entries were lost: the node
//! refuses to start rather than vote with a log that forgot them.
//! Entries at or below the snapshot (a crash between writing the snapshot and rewriting the
//! log) are skipped.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};

use crate::durable;

/// The open entries file and where each kept entry starts in it.
pub struct Disk {
    dir: PathBuf,
    log: File,
    /// Byte offset of each entry of the log, in order; `len` past the last.
    offsets: Vec<u64>,
    len: u64,
}

/// What recovery found.
pub struct Recovered {
    pub disk: Disk,
    pub hard_state: HardState,
    pub snapshot: Snapshot,
    pub entries: Vec<Entry>,
}

fn corrupt(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Reads a file holding one frame with a protobuf message; `None` when it does not exist.
fn read_checked<M: protobuf::Message>(path: &Path) -> io::Result<Option<M>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match durable::frames(&bytes) {
        (one, len) if one.len() == 1 && len == bytes.len() => M::parse_from_bytes(one[0])
            .map(Some)
            .map_err(|e| corrupt(format!("{}: {e}", path.display()))),
        _ => Err(corrupt(format!("{}: checksum mismatch", path.display()))),
    }
}

/// Replaces `dir/name` with one frame holding `m`, atomically.
fn write_checked<M: protobuf::Message>(dir: &Path, name: &str, m: &M) -> io::Result<()> {
    let mut framed = Vec::new();
    durable::push_frame(&mut framed, &m.write_to_bytes().map_err(corrupt)?);
    durable::replace_file(dir, name, &framed)
}

/// `entries` as frames appended to `out`, with the offset in `out` where each one starts.
fn push_entries(
    out: &mut Vec<u8>,
    entries: &[Entry],
    offsets: &mut Vec<u64>,
    base: u64,
) -> io::Result<()> {
    for e in entries {
        offsets.push(base + out.len() as u64);
        durable::push_frame(out, &e.write_to_bytes().map_err(corrupt)?);
    }
    Ok(())
}

impl Disk {
    /// Opens (or creates) the log in `dir` and recovers it; a fresh log's snapshot is empty
    /// with `voters` as its configuration.
    pub fn open(dir: &Path, voters: &[u64]) -> io::Result<Recovered> {
        std::fs::create_dir_all(dir)?;
        let snapshot = read_checked::<Snapshot>(&dir.join("snapshot"))?.unwrap_or_else(|| {
            let mut s = Snapshot::default();
            s.mut_metadata().set_conf_state(ConfState {
                voters: voters.to_vec(),
                ..ConfState::default()
            });
            s
        });
        let hard_state = read_checked::<HardState>(&dir.join("hardstate"))?.unwrap_or_default();
        let path = dir.join("entries.log");
        let mut log = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        durable::sync_dir(dir)?;
        let mut bytes = Vec::new();
        log.read_to_end(&mut bytes)?;
        let snap_index = snapshot.get_metadata().index;
        let (frames, pos) = durable::frames(&bytes);
        let (mut entries, mut offsets, mut at) = (Vec::new(), Vec::new(), 0usize);
        for payload in frames {
            let entry = Entry::parse_from_bytes(payload).map_err(corrupt)?;
            if entry.index > snap_index {
                let expected = snap_index + 1 + entries.len() as u64;
                if entry.index != expected {
                    return Err(corrupt(format!(
                        "{}: entry {} where {expected} belongs",
                        path.display(),
                        entry.index
                    )));
                }
                offsets.push(at as u64);
                entries.push(entry);
            }
            at += durable::FRAME_HEADER + payload.len();
        }
        if pos < bytes.len() {
            tracing::warn!(file = %path.display(), kept = pos, dropped = bytes.len() - pos,
                "metadata quorum log ends in a torn entry (an append cut short); truncating");
            log.set_len(pos as u64)?;
            log.sync_all()?;
        }
        // A commit index past the log's end: the log lost entries it had synced (a disk that
        // lied about fsync, or damage; a crash alone cannot do this, since the hard state is
        // written after the entries). A voter that forgot what it acknowledged can make Raft
        // commit conflicting entries, so it does not rejoin: the start stops with the reason.
        let last = snap_index + entries.len() as u64;
        if hard_state.commit > last {
            return Err(corrupt(format!(
                "{}: the log ends at entry {last} but entry {} was committed: acknowledged \
                 entries are missing (disk damage, or a device that does not honour fsync)",
                path.display(),
                hard_state.commit
            )));
        }
        // Entries at or below the snapshot: the log was not yet rewritten after it. Rewrite
        // now so offsets start at 0.
        let mut disk = Disk {
            dir: dir.to_path_buf(),
            log,
            offsets,
            len: pos as u64,
        };
        if disk.offsets.first().is_some_and(|&o| o > 0) || (disk.offsets.is_empty() && pos > 0) {
            disk.rewrite(&entries)?;
        }
        Ok(Recovered {
            disk,
            hard_state,
            snapshot,
            entries,
        })
    }

    /// Writes `entries` after the first `keep` of the log (cutting the rest), then syncs.
    pub fn append(&mut self, keep: usize, entries: &[Entry]) -> io::Result<()> {
        if keep < self.offsets.len() {
            self.len = self.offsets[keep];
            self.offsets.truncate(keep);
            self.log.set_len(self.len)?;
        }
        let mut buf = Vec::new();
        let kept = self.offsets.len();
        push_entries(&mut buf, entries, &mut self.offsets, self.len)?;
        if let Err(e) = durable::append_synced(&mut self.log, self.len, &buf) {
            self.offsets.truncate(kept);
            return Err(e);
        }
        self.len += buf.len() as u64;
        Ok(())
    }

    pub fn save_hard_state(&self, hs: &HardState) -> io::Result<()> {
        write_checked(&self.dir, "hardstate", hs)
    }

    /// Puts `snapshot` in place, then rewrites the log with `remaining` (the entries after it).
    pub fn save_snapshot(&mut self, snapshot: &Snapshot, remaining: &[Entry]) -> io::Result<()> {
        write_checked(&self.dir, "snapshot", snapshot)?;
        self.rewrite(remaining)
    }

    fn rewrite(&mut self, entries: &[Entry]) -> io::Result<()> {
        let (mut buf, mut offsets) = (Vec::new(), Vec::with_capacity(entries.len()));
        push_entries(&mut buf, entries, &mut offsets, 0)?;
        durable::replace_file(&self.dir, "entries.log", &buf)?;
        self.log = OpenOptions::new()
            .read(true)
            .append(true)
            .open(self.dir.join("entries.log"))?;
        self.offsets = offsets;
        self.len = buf.len() as u64;
        Ok(())
    }
}
