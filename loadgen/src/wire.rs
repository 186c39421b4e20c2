//! The bytes loadgen puts on the wire and reads back, without I/O.
//!
//! Produce requests and uncompressed record batches are written by hand, straight into the
//! request buffer: building `kafka-protocol` message structs and encoding them would copy every
//! record byte once more, and the generator must never be the bottleneck. Compressed batches and
//! all small messages (Fetch requests, every response) go through the crate, which is exact
//! and fast enough there. The tests check the hand-written bytes against the crate's decoders.
//!
//! The batch layout, varints and the record walk are the broker's own
//! ([`tidelog::protocol::batch`]), shared with the broker and its CLI client; this module only
//! decides what loadgen writes.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tidelog::protocol::batch::{
    self, parse_header, put_uvarint, put_varlong as put_varint, varlong_len as varint_len, Records,
    HEADER_LEN as BATCH_HEADER_LEN, LOG_OVERHEAD,
};

/// The first bytes of every value loadgen writes, so a consumer can tell its own records (which
/// carry a send timestamp) from anyone else's.
pub const VALUE_MAGIC: [u8; 4] = *b"TLg1";
/// Magic plus the big-endian microsecond timestamp that follows it.
pub const VALUE_STAMP_LEN: usize = 12;
/// Produce v9 and later use compact (flexible) encodings.
const PRODUCE_FLEXIBLE_MIN: i16 = 9;

/// How a record's key is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRef {
    /// A null key.
    None,
    /// The `n`th key of the producer's key table (`key-<n>`).
    Table(u32),
    /// A random 8-byte key.
    Random(u64),
}

/// One record waiting in a batch: its key and the time it was meant to be sent, which is also
/// the timestamp written into its value for end-to-end latency.
#[derive(Clone, Copy, Debug)]
pub struct PendingRecord {
    pub key: KeyRef,
    pub t_us: u64,
}

/// What every record of a run shares: the payload and the key table.
pub struct RecordShape {
    /// Value bytes after the stamp; its length makes the value `record_size` bytes long.
    pub payload: Bytes,
    /// Total value length.
    pub value_len: usize,
    /// Keys for `KeyRef::Table`.
    pub keys: Vec<Bytes>,
}

impl RecordShape {
    /// A shape for values of `value_len` bytes, with `key_count` table keys.
    ///
    /// The payload is letters and digits from a fixed pseudo-random sequence: compressible to
    /// about three quarters, like text, so compression codecs are measured on plausible data.
    pub fn new(value_len: usize, key_count: u32) -> RecordShape {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let payload: Vec<u8> = (0..value_len.saturating_sub(VALUE_STAMP_LEN))
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                ALPHABET[(rng % ALPHABET.len() as u64) as usize]
            })
            .collect();
        RecordShape {
            payload: payload.into(),
            value_len,
            keys: (0..key_count)
                .map(|i| Bytes::from(format!("key-{i}")))
                .collect(),
        }
    }

    fn key_len(&self, key: KeyRef) -> Option<usize> {
        match key {
            KeyRef::None => None,
            KeyRef::Table(i) => Some(self.keys[i as usize].len()),
            KeyRef::Random(_) => Some(8),
        }
    }

    fn put_key(&self, buf: &mut BytesMut, key: KeyRef) {
        match key {
            KeyRef::None => {}
            KeyRef::Table(i) => buf.put_slice(&self.keys[i as usize]),
            KeyRef::Random(k) => buf.put_u64(k),
        }
    }

    fn put_value(&self, buf: &mut BytesMut, t_us: u64) {
        if self.value_len < VALUE_STAMP_LEN {
            buf.put_bytes(b'x', self.value_len);
            return;
        }
        buf.put_slice(&VALUE_MAGIC);
        buf.put_u64(t_us);
        buf.put_slice(&self.payload);
    }

    fn value(&self, t_us: u64) -> Bytes {
        let mut b = BytesMut::with_capacity(self.value_len);
        self.put_value(&mut b, t_us);
        b.freeze()
    }

    fn key(&self, key: KeyRef) -> Option<Bytes> {
        match key {
            KeyRef::None => None,
            KeyRef::Table(i) => Some(self.keys[i as usize].clone()),
            KeyRef::Random(k) => Some(Bytes::copy_from_slice(&k.to_be_bytes())),
        }
    }
}

/// The record's body length (everything after its own length varint).
fn record_body_len(shape: &RecordShape, key: KeyRef, offset_delta: usize) -> usize {
    let key_part = match shape.key_len(key) {
        None => varint_len(-1),
        Some(n) => varint_len(n as i64) + n,
    };
    // attributes + timestamp delta (0) + offset delta + key + value + header count (0)
    1 + 1
        + varint_len(offset_delta as i64)
        + key_part
        + varint_len(shape.value_len as i64)
        + shape.value_len
        + 1
}

/// The encoded length of an uncompressed batch of `records`.
pub fn batch_len(shape: &RecordShape, records: &[PendingRecord]) -> usize {
    let records_len: usize = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let body = record_body_len(shape, r.key, i);
            varint_len(body as i64) + body
        })
        .sum();
    BATCH_HEADER_LEN + records_len
}

/// Appends one uncompressed RecordBatch v2 of `records` to `buf`; `ts_ms` is its timestamp.
pub fn put_batch(buf: &mut BytesMut, shape: &RecordShape, records: &[PendingRecord], ts_ms: i64) {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let start = buf.len();
    let total = batch_len(shape, records);
    buf.reserve(total);
    buf.put_i64(0); // base offset: the broker assigns it
    buf.put_i32((total - LOG_OVERHEAD) as i32);
    buf.put_i32(-1); // partition leader epoch
    buf.put_i8(batch::MAGIC_V2);
    buf.put_u32(0); // crc, patched below
    buf.put_i16(0); // attributes: no compression, create time
    buf.put_i32(records.len() as i32 - 1);
    buf.put_i64(ts_ms);
    buf.put_i64(ts_ms);
    buf.put_i64(-1); // producer id: not idempotent
    buf.put_i16(-1);
    buf.put_i32(-1);
    buf.put_i32(records.len() as i32);
    for (i, r) in records.iter().enumerate() {
        put_varint(buf, record_body_len(shape, r.key, i) as i64);
        buf.put_u8(0);
        buf.put_u8(0); // timestamp delta 0 as a varint
        put_varint(buf, i as i64);
        match shape.key_len(r.key) {
            None => put_varint(buf, -1),
            Some(n) => {
                put_varint(buf, n as i64);
                shape.put_key(buf, r.key);
            }
        }
        put_varint(buf, shape.value_len as i64);
        shape.put_value(buf, r.t_us);
        buf.put_u8(0); // no headers
    }
    debug_assert_eq!(buf.len() - start, total);
    batch::patch_crc(&mut buf[start..]);
}

/// Encodes a compressed batch of `records` with the crate's encoder.
pub fn compressed_batch(
    shape: &RecordShape,
    records: &[PendingRecord],
    ts_ms: i64,
    compression: Compression,
) -> Result<Bytes, String> {
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch wherever `offset - sequence` changes; this keeps
            // one batch with the non-idempotent base sequence -1.
            sequence: i as i32 - 1,
            timestamp: ts_ms,
            key: shape.key(r.key),
            value: Some(shape.value(r.t_us)),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &recs, &options).map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}

/// One partition's record set in a produce request.
pub enum BatchBytes<'a> {
    /// Uncompressed, written straight into the request.
    Plain(&'a [PendingRecord]),
    /// Already encoded (compressed).
    Encoded(&'a Bytes),
}

/// Writes a Produce request (size prefix, header v1/v2, body) into `buf` by hand.
///
/// `topics` yields each topic's name and its partitions' (index, record set). Versions 3 to 12
/// name topics; v13 (topic ids) is never negotiated by loadgen.
pub struct ProduceEncoder<'a> {
    pub version: i16,
    pub acks: i16,
    pub timeout_ms: i32,
    pub client_id: &'a str,
    pub shape: &'a RecordShape,
    pub ts_ms: i64,
}

impl ProduceEncoder<'_> {
    fn flexible(&self) -> bool {
        self.version >= PRODUCE_FLEXIBLE_MIN
    }

    fn put_array_len(&self, buf: &mut BytesMut, n: usize) {
        if self.flexible() {
            put_uvarint(buf, n as u64 + 1);
        } else {
            buf.put_i32(n as i32);
        }
    }

    fn put_str(&self, buf: &mut BytesMut, s: &str) {
        if self.flexible() {
            put_uvarint(buf, s.len() as u64 + 1);
        } else {
            buf.put_i16(s.len() as i16);
        }
        buf.put_slice(s.as_bytes());
    }

    /// Starts the request: everything up to the topic array's length.
    pub fn begin(&self, buf: &mut BytesMut, correlation_id: i32, topic_count: usize) -> usize {
        let start = buf.len();
        buf.put_i32(0); // size, patched by `finish`
        buf.put_i16(0); // api key: Produce
        buf.put_i16(self.version);
        buf.put_i32(correlation_id);
        buf.put_i16(self.client_id.len() as i16); // client id is never compact
        buf.put_slice(self.client_id.as_bytes());
        if self.flexible() {
            buf.put_u8(0); // header tagged fields
            buf.put_u8(0); // transactional id: null (compact)
        } else {
            buf.put_i16(-1);
        }
        buf.put_i16(self.acks);
        buf.put_i32(self.timeout_ms);
        self.put_array_len(buf, topic_count);
        start
    }

    /// Starts one topic: its name and its partition array's length.
    pub fn begin_topic(&self, buf: &mut BytesMut, name: &str, partition_count: usize) {
        self.put_str(buf, name);
        self.put_array_len(buf, partition_count);
    }

    /// Writes one partition and its record set.
    pub fn put_partition(&self, buf: &mut BytesMut, index: i32, batch: BatchBytes<'_>) {
        buf.put_i32(index);
        let len = match &batch {
            BatchBytes::Plain(records) => batch_len(self.shape, records),
            BatchBytes::Encoded(b) => b.len(),
        };
        if self.flexible() {
            put_uvarint(buf, len as u64 + 1);
        } else {
            buf.put_i32(len as i32);
        }
        match batch {
            BatchBytes::Plain(records) => put_batch(buf, self.shape, records, self.ts_ms),
            BatchBytes::Encoded(b) => buf.put_slice(b),
        }
        if self.flexible() {
            buf.put_u8(0); // partition tagged fields
        }
    }

    /// Ends a topic.
    pub fn end_topic(&self, buf: &mut BytesMut) {
        if self.flexible() {
            buf.put_u8(0);
        }
    }

    /// Ends the request and patches its size prefix.
    pub fn finish(&self, buf: &mut BytesMut, start: usize) {
        if self.flexible() {
            buf.put_u8(0);
        }
        let size = (buf.len() - start - 4) as i32;
        buf[start..start + 4].copy_from_slice(&size.to_be_bytes());
    }
}

/// What a consumer learned from one partition's record bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// Data records at or past the fetch offset.
    pub records: u64,
    /// Their bytes on the wire (whole batches).
    pub bytes: u64,
    /// Their value bytes.
    pub value_bytes: u64,
    /// The offset after the last whole batch, if there was one.
    pub next_offset: Option<i64>,
}

/// Walks the record batches of one fetched partition, calling `stamp` with the send timestamp
/// (µs) of every loadgen record at or past `fetch_offset`.
///
/// A fetch may end in a partial batch (Kafka sends whole batches up to the size limit, then may
/// cut one): it is left for the next fetch. Compressed batches are decoded with the crate.
pub fn scan_records(mut data: Bytes, fetch_offset: i64, mut stamp: impl FnMut(u64)) -> Scanned {
    let mut out = Scanned::default();
    while let Some(h) = parse_header(&data) {
        let total = h.total_len();
        if total < BATCH_HEADER_LEN || data.len() < total {
            break;
        }
        let one = data.split_to(total);
        out.next_offset = Some(h.last_offset() + 1);
        if h.is_control() {
            continue; // a control batch (transaction marker) holds no data records
        }
        out.bytes += total as u64;
        let (records, value_bytes) = if h.compression() == 0 {
            scan_plain(&one, h.base_offset, fetch_offset, &mut stamp)
        } else {
            scan_compressed(one, fetch_offset, &mut stamp)
        };
        out.records += records;
        out.value_bytes += value_bytes;
    }
    out
}

/// Reads the stamp of one value, if it is one of ours.
fn stamp_of(value: &[u8]) -> Option<u64> {
    (value.len() >= VALUE_STAMP_LEN && value[..4] == VALUE_MAGIC)
        .then(|| u64::from_be_bytes(value[4..12].try_into().expect("8 bytes")))
}

/// Walks an uncompressed batch's records: (records at or past `fetch_offset`, their value bytes).
/// A malformed record ends the walk; the records before it count.
fn scan_plain(
    batch: &[u8],
    base: i64,
    fetch_offset: i64,
    stamp: &mut impl FnMut(u64),
) -> (u64, u64) {
    let (mut count, mut value_bytes) = (0, 0);
    for r in Records::new(&batch[BATCH_HEADER_LEN..]) {
        if base + r.offset_delta >= fetch_offset {
            let value = r.value.unwrap_or_default();
            count += 1;
            value_bytes += value.len() as u64;
            if let Some(t) = stamp_of(value) {
                stamp(t);
            }
        }
    }
    (count, value_bytes)
}

fn scan_compressed(mut batch: Bytes, fetch_offset: i64, stamp: &mut impl FnMut(u64)) -> (u64, u64) {
    let Ok(set) = RecordBatchDecoder::decode(&mut batch) else {
        return (0, 0);
    };
    let (mut count, mut value_bytes) = (0, 0);
    for r in set.records.iter().filter(|r| r.offset >= fetch_offset) {
        count += 1;
        value_bytes += r.value.as_ref().map_or(0, |v| v.len() as u64);
        if let Some(t) = r.value.as_deref().and_then(stamp_of) {
            stamp(t);
        }
    }
    (count, value_bytes)
}

/// The offset after the last whole batch in `data`, reading batch headers only (so the next
/// fetch can be sent before the records are looked at).
pub fn next_offset(data: &[u8]) -> Option<i64> {
    let mut rest = data;
    let mut next = None;
    while let Some(h) = parse_header(rest) {
        let total = h.total_len();
        if total < BATCH_HEADER_LEN || rest.len() < total {
            break;
        }
        next = Some(h.last_offset() + 1);
        rest = &rest[total..];
    }
    next
}

/// Takes one complete response frame (without its size prefix) off the front of `buf`, or
/// `Ok(None)` when more bytes are needed; `Err` for a size no broker sends.
pub fn take_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, String> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let size = i32::from_be_bytes(prefix.try_into().expect("4 bytes"));
    if size < 4 || size as usize > max {
        return Err(format!("response frame size {size} is outside 4..={max}"));
    }
    if buf.len() < 4 + size as usize {
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(size as usize).freeze()))
}

#[cfg(test)]
mod tests;
