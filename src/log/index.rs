//! The sparse offset and time indexes of one segment.
//!
//! Both live in memory (reads are synchronous and must not touch the disk to find a segment
//! position) and are written to `.index` / `.timeindex` in Kafka's format when a segment is
//! closed or the log shuts down cleanly. They are loaded back only when the log says they can be
//! trusted; after a crash they are rebuilt from the `.log`, which always wins.

/// Offset index: `(relative base offset of a batch, file position of that batch)`, both strictly
/// increasing. Kafka's `.index` entry: 4 + 4 bytes, big-endian.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

const OFFSET_ENTRY: usize = 8;
const TIME_ENTRY: usize = 12;

impl OffsetIndex {
    /// Adds an entry; ignored unless both keys move forward, so the index stays sorted.
    pub(crate) fn push(&mut self, rel_offset: u32, pos: u32) {
        if self
            .entries
            .last()
            .is_none_or(|&(o, p)| rel_offset > o && pos > p)
        {
            self.entries.push((rel_offset, pos));
        }
    }

    /// Position of the last indexed batch whose base offset is `<= rel_offset`, or 0.
    pub(crate) fn lookup(&self, rel_offset: u32) -> u32 {
        let i = self.entries.partition_point(|&(o, _)| o <= rel_offset);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    /// The greatest indexed batch position that is `<= pos`, or `None`.
    pub(crate) fn floor_pos(&self, pos: u32) -> Option<u32> {
        let i = self.entries.partition_point(|&(_, p)| p <= pos);
        (i > 0).then(|| self.entries[i - 1].1)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY);
        for &(o, p) in &self.entries {
            out.extend_from_slice(&o.to_be_bytes());
            out.extend_from_slice(&p.to_be_bytes());
        }
        out
    }

    /// Decodes and sanity-checks an index file against the size of its log; `None` means
    /// "rebuild from the log".
    pub(crate) fn decode(b: &[u8], log_len: u64) -> Option<OffsetIndex> {
        if b.len() % OFFSET_ENTRY != 0 {
            return None;
        }
        let mut idx = OffsetIndex::default();
        for e in b.chunks_exact(OFFSET_ENTRY) {
            let o = u32::from_be_bytes(e[..4].try_into().ok()?);
            let p = u32::from_be_bytes(e[4..].try_into().ok()?);
            let before = idx.entries.len();
            idx.push(o, p);
            if idx.entries.len() == before || u64::from(p) >= log_len {
                return None;
            }
        }
        Some(idx)
    }
}

/// Time index: `(max timestamp so far, relative offset of the batch where it was reached)`,
/// timestamps strictly increasing. Kafka's `.timeindex` entry: 8 + 4 bytes, big-endian.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// Adds an entry when the timestamp moves forward.
    pub(crate) fn push(&mut self, ts: i64, rel_offset: u32) {
        if self
            .entries
            .last()
            .is_none_or(|&(t, o)| ts > t && rel_offset >= o)
        {
            self.entries.push((ts, rel_offset));
        }
    }

    /// Relative offset from which a scan for the first record with timestamp `>= ts` can start:
    /// every record before the last entry with a timestamp `< ts` is older than `ts`.
    pub(crate) fn scan_start(&self, ts: i64) -> u32 {
        let i = self.entries.partition_point(|&(t, _)| t < ts);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    pub(crate) fn last(&self) -> Option<(i64, u32)> {
        self.entries.last().copied()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_ENTRY);
        for &(t, o) in &self.entries {
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&o.to_be_bytes());
        }
        out
    }

    pub(crate) fn decode(b: &[u8]) -> Option<TimeIndex> {
        if b.len() % TIME_ENTRY != 0 {
            return None;
        }
        let mut idx = TimeIndex::default();
        for e in b.chunks_exact(TIME_ENTRY) {
            let t = i64::from_be_bytes(e[..8].try_into().ok()?);
            let o = u32::from_be_bytes(e[8..].try_into().ok()?);
            let before = idx.entries.len();
            idx.push(t, o);
            if idx.entries.len() == before {
                return None;
            }
        }
        Some(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Index lookups agree with a linear scan over the same entries.
        #[test]
        fn lookup_matches_linear_scan(steps in proptest::collection::vec((1u32..50, 1u32..5000), 0..200),
                                      probes in proptest::collection::vec(0u32..20_000, 1..50)) {
            let mut idx = OffsetIndex::default();
            let (mut o, mut p) = (0u32, 0u32);
            let mut all = Vec::new();
            for (dof, dpos) in steps {
                o += dof; p += dpos;
                idx.push(o, p);
                all.push((o, p));
            }
            for q in probes {
                let linear = all.iter().rev().find(|e| e.0 <= q).map_or(0, |e| e.1);
                prop_assert_eq!(idx.lookup(q), linear);
                let floor = all.iter().rev().find(|e| e.1 <= q).map(|e| e.1);
                prop_assert_eq!(idx.floor_pos(q), floor);
            }
            let dec = OffsetIndex::decode(&idx.encode(), u64::MAX).unwrap();
            prop_assert_eq!(dec, idx);
        }

        #[test]
        fn time_scan_start_is_safe(ts in proptest::collection::vec(0i64..1000, 1..100), q in 0i64..1100) {
            let mut idx = TimeIndex::default();
            let mut max = i64::MIN;
            for (i, &t) in ts.iter().enumerate() {
                max = max.max(t);
                idx.push(max, i as u32);
            }
            let start = idx.scan_start(q) as usize;
            // No record before the start has a timestamp >= q.
            prop_assert!(ts[..start].iter().all(|&t| t < q));
            prop_assert_eq!(TimeIndex::decode(&idx.encode()).unwrap(), idx);
        }
    }
}
