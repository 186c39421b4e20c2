//! Record-level access to a RecordBatch v2 for the cleaner. (Produced batches are checked record
//! by record, compacted-topic keys included, by [`super::validate`].)
//!
//! Sans-io like [`super::batch`]: it works on byte slices and never panics on any input.
//! Decompression and recompression use kafka-protocol's codecs with the batch's own codec; the
//! records themselves are never re-encoded. A rewritten batch keeps its header's base offset and
//! base timestamp, so every kept record's offset and timestamp deltas stay valid and its bytes
//! are copied as they are.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};

use super::batch::{self, read_varlong as varlong, BatchHeader};

/// One record of a batch, as the cleaner sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordView<'a> {
    /// The whole record, its length varint included: what a rewrite copies.
    pub raw: &'a [u8],
    pub offset_delta: i64,
    pub timestamp_delta: i64,
    /// `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// A null value: a tombstone.
    pub tombstone: bool,
}

/// A nullable byte field (`length` varint, -1 for null, then the bytes) at `*at`.
fn nullable<'a>(b: &'a [u8], at: &mut usize) -> Option<Option<&'a [u8]>> {
    let len = varlong(b, at)?;
    if len < 0 {
        return Some(None);
    }
    let end = at.checked_add(usize::try_from(len).ok()?)?;
    let field = b.get(*at..end)?;
    *at = end;
    Some(Some(field))
}

/// Parses the record at `*at` of the uncompressed record stream `b`, advancing past it.
fn parse_record<'a>(b: &'a [u8], at: &mut usize) -> Option<RecordView<'a>> {
    let start = *at;
    let len = usize::try_from(varlong(b, at)?).ok()?;
    let end = at.checked_add(len)?;
    let body = b.get(..end)?;
    let mut p = *at + 1; // attributes, unused in v2
    let timestamp_delta = varlong(body, &mut p)?;
    let offset_delta = varlong(body, &mut p)?;
    let key = nullable(body, &mut p)?;
    let tombstone = varlong(body, &mut p)? < 0;
    *at = end;
    Some(RecordView {
        raw: &b[start..end],
        offset_delta,
        timestamp_delta,
        key,
        tombstone,
    })
}

/// Splits an uncompressed record stream into its `count` records; `None` when it does not hold
/// exactly that many well-formed records.
pub(crate) fn parse_records(b: &[u8], count: i32) -> Option<Vec<RecordView<'_>>> {
    let mut out = Vec::with_capacity(usize::try_from(count).ok()?.min(b.len()));
    let mut at = 0;
    for _ in 0..count {
        out.push(parse_record(b, &mut at)?);
    }
    (at == b.len()).then_some(out)
}

/// The record stream of a whole stored batch, decompressed with the batch's codec if needed.
pub(crate) fn records_of<'a>(b: &'a [u8], h: &BatchHeader) -> Result<Cow<'a, [u8]>, String> {
    let data = b
        .get(batch::HEADER_LEN..h.total_len())
        .ok_or("batch shorter than its length")?;
    fn out<E: std::fmt::Display>(r: Result<Vec<u8>, E>) -> Result<Cow<'static, [u8]>, String> {
        r.map(Cow::Owned).map_err(|e| e.to_string())
    }
    let take = |b: &mut Bytes| Ok(Vec::from(std::mem::take(b)));
    let mut src = data;
    match h.compression() {
        0 => Ok(Cow::Borrowed(data)),
        1 => out(Gzip::decompress(&mut src, take)),
        2 => out(Snappy::decompress(&mut src, take)),
        3 => out(Lz4::decompress(&mut src, take)),
        4 => out(Zstd::decompress(&mut src, take)),
        c => Err(format!("unknown compression codec {c}")),
    }
}

/// Appends `raw` to `out` compressed with `codec`.
fn compress(codec: i16, raw: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let fill = |tmp: &mut BytesMut| {
        tmp.extend_from_slice(raw);
        Ok(())
    };
    let r = match codec {
        0 => {
            out.extend_from_slice(raw);
            Ok(())
        }
        1 => Gzip::compress(out, fill),
        2 => Snappy::compress(out, fill),
        3 => Lz4::compress(out, fill),
        4 => Zstd::compress(out, fill),
        c => return Err(format!("unknown compression codec {c}")),
    };
    r.map_err(|e| e.to_string())
}

/// What the cleaner does with one batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Rewrite {
    /// Every record stays: the batch is copied as it is.
    Unchanged,
    /// Some records stay (or none, but the header must): the new batch bytes.
    Changed(Vec<u8>),
    /// No record stays and the header need not: the batch disappears (an offset gap).
    Dropped,
}

/// Keeps the records of a stored batch for which `keep(offset, record)` holds.
///
/// The new batch keeps the header's base offset, lastOffsetDelta, base timestamp, max
/// timestamp, producer id, epoch and base sequence, so the offset range and the sequence range it
/// covers are unchanged (what the producer-state rebuild reads); only the record count, length
/// and CRC change. When nothing stays and `retain_header` is set, the batch becomes an empty
/// header, uncompressed, as Kafka writes for the last batch of a producer. Control batches are
/// always kept whole.
pub(crate) fn filter_batch(
    b: &[u8],
    h: &BatchHeader,
    retain_header: bool,
    mut keep: impl FnMut(i64, &RecordView<'_>) -> bool,
) -> Result<Rewrite, String> {
    if h.is_control() {
        return Ok(Rewrite::Unchanged);
    }
    let records = records_of(b, h)?;
    let parsed = parse_records(&records, h.record_count).ok_or("malformed records in batch")?;
    let kept: Vec<&RecordView<'_>> = parsed
        .iter()
        .filter(|r| keep(h.base_offset.saturating_add(r.offset_delta), r))
        .collect();
    if kept.len() == parsed.len() {
        return Ok(Rewrite::Unchanged);
    }
    if kept.is_empty() && !retain_header {
        return Ok(Rewrite::Dropped);
    }
    let mut out = b[..batch::HEADER_LEN].to_vec();
    let mut attributes = h.attributes;
    if kept.is_empty() {
        attributes &= !batch::ATTR_COMPRESSION_MASK;
    } else {
        let raw: Vec<u8> = kept.iter().flat_map(|r| r.raw.iter().copied()).collect();
        compress(h.compression(), &raw, &mut out)?;
    }
    let len = i32::try_from(out.len() - batch::LOG_OVERHEAD).map_err(|e| e.to_string())?;
    out[batch::BATCH_LENGTH..][..4].copy_from_slice(&len.to_be_bytes());
    out[batch::ATTRIBUTES..][..2].copy_from_slice(&attributes.to_be_bytes());
    out[batch::RECORD_COUNT..][..4].copy_from_slice(&(kept.len() as i32).to_be_bytes());
    batch::patch_crc(&mut out);
    Ok(Rewrite::Changed(out))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };

    /// A nullable key and value.
    type Entry<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

    /// A batch of `(key, value)` records at offsets `base..`, encoded by kafka-protocol.
    pub(crate) fn keyed_batch(
        entries: &[Entry<'_>],
        base: i64,
        ts: i64,
        compression: Compression,
    ) -> Vec<u8> {
        let records: Vec<Record> = entries
            .iter()
            .enumerate()
            .map(|(i, (k, v))| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: base + i as i64,
                sequence: i as i32,
                timestamp: ts + i as i64,
                key: k.map(Bytes::copy_from_slice),
                value: v.map(Bytes::copy_from_slice),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        let opts = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &opts).unwrap();
        buf.to_vec()
    }

    #[test]
    fn filter_keeps_offsets_and_codec() {
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
                    (Some(b"b"), None),
                    (Some(b"c"), Some(b"3")),
                ],
                100,
                5000,
                c,
            );
            let h = batch::check_stored(&b).unwrap();
            let out = filter_batch(&b, &h, false, |o, r| o != 100 && r.key != Some(b"c"));
            let Rewrite::Changed(nb) = out.unwrap() else {
                panic!("{c:?}")
            };
            let nh = batch::check_stored(&nb).expect("valid CRC");
            assert_eq!(nh.compression(), h.compression());
            assert_eq!((nh.base_offset, nh.last_offset()), (100, 102));
            assert_eq!(nh.record_count, 1);
            let set = RecordBatchDecoder::decode(&mut Bytes::from(nb)).unwrap();
            assert_eq!(set.records.len(), 1);
            assert_eq!(set.records[0].offset, 101);
            assert_eq!(set.records[0].timestamp, 5001);
            assert_eq!(set.records[0].value, None);
            // Nothing kept: dropped, or an empty uncompressed header.
            assert_eq!(
                filter_batch(&b, &h, false, |_, _| false),
                Ok(Rewrite::Dropped)
            );
            let Ok(Rewrite::Changed(e)) = filter_batch(&b, &h, true, |_, _| false) else {
                panic!()
            };
            let eh = batch::check_stored(&e).unwrap();
            assert_eq!((eh.record_count, eh.compression()), (0, 0));
            assert_eq!(eh.last_offset(), 102);
            assert_eq!(
                filter_batch(&b, &h, false, |_, _| true),
                Ok(Rewrite::Unchanged)
            );
        }
    }

    #[test]
    fn malformed_record_streams_do_not_parse() {
        assert!(parse_records(&[0x80; 7], 1).is_none());
    }
}
