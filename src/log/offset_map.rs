//! The cleaner's key map: key hash → latest offset, in a fixed amount of memory.
//!
//! Kafka's `SkimpyOffsetMap`: an open-addressing table of 128-bit key hashes and offsets with
//! linear probing, sized once from `log.cleaner.dedupe.buffer.size` and filled to at most
//! `LOG_CLEANER_LOAD_FACTOR`. Keys themselves are never stored, so memory does not depend on key
//! sizes; two keys are confused only if their 128-bit hashes collide. The hashes are keyed with
//! random keys per map (SipHash through `RandomState`), so no client can aim for a collision.
//!
//! One map lives on each shard for the life of the process and is reused by every pass
//! (`clear`), so compaction allocates nothing per pass.

use std::hash::{BuildHasher, Hasher, RandomState};

use crate::config::LOG_CLEANER_LOAD_FACTOR;

/// Bytes of one slot: a 128-bit hash and an offset.
pub const SLOT_BYTES: usize = 24;

/// See the module docs. Lives on one shard.
pub struct OffsetMap {
    /// `(hash_hi, hash_lo)`; `(0, 0)` marks an empty slot (a real hash is nudged away from it).
    hashes: Vec<(u64, u64)>,
    offsets: Vec<i64>,
    len: usize,
    /// Entries allowed before the map counts as full.
    max_len: usize,
    hashers: (RandomState, RandomState),
}

impl OffsetMap {
    /// A map that uses about `buffer_bytes` bytes.
    pub fn new(buffer_bytes: usize) -> OffsetMap {
        let slots = (buffer_bytes / SLOT_BYTES).max(2);
        let max_len = ((slots as f64 * LOG_CLEANER_LOAD_FACTOR) as usize).clamp(1, slots - 1);
        OffsetMap {
            hashes: vec![(0, 0); slots],
            offsets: vec![0; slots],
            len: 0,
            max_len,
            hashers: (RandomState::new(), RandomState::new()),
        }
    }

    fn hash(&self, key: &[u8]) -> (u64, u64) {
        let one = |s: &RandomState| {
            let mut h = s.build_hasher();
            h.write(key);
            h.finish()
        };
        match (one(&self.hashers.0), one(&self.hashers.1)) {
            (0, 0) => (0, 1),
            h => h,
        }
    }

    /// The slot holding `h`, or the empty slot where it would go.
    fn slot(&self, h: (u64, u64)) -> usize {
        let n = self.hashes.len();
        let mut i = (h.0 % n as u64) as usize;
        loop {
            let s = self.hashes[i];
            if s == h || s == (0, 0) {
                return i;
            }
            i = if i + 1 == n { 0 } else { i + 1 };
        }
    }

    /// Records `offset` as the latest for `key` (the cleaner puts offsets in increasing order).
    /// Returns false, changing nothing, when the map is full and `key` is new.
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        let h = self.hash(key);
        let i = self.slot(h);
        if self.hashes[i] == (0, 0) {
            if self.len >= self.max_len {
                return false;
            }
            self.hashes[i] = h;
            self.len += 1;
        }
        self.offsets[i] = offset;
        true
    }

    /// The latest offset put for `key`.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        let h = self.hash(key);
        let i = self.slot(h);
        (self.hashes[i] == h).then(|| self.offsets[i])
    }

    /// Empties the map for the next pass (the memory stays allocated).
    pub fn clear(&mut self) {
        self.hashes.fill((0, 0));
        self.len = 0;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keys that still fit.
    pub fn free(&self) -> usize {
        self.max_len - self.len
    }

    /// Keys the map holds at most.
    pub fn capacity(&self) -> usize {
        self.max_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// The map answers like a HashMap of the latest offset per key, until it is full, and
        /// then refuses only new keys.
        #[test]
        fn behaves_like_a_latest_offset_hashmap(keys in proptest::collection::vec(0u16..300, 0..2000),
                                                 buffer in 1000usize..20_000) {
            let mut map = OffsetMap::new(buffer);
            let mut model: HashMap<u16, i64> = HashMap::new();
            for (offset, k) in keys.iter().enumerate() {
                let key = k.to_be_bytes();
                let fits = model.contains_key(k) || model.len() < map.capacity();
                prop_assert_eq!(map.put(&key, offset as i64), fits);
                if fits {
                    model.insert(*k, offset as i64);
                }
                prop_assert_eq!(map.len(), model.len());
            }
            for k in 0u16..300 {
                prop_assert_eq!(map.get(&k.to_be_bytes()), model.get(&k).copied());
            }
            map.clear();
            prop_assert!(map.is_empty());
            prop_assert_eq!(map.get(&keys.first().copied().unwrap_or(0).to_be_bytes()), None);
        }
    }

    #[test]
    fn capacity_follows_the_buffer_size_and_load_factor() {
        let map = OffsetMap::new(24_000);
        assert_eq!(map.capacity(), 900);
        assert_eq!(map.free(), 900);
    }
}
