//! The record accumulator: per-partition batches that close when full (`batch.size`) or when
//! their first record has waited `linger.ms`, as in Kafka's producer.
//!
//! Kafka takes exactly one batch per partition in a produce request, so closed batches wait per
//! partition; a request takes the oldest closed batch of as many partitions as fit.

use std::collections::VecDeque;

use crate::wire::PendingRecord;

/// One closed batch on its way into a request.
pub struct Closed {
    pub target: usize,
    pub records: Vec<PendingRecord>,
}

/// Lives inside one producer task.
pub struct Accumulator {
    batch_size: usize,
    linger_us: u64,
    open: Vec<Vec<PendingRecord>>,
    open_bytes: Vec<usize>,
    /// Bumped when a target's open batch closes, so stale linger deadlines are ignored.
    generation: Vec<u64>,
    /// (deadline µs, target, generation) of open batches, in deadline order.
    lingering: VecDeque<(u64, usize, u64)>,
    closed: Vec<VecDeque<Vec<PendingRecord>>>,
    /// Targets with at least one closed batch, oldest first; each appears once.
    sendable: VecDeque<usize>,
    /// Sum over `sendable` of the bytes of each one's oldest closed batch.
    sendable_bytes: usize,
    closed_bytes: Vec<VecDeque<usize>>,
    /// Emptied record vectors, reused to keep allocation off the data path.
    pool: Vec<Vec<PendingRecord>>,
    /// Bytes in open and closed batches together.
    pending_bytes: usize,
}

impl Accumulator {
    pub fn new(targets: usize, batch_size: usize, linger_us: u64) -> Accumulator {
        Accumulator {
            batch_size,
            linger_us,
            open: (0..targets).map(|_| Vec::new()).collect(),
            open_bytes: vec![0; targets],
            generation: vec![0; targets],
            lingering: VecDeque::new(),
            closed: (0..targets).map(|_| VecDeque::new()).collect(),
            sendable: VecDeque::new(),
            sendable_bytes: 0,
            closed_bytes: (0..targets).map(|_| VecDeque::new()).collect(),
            pool: Vec::new(),
            pending_bytes: 0,
        }
    }

    /// Adds a record of about `bytes` bytes to `target`'s batch. Returns whether a batch of
    /// that partition closed (full), which moves a sticky partitioner on.
    pub fn append(&mut self, target: usize, rec: PendingRecord, bytes: usize) -> bool {
        self.pending_bytes += bytes;
        let mut closed = false;
        if self.open_bytes[target] + bytes > self.batch_size && !self.open[target].is_empty() {
            self.close(target);
            closed = true;
        }
        if self.open[target].is_empty() {
            if self.open[target].capacity() == 0 {
                if let Some(v) = self.pool.pop() {
                    self.open[target] = v;
                }
            }
            self.lingering
                .push_back((rec.t_us + self.linger_us, target, self.generation[target]));
        }
        self.open[target].push(rec);
        self.open_bytes[target] += bytes;
        if self.open_bytes[target] >= self.batch_size {
            self.close(target);
            closed = true;
        }
        closed
    }

    /// Bytes waiting in open and closed batches.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    fn close(&mut self, target: usize) {
        let records = std::mem::take(&mut self.open[target]);
        if records.is_empty() {
            return;
        }
        let bytes = std::mem::take(&mut self.open_bytes[target]);
        self.generation[target] += 1;
        if self.closed[target].is_empty() {
            self.sendable.push_back(target);
            self.sendable_bytes += bytes;
        }
        self.closed[target].push_back(records);
        self.closed_bytes[target].push_back(bytes);
    }

    /// Closes the batches whose linger time has passed by `now_us`.
    pub fn expire(&mut self, now_us: u64) {
        while let Some(&(deadline, target, generation)) = self.lingering.front() {
            if deadline > now_us {
                break;
            }
            self.lingering.pop_front();
            if self.generation[target] == generation {
                self.close(target);
            }
        }
    }

    /// The earliest linger deadline still pending, if any (it may be stale: then waking for it
    /// is merely early).
    pub fn next_deadline(&self) -> Option<u64> {
        self.lingering.front().map(|l| l.0)
    }

    /// Closes every open batch (the run is ending).
    pub fn close_all(&mut self) {
        for t in 0..self.open.len() {
            self.close(t);
        }
        self.lingering.clear();
    }

    /// Partitions with a batch ready to send, and the bytes one request would carry.
    pub fn sendable(&self) -> (usize, usize) {
        (self.sendable.len(), self.sendable_bytes)
    }

    /// Takes the oldest closed batch of each ready partition, up to `max_bytes` (at least one).
    pub fn take(&mut self, max_bytes: usize, out: &mut Vec<Closed>) {
        let mut bytes = 0;
        let mut again = Vec::new();
        while let Some(&target) = self.sendable.front() {
            let b = self.closed_bytes[target][0];
            if !out.is_empty() && bytes + b > max_bytes {
                break;
            }
            self.sendable.pop_front();
            self.sendable_bytes -= b;
            self.pending_bytes -= b;
            bytes += b;
            let records = self.closed[target]
                .pop_front()
                .expect("sendable has a batch");
            self.closed_bytes[target].pop_front();
            out.push(Closed { target, records });
            if let Some(&next) = self.closed_bytes[target].front() {
                again.push((target, next));
            }
        }
        // Partitions with more closed batches go to the back of the line for the next request.
        for (target, next) in again {
            self.sendable.push_back(target);
            self.sendable_bytes += next;
        }
    }

    /// Returns an emptied record vector for reuse.
    pub fn recycle(&mut self, mut v: Vec<PendingRecord>) {
        v.clear();
        if self.pool.len() < 4096 {
            self.pool.push(v);
        }
    }

    /// Whether no record is waiting anywhere.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.pending_bytes == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::KeyRef;

    fn rec(t_us: u64) -> PendingRecord {
        PendingRecord {
            key: KeyRef::None,
            t_us,
        }
    }

    #[test]
    fn batches_close_when_full_or_lingered() {
        let mut a = Accumulator::new(2, 100, 1000);
        assert!(!a.append(0, rec(0), 60));
        assert!(a.append(0, rec(1), 60));
        assert_eq!(a.sendable().0, 1);
        a.append(1, rec(10), 10);
        a.expire(500);
        assert_eq!(a.sendable().0, 1);
        a.expire(1010);
        assert_eq!(a.sendable(), (2, 60 + 10));
        let mut out = Vec::new();
        a.take(1 << 20, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].target, 0);
        assert_eq!(out[0].records.len(), 1);
    }

    #[test]
    fn one_batch_per_partition_per_request() {
        let mut a = Accumulator::new(1, 10, 1000);
        for t in 0..5 {
            a.append(0, rec(t), 10);
        }
        assert_eq!(a.sendable(), (1, 10));
        let mut out = Vec::new();
        a.take(1 << 20, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(a.sendable(), (1, 10));
        let mut rest = Vec::new();
        while a.sendable().0 > 0 {
            a.take(1 << 20, &mut rest);
        }
        assert_eq!(rest.len(), 4);
        assert!(a.is_empty());
    }

    #[test]
    fn requests_are_bounded_by_bytes() {
        let mut a = Accumulator::new(4, 10, 1000);
        for t in 0..4 {
            a.append(t, rec(0), 10);
        }
        let mut out = Vec::new();
        a.take(25, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(a.sendable(), (2, 20));
    }
}
