//! The leader-epoch cache: `(leader epoch, start offset)` pairs, Kafka's
//! `leader-epoch-checkpoint`. It answers OffsetForLeaderEpoch, which replicas and clients use to
//! detect log divergence after a leader change.
//!
//! Persisted in Kafka's text format (version line, count line, `epoch offset` lines). After a
//! crash the entries are also re-derived from the `partitionLeaderEpoch` of the recovered batches,
//! so a lost checkpoint update is repaired by recovery.

use super::Offset;

/// Kafka's checkpoint file format version.
const VERSION: u32 = 0;

/// Epoch entries, epochs and start offsets both strictly increasing. Lives on the partition's
/// shard, inside the partition's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LeaderEpochCache {
    entries: Vec<(i32, Offset)>,
}

impl LeaderEpochCache {
    /// Notes that `epoch` wrote a batch at `start`. Returns true when the cache changed (and should
    /// be persisted). Older or negative epochs are ignored, as Kafka does.
    pub(crate) fn assign(&mut self, epoch: i32, start: Offset) -> bool {
        if epoch < 0 {
            return false;
        }
        match self.entries.last() {
            Some(&(e, _)) if e >= epoch => false,
            _ => {
                self.entries.retain(|&(_, o)| o < start);
                self.entries.push((epoch, start));
                true
            }
        }
    }

    /// OffsetForLeaderEpoch: `(largest epoch <= requested, end offset of that epoch)`, where the
    /// end offset is the start of the next higher epoch, or `log_end` for the latest epoch.
    /// `None` is Kafka's `(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)`.
    pub(crate) fn end_offset_for(&self, epoch: i32, log_end: Offset) -> Option<(i32, Offset)> {
        let &(latest, _) = self.entries.last()?;
        if epoch < 0 {
            return None;
        }
        if epoch == latest {
            return Some((epoch, log_end));
        }
        let higher = self.entries.iter().find(|&&(e, _)| e > epoch)?;
        match self.entries.iter().rev().find(|&&(e, _)| e <= epoch) {
            Some(&(floor, _)) => Some((floor, higher.1)),
            None => Some((epoch, higher.1)),
        }
    }

    /// The latest epoch, Kafka's `latestEpoch`.
    pub(crate) fn latest(&self) -> Option<i32> {
        self.entries.last().map(|&(e, _)| e)
    }

    /// Removes entries starting at or after `end` (truncation by recovery).
    pub(crate) fn truncate_from_end(&mut self, end: Offset) -> bool {
        let n = self.entries.len();
        self.entries.retain(|&(_, o)| o < end);
        n != self.entries.len()
    }

    /// Drops entries wholly before `start` and moves the first remaining one up to `start`
    /// (retention and DeleteRecords), as Kafka's `truncateFromStart` does.
    pub(crate) fn truncate_from_start(&mut self, start: Offset) -> bool {
        let keep_from = self.entries.iter().rposition(|&(_, o)| o <= start);
        match keep_from {
            Some(i) if i > 0 || self.entries[0].1 < start => {
                let epoch = self.entries[i].0;
                self.entries.drain(..=i);
                self.entries.insert(0, (epoch, start));
                true
            }
            _ => false,
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut s = format!("{VERSION}\n{}\n", self.entries.len());
        for (e, o) in &self.entries {
            s.push_str(&format!("{e} {}\n", o.0));
        }
        s.into_bytes()
    }

    pub(crate) fn decode(b: &[u8]) -> Option<LeaderEpochCache> {
        let text = std::str::from_utf8(b).ok()?;
        let mut lines = text.lines();
        if lines.next()?.trim().parse::<u32>().ok()? != VERSION {
            return None;
        }
        let n: usize = lines.next()?.trim().parse().ok()?;
        let mut cache = LeaderEpochCache::default();
        for _ in 0..n {
            let mut parts = lines.next()?.split_whitespace();
            let e: i32 = parts.next()?.parse().ok()?;
            let o: i64 = parts.next()?.parse().ok()?;
            cache.assign(e, Offset(o));
        }
        (cache.entries.len() == n).then_some(cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_for_leader_epoch_semantics() {
        let mut c = LeaderEpochCache::default();
        assert_eq!(c.end_offset_for(0, Offset(0)), None);
        assert!(c.assign(1, Offset(0)));
        assert!(!c.assign(1, Offset(5)));
        assert!(c.assign(3, Offset(10)));
        assert!(c.assign(5, Offset(20)));
        assert_eq!(c.end_offset_for(5, Offset(30)), Some((5, Offset(30))));
        assert_eq!(c.end_offset_for(3, Offset(30)), Some((3, Offset(20))));
        assert_eq!(c.end_offset_for(4, Offset(30)), Some((3, Offset(20))));
        assert_eq!(c.end_offset_for(0, Offset(30)), Some((0, Offset(0))));
        assert_eq!(c.end_offset_for(6, Offset(30)), None);
        assert_eq!(LeaderEpochCache::decode(&c.encode()), Some(c.clone()));
        assert!(c.truncate_from_start(Offset(12)));
        assert_eq!(c.entries, vec![(3, Offset(12)), (5, Offset(20))]);
        assert!(c.truncate_from_end(Offset(20)));
        assert_eq!(c.entries, vec![(3, Offset(12))]);
    }
}
