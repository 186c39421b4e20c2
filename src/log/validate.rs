//! Record-level validation of a produced RecordBatch v2, as Kafka's `LogValidator` does it, and
//! the topic-level recompression (`compression.type`) that rides on the same walk.
//!
//! The header checks of [`batch::validate_produce`] come first (length, magic, count, CRC). Then
//! every record is walked once: its size varint within the batch, attributes, timestamp delta,
//! an offset delta equal to its index, key, value and headers inside the record's size, exactly
//! `recordCount` records and nothing after them. An uncompressed batch is walked in place (no
//! copy); a compressed one through a streaming decoder, a buffer at a time, so memory never
//! depends on the compression ratio, and the uncompressed bytes are capped at
//! [`config::BATCH_DECOMPRESSED_BYTES_FACTOR`] × `max.message.bytes`.
//!
//! Error codes follow Kafka 4.1: a record that breaks the format is INVALID_RECORD
//! (`InvalidRecordException` from `DefaultRecord`/`DefaultRecordBatch`); a keyless record on a
//! compacted topic is INVALID_RECORD with per-record errors (KIP-467); a CRC or a compressed
//! stream that cannot be decoded is CORRUPT_MESSAGE (Kafka answers the latter with a generic
//! `KafkaException`; CORRUPT_MESSAGE is the code that names the fault); a batch that expands
//! past the bound, or whose recompressed form outgrows `max.message.bytes`, is MESSAGE_TOO_LARGE.
//! Kafka rewrites a compressed batch whose inner offsets are not 0..n-1 instead of refusing it;
//! tidelog stores batches as sent, so it refuses them (INVALID_RECORD) rather than store offsets
//! that make consumers skip records.
//!
//! Everything but [`validate_yielding`] is sans-io and never panics on any input, so fuzz
//! targets call [`validate_batch`] directly.

use std::io::{self, BufRead};

use super::batch::{self, BatchHeader};
use super::codec;
use super::LogError;
use crate::config;

/// One refused record of a batch (KIP-467's `record_errors`): its index and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordError {
    pub batch_index: i32,
    pub message: String,
}

/// What the topic asks of a produced batch.
#[derive(Clone, Copy, Debug)]
pub struct ValidateOptions {
    /// The topic's `max.message.bytes`: the batch as sent, and as rewritten, must fit.
    pub max_message_bytes: u32,
    /// `cleanup.policy` includes `compact`: every record needs a key.
    pub compacted: bool,
    /// The topic's `compression.type` codec when it is not `producer`: a batch with another
    /// codec is rewritten with this one.
    pub target_codec: Option<i16>,
    /// The topic's timestamp rules; `None` checks no timestamp (fuzzing, benches, and the
    /// rewrite walk, whose output the append validates again with the rules).
    pub timestamps: Option<TimestampRules>,
}

/// What Kafka's `LogValidator.validateTimestamp` checks of every record.
#[derive(Clone, Copy, Debug)]
pub struct TimestampRules {
    /// `message.timestamp.type` is CreateTime: the producer's timestamps are kept, so each
    /// must lie within [`now_ms - before_max_ms`, `now_ms + after_max_ms`] (a record without a
    /// timestamp, -1, is exempt). Under LogAppendTime the broker stamps the batch instead.
    pub create_time: bool,
    pub now_ms: i64,
    /// `message.timestamp.before.max.ms`: how far in the past a timestamp may lie.
    pub before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far in the future (Kafka 4's default: one hour).
    pub after_max_ms: i64,
}

impl ValidateOptions {
    /// Plain validation against `max_message_bytes`: no key rule, no rewrite, no timestamps.
    pub fn new(max_message_bytes: u32) -> Self {
        ValidateOptions {
            max_message_bytes,
            compacted: false,
            target_codec: None,
            timestamps: None,
        }
    }

    /// Most uncompressed record bytes one batch may hold.
    pub fn decompressed_bytes_max(&self) -> u64 {
        u64::from(self.max_message_bytes).max(config::BATCH_DECOMPRESSED_BYTES_MIN)
            * config::BATCH_DECOMPRESSED_BYTES_FACTOR
    }
}

/// A batch that passed validation.
#[derive(Debug)]
pub struct Validated {
    pub header: BatchHeader,
    /// The batch rewritten with the topic's codec, when it asked for another one.
    pub rewritten: Option<Vec<u8>>,
}

/// Validates one produced batch completely; see the module docs for what is checked.
pub fn validate_batch(b: &[u8], opts: &ValidateOptions) -> Result<Validated, LogError> {
    futures_lite::future::block_on(validate_with(b, opts, &mut NoPause))
}

/// Validates on a shard: the same walk as [`validate_batch`], offering to yield to the shard's
/// other tasks every [`PAUSE_BYTES`] of records (glommio yields once the task's time slice is
/// spent), so a batch that expands a lot does not stall other connections.
pub async fn validate_yielding(b: &[u8], opts: &ValidateOptions) -> Result<Validated, LogError> {
    struct Yield;
    impl Pause for Yield {
        async fn pause(&mut self) {
            glommio::yield_if_needed().await
        }
    }
    validate_with(b, opts, &mut Yield).await
}

/// Uncompressed record bytes walked between two chances to pause.
pub const PAUSE_BYTES: u64 = 16 * 1024;

/// What the walk does at its pause points: nothing, or yield to a runtime. The walk is written
/// once, as an async fn, so that a long field (one 2 GiB value) can pause in its middle.
pub trait Pause {
    fn pause(&mut self) -> impl std::future::Future<Output = ()>;
}

/// Never pauses: the pure, blocking walk.
pub struct NoPause;

impl Pause for NoPause {
    async fn pause(&mut self) {}
}

/// The walk with pause points; see [`validate_batch`] and [`validate_yielding`].
pub async fn validate_with<P: Pause>(
    b: &[u8],
    opts: &ValidateOptions,
    p: &mut P,
) -> Result<Validated, LogError> {
    let mut v = BatchValidator::new(b, opts)?;
    v.walk(p).await?;
    v.finish()
}

/// Why the walk stopped early.
enum Fail {
    /// The record stream ended before the records it promised.
    Eof,
    /// The record stream breaks the record format.
    Invalid(String),
    /// The compressed payload cannot be decoded.
    Codec(io::Error),
    /// The batch expands past its bound.
    Bound,
    /// The rewritten batch cannot be written (too large, or the codec failed).
    Sink(io::Error),
}

/// Where the record bytes come from.
enum Source<'a> {
    Slice { b: &'a [u8], at: usize },
    Stream(Box<dyn BufRead + 'a>),
}

/// A record timestamp that says "none" (Kafka's `RecordBatch.NO_TIMESTAMP`): never range-checked.
const NO_TIMESTAMP: i64 = -1;

/// Bytes forwarded to the encoder are gathered here first, so a codec sees few, large writes.
const STAGE_BYTES: usize = 16 * 1024;

/// The record stream, read once, optionally copied into a compressing writer as it is read.
struct Walker<'a> {
    src: Source<'a>,
    consumed: u64,
    consumed_max: u64,
    /// `consumed` at the last pause point.
    paused_at: u64,
    sink: Option<codec::Encoder>,
    stage: Vec<u8>,
}

impl Walker<'_> {
    fn emit(
        sink: &mut Option<codec::Encoder>,
        stage: &mut Vec<u8>,
        data: &[u8],
    ) -> Result<(), Fail> {
        let Some(enc) = sink else { return Ok(()) };
        if stage.len() + data.len() > STAGE_BYTES {
            io::Write::write_all(enc, stage).map_err(Fail::Sink)?;
            stage.clear();
            if data.len() > STAGE_BYTES {
                return io::Write::write_all(enc, data).map_err(Fail::Sink);
            }
        }
        stage.extend_from_slice(data);
        Ok(())
    }

    fn byte(&mut self) -> Result<u8, Fail> {
        let v = match &mut self.src {
            Source::Slice { b, at } => {
                let v = *b.get(*at).ok_or(Fail::Eof)?;
                *at += 1;
                v
            }
            Source::Stream(r) => {
                let v = *r
                    .fill_buf()
                    .map_err(Fail::Codec)?
                    .first()
                    .ok_or(Fail::Eof)?;
                r.consume(1);
                v
            }
        };
        self.advance(1)?;
        if self.sink.is_some() {
            self.stage.push(v);
        }
        Ok(v)
    }

    fn advance(&mut self, n: u64) -> Result<(), Fail> {
        self.consumed += n;
        if self.consumed > self.consumed_max {
            return Err(Fail::Bound);
        }
        Ok(())
    }

    /// Pauses when [`PAUSE_BYTES`] were walked since the last pause.
    async fn checkpoint<P: Pause>(&mut self, p: &mut P) {
        if self.consumed - self.paused_at >= PAUSE_BYTES {
            self.paused_at = self.consumed;
            p.pause().await;
        }
    }

    async fn skip<P: Pause>(&mut self, mut n: u64, p: &mut P) -> Result<(), Fail> {
        while n > 0 {
            n -= self.skip_some(n)?;
            self.checkpoint(p).await;
        }
        Ok(())
    }

    /// Skips up to `n` bytes: all of them from a slice, one buffer from a stream.
    fn skip_some(&mut self, n: u64) -> Result<u64, Fail> {
        let Walker {
            src, sink, stage, ..
        } = self;
        let k = match src {
            Source::Slice { b, at } => {
                let end = usize::try_from(n)
                    .ok()
                    .and_then(|n| at.checked_add(n))
                    .filter(|&e| e <= b.len())
                    .ok_or(Fail::Eof)?;
                Self::emit(sink, stage, &b[*at..end])?;
                *at = end;
                n
            }
            Source::Stream(r) => {
                let buf = r.fill_buf().map_err(Fail::Codec)?;
                if buf.is_empty() {
                    return Err(Fail::Eof);
                }
                let k = buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
                Self::emit(sink, stage, &buf[..k])?;
                r.consume(k);
                k as u64
            }
        };
        self.advance(k)?;
        Ok(k)
    }

    fn at_end(&mut self) -> Result<bool, Fail> {
        match &mut self.src {
            Source::Slice { b, at } => Ok(*at == b.len()),
            Source::Stream(r) => Ok(r.fill_buf().map_err(Fail::Codec)?.is_empty()),
        }
    }

    /// Kafka's unsigned varint of at most 5 bytes, zigzag-decoded to an `i32`.
    fn varint(&mut self) -> Result<i32, Fail> {
        let mut raw: u32 = 0;
        for shift in (0..35).step_by(7) {
            let byte = self.byte()?;
            raw |= u32::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((raw >> 1) as i32 ^ -((raw & 1) as i32));
            }
        }
        Err(Fail::Invalid("varint longer than 5 bytes".into()))
    }

    /// Kafka's varlong of at most 10 bytes.
    fn varlong(&mut self) -> Result<i64, Fail> {
        let mut raw: u64 = 0;
        for shift in (0..70).step_by(7) {
            let byte = self.byte()?;
            raw |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err(Fail::Invalid("varlong longer than 10 bytes".into()))
    }

    /// Skips a field of `len` bytes that must end by `end` (its record's end).
    async fn field<P: Pause>(
        &mut self,
        what: &str,
        len: i32,
        end: u64,
        p: &mut P,
    ) -> Result<(), Fail> {
        let len = u64::try_from(len).unwrap_or(0);
        if self.consumed + len > end {
            return Err(Fail::Invalid(format!(
                "{what} of {len} bytes runs past the end of its record"
            )));
        }
        self.skip(len, p).await
    }

    /// Walks record `index`; returns whether it has a key, and its timestamp delta.
    async fn record<P: Pause>(&mut self, index: i32, p: &mut P) -> Result<(bool, i64), Fail> {
        let size = self.varint()?;
        if size < 0 {
            return Err(Fail::Invalid(format!("record size {size} is negative")));
        }
        if let Source::Slice { b, at } = &self.src {
            if b.len() - at < size as usize {
                return Err(Fail::Invalid(format!(
                    "Invalid record size: expected {size} bytes in record payload, but the \
                     batch has only {} remaining bytes",
                    b.len() - at
                )));
            }
        }
        let start = self.consumed;
        let end = start + size as u64;
        let _attributes = self.byte()?;
        let timestamp_delta = self.varlong()?;
        let offset_delta = self.varint()?;
        if offset_delta != index {
            return Err(Fail::Invalid(format!(
                "record {index} has offset delta {offset_delta}; a batch's offset deltas must \
                 be 0..n-1 in order"
            )));
        }
        let key = self.varint()?;
        self.field("key", key, end, p).await?;
        let value = self.varint()?;
        self.field("value", value, end, p).await?;
        let headers = self.varint()?;
        if headers < 0 {
            return Err(Fail::Invalid(format!(
                "Found invalid number of record headers {headers}"
            )));
        }
        for _ in 0..headers {
            if self.consumed >= end {
                return Err(Fail::Invalid(format!(
                    "{headers} record headers do not fit in a record of {size} bytes"
                )));
            }
            let key = self.varint()?;
            if key < 0 {
                return Err(Fail::Invalid("Invalid negative header key size".into()));
            }
            self.field("header key", key, end, p).await?;
            let value = self.varint()?;
            self.field("header value", value, end, p).await?;
        }
        if self.consumed != end {
            return Err(Fail::Invalid(format!(
                "Invalid record size: expected to read {size} bytes in record payload, but \
                 instead read {}",
                self.consumed - start
            )));
        }
        Ok((key >= 0, timestamp_delta))
    }
}

/// A batch being validated step by step (see [`validate_yielding`]). Pure: no I/O, no runtime.
pub struct BatchValidator<'a> {
    h: BatchHeader,
    opts: ValidateOptions,
    walker: Walker<'a>,
    errors: Vec<RecordError>,
    /// Some of `errors` are timestamp errors: the batch then fails with INVALID_TIMESTAMP.
    timestamp_errors: bool,
}

impl<'a> BatchValidator<'a> {
    /// Checks the header (see [`batch::validate_produce`]) and sets up the record walk.
    pub fn new(b: &'a [u8], opts: &ValidateOptions) -> Result<Self, LogError> {
        let h = batch::validate_produce(b, opts.max_message_bytes)?;
        let payload = &b[batch::HEADER_LEN..];
        let codec = h.compression();
        let consumed_max = opts.decompressed_bytes_max();
        let src = if codec == 0 {
            Source::Slice { b: payload, at: 0 }
        } else {
            let block_max = usize::try_from(consumed_max).unwrap_or(usize::MAX);
            Source::Stream(codec::decoder(codec, payload, block_max).map_err(|e| {
                LogError::CorruptMessage(format!("cannot decompress the batch: {e}"))
            })?)
        };
        let sink = match opts.target_codec {
            Some(t) if t != codec => {
                let out =
                    codec::CappedVec::new(&b[..batch::HEADER_LEN], opts.max_message_bytes as usize);
                Some(codec::Encoder::new(t, out).map_err(|e| {
                    LogError::CorruptMessage(format!("cannot compress the batch: {e}"))
                })?)
            }
            _ => None,
        };
        Ok(BatchValidator {
            h,
            opts: *opts,
            walker: Walker {
                src,
                consumed: 0,
                consumed_max,
                paused_at: 0,
                sink,
                stage: Vec::new(),
            },
            errors: Vec::new(),
            timestamp_errors: false,
        })
    }

    /// Kafka's `validateTimestamp` for record `index`: under CreateTime a timestamp outside the
    /// topic's window; otherwise a producer that set the LogAppendTime flag itself. The
    /// arithmetic wraps as Java's `long` does, so a hostile delta cannot overflow.
    fn timestamp_error(&self, index: i32, timestamp_delta: i64) -> Option<String> {
        let rules = self.opts.timestamps?;
        let timestamp = self.h.base_timestamp.wrapping_add(timestamp_delta);
        if rules.create_time && timestamp != NO_TIMESTAMP {
            let diff = rules.now_ms.wrapping_sub(timestamp);
            if diff > rules.before_max_ms || diff.wrapping_neg() > rules.after_max_ms {
                return Some(format!(
                    "Timestamp {timestamp} of message with offset {} is out of range. The \
                     timestamp should be within [{}, {}]",
                    self.h.base_offset.wrapping_add(i64::from(index)),
                    rules.now_ms.wrapping_sub(rules.before_max_ms),
                    rules.now_ms.wrapping_add(rules.after_max_ms)
                ));
            }
        } else if self.h.is_log_append_time() {
            return Some(
                "Invalid timestamp type in message. Producer should not set timestamp type to \
                 LogAppendTime."
                    .into(),
            );
        }
        None
    }

    /// Walks every record, pausing at `p`'s points.
    pub async fn walk<P: Pause>(&mut self, p: &mut P) -> Result<(), LogError> {
        for index in 0..self.h.record_count {
            let (has_key, timestamp_delta) = match self.walker.record(index, p).await {
                Ok(r) => r,
                Err(f) => return Err(self.error(f, index)),
            };
            // One error per record, the key rule first, as Kafka's `validateRecord`.
            if self.opts.compacted && !has_key {
                self.errors.push(RecordError {
                    batch_index: index,
                    message: "Compacted topic cannot accept message without key".into(),
                });
            } else if let Some(message) = self.timestamp_error(index, timestamp_delta) {
                self.timestamp_errors = true;
                self.errors.push(RecordError {
                    batch_index: index,
                    message,
                });
            }
            self.walker.checkpoint(p).await;
        }
        match self.walker.at_end() {
            Ok(true) => Ok(()),
            Ok(false) => Err(LogError::InvalidRecord(
                "Incorrect declared batch size, records still remaining after recordCount \
                 records"
                    .into(),
            )),
            Err(f) => Err(self.error(f, self.h.record_count)),
        }
    }

    /// The result once [`Self::walk`] succeeded.
    pub fn finish(self) -> Result<Validated, LogError> {
        if self.timestamp_errors {
            return Err(LogError::TimestampErrors(self.errors));
        }
        if !self.errors.is_empty() {
            return Err(LogError::RecordErrors(self.errors));
        }
        let Walker {
            sink, mut stage, ..
        } = self.walker;
        let Some(mut enc) = sink else {
            return Ok(Validated {
                header: self.h,
                rewritten: None,
            });
        };
        let too_large = |e: io::Error| {
            if e.kind() == io::ErrorKind::FileTooLarge {
                rewrite_too_large(&self.opts)
            } else {
                LogError::CorruptMessage(format!("cannot compress the batch: {e}"))
            }
        };
        io::Write::write_all(&mut enc, &stage).map_err(too_large)?;
        stage.clear();
        let mut out = enc.finish().map_err(too_large)?.buf;
        let target = self.opts.target_codec.unwrap_or(0);
        let attributes = (self.h.attributes & !batch::ATTR_COMPRESSION_MASK) | target;
        out[batch::ATTRIBUTES..][..2].copy_from_slice(&attributes.to_be_bytes());
        let len = (out.len() - batch::LOG_OVERHEAD) as i32;
        out[batch::BATCH_LENGTH..][..4].copy_from_slice(&len.to_be_bytes());
        let crc = batch::compute_crc(&out);
        out[batch::CRC..][..4].copy_from_slice(&crc.to_be_bytes());
        let mut header = self.h;
        header.attributes = attributes;
        header.batch_length = len;
        header.crc = crc;
        Ok(Validated {
            header,
            rewritten: Some(out),
        })
    }

    fn error(&self, f: Fail, index: i32) -> LogError {
        match f {
            Fail::Eof => LogError::InvalidRecord(format!(
                "Incorrect declared batch size, premature EOF reached: recordCount is {} but \
                 the batch holds {index} records",
                self.h.record_count
            )),
            Fail::Invalid(m) => LogError::InvalidRecord(format!("record {index}: {m}")),
            Fail::Codec(e) => LogError::CorruptMessage(format!("cannot decompress the batch: {e}")),
            Fail::Bound => LogError::BatchTooLarge(format!(
                "its records expand past {} bytes ({}x max.message.bytes)",
                self.opts.decompressed_bytes_max(),
                config::BATCH_DECOMPRESSED_BYTES_FACTOR
            )),
            Fail::Sink(e) if e.kind() == io::ErrorKind::FileTooLarge => {
                rewrite_too_large(&self.opts)
            }
            Fail::Sink(e) => LogError::CorruptMessage(format!("cannot compress the batch: {e}")),
        }
    }
}

fn rewrite_too_large(opts: &ValidateOptions) -> LogError {
    LogError::BatchTooLarge(format!(
        "rewritten with the topic's compression.type it exceeds max.message.bytes {}",
        opts.max_message_bytes
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::log::record::tests::keyed_batch;
    use kafka_protocol::records::Compression;

    fn put_varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }

    /// One record's bytes, its size varint included, with the size as given (`None`: true).
    pub(crate) fn record(
        offset_delta: i64,
        key: Option<&[u8]>,
        value: &[u8],
        size: Option<i64>,
    ) -> Vec<u8> {
        let mut body = vec![0u8];
        put_varint(&mut body, offset_delta); // timestamp delta
        put_varint(&mut body, offset_delta);
        match key {
            Some(k) => {
                put_varint(&mut body, k.len() as i64);
                body.extend_from_slice(k);
            }
            None => put_varint(&mut body, -1),
        }
        put_varint(&mut body, value.len() as i64);
        body.extend_from_slice(value);
        put_varint(&mut body, 0);
        let mut r = Vec::new();
        put_varint(&mut r, size.unwrap_or(body.len() as i64));
        r.extend_from_slice(&body);
        r
    }

    /// A batch header claiming `count` records over `payload`, compressed with `codec`.
    pub(crate) fn assemble(records: &[u8], count: i32, codec: i16, producer_id: i64) -> Vec<u8> {
        let mut enc = codec::Encoder::new(codec, codec::CappedVec::new(&[], usize::MAX)).unwrap();
        io::Write::write_all(&mut enc, records).unwrap();
        let payload = enc.finish().unwrap().buf;
        with_payload(&payload, count, codec, producer_id)
    }

    pub(crate) fn with_payload(payload: &[u8], count: i32, codec: i16, pid: i64) -> Vec<u8> {
        let mut b = vec![0u8; batch::HEADER_LEN];
        b.extend_from_slice(payload);
        let len = (b.len() - batch::LOG_OVERHEAD) as i32;
        b[batch::BATCH_LENGTH..][..4].copy_from_slice(&len.to_be_bytes());
        b[batch::MAGIC] = 2;
        b[batch::ATTRIBUTES..][..2].copy_from_slice(&codec.to_be_bytes());
        b[batch::LAST_OFFSET_DELTA..][..4].copy_from_slice(&(count - 1).to_be_bytes());
        b[batch::PRODUCER_ID..][..8].copy_from_slice(&pid.to_be_bytes());
        let seq: i32 = if pid < 0 { -1 } else { 0 };
        b[batch::BASE_SEQUENCE..][..4].copy_from_slice(&seq.to_be_bytes());
        b[batch::RECORD_COUNT..][..4].copy_from_slice(&count.to_be_bytes());
        fix_crc(&mut b);
        b
    }

    fn fix_crc(b: &mut [u8]) {
        let crc = batch::compute_crc(b);
        b[batch::CRC..][..4].copy_from_slice(&crc.to_be_bytes());
    }

    fn code(b: &[u8]) -> Result<(), ErrorCode> {
        validate_batch(b, &ValidateOptions::new(1 << 20))
            .map(|_| ())
            .map_err(|e| e.error_code())
    }

    /// Three records stamped `base`, `base + 1`, `base + 2` (the helper's timestamp delta is
    /// the offset delta), the second keyless, with `extra_attributes` set.
    fn stamped(base: i64, codec: i16, extra_attributes: i16) -> Vec<u8> {
        let records = [
            record(0, Some(b"a"), b"1", None),
            record(1, None, b"2", None),
            record(2, Some(b"c"), b"3", None),
        ]
        .concat();
        let mut b = assemble(&records, 3, codec, -1);
        b[batch::BASE_TIMESTAMP..][..8].copy_from_slice(&base.to_be_bytes());
        b[batch::ATTRIBUTES..][..2].copy_from_slice(&(codec | extra_attributes).to_be_bytes());
        fix_crc(&mut b);
        b
    }

    fn rules(create_time: bool, now_ms: i64) -> ValidateOptions {
        ValidateOptions {
            timestamps: Some(TimestampRules {
                create_time,
                now_ms,
                before_max_ms: 1_000,
                after_max_ms: 3_600_000,
            }),
            ..ValidateOptions::new(1 << 20)
        }
    }

    #[test]
    fn create_time_timestamps_outside_the_window_are_invalid_timestamp_per_record() {
        let now = 1_700_000_000_000;
        for codec in 0..=4 {
            // Inside the window: [now - 1 s, now + 1 h].
            assert!(validate_batch(&stamped(now - 1_000, codec, 0), &rules(true, now)).is_ok());
            assert!(validate_batch(&stamped(now + 3_599_998, codec, 0), &rules(true, now)).is_ok());
            // The last record lies 1 ms past the future bound: only it is refused.
            let e =
                validate_batch(&stamped(now + 3_599_999, codec, 0), &rules(true, now)).unwrap_err();
            assert_eq!(e.error_code(), ErrorCode::InvalidTimestamp, "{codec}");
            let LogError::TimestampErrors(errors) = e else {
                unreachable!()
            };
            assert_eq!(
                errors.iter().map(|e| e.batch_index).collect::<Vec<_>>(),
                [2]
            );
            assert!(
                errors[0].message.contains("is out of range"),
                "{}",
                errors[0].message
            );
            // Too old: every record.
            let e = validate_batch(&stamped(now - 5_000, codec, 0), &rules(true, now)).unwrap_err();
            let LogError::TimestampErrors(errors) = e else {
                unreachable!()
            };
            assert_eq!(errors.len(), 3);
            // Without rules nothing is checked.
            assert!(validate_batch(
                &stamped(now - 5_000, codec, 0),
                &ValidateOptions::new(1 << 20)
            )
            .is_ok());
        }
    }

    #[test]
    fn a_record_without_timestamp_is_exempt_and_hostile_deltas_do_not_overflow() {
        let now = 1_700_000_000_000;
        let one = assemble(&record(0, Some(b"k"), b"v", None), 1, 0, -1);
        let mut b = one.clone();
        b[batch::BASE_TIMESTAMP..][..8].copy_from_slice(&(-1i64).to_be_bytes());
        fix_crc(&mut b);
        assert!(validate_batch(&b, &rules(true, now)).is_ok());
        for base in [i64::MIN, i64::MAX, i64::MIN + 1] {
            let mut b = one.clone();
            b[batch::BASE_TIMESTAMP..][..8].copy_from_slice(&base.to_be_bytes());
            fix_crc(&mut b);
            let e = validate_batch(&b, &rules(true, now)).unwrap_err();
            assert_eq!(e.error_code(), ErrorCode::InvalidTimestamp, "{base}");
        }
    }

    #[test]
    fn a_producer_set_log_append_time_flag_is_invalid_timestamp_under_log_append_time() {
        let now = 1_700_000_000_000;
        let b = stamped(now, 0, batch::ATTR_LOG_APPEND_TIME);
        let e = validate_batch(&b, &rules(false, now)).unwrap_err();
        assert_eq!(e.error_code(), ErrorCode::InvalidTimestamp);
        // Under CreateTime with real timestamps Kafka checks only the window.
        assert!(validate_batch(&b, &rules(true, now)).is_ok());
        // A LogAppendTime topic takes any producer timestamp (the broker stamps the batch).
        assert!(validate_batch(&stamped(0, 0, 0), &rules(false, now)).is_ok());
    }

    #[test]
    fn key_errors_come_first_and_a_timestamp_error_makes_the_batch_invalid_timestamp() {
        let now = 1_700_000_000_000;
        let opts = ValidateOptions {
            compacted: true,
            ..rules(true, now)
        };
        // In the window: the keyless record alone, INVALID_RECORD.
        let e = validate_batch(&stamped(now, 0, 0), &opts).unwrap_err();
        assert_eq!(e.error_code(), ErrorCode::InvalidRecord);
        // All too old: record 1 reports its key, 0 and 2 their timestamps; INVALID_TIMESTAMP.
        let e = validate_batch(&stamped(now - 5_000, 0, 0), &opts).unwrap_err();
        assert_eq!(e.error_code(), ErrorCode::InvalidTimestamp);
        let LogError::TimestampErrors(errors) = e else {
            unreachable!()
        };
        assert_eq!(errors.len(), 3);
        assert!(errors[1].message.contains("without key"));
    }

    #[test]
    fn well_formed_batches_of_every_codec_pass() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = keyed_batch(
                &[
                    (Some(b"a"), Some(b"1")),
                    (None, None),
                    (Some(b""), Some(b"3")),
                ],
                0,
                5,
                c,
            );
            assert_eq!(code(&b), Ok(()), "{c:?}");
            let mine = assemble(&record(0, Some(b"k"), b"v", None), 1, c as i16, -1);
            assert_eq!(code(&mine), Ok(()), "{c:?}");
        }
    }

    #[test]
    fn broken_records_are_invalid_record_for_every_codec() {
        let two = [record(0, None, b"a", None), record(1, None, b"b", None)].concat();
        for codec in 0..=4 {
            let cases: Vec<(&str, Vec<u8>, i32)> = vec![
                (
                    "junk after the records",
                    [two.clone(), vec![1, 2, 3]].concat(),
                    2,
                ),
                ("claims 5 records, holds 1", record(0, None, b"a", None), 5),
                ("claims 1 record, holds 2", two.clone(), 1),
                (
                    "offset delta 7",
                    [record(0, None, b"a", None), record(7, None, b"b", None)].concat(),
                    2,
                ),
                ("record size 2^30", record(0, None, b"a", Some(1 << 30)), 1),
                ("record size too small", record(0, None, b"abc", Some(3)), 1),
                ("record size negative", record(0, None, b"a", Some(-2)), 1),
                (
                    "key size 2^30",
                    {
                        let mut r = vec![0u8, 0, 0];
                        put_varint(&mut r, 1 << 30);
                        r.extend_from_slice(b"xyz\x00\x00");
                        let mut out = Vec::new();
                        put_varint(&mut out, r.len() as i64);
                        out.extend_from_slice(&r);
                        out
                    },
                    1,
                ),
                (
                    "negative header count",
                    {
                        let mut r = record(0, None, b"a", None);
                        *r.last_mut().unwrap() = 3; // zigzag -2
                        r
                    },
                    1,
                ),
            ];
            for (what, records, count) in cases {
                let b = assemble(&records, count, codec, -1);
                assert_eq!(
                    code(&b),
                    Err(ErrorCode::InvalidRecord),
                    "{what}, codec {codec}"
                );
            }
        }
    }

    #[test]
    fn undecodable_compressed_payloads_are_corrupt_message() {
        let garbage: Vec<u8> = (0..200u32).map(|i| (i * 37 + 11) as u8).collect();
        for codec in 1..=4 {
            let b = with_payload(&garbage, 1, codec, -1);
            assert_eq!(code(&b), Err(ErrorCode::CorruptMessage), "codec {codec}");
        }
        let good = assemble(&record(0, None, &[7; 500], None), 1, 1, -1);
        let payload = &good[batch::HEADER_LEN..];
        let truncated = with_payload(&payload[..payload.len() - 10], 1, 1, -1);
        assert_eq!(code(&truncated), Err(ErrorCode::CorruptMessage));
    }

    #[test]
    fn keyless_records_on_a_compacted_topic_get_per_record_errors() {
        let records = [
            record(0, Some(b"a"), b"1", None),
            record(1, None, b"2", None),
            record(2, Some(b"c"), b"3", None),
            record(3, None, b"4", None),
        ]
        .concat();
        for codec in [0, 3] {
            let b = assemble(&records, 4, codec, -1);
            let opts = ValidateOptions {
                compacted: true,
                ..ValidateOptions::new(1 << 20)
            };
            let Err(LogError::RecordErrors(errors)) = validate_batch(&b, &opts) else {
                panic!("keyless records accepted")
            };
            let indexes: Vec<i32> = errors.iter().map(|e| e.batch_index).collect();
            assert_eq!(indexes, [1, 3]);
            assert!(validate_batch(&b, &ValidateOptions::new(1 << 20)).is_ok());
        }
    }

    /// A zstd frame of `raw` then `zeros` zero bytes in RLE blocks: 4 bytes per 128 KiB.
    pub(crate) fn zstd_zeros(raw: &[u8], zeros: u64) -> Vec<u8> {
        let mut f = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38]; // no checksum, 128 KiB window
        let header = |last: bool, kind: u32, size: u32| {
            let h = u32::from(last) | (kind << 1) | (size << 3);
            h.to_le_bytes()[..3].to_vec()
        };
        f.extend(header(false, 0, raw.len() as u32));
        f.extend_from_slice(raw);
        let mut left = zeros;
        while left > 0 {
            let n = left.min(128 * 1024);
            left -= n;
            f.extend(header(left == 0, 1, n as u32));
            f.push(0);
        }
        f
    }

    #[test]
    fn a_zstd_bomb_is_refused_once_past_the_bound() {
        // One record whose value claims 2^31 - 64 bytes, all zeros, in a 64 KiB frame.
        let value_len: i64 = (1 << 31) - 64;
        let mut head = vec![0u8, 0, 0, 1];
        put_varint(&mut head, value_len);
        let mut prefix = Vec::new();
        put_varint(&mut prefix, head.len() as i64 + value_len + 1);
        prefix.extend_from_slice(&head);
        let frame = zstd_zeros(&prefix, value_len as u64 + 1);
        assert!(frame.len() < 70_000);
        let b = with_payload(&frame, 1, 4, -1);
        let started = std::time::Instant::now();
        assert_eq!(code(&b), Err(ErrorCode::MessageTooLarge));
        // Only the bound (32 MiB here) was decompressed, not 2 GiB.
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
    }

    #[test]
    fn transactional_without_producer_id_and_idempotent_without_sequence_are_invalid() {
        let mut b = assemble(&record(0, None, b"a", None), 1, 0, -1);
        b[batch::ATTRIBUTES + 1] |= batch::ATTR_TRANSACTIONAL as u8;
        fix_crc(&mut b);
        assert_eq!(code(&b), Err(ErrorCode::InvalidRecord));
        let mut b = assemble(&record(0, None, b"a", None), 1, 0, 5);
        b[batch::BASE_SEQUENCE..][..4].copy_from_slice(&(-1i32).to_be_bytes());
        fix_crc(&mut b);
        assert_eq!(code(&b), Err(ErrorCode::InvalidRecord));
    }

    #[test]
    fn the_walk_pauses_inside_a_long_value_and_between_records() {
        struct Count(u32);
        impl Pause for Count {
            async fn pause(&mut self) {
                self.0 += 1;
            }
        }
        let records: Vec<u8> = (0..100)
            .flat_map(|i| record(i, Some(b"k"), &[i as u8; 30_000], None))
            .collect();
        let long = record(0, None, &vec![9; 4 << 20], None);
        // An uncompressed value is skipped in one step (nothing to decode): no pause needed.
        for (records, count, codecs) in [(records, 100, &[0, 4][..]), (long, 1, &[4][..])] {
            for &codec in codecs {
                let b = assemble(&records, count, codec, -1);
                let mut p = Count(0);
                let opts = ValidateOptions::new(8 << 20);
                let v = futures_lite::future::block_on(validate_with(&b, &opts, &mut p));
                assert_eq!(v.unwrap().header.record_count, count);
                // 3 MB or 4 MiB walked: a pause point about every 16 KiB.
                assert!(p.0 >= 10, "{} pauses, codec {codec}", p.0);
            }
        }
    }
}
