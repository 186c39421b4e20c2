//! Idempotent-producer state of one partition: for each producer id, its epoch and the sequence
//! ranges and offsets of its last five batches (Kafka's `ProducerStateManager`, without
//! transactions).
//!
//! The state is updated when an append reserves its offsets, so concurrent retries of the same
//! batch are recognised even before the first copy reaches the disk. It is snapshotted to
//! `producer.snapshot` at segment roll and clean shutdown and rebuilt after a crash by replaying
//! the batch headers written after the snapshot.

use std::collections::{HashMap, VecDeque};

use super::batch::BatchHeader;
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
}

const SNAPSHOT_VERSION: u16 = 1;

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
    pub(crate) fn record(&mut self, h: &BatchHeader, base_offset: Offset) {
        if h.producer_id < 0 {
            return;
        }
        self.clock += 1;
        let meta = BatchMeta {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            base_offset: base_offset.0,
            last_offset: base_offset.0 + i64::from(h.last_offset_delta),
        };
        let e = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::new(),
                touched: 0,
            });
        if h.producer_epoch != e.epoch {
            e.epoch = h.producer_epoch;
            e.batches.clear();
        }
        e.touched = self.clock;
        if e.batches.iter().any(|b| b.base_offset == meta.base_offset) {
            return; // replay of a batch the snapshot already holds
        }
        if e.batches.len() == PRODUCER_BATCHES_RETAINED {
            e.batches.pop_front();
        }
        e.batches.push_back(meta);
        if self.producers.len() > PRODUCERS_PER_PARTITION_MAX {
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        if let Some(pid) = self
            .producers
            .iter()
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
        }
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
        if u16::from_be_bytes(r.take()?) != SNAPSHOT_VERSION {
            return None;
        }
        let covers = Offset(i64::from_be_bytes(r.take()?));
        let n = u32::from_be_bytes(r.take()?);
        let mut st = ProducerState::default();
        for _ in 0..n {
            let pid = i64::from_be_bytes(r.take()?);
            let epoch = i16::from_be_bytes(r.take()?);
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
            let touched = 0;
            st.producers.insert(
                pid,
                ProducerEntry {
                    epoch,
                    batches,
                    touched,
                },
            );
        }
        Some((st, covers))
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
}
