//! Producer state of one partition: for each producer id, its epoch, the sequence ranges and
//! offsets of its last five batches, and the first offset of its open transaction (Kafka's
//! `ProducerStateManager`). A transaction opens with the producer's first transactional batch
//! and ends with the control batch (marker) its coordinator writes; see `txn.rs`.
//!
//! The state is updated when an append reserves its offsets, so concurrent retries of the same
//! batch are recognised even before the first copy reaches the disk. It is snapshotted to
//! `producer.snapshot` at segment roll and clean shutdown and rebuilt after a crash by replaying
//! the batch headers written after the snapshot.

use std::collections::{BTreeSet, HashMap, VecDeque};

use super::batch::BatchHeader;
use super::txn::Ended;
use super::{LogError, Offset};
use crate::config::{PRODUCERS_PER_PARTITION_MAX, PRODUCER_BATCHES_RETAINED};

/// One remembered batch of a producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
    /// Monotonic counter of the last update, for bounding the map.
    touched: u64,
    /// The offset of the open transaction's first batch here.
    txn_first: Option<i64>,
}

/// What the producer state says about a batch about to be appended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// Append it.
    Accept,
    /// A retry of a batch already in the log at these offsets.
    Duplicate(BatchMeta),
}

/// The state for all producers of a partition. Lives on the partition's shard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
    clock: u64,
    /// `(first offset, producer id)` of every open transaction, the earliest first.
    ongoing: BTreeSet<(i64, i64)>,
}

/// Version 2 added each producer's open transaction.
const SNAPSHOT_VERSION: u16 = 2;

impl ProducerState {
    /// Kafka's idempotence rules for a batch with `producerId >= 0`.
    pub(crate) fn check(&self, h: &BatchHeader) -> Result<Check, LogError> {
        if h.producer_id < 0 {
            return Ok(Check::Accept);
        }
        let Some(e) = self.producers.get(&h.producer_id) else {
            return Ok(Check::Accept);
        };
        let pid = h.producer_id;
        if h.is_control() || h.base_sequence < 0 {
            // A marker, or a coordinator's transactional batch (TxnOffsetCommit), has no
            // sequence; it must not come from a fenced epoch. Clients cannot send one
            // (`validate_produce` refuses a producer id without a sequence).
            if h.producer_epoch < e.epoch {
                return Err(LogError::InvalidProducerEpoch(format!(
                    "marker for producer {pid} epoch {} is older than {}",
                    h.producer_epoch, e.epoch
                )));
            }
            return Ok(Check::Accept);
        }
        if h.producer_epoch < e.epoch {
            return Err(LogError::InvalidProducerEpoch(format!(
                "producer {pid} epoch {} is older than {}",
                h.producer_epoch, e.epoch
            )));
        }
        if h.producer_epoch > e.epoch {
            if h.base_sequence != 0 {
                return Err(LogError::OutOfOrderSequence(format!(
                    "producer {pid} new epoch {} must start at sequence 0, not {}",
                    h.producer_epoch, h.base_sequence
                )));
            }
            return Ok(Check::Accept);
        }
        let (first, last) = (h.base_sequence, h.last_sequence());
        if let Some(b) = e
            .batches
            .iter()
            .find(|b| b.first_seq == first && b.last_seq == last)
        {
            return Ok(Check::Duplicate(*b));
        }
        match e.batches.back() {
            Some(b) if h.base_sequence != super::batch::increment_sequence(b.last_seq, 1) => {
                Err(LogError::OutOfOrderSequence(format!(
                    "producer {pid} sequence {} does not follow {}",
                    h.base_sequence, b.last_seq
                )))
            }
            _ => Ok(Check::Accept),
        }
    }

    /// Records an appended batch (also used when replaying the log, where it must not fail).
    /// A marker ends the producer's open transaction, which is returned (a marker without
    /// one ends an empty transaction at its own offset, as in Kafka).
    pub(crate) fn record(&mut self, h: &BatchHeader, base_offset: Offset) -> Option<Ended> {
        if h.producer_id < 0 {
            return None;
        }
        self.clock += 1;
        if h.is_control() {
            return Some(self.end_transaction(h, base_offset.0));
        }
        let meta = BatchMeta {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            base_offset: base_offset.0,
            last_offset: base_offset.0 + i64::from(h.last_offset_delta),
        };
        let e = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry::new(h.producer_epoch));
        if h.producer_epoch != e.epoch {
            e.epoch = h.producer_epoch;
            e.batches.clear();
        }
        e.touched = self.clock;
        if h.is_transactional() && e.txn_first.is_none() {
            e.txn_first = Some(meta.base_offset);
            self.ongoing.insert((meta.base_offset, h.producer_id));
        }
        if h.base_sequence < 0 || e.batches.iter().any(|b| b.base_offset == meta.base_offset) {
            // Nothing to deduplicate (a coordinator's batch), or a replay of a batch the
            // snapshot already holds.
            return None;
        }
        if e.batches.len() == PRODUCER_BATCHES_RETAINED {
            e.batches.pop_front();
        }
        e.batches.push_back(meta);
        if self.producers.len() > PRODUCERS_PER_PARTITION_MAX {
            self.evict_oldest();
        }
        None
    }

    /// A marker: the producer's epoch moves to the marker's (a KIP-890 bump resets its
    /// sequences), and its open transaction, if any, ends.
    fn end_transaction(&mut self, h: &BatchHeader, offset: i64) -> Ended {
        let pid = h.producer_id;
        let e = self
            .producers
            .entry(pid)
            .or_insert_with(|| ProducerEntry::new(h.producer_epoch));
        if h.producer_epoch > e.epoch {
            e.epoch = h.producer_epoch;
            e.batches.clear();
        }
        e.touched = self.clock;
        let first = e.txn_first.take();
        if let Some(f) = first {
            self.ongoing.remove(&(f, pid));
        }
        Ended {
            producer_id: pid,
            first_offset: first.unwrap_or(offset),
            marker_offset: offset,
        }
    }

    /// The first offset of the earliest open transaction.
    pub(crate) fn first_open_transaction(&self) -> Option<i64> {
        self.ongoing.first().map(|(f, _)| *f)
    }

    /// Opens `e`'s transaction again: a truncation removed its marker.
    pub(crate) fn reopen(&mut self, e: &Ended) {
        if let Some(p) = self.producers.get_mut(&e.producer_id) {
            if p.txn_first.is_none() {
                p.txn_first = Some(e.first_offset);
                self.ongoing.insert((e.first_offset, e.producer_id));
            }
        }
    }

    /// Producers with an open transaction are never evicted: their transaction would be
    /// forgotten and the last stable offset would pass it.
    fn evict_oldest(&mut self) {
        if let Some(pid) = self
            .producers
            .iter()
            .filter(|(_, e)| e.txn_first.is_none())
            .min_by_key(|(_, e)| e.touched)
            .map(|(p, _)| *p)
        {
            self.producers.remove(&pid);
        }
    }

    /// Base offsets of every batch the state remembers. The cleaner keeps these batches' headers
    /// (empty if need be) so that a rebuild of this state from the log finds them again.
    pub(crate) fn remembered_batches(&self) -> std::collections::HashSet<i64> {
        self.producers
            .values()
            .flat_map(|e| e.batches.iter().map(|b| b.base_offset))
            .collect()
    }

    /// Every producer's epoch and remembered batches, by producer id, without the eviction
    /// clock (which counts updates, not state).
    #[cfg(test)]
    pub(crate) fn view(&self) -> Vec<(i64, i16, Vec<BatchMeta>)> {
        let mut v: Vec<_> = self
            .producers
            .iter()
            .map(|(p, e)| (*p, e.epoch, e.batches.iter().copied().collect()))
            .collect();
        v.sort_by_key(|e| e.0);
        v
    }

    /// Forgets batches at or past `end` (the log was truncated there by recovery, or by a
    /// follower's truncation).
    pub(crate) fn truncate(&mut self, end: Offset) {
        for e in self.producers.values_mut() {
            e.batches.retain(|b| b.base_offset < end.0);
            if e.txn_first.is_some_and(|f| f >= end.0) {
                e.txn_first = None;
            }
        }
        self.ongoing.retain(|(f, _)| *f < end.0);
    }

    /// Serialises the state, tagged with the offset it covers, with a CRC32C trailer.
    pub(crate) fn encode(&self, covers_to: Offset) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&covers_to.0.to_be_bytes());
        out.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        for (pid, e) in &self.producers {
            out.extend_from_slice(&pid.to_be_bytes());
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.extend_from_slice(&e.txn_first.unwrap_or(-1).to_be_bytes());
            out.push(e.batches.len() as u8);
            for b in &e.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.base_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes a snapshot; `None` for anything damaged (the caller rebuilds from the log).
    pub(crate) fn decode(b: &[u8]) -> Option<(ProducerState, Offset)> {
        let body = b.get(..b.len().checked_sub(4)?)?;
        let crc = u32::from_be_bytes(b.get(body.len()..)?.try_into().ok()?);
        if crc32c::crc32c(body) != crc {
            return None;
        }
        let mut r = Reader(body);
        let version = u16::from_be_bytes(r.take()?);
        if version != 1 && version != SNAPSHOT_VERSION {
            return None;
        }
        let covers = Offset(i64::from_be_bytes(r.take()?));
        let n = u32::from_be_bytes(r.take()?);
        let mut st = ProducerState::default();
        for _ in 0..n {
            let pid = i64::from_be_bytes(r.take()?);
            let epoch = i16::from_be_bytes(r.take()?);
            let txn_first = match version {
                1 => None,
                _ => Some(i64::from_be_bytes(r.take()?)).filter(|f| *f >= 0),
            };
            let nb = u8::from_be_bytes(r.take()?);
            let mut batches = VecDeque::new();
            for _ in 0..nb {
                batches.push_back(BatchMeta {
                    first_seq: i32::from_be_bytes(r.take()?),
                    last_seq: i32::from_be_bytes(r.take()?),
                    base_offset: i64::from_be_bytes(r.take()?),
                    last_offset: i64::from_be_bytes(r.take()?),
                });
            }
            if let Some(f) = txn_first {
                st.ongoing.insert((f, pid));
            }
            st.producers.insert(
                pid,
                ProducerEntry {
                    epoch,
                    batches,
                    touched: 0,
                    txn_first,
                },
            );
        }
        Some((st, covers))
    }
}

impl ProducerEntry {
    fn new(epoch: i16) -> ProducerEntry {
        ProducerEntry {
            epoch,
            batches: VecDeque::new(),
            touched: 0,
            txn_first: None,
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_at_checked(N)?;
        self.0 = rest;
        head.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::{parse_header, tests::make_batch};

    fn hdr(pid: i64, epoch: i16, seq: i32, n: usize) -> BatchHeader {
        parse_header(&make_batch(&vec![vec![0u8; 3]; n], 0, pid, epoch, seq)).unwrap()
    }

    #[test]
    fn kafka_sequence_rules() {
        let mut st = ProducerState::default();
        assert_eq!(st.check(&hdr(1, 0, 0, 2)).unwrap(), Check::Accept);
        st.record(&hdr(1, 0, 0, 2), Offset(10));
        // Duplicate of the first batch returns its original offsets.
        match st.check(&hdr(1, 0, 0, 2)).unwrap() {
            Check::Duplicate(b) => assert_eq!((b.base_offset, b.last_offset), (10, 11)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            st.check(&hdr(1, 0, 5, 1)),
            Err(LogError::OutOfOrderSequence(_))
        ));
        assert_eq!(st.check(&hdr(1, 0, 2, 1)).unwrap(), Check::Accept);
        assert!(matches!(
            st.check(&hdr(1, 1, 3, 1)),
            Err(LogError::OutOfOrderSequence(_))
        ));
        st.record(&hdr(1, 1, 0, 1), Offset(20));
        assert!(matches!(
            st.check(&hdr(1, 0, 2, 1)),
            Err(LogError::InvalidProducerEpoch(_))
        ));
        assert_eq!(st.check(&hdr(9, 3, 77, 1)).unwrap(), Check::Accept);
        let (back, covers) = ProducerState::decode(&st.encode(Offset(21))).unwrap();
        assert_eq!(covers, Offset(21));
        let view = |s: &ProducerState| -> Vec<(i64, i16, Vec<BatchMeta>)> {
            let mut v: Vec<_> = s
                .producers
                .iter()
                .map(|(p, e)| (*p, e.epoch, e.batches.iter().copied().collect()))
                .collect();
            v.sort_by_key(|e| e.0);
            v
        };
        assert_eq!(view(&back), view(&st));
    }

    #[test]
    fn only_five_batches_are_remembered() {
        let mut st = ProducerState::default();
        for i in 0..6 {
            st.record(&hdr(1, 0, i, 1), Offset(i64::from(i)));
        }
        // Sequence 0 has been forgotten, so it is no longer a duplicate but out of order.
        assert!(matches!(
            st.check(&hdr(1, 0, 0, 1)),
            Err(LogError::OutOfOrderSequence(_))
        ));
        assert!(matches!(
            st.check(&hdr(1, 0, 1, 1)).unwrap(),
            Check::Duplicate(_)
        ));
    }

    fn txn(pid: i64, epoch: i16, seq: i32, n: usize) -> BatchHeader {
        let mut h = hdr(pid, epoch, seq, n);
        h.attributes |= crate::log::batch::ATTR_TRANSACTIONAL;
        h
    }

    fn marker(pid: i64, epoch: i16) -> BatchHeader {
        let mut h = hdr(pid, epoch, -1, 1);
        h.attributes |= crate::log::batch::ATTR_TRANSACTIONAL | crate::log::batch::ATTR_CONTROL;
        h
    }

    #[test]
    fn a_transaction_is_open_from_its_first_batch_to_its_marker() {
        let mut st = ProducerState::default();
        assert_eq!(st.record(&hdr(1, 0, 0, 1), Offset(0)), None);
        assert_eq!(st.first_open_transaction(), None);
        st.record(&txn(2, 0, 0, 2), Offset(1));
        st.record(&txn(3, 0, 0, 1), Offset(3));
        st.record(&txn(2, 0, 2, 1), Offset(4));
        assert_eq!(st.first_open_transaction(), Some(1));
        // Survives a snapshot.
        let (back, _) = ProducerState::decode(&st.encode(Offset(5))).unwrap();
        assert_eq!(back.first_open_transaction(), Some(1));
        // A marker needs no sequence, and a fenced epoch's marker is refused.
        assert_eq!(st.check(&marker(2, 0)).unwrap(), Check::Accept);
        assert!(matches!(st.check(&marker(9, 0)), Ok(Check::Accept)));
        let ended = st.record(&marker(2, 0), Offset(5)).unwrap();
        assert_eq!((ended.first_offset, ended.marker_offset), (1, 5));
        assert_eq!(st.first_open_transaction(), Some(3));
        // A truncation below the marker opens it again; below the first batch forgets it.
        st.reopen(&ended);
        assert_eq!(st.first_open_transaction(), Some(1));
        st.truncate(Offset(2));
        assert_eq!(st.first_open_transaction(), Some(1));
        st.truncate(Offset(1));
        assert_eq!(st.first_open_transaction(), None);
        // An epoch bump by the marker (KIP-890) resets the sequences.
        st.record(&txn(4, 0, 0, 1), Offset(1));
        st.record(&marker(4, 1), Offset(2));
        assert!(matches!(
            st.check(&marker(4, 0)),
            Err(LogError::InvalidProducerEpoch(_))
        ));
        assert_eq!(st.check(&hdr(4, 1, 0, 1)).unwrap(), Check::Accept);
    }

    #[test]
    fn producers_with_an_open_transaction_are_not_evicted() {
        let mut st = ProducerState::default();
        st.record(&txn(0, 0, 0, 1), Offset(0));
        for pid in 1..=PRODUCERS_PER_PARTITION_MAX as i64 + 5 {
            st.record(&hdr(pid, 0, 0, 1), Offset(pid));
        }
        assert_eq!(st.producers.len(), PRODUCERS_PER_PARTITION_MAX);
        assert_eq!(st.first_open_transaction(), Some(0));
    }

    #[test]
    fn a_version_1_snapshot_still_loads() {
        let mut st = ProducerState::default();
        st.record(&hdr(1, 0, 0, 2), Offset(10));
        let mut v2 = st.encode(Offset(12));
        // Rewrite it as version 1: no open-transaction field.
        let at = 2 + 8 + 4 + 8 + 2;
        v2.drain(at..at + 8);
        v2[..2].copy_from_slice(&1u16.to_be_bytes());
        let n = v2.len() - 4;
        let crc = crc32c::crc32c(&v2[..n]);
        v2[n..].copy_from_slice(&crc.to_be_bytes());
        let (back, covers) = ProducerState::decode(&v2).unwrap();
        assert_eq!((back.view(), covers), (st.view(), Offset(12)));
    }
}
