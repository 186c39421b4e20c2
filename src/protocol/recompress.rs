//! Topic-level `compression.type`: a batch arriving with another codec is rewritten with the
//! topic's, as Kafka does. `producer` (the default) keeps every batch exactly as sent, and only
//! then is the produce path free of decompression.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
};

/// Byte offset of the attributes in a RecordBatch v2 header.
const ATTRIBUTES: usize = 21;
const ATTR_COMPRESSION_MASK: u8 = 0x07;
const ATTR_CONTROL: u8 = 0x20;

/// The codec a topic's `compression.type` demands; `None` for `producer` (keep as sent).
pub fn target_codec(compression_type: &str) -> Option<Compression> {
    match compression_type {
        "uncompressed" => Some(Compression::None),
        "gzip" => Some(Compression::Gzip),
        "snappy" => Some(Compression::Snappy),
        "lz4" => Some(Compression::Lz4),
        "zstd" => Some(Compression::Zstd),
        _ => None,
    }
}

/// The batch re-encoded with `target`, or `None` when it already uses it (or is a control
/// batch, which Kafka never rewrites). Offsets deltas, timestamps, keys, values, headers and the
/// producer id, epoch and sequences are kept.
pub fn recompress(batch: &Bytes, target: Compression) -> Result<Option<Bytes>, String> {
    let Some(&attributes) = batch.get(ATTRIBUTES + 1) else {
        return Err("record batch shorter than its header".into());
    };
    if attributes & ATTR_CONTROL != 0 || attributes & ATTR_COMPRESSION_MASK == target as u8 {
        return Ok(None);
    }
    let mut input = batch.clone();
    let set = RecordBatchDecoder::decode(&mut input)
        .map_err(|e| format!("cannot decompress the batch: {e}"))?;
    let mut out = BytesMut::with_capacity(batch.len());
    let options = RecordEncodeOptions {
        version: 2,
        compression: target,
    };
    RecordBatchEncoder::encode(&mut out, &set.records, &options)
        .map_err(|e| format!("cannot compress the batch: {e}"))?;
    Ok(Some(out.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{Record, TimestampType};

    fn batch(codec: Compression, producer: Option<(i64, i16, i32)>) -> Bytes {
        let (pid, epoch, seq) = producer.unwrap_or((-1, -1, -1));
        let records: Vec<Record> = (0..5)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: pid,
                producer_epoch: epoch,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: if seq < 0 {
                    -1 + i as i32
                } else {
                    seq + i as i32
                },
                timestamp: 1000 + i,
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from("v".repeat(200))),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: codec,
            },
        )
        .unwrap();
        buf.freeze()
    }

    #[test]
    fn batches_take_the_topic_codec_and_keep_their_records() {
        for (from, to) in [
            (Compression::None, Compression::Gzip),
            (Compression::Lz4, Compression::Zstd),
            (Compression::Snappy, Compression::None),
        ] {
            for producer in [None, Some((7, 1, 40))] {
                let original = batch(from, producer);
                let rewritten = recompress(&original, to).unwrap().expect("rewritten");
                assert_eq!(rewritten[ATTRIBUTES + 1] & ATTR_COMPRESSION_MASK, to as u8);
                let a = RecordBatchDecoder::decode(&mut original.clone()).unwrap();
                let b = RecordBatchDecoder::decode(&mut rewritten.clone()).unwrap();
                assert_eq!(a.records, b.records, "{from:?} -> {to:?}");
                // Exactly one batch, as the log requires.
                let len = i32::from_be_bytes(rewritten[8..12].try_into().unwrap()) as usize;
                assert_eq!(len + 12, rewritten.len());
            }
        }
        assert!(
            recompress(&batch(Compression::Gzip, None), Compression::Gzip)
                .unwrap()
                .is_none()
        );
        assert!(recompress(&Bytes::from_static(b"short"), Compression::Gzip).is_err());
    }
}
