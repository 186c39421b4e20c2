//! Tests of a follower's log: a leader's log filled by `append` is read back as a fetch would
//! and copied with `append_replica`, and the copy must be the leader's in every respect a
//! reader, a recovery or a future leadership can see. Truncation is in `tests_truncate.rs`,
//! which shares these helpers.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType as Ts,
};

use super::batch::{self, tests::make_batch};
use super::producer::BatchMeta;
use super::segment::FORCE_COLD;
use super::*;
use crate::error::ErrorCode;
use crate::runtime::block_on;

/// Small segments and index intervals, so that a few dozen batches roll several segments and
/// index many of them.
pub(super) fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        ..LogConfig::default()
    }
}

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

/// Batches in the leader's log built by [`leader`].
pub(super) const LEADER_BATCHES: i32 = 60;

/// A batch of `n` records of varied bytes with timestamps `ts..`, from `(producer id, epoch,
/// base sequence)` (-1s for a producer without idempotence).
pub(super) fn batch_of(
    n: usize,
    ts: i64,
    codec: Compression,
    producer: (i64, i16, i32),
) -> Vec<u8> {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: producer.0,
            producer_epoch: producer.1,
            timestamp_type: Ts::Creation,
            offset: i as i64,
            sequence: producer.2.wrapping_add(i as i32),
            timestamp: ts + i as i64,
            key: Some(Bytes::from(format!("key-{}", ts % 7))),
            value: Some(Bytes::from(
                (0..40 + (ts as usize * 37) % 300)
                    .map(|k| (k * 31 + ts as usize) as u8)
                    .collect::<Vec<u8>>(),
            )),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression: codec,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &opts).unwrap();
    buf.to_vec()
}

/// A leader's log filled by `append`: a producer without idempotence and two idempotent ones
/// (producer 9 bumps its epoch half way), every codec, leader epochs 1 to 3, a stretch under
/// LogAppendTime, and enough bytes to roll several segments.
pub(super) async fn leader(path: PathBuf) -> PartitionLog {
    let log = PartitionLog::open(path, config()).await.unwrap();
    let mut seqs = [0i32; 3];
    for i in 0..LEADER_BATCHES {
        let leader_epoch = 1 + i / 20;
        let n = 1 + (i % 4) as usize;
        let who = (i % 3) as usize;
        let (pid, epoch) = match who {
            0 => (-1, -1),
            1 => (7, 0),
            _ if i < 30 => (9, 0),
            _ => (9, 1),
        };
        if i == 32 {
            seqs[2] = 0; // producer 9's first batch in its new epoch
        }
        let seq = if pid < 0 { -1 } else { seqs[who] };
        let codec = CODECS[(i % 5) as usize];
        let timestamp_type = if (40..45).contains(&i) {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        };
        log.set_config(LogConfig {
            message_timestamp_type: timestamp_type,
            ..config()
        });
        let b = batch_of(n, 1_000 + 10 * i64::from(i), codec, (pid, epoch, seq));
        let info = log.append(&b, leader_epoch, Durability::PageCache).await;
        assert!(!info.unwrap().duplicate);
        seqs[who] += n as i32;
    }
    log.set_config(config());
    assert!(log.st.borrow().segments.len() > 4);
    log
}

pub(super) fn read_bytes(s: &ReadSlice) -> Vec<u8> {
    let mut buf = vec![0u8; s.len as usize];
    s.file.read_exact_at(&mut buf, s.position.0).unwrap();
    buf
}

/// The batches in a byte range, with their headers.
pub(super) fn split(mut bytes: &[u8]) -> Vec<(batch::BatchHeader, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let h = batch::check_stored(bytes).expect("a whole, valid batch");
        out.push((h, bytes[..h.total_len()].to_vec()));
        bytes = &bytes[h.total_len()..];
    }
    out
}

/// Copies `from` into `to` from `to`'s log end up to `upto`, as a follower's fetches would,
/// each response cut at a different size and most ending inside the next batch.
pub(super) async fn replicate(from: &PartitionLog, to: &PartitionLog, upto: Offset) {
    let sizes = [1u32, 700, 3000, 1 << 20, 200];
    let mut round = 0;
    while to.log_end_offset() < upto {
        let at = to.log_end_offset();
        let s = from.read_async_upto(at, sizes[round % sizes.len()], upto);
        let mut bytes = read_bytes(&s.await.unwrap());
        let whole = bytes.len();
        let batches = split(&bytes);
        let end = batches.last().map(|(h, _)| h.last_offset() + 1).unwrap();
        if end < upto.0 {
            // A response cut at its size limit ends inside the next batch.
            let next = read_bytes(&from.read(Offset(end), 0).unwrap());
            let cut = [5, 11, 12, 61, next.len() - 1][round % 5];
            bytes.extend_from_slice(&next[..cut]);
        }
        let r = to.append_replica(&bytes).await.unwrap();
        assert_eq!((r.batches, r.bytes), (batches.len(), whole));
        assert_eq!(r.log_end_offset, Offset(end));
        assert_eq!(to.log_end_offset(), Offset(end));
        assert_eq!(to.high_watermark(), Offset(end), "written when it returns");
        round += 1;
    }
}

/// A batch's bytes, shown by length and CRC.
#[derive(PartialEq)]
pub(super) struct Bytes_(pub(super) Vec<u8>);

impl std::fmt::Debug for Bytes_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes, crc32c {:#010x}",
            self.0.len(),
            crc32c::crc32c(&self.0)
        )
    }
}

/// Everything about a log that a reader, a recovery or a future leadership can see.
#[derive(Debug, PartialEq)]
pub(super) struct Picture {
    log_start: Offset,
    leo: Offset,
    hwm: Offset,
    /// Every batch: its base offset, file position and bytes.
    pub(super) batches: Vec<(i64, FilePos, Bytes_)>,
    epochs: Vec<Option<(i32, Offset)>>,
    latest_epoch: Option<i32>,
    max_timestamp: Option<(Offset, i64)>,
    by_timestamp: Vec<Option<(Offset, i64)>>,
    /// Each segment: base, size, next offset, max timestamp and its offset, offset index.
    segments: Vec<(Offset, u64, Offset, i64, Offset, index::OffsetIndex)>,
    pub(super) producers: Vec<(i64, i16, Vec<BatchMeta>)>,
}

/// Asserts two pictures are equal, one field at a time, for a readable failure.
pub(super) fn assert_same(got: &Picture, want: &Picture, what: &str) {
    let fields = |p: &Picture| {
        [
            format!(
                "log start {:?} leo {:?} hwm {:?}",
                p.log_start, p.leo, p.hwm
            ),
            format!("epochs {:?} latest {:?}", p.epochs, p.latest_epoch),
            format!("max timestamp {:?}", p.max_timestamp),
            format!("by timestamp {:?}", p.by_timestamp),
            format!("producers {:?}", p.producers),
        ]
        .into_iter()
        .chain(p.segments.iter().map(|s| format!("segment {s:?}")))
        .chain(p.batches.iter().map(|b| format!("batch {b:?}")))
        .collect::<Vec<_>>()
    };
    let (g, w) = (fields(got), fields(want));
    for (a, b) in g.iter().zip(&w) {
        assert_eq!(a, b, "{what}");
    }
    assert_eq!(
        g.len(),
        w.len(),
        "{what}: {} and {} fields",
        g.len(),
        w.len()
    );
}

pub(super) async fn picture(log: &PartitionLog) -> Picture {
    let mut batches = Vec::new();
    let mut at = log.log_start_offset();
    loop {
        let s = log.read_async(at, 2000).await.unwrap();
        if s.len == 0 {
            break;
        }
        let mut pos = s.position.0;
        for (h, b) in split(&read_bytes(&s)) {
            // The index finds each batch by its own offsets too.
            let alone = log.read(Offset(h.base_offset.max(at.0)), 0).unwrap();
            assert_eq!(read_bytes(&alone), b);
            batches.push((h.base_offset, FilePos(pos), Bytes_(b)));
            pos += h.total_len() as u64;
            at = Offset(h.last_offset() + 1);
        }
    }
    let mut by_timestamp = Vec::new();
    for ts in [0, 1_000, 1_205, 1_333, 1_590, 2_000, i64::MAX / 2] {
        by_timestamp.push(log.offset_for_timestamp(ts).await.unwrap());
    }
    let st = log.st.borrow();
    Picture {
        log_start: st.log_start,
        leo: st.leo,
        hwm: st.hwm,
        batches,
        epochs: (0..6)
            .map(|e| st.epochs.end_offset_for(e, st.leo))
            .collect(),
        latest_epoch: st.epochs.latest(),
        max_timestamp: log.max_timestamp(),
        by_timestamp,
        segments: st
            .segments
            .iter()
            .map(|seg| {
                let s = seg.st.borrow();
                let next = s.next_offset;
                (
                    seg.base,
                    s.size,
                    next,
                    s.max_timestamp,
                    s.offset_of_max,
                    s.index.clone(),
                )
            })
            .collect(),
        producers: st.producers.view(),
    }
}

/// What a reopened log must hold: the picture of `log` and the log itself, after a crash
/// (`crash`, no close) or a clean close.
pub(super) async fn reopened(path: PathBuf, log: PartitionLog, crash: bool) -> PartitionLog {
    if crash {
        drop(log);
    } else {
        log.close().await.unwrap();
    }
    PartitionLog::open(path, config()).await.unwrap()
}

#[test]
fn a_follower_copies_the_leaders_log_byte_for_byte() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let (lp, fp) = (dirs[0].path().to_path_buf(), dirs[1].path().to_path_buf());
    block_on(async move {
        let leader = leader(lp).await;
        let follower = PartitionLog::open(fp.clone(), config()).await.unwrap();
        replicate(&leader, &follower, leader.log_end_offset()).await;
        let want = picture(&leader).await;
        assert_same(&picture(&follower).await, &want, "copied");
        assert_eq!(want.latest_epoch, Some(3));
        // The time indexes agree too (a reopen appends the max to them, so only here).
        let times = |l: &PartitionLog| -> Vec<index::TimeIndex> {
            let st = l.st.borrow();
            st.segments
                .iter()
                .map(|s| s.st.borrow().time_index.clone())
                .collect()
        };
        assert_eq!(times(&follower), times(&leader));
        // The same after a crash and after a clean shutdown.
        let follower = reopened(fp.clone(), follower, true).await;
        assert_same(&picture(&follower).await, &want, "after a crash");
        let follower = reopened(fp.clone(), follower, false).await;
        assert_same(&picture(&follower).await, &want, "after a clean close");
        // Made leader, it knows the idempotent producers as the leader does: a retry of the
        // last batch of producer 7 is a duplicate at the leader's offsets, the next is appended.
        let last_seven = want
            .producers
            .iter()
            .find(|p| p.0 == 7)
            .unwrap()
            .2
            .last()
            .copied();
        let last_seven = last_seven.unwrap();
        let batch_at = |log: &PartitionLog, o: i64| read_bytes(&log.read(Offset(o), 0).unwrap());
        let retry = batch_at(&leader, last_seven.base_offset);
        for log in [&leader, &follower] {
            let info = log.append(&retry, 4, Durability::PageCache).await.unwrap();
            assert!(info.duplicate);
            assert_eq!(info.base_offset, Offset(last_seven.base_offset));
        }
        let next = batch_of(1, 5_000, Compression::None, (7, 0, last_seven.last_seq + 1));
        let a = leader.append(&next, 4, Durability::Fsync).await.unwrap();
        let b = follower.append(&next, 4, Durability::Fsync).await.unwrap();
        assert_eq!(a, b);
    });
}

/// A compacted leader's log has offset gaps inside segments; they are kept, and the log end
/// follows the last batch.
#[test]
fn gaps_are_kept_and_the_log_end_follows_the_last_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let log = PartitionLog::open(path.clone(), config()).await.unwrap();
        let mut response = Vec::new();
        let mut want = Vec::new();
        for (base, n, epoch) in [
            (0i64, 3usize, 1),
            (5, 1, 1),
            (6, 2, 2),
            (100, 2, 2),
            (7000, 1, 5),
        ] {
            let mut b = make_batch(&vec![vec![base as u8; 30]; n], 10 * base, -1, -1, -1);
            batch::assign(&mut b, base, epoch, None);
            response.extend_from_slice(&b);
            want.push((base, b));
        }
        let r = log.append_replica(&response).await.unwrap();
        assert_eq!(
            (r.log_end_offset, r.batches, r.bytes),
            (Offset(7001), 5, response.len())
        );
        assert_eq!(log.end_offset_for_epoch(1), Some((1, Offset(6))));
        assert_eq!(log.end_offset_for_epoch(2), Some((2, Offset(7000))));
        assert_eq!(log.end_offset_for_epoch(4), Some((2, Offset(7000))));
        let check = |log: &PartitionLog| {
            assert_eq!(log.log_end_offset(), Offset(7001));
            // An offset in a gap reads from the next batch.
            for (probe, base) in [(0, 0), (3, 5), (4, 5), (8, 100), (99, 100), (500, 7000)] {
                let got = read_bytes(&log.read(Offset(probe), 0).unwrap());
                assert_eq!(
                    got,
                    want.iter().find(|w| w.0 == base).unwrap().1,
                    "at {probe}"
                );
            }
        };
        check(&log);
        let log = reopened(path.clone(), log, true).await;
        check(&log);
        // Appending after a gap: the next batch may start anywhere past the log end.
        let mut b = make_batch(&[vec![1; 30]], 0, -1, -1, -1);
        batch::assign(&mut b, 7001, 5, None);
        log.append_replica(&b).await.unwrap();
        assert_eq!(log.log_end_offset(), Offset(7002));
    });
}

#[test]
fn a_bad_batch_refuses_the_whole_call_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let log = PartitionLog::open(path, config()).await.unwrap();
        let at = |base: i64, n: usize| {
            let mut b = make_batch(&vec![vec![7; 50]; n], base, 3, 0, base as i32);
            batch::assign(&mut b, base, 1, None);
            b
        };
        log.append_replica(&at(0, 2)).await.unwrap();
        let size = log.size_bytes();
        let cat = |parts: &[Vec<u8>]| parts.concat();
        let mut bad_crc = at(3, 1);
        *bad_crc.last_mut().unwrap() ^= 1;
        let mut magic = at(3, 1);
        magic[batch::MAGIC] = 1;
        let mut short = at(3, 1);
        short[batch::BATCH_LENGTH..][..4].copy_from_slice(&10i32.to_be_bytes());
        let huge = make_batch(&[vec![1; 5000]], 0, -1, -1, -1);
        let mut huge_at = huge.clone();
        batch::assign(&mut huge_at, 2, 1, None);
        let cases: Vec<(&str, Vec<u8>, ErrorCode)> = vec![
            (
                "bad CRC after a good batch",
                cat(&[at(2, 1), bad_crc]),
                ErrorCode::CorruptMessage,
            ),
            ("below the log end", at(1, 1), ErrorCode::OffsetOutOfRange),
            (
                "overlapping the log end",
                at(0, 3),
                ErrorCode::OffsetOutOfRange,
            ),
            (
                "offsets going back",
                cat(&[at(2, 2), at(3, 1)]),
                ErrorCode::CorruptMessage,
            ),
            (
                "magic 1",
                cat(&[at(2, 1), magic]),
                ErrorCode::CorruptMessage,
            ),
            (
                "batchLength too short",
                cat(&[at(2, 1), short]),
                ErrorCode::CorruptMessage,
            ),
            (
                "larger than a segment",
                cat(&[at(2, 1), huge_at]),
                ErrorCode::MessageTooLarge,
            ),
            // Refused even partial: no segment could ever hold it.
            (
                "larger than a segment, partial",
                cat(&[at(2, 1), huge[..100].to_vec()]),
                ErrorCode::MessageTooLarge,
            ),
        ];
        for (what, bytes, code) in cases {
            let e = log.append_replica(&bytes).await.unwrap_err();
            assert_eq!(e.error_code(), code, "{what}: {e}");
            assert_eq!(log.log_end_offset(), Offset(2), "{what}");
            assert_eq!(log.size_bytes(), size, "{what}");
            assert_eq!(log.read(Offset(2), 1 << 20).unwrap().len, 0, "{what}");
        }
        // The producer state saw none of it: sequence 2 is still what producer 3 sends next.
        assert_eq!(log.st.borrow().producers.view()[0].2.len(), 1);
        // Nothing failed the log.
        log.append_replica(&at(2, 1)).await.unwrap();
        assert_eq!(log.log_end_offset(), Offset(3));
    });
}

#[test]
fn a_trailing_partial_batch_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let log = PartitionLog::open(path, config()).await.unwrap();
        let at = |base: i64| {
            let mut b = make_batch(&[vec![9; 80], vec![8; 80]], base, -1, -1, -1);
            batch::assign(&mut b, base, 2, None);
            b
        };
        let (a, b, c) = (at(0), at(2), at(4));
        for partial in [&[][..], &a[..11], &a[..12], &a[..61], &a[..a.len() - 1]] {
            let r = log.append_replica(partial).await.unwrap();
            assert_eq!((r.log_end_offset, r.batches, r.bytes), (Offset(0), 0, 0));
        }
        assert_eq!(log.size_bytes(), 0);
        let response = [&a[..], &b[..], &c[..70]].concat();
        let r = log.append_replica(&response).await.unwrap();
        assert_eq!(
            (r.log_end_offset, r.batches, r.bytes),
            (Offset(4), 2, a.len() + b.len())
        );
        assert_eq!(log.size_bytes(), (a.len() + b.len()) as u64);
        log.append_replica(&c).await.unwrap();
        let all = read_bytes(&log.read(Offset(0), 1 << 20).unwrap());
        assert_eq!(all, [a, b, c].concat());
    });
}

/// `read_async_upto` ends below its bound: whole batches whose last offset is below it, the
/// same bytes as an unbounded read otherwise; at or past the bound a read is empty.
#[test]
fn read_async_upto_stops_below_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let log = leader(path).await;
        let hwm = log.high_watermark();
        let bases: Vec<i64> = picture(&log).await.batches.iter().map(|b| b.0).collect();
        let mut bounds: Vec<Offset> = bases.iter().map(|&b| Offset(b)).collect();
        bounds.extend([hwm, Offset(hwm.0 + 5)]);
        for (k, &upto) in bounds.iter().enumerate() {
            for &offset in bases.iter().step_by(3) {
                for max_bytes in [1, 900, 1 << 20] {
                    let full = log.read_async(Offset(offset), max_bytes).await.unwrap();
                    if k % 2 == 0 {
                        FORCE_COLD.with(|c| c.set(2)); // the warming path gives the same
                    }
                    let capped = log.read_async_upto(Offset(offset), max_bytes, upto).await;
                    let capped = capped.unwrap();
                    let want: Vec<_> = split(&read_bytes(&full))
                        .into_iter()
                        .take_while(|(h, _)| h.last_offset() < upto.0)
                        .collect();
                    let got = split(&read_bytes(&capped));
                    assert_eq!(got, want, "offset {offset} upto {upto:?} max {max_bytes}");
                    if capped.len > 0 {
                        assert_eq!(capped.position, full.position);
                    }
                    if offset >= upto.0 {
                        assert_eq!(capped.len, 0);
                    }
                    assert_eq!(capped.high_watermark, hwm);
                }
            }
        }
        FORCE_COLD.with(|c| c.set(0));
        // Past the log end it is out of range, as ever.
        assert!(log
            .read_async_upto(Offset(hwm.0 + 1), 100, hwm)
            .await
            .is_err());
    });
}
