//! Transactions on the log: the last stable offset, the aborted-transaction index, and both
//! across a clean restart, a crash, a lost `.txnindex` and a follower's truncation.

use super::batch::{self, tests::make_batch};
use super::tests::block_on;
use super::txn::{AbortedTxn, Marker, TXN_INDEX_EXT};
use super::*;

/// A transactional batch of one record from `pid` (epoch 1).
fn txn_batch(pid: i64, seq: i32) -> Vec<u8> {
    let mut b = make_batch(&[vec![7; 200]], 0, pid, 1, seq);
    b[batch::ATTRIBUTES + 1] |= batch::ATTR_TRANSACTIONAL as u8;
    batch::patch_crc(&mut b);
    b
}

fn config() -> LogConfig {
    LogConfig {
        // A few batches per segment, so that markers land in different segments.
        segment_bytes: 700,
        ..LogConfig::default()
    }
}

async fn append(log: &PartitionLog, b: &[u8]) -> i64 {
    log.append(b, 0, Durability::PageCache)
        .await
        .unwrap()
        .base_offset
        .0
}

async fn end(log: &PartitionLog, pid: i64, marker: Marker) -> i64 {
    log.append_marker(pid, 1, marker, 0, 0, Durability::PageCache)
        .await
        .unwrap()
        .base_offset
        .0
}

fn txn_index_entries(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == TXN_INDEX_EXT))
        .map(|e| e.metadata().unwrap().len() as usize / 34)
        .sum()
}

/// The aborted transactions and last stable offset that restarts must keep.
fn state(log: &PartitionLog) -> (Vec<AbortedTxn>, i64) {
    let hwm = log.high_watermark().0;
    (log.aborted_between(0, hwm), log.last_stable_offset(hwm))
}

#[test]
fn open_transactions_hold_the_last_stable_offset_and_aborts_are_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let log = PartitionLog::open(path.clone(), config()).await.unwrap();
        assert_eq!(append(&log, &txn_batch(1, 0)).await, 0);
        assert_eq!(append(&log, &txn_batch(2, 0)).await, 1);
        assert_eq!(
            append(&log, &make_batch(&[vec![1]], 0, -1, -1, -1)).await,
            2
        );
        assert_eq!(append(&log, &txn_batch(1, 1)).await, 3);
        assert_eq!(
            log.last_stable_offset(4),
            0,
            "producer 1's transaction is open"
        );
        assert_eq!(
            log.last_stable_offset(0),
            0,
            "never above the high watermark"
        );

        // A marker from a fenced epoch is refused.
        let fenced = log
            .append_marker(1, 0, Marker::Abort, 0, 0, Durability::PageCache)
            .await
            .unwrap_err();
        assert_eq!(
            fenced.error_code(),
            crate::error::ErrorCode::InvalidProducerEpoch
        );

        assert_eq!(end(&log, 1, Marker::Abort).await, 4);
        assert_eq!(log.last_stable_offset(5), 1, "producer 2's is still open");
        let aborted = AbortedTxn {
            producer_id: 1,
            first_offset: 0,
            last_offset: 4,
            last_stable_offset: 1,
        };
        assert_eq!(log.aborted_between(0, 5), vec![aborted]);
        assert_eq!(log.aborted_between(4, 5), vec![aborted]);
        assert_eq!(log.aborted_between(5, 9), vec![]);
        assert_eq!(log.aborted_between(0, 0), vec![]);

        assert_eq!(end(&log, 2, Marker::Commit).await, 5);
        // Until the high watermark passes the commit marker, its transaction is unstable.
        assert_eq!(log.last_stable_offset(5), 1);
        assert_eq!(log.last_stable_offset(6), 6);
        assert_eq!(
            log.aborted_between(0, 6),
            vec![aborted],
            "a commit is not indexed"
        );

        // A second aborted transaction, in a later segment.
        let first = append(&log, &txn_batch(2, 1)).await;
        let last = end(&log, 2, Marker::Abort).await;
        let later = AbortedTxn {
            producer_id: 2,
            first_offset: first,
            last_offset: last,
            last_stable_offset: last + 1,
        };
        assert_eq!(log.aborted_between(0, last + 1), vec![aborted, later]);
        assert_eq!(log.aborted_between(5, last + 1), vec![later]);
        let before = state(&log);
        assert_eq!(before.1, last + 1);

        // A clean restart reads the index files.
        log.close().await.unwrap();
        assert_eq!(txn_index_entries(&path), 2);
        let log = PartitionLog::open(path.clone(), config()).await.unwrap();
        assert_eq!(state(&log), before);

        // An open transaction survives a clean restart too (producer snapshot v2).
        let open_at = append(&log, &txn_batch(1, 2)).await;
        log.close().await.unwrap();
        let log = PartitionLog::open(path.clone(), config()).await.unwrap();
        assert_eq!(log.last_stable_offset(open_at + 1), open_at);

        // A crash loses no marker: the index is rebuilt from the log, even without its files.
        end(&log, 1, Marker::Abort).await;
        let before = state(&log);
        drop(log);
        for e in std::fs::read_dir(&path).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == TXN_INDEX_EXT) {
                std::fs::remove_file(p).unwrap();
            }
        }
        std::fs::remove_file(path.join("producer.snapshot")).unwrap();
        let log = PartitionLog::open(path.clone(), config()).await.unwrap();
        assert_eq!(state(&log), before);
        assert_eq!(before.0.len(), 3);
    });
}

#[test]
fn a_truncated_marker_opens_its_transaction_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let log = PartitionLog::open(path.clone(), config()).await.unwrap();
        append(&log, &txn_batch(1, 0)).await;
        let marker = end(&log, 1, Marker::Abort).await;
        assert_eq!(log.aborted_between(0, marker + 1).len(), 1);
        // A follower whose leader never wrote the marker drops it.
        log.truncate_to(Offset(marker)).await.unwrap();
        assert_eq!(log.aborted_between(0, marker + 1), vec![]);
        assert_eq!(log.last_stable_offset(marker), 0);
        log.close().await.unwrap();
        let log = PartitionLog::open(path, config()).await.unwrap();
        assert_eq!(log.aborted_between(0, marker + 1), vec![]);
        assert_eq!(log.last_stable_offset(marker), 0);
    });
}
