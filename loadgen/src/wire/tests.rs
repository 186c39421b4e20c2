//! The hand-written bytes, checked against `kafka-protocol`'s own decoders.

use super::*;
use kafka_protocol::messages::{ProduceRequest, RequestHeader};
use kafka_protocol::protocol::Decodable;

fn records(n: usize, key: impl Fn(usize) -> KeyRef) -> Vec<PendingRecord> {
    (0..n)
        .map(|i| PendingRecord {
            key: key(i),
            t_us: 1_000_000 + i as u64,
        })
        .collect()
}

#[test]
fn produce_requests_decode_with_the_crate_at_every_version() {
    let shape = RecordShape::new(100, 3);
    let a = records(3, |_| KeyRef::None);
    let b = records(200, |i| {
        if i % 2 == 0 {
            KeyRef::Table(i as u32 % 3)
        } else {
            KeyRef::Random(i as u64)
        }
    });
    for version in [3, 7, 8, 9, 11, 12] {
        let enc = ProduceEncoder {
            version,
            acks: -1,
            timeout_ms: 1234,
            client_id: "lg",
            shape: &shape,
            ts_ms: 77,
        };
        let mut buf = BytesMut::new();
        let start = enc.begin(&mut buf, 9, 2);
        enc.begin_topic(&mut buf, "t1", 1);
        enc.put_partition(&mut buf, 4, BatchBytes::Plain(&a));
        enc.end_topic(&mut buf);
        enc.begin_topic(&mut buf, "t2", 1);
        enc.put_partition(&mut buf, 0, BatchBytes::Plain(&b));
        enc.end_topic(&mut buf);
        enc.finish(&mut buf, start);
        let mut frame = buf.freeze();
        assert_eq!(frame.get_i32() as usize, frame.len());
        let hv = if version >= 9 { 2 } else { 1 };
        let header = RequestHeader::decode(&mut frame, hv).unwrap();
        assert_eq!(header.correlation_id, 9);
        assert_eq!(header.client_id.as_deref(), Some("lg"));
        let req = ProduceRequest::decode(&mut frame, version).unwrap();
        assert!(frame.is_empty(), "v{version}: trailing bytes");
        assert_eq!(req.acks, -1);
        assert_eq!(req.timeout_ms, 1234);
        assert_eq!(req.topic_data.len(), 2);
        let p = &req.topic_data[1].partition_data[0];
        let mut bytes = p.records.clone().unwrap();
        let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
        assert_eq!(set.records.len(), 200);
        let r = &set.records[199];
        assert_eq!(r.offset, 199);
        assert_eq!(r.timestamp, 77);
        assert_eq!(r.key.as_deref(), Some(&199u64.to_be_bytes()[..]));
        assert_eq!(set.records[4].key.as_deref(), Some(&b"key-1"[..]));
        let v = r.value.as_ref().unwrap();
        assert_eq!(v.len(), 100);
        assert_eq!(stamp_of(v), Some(1_000_199));
    }
}

#[test]
fn batches_carry_a_valid_crc() {
    let shape = RecordShape::new(1024, 0);
    let mut buf = BytesMut::new();
    put_batch(&mut buf, &shape, &records(10, |_| KeyRef::None), 5);
    let header = tidelog::log::batch::check_stored(&buf).expect("valid stored batch");
    assert_eq!(header.record_count, 10);
    assert_eq!(header.total_len(), buf.len());
}

#[test]
fn scanning_finds_every_stamp_and_skips_partial_batches() {
    let shape = RecordShape::new(64, 2);
    let mut buf = BytesMut::new();
    put_batch(&mut buf, &shape, &records(5, |_| KeyRef::None), 1);
    let mut second = BytesMut::new();
    put_batch(
        &mut second,
        &shape,
        &records(4, |i| KeyRef::Table(i as u32 % 2)),
        1,
    );
    second[0..8].copy_from_slice(&5i64.to_be_bytes());
    buf.extend_from_slice(&second);
    let whole = buf.len();
    buf.extend_from_slice(&second[..30]); // a cut batch at the end
    let mut stamps = Vec::new();
    assert_eq!(next_offset(&buf), Some(9));
    let s = scan_records(buf.freeze(), 2, |t| stamps.push(t));
    assert_eq!(s.value_bytes, 7 * 64);
    assert_eq!(s.records, 3 + 4);
    assert_eq!(s.bytes as usize, whole);
    assert_eq!(s.next_offset, Some(9));
    assert_eq!(stamps.len(), 7);
    assert_eq!(stamps[0], 1_000_002);
}

#[test]
fn compressed_batches_round_trip() {
    let shape = RecordShape::new(300, 0);
    for c in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let b = compressed_batch(&shape, &records(20, |_| KeyRef::None), 3, c).unwrap();
        assert!(
            b.len() < 20 * 300,
            "{c:?} compresses the payload: {}",
            b.len()
        );
        let mut n = 0;
        let s = scan_records(b, 0, |_| n += 1);
        assert_eq!((s.records, n, s.next_offset), (20, 20, Some(20)));
    }
}

#[test]
fn tiny_values_carry_no_stamp() {
    let shape = RecordShape::new(4, 0);
    let mut buf = BytesMut::new();
    put_batch(&mut buf, &shape, &records(2, |_| KeyRef::None), 1);
    let mut n = 0;
    assert_eq!(scan_records(buf.freeze(), 0, |_| n += 1).records, 2);
    assert_eq!(n, 0);
}

#[test]
fn frames_are_split_and_bounded() {
    let mut buf = BytesMut::from(&[0, 0, 0, 5, 1, 2, 3, 4][..]);
    assert_eq!(take_frame(&mut buf, 100), Ok(None));
    buf.extend_from_slice(&[5, 9]);
    assert_eq!(
        &take_frame(&mut buf, 100).unwrap().unwrap()[..],
        &[1, 2, 3, 4, 5]
    );
    assert_eq!(&buf[..], &[9]);
    let mut huge = BytesMut::from(&[0x7f, 0, 0, 0][..]);
    assert!(take_frame(&mut huge, 100).is_err());
}
