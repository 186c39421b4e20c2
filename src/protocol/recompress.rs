//! Topic-level `compression.type`: a batch arriving with another codec is rewritten with the
//! topic's, as Kafka does; `producer` (the default) keeps every batch exactly as sent. The
//! rewrite itself streams records through the codecs during validation
//! (`log::validate`, `ValidateOptions::target_codec`), so its memory is bounded by
//! `max.message.bytes`, never by the batch's compression ratio.

use kafka_protocol::records::Compression;

use crate::log::CompressionType;

/// The codec a topic's `compression.type` demands; `None` for `producer` (keep as sent).
pub fn target_codec(compression_type: CompressionType) -> Option<Compression> {
    match compression_type {
        CompressionType::Producer => None,
        CompressionType::Uncompressed => Some(Compression::None),
        CompressionType::Gzip => Some(Compression::Gzip),
        CompressionType::Snappy => Some(Compression::Snappy),
        CompressionType::Lz4 => Some(Compression::Lz4),
        CompressionType::Zstd => Some(Compression::Zstd),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::{validate_batch, ValidateOptions};
    use crate::protocol::batch::{self as layout, ATTRIBUTES, ATTR_COMPRESSION_MASK};
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::records::{
        Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

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
                headers: [("h".into(), Some(Bytes::from(format!("x{i}"))))]
                    .into_iter()
                    .collect(),
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

    fn recompress(b: &[u8], target: Compression) -> Option<Vec<u8>> {
        let opts = ValidateOptions {
            target_codec: Some(target as i16),
            ..ValidateOptions::new(1 << 20)
        };
        validate_batch(b, &opts).unwrap().rewritten
    }

    #[test]
    fn batches_take_the_topic_codec_and_keep_their_records() {
        let codecs = [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ];
        for from in codecs {
            for to in codecs.into_iter().filter(|&c| c != from) {
                for producer in [None, Some((7, 1, 40))] {
                    let original = batch(from, producer);
                    let rewritten = recompress(&original, to).expect("rewritten");
                    assert_eq!(
                        rewritten[ATTRIBUTES + 1] & ATTR_COMPRESSION_MASK as u8,
                        to as u8
                    );
                    let a = RecordBatchDecoder::decode(&mut original.clone()).unwrap();
                    let b =
                        RecordBatchDecoder::decode(&mut Bytes::from(rewritten.clone())).unwrap();
                    assert_eq!(a.records, b.records, "{from:?} -> {to:?}");
                    // Exactly one valid batch, as the log requires.
                    let h = layout::check_stored(&rewritten).expect("valid CRC");
                    assert_eq!(h.total_len(), rewritten.len());
                    validate_batch(&rewritten, &ValidateOptions::new(1 << 20)).unwrap();
                }
            }
        }
        assert!(recompress(&batch(Compression::Gzip, None), Compression::Gzip).is_none());
    }

    #[test]
    fn recompressed_output_past_max_message_bytes_is_too_large() {
        let b = batch(Compression::Zstd, None);
        let opts = ValidateOptions {
            target_codec: Some(Compression::None as i16),
            ..ValidateOptions::new(b.len() as u32 + 10)
        };
        let e = validate_batch(&b, &opts).unwrap_err();
        assert_eq!(e.error_code(), crate::error::ErrorCode::MessageTooLarge);
    }
}
