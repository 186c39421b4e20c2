//! Transactions on the log side (KIP-98): transaction markers, the aborted-transaction index
//! and the last stable offset.
//!
//! A transactional producer's batches carry the transactional attribute; the transaction ends
//! with a control batch (the *marker*, COMMIT or ABORT) that the transaction coordinator writes
//! to every partition of the transaction (WriteTxnMarkers). The producer state
//! (`producer.rs`) keeps the first offset of each producer's open transaction; from those the
//! log knows its *first unstable offset*, and the *last stable offset* (LSO) is the lower of it
//! and the high watermark. A `read_committed` consumer reads only below the LSO, and with its
//! records gets the aborted transactions that overlap them, so that it drops their records.
//!
//! The aborted transactions are indexed per segment, in the segment holding the ABORT marker,
//! in Kafka's `.txnindex` format (34-byte entries: version, producer id, first offset, last
//! offset = the marker's, last stable offset when it was written). The index is kept in memory,
//! written beside the offset indexes when a segment closes and at shutdown, and rebuilt from
//! the markers after a crash as the producer state is (`recovery.rs`).
//!
//! A transaction stays unstable until its marker is below the high watermark, not only written
//! (Kafka's "unreplicated transactions"): otherwise a read_committed consumer of a replicated
//! partition could read records whose abort it cannot yet see.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::batch::{self, BatchHeader};
use super::partition::PartitionLog;
use super::producer::ProducerState;
use super::segment::Segment;
use super::{AppendInfo, Durability, LogError, Offset};

/// The extension of a segment's aborted-transaction index.
pub(crate) const TXN_INDEX_EXT: &str = "txnindex";

/// Bytes of one `.txnindex` entry.
const ENTRY_LEN: usize = 34;

/// One aborted transaction of a partition (Kafka's `AbortedTxn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// The offset of the transaction's first batch in this partition.
    pub first_offset: i64,
    /// The offset of its ABORT marker.
    pub last_offset: i64,
    /// The partition's last stable offset when the marker was written.
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    /// Appends the entry in Kafka's `.txnindex` layout.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&0i16.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.first_offset.to_be_bytes());
        out.extend_from_slice(&self.last_offset.to_be_bytes());
        out.extend_from_slice(&self.last_stable_offset.to_be_bytes());
    }

    /// The entries of a `.txnindex` file; `None` when it is damaged (a partial last entry or
    /// an unknown version), and the caller rebuilds it.
    pub(crate) fn decode_all(b: &[u8]) -> Option<Vec<AbortedTxn>> {
        if b.len() % ENTRY_LEN != 0 {
            return None;
        }
        b.chunks_exact(ENTRY_LEN)
            .map(|e| {
                let at = |i: usize| batch::be_i64(e, i).expect("entry length checked");
                (batch::be_i16(e, 0) == Some(0)).then(|| AbortedTxn {
                    producer_id: at(2),
                    first_offset: at(10),
                    last_offset: at(18),
                    last_stable_offset: at(26),
                })
            })
            .collect()
    }

    /// Whether the transaction has records in `[from, below)`.
    pub fn overlaps(&self, from: i64, below: i64) -> bool {
        self.first_offset < below && self.last_offset >= from
    }
}

/// How a transaction ended: the type in a control record's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    Abort,
    Commit,
}

/// The marker of a whole, uncompressed control batch `b` (the key of its one record: version
/// 0, type 0 = ABORT, 1 = COMMIT), or `None` for anything else.
pub(crate) fn marker_of(b: &[u8]) -> Option<Marker> {
    let h = batch::parse_header(b)?;
    if !h.is_control() {
        return None;
    }
    let key = batch::records(b)?.next()?.key?;
    match (batch::be_i16(key, 0)?, batch::be_i16(key, 2)?) {
        (0, 0) => Some(Marker::Abort),
        (0, 1) => Some(Marker::Commit),
        _ => None,
    }
}

/// The control batch a coordinator writes to end a producer's transaction in a partition, as
/// Kafka's `EndTransactionMarker` builds it (offsets and leader epoch are the append's).
pub(crate) fn marker_batch(
    producer_id: i64,
    producer_epoch: i16,
    marker: Marker,
    coordinator_epoch: i32,
    now_ms: i64,
) -> Vec<u8> {
    let kind: i16 = match marker {
        Marker::Abort => 0,
        Marker::Commit => 1,
    };
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id,
        producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: now_ms,
        key: Some(Bytes::from(key)),
        value: Some(Bytes::from(value)),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, [&record], &options)
        .expect("an uncompressed control batch always encodes");
    buf.to_vec()
}

impl PartitionLog {
    /// Appends the marker that ends `producer_id`'s transaction here (WriteTxnMarkers), as the
    /// leader in `leader_epoch`. A marker from an epoch older than the producer's is refused
    /// (INVALID_PRODUCER_EPOCH); one without an open transaction is written all the same.
    pub async fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: Marker,
        coordinator_epoch: i32,
        leader_epoch: i32,
        durability: Durability,
    ) -> Result<AppendInfo, LogError> {
        let now = super::now_ms();
        let b = marker_batch(producer_id, producer_epoch, marker, coordinator_epoch, now);
        let h = batch::parse_header(&b).expect("a marker batch has a header");
        let cfg = self.config.borrow().clone();
        self.append_checked(&b, &h, leader_epoch, durability, now, &cfg)
            .await
    }

    /// Appends a batch the broker built itself (a transactional offset commit), which needs
    /// none of a client batch's validation and carries a producer id without sequence numbers.
    pub async fn append_built(
        &self,
        built: &[u8],
        leader_epoch: i32,
        durability: Durability,
    ) -> Result<AppendInfo, LogError> {
        let h = batch::check_stored(built)
            .ok_or_else(|| LogError::CorruptMessage("a broker-built batch is malformed".into()))?;
        let cfg = self.config.borrow().clone();
        self.append_checked(built, &h, leader_epoch, durability, super::now_ms(), &cfg)
            .await
    }

    /// The last stable offset for the high watermark `hwm`: a read_committed consumer reads
    /// below it. Open transactions, and ended ones whose marker is not below `hwm`, hold it at
    /// their first offset.
    pub fn last_stable_offset(&self, hwm: i64) -> i64 {
        let mut st = self.st.borrow_mut();
        let open = st.producers.first_open_transaction();
        let ended = st.unreplicated.first_unstable(hwm);
        [open, ended].into_iter().flatten().fold(hwm, i64::min)
    }

    /// The aborted transactions with records in `[from, below)`, by marker offset, each once
    /// (a compaction interrupted by a crash can leave an entry in two segments' indexes).
    pub fn aborted_between(&self, from: i64, below: i64) -> Vec<AbortedTxn> {
        let st = self.st.borrow();
        let first = st.segment_index_for(Offset(from));
        let mut out: Vec<AbortedTxn> = st.segments[first..]
            .iter()
            .flat_map(|s| {
                let s = s.st.borrow();
                s.aborted
                    .iter()
                    .filter(|a| a.overlaps(from, below))
                    .copied()
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort_by_key(|a| a.last_offset);
        out.dedup_by_key(|a| a.last_offset);
        out
    }
}

/// Records a stored batch `h` (its bytes `bytes`, at least the whole batch when it is a
/// control batch) in the producer state. A marker ends its producer's transaction: an ABORT
/// goes into the aborted-transaction index of `seg`, the segment holding it, and the ended
/// transaction stays unstable until the high watermark passes the marker.
pub(crate) fn record_stored(
    producers: &mut ProducerState,
    unreplicated: &mut Unreplicated,
    seg: &Segment,
    h: &BatchHeader,
    bytes: &[u8],
) {
    let Some(ended) = producers.record(h, Offset(h.base_offset)) else {
        return;
    };
    if marker_of(bytes) == Some(Marker::Abort) {
        seg.note_aborted(AbortedTxn {
            producer_id: ended.producer_id,
            first_offset: ended.first_offset,
            last_offset: ended.marker_offset,
            // Kafka's: where the next open transaction begins, else just past the marker.
            last_stable_offset: producers
                .first_open_transaction()
                .unwrap_or(ended.marker_offset + 1),
        });
    }
    unreplicated.push(ended);
}

/// A transaction whose marker is written but maybe not yet below the high watermark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ended {
    pub producer_id: i64,
    pub first_offset: i64,
    pub marker_offset: i64,
}

/// The ended transactions a partition still counts as unstable.
#[derive(Clone, Debug, Default)]
pub(crate) struct Unreplicated(Vec<Ended>);

impl Unreplicated {
    pub(crate) fn push(&mut self, e: Ended) {
        self.0.push(e);
    }

    /// The first offset of the earliest transaction whose marker is not below `hwm`; the
    /// others are forgotten.
    pub(crate) fn first_unstable(&mut self, hwm: i64) -> Option<i64> {
        self.0.retain(|e| e.marker_offset >= hwm);
        self.0.iter().map(|e| e.first_offset).min()
    }

    /// Takes the transactions whose markers a truncation to `end` removes: they are open again
    /// where they began below `end`.
    pub(crate) fn truncate(&mut self, end: i64) -> Vec<Ended> {
        let (gone, kept) = self.0.iter().partition(|e| e.marker_offset >= end);
        self.0 = kept;
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_through_kafkas_layout() {
        for (m, kind) in [(Marker::Abort, 0u8), (Marker::Commit, 1)] {
            let b = marker_batch(7, 3, m, 5, 1_000);
            let h = batch::check_stored(&b).expect("CRC");
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (7, 3, -1)
            );
            assert_eq!(h.record_count, 1);
            assert_eq!(marker_of(&b), Some(m));
            let r = batch::records(&b).unwrap().next().unwrap();
            assert_eq!(r.key, Some(&[0, 0, 0, kind][..]));
            assert_eq!(r.value, Some(&[0, 0, 0, 0, 0, 5][..]));
        }
        assert_eq!(
            marker_of(&batch::tests::make_batch(&[vec![1]], 0, 1, 0, 0)),
            None
        );
    }

    #[test]
    fn index_entries_round_trip_and_damage_is_refused() {
        let a = AbortedTxn {
            producer_id: 9,
            first_offset: 10,
            last_offset: 20,
            last_stable_offset: 10,
        };
        let mut b = Vec::new();
        a.encode_into(&mut b);
        a.encode_into(&mut b);
        assert_eq!(b.len(), 2 * ENTRY_LEN);
        assert_eq!(AbortedTxn::decode_all(&b), Some(vec![a, a]));
        assert_eq!(AbortedTxn::decode_all(&b[..ENTRY_LEN + 3]), None);
        b[0] = 1;
        assert_eq!(AbortedTxn::decode_all(&b), None);
        assert!(a.overlaps(20, 21) && a.overlaps(0, 11) && !a.overlaps(21, 30));
        assert!(!a.overlaps(0, 10));
    }

    #[test]
    fn an_ended_transaction_is_unstable_until_its_marker_is_below_the_hwm() {
        let mut u = Unreplicated::default();
        u.push(Ended {
            producer_id: 1,
            first_offset: 5,
            marker_offset: 9,
        });
        assert_eq!(u.first_unstable(9), Some(5));
        assert_eq!(u.first_unstable(10), None);
        u.push(Ended {
            producer_id: 1,
            first_offset: 12,
            marker_offset: 15,
        });
        assert_eq!(u.truncate(14).len(), 1);
        assert_eq!(u.first_unstable(0), None);
    }
}
