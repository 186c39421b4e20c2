//! Crash recovery of a partition directory whose only segment holds the fuzz input.
//!
//! Input: one mode byte, then the `.log` bytes. Mode bit 0 repairs the CRC of every batch the
//! `batchLength` chain reaches, so the fuzzer explores what follows the CRC check (offset order,
//! index rebuild, producer state, leader epochs) instead of stopping at it.
//!
//! Properties: recovery never panics and never fails on the bytes; it keeps a prefix of the
//! file (truncates or accepts, never rewrites); a second recovery of the result keeps all of
//! it, with the same log end offset.
#![no_main]

use std::path::{Path, PathBuf};

use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use libfuzzer_sys::fuzz_target;
use tidelog::log::batch;
use tidelog::log::{LogConfig, PartitionLog};
use tidelog::runtime::{raise_memlock_limit, IO_MEMORY_BYTES_DEFAULT};

const SEGMENT: &str = "00000000000000000000.log";

thread_local! {
    // One executor for the whole run: building an io_uring per input would dominate the time.
    static EXECUTOR: LocalExecutor = {
        let plan = raise_memlock_limit(1, IO_MEMORY_BYTES_DEFAULT).expect("memlock limit");
        LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(plan.io_memory)
            .make()
            .expect("an io_uring executor")
    };
    // `TIDELOG_FUZZ_SCRATCH` (scripts/fuzz-smoke.sh sets it and removes it afterwards), else
    // a per-process directory under the system temp dir.
    static SCRATCH: PathBuf = {
        let dir = std::env::var_os("TIDELOG_FUZZ_SCRATCH")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::temp_dir().join(format!("tidelog-fuzz-recovery-{}", std::process::id()))
            });
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    };
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let mut log = bytes.to_vec();
    if mode & 1 != 0 {
        repair_crcs(&mut log);
    }
    let dir = SCRATCH.with(|s| s.join("t-0"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("partition dir");
    std::fs::write(dir.join(SEGMENT), &log).expect("segment written");

    let first = recover(&dir);
    let kept = std::fs::read(dir.join(SEGMENT)).expect("segment still there");
    assert!(kept.len() <= log.len(), "recovery grew the segment");
    assert_eq!(kept[..], log[..kept.len()], "recovery rewrote kept bytes");

    let second = recover(&dir);
    let kept_again = std::fs::read(dir.join(SEGMENT)).expect("segment still there");
    assert_eq!(
        kept_again.len(),
        kept.len(),
        "a recovered log recovers to itself"
    );
    assert_eq!(second, first, "log end offset changed on a second recovery");
});

/// Opens the partition as the broker does after a crash (no clean-shutdown marker) and returns
/// its log end offset.
fn recover(dir: &Path) -> i64 {
    let dir = dir.to_path_buf();
    EXECUTOR.with(|ex| {
        ex.run(async move {
            let log = PartitionLog::open(dir, LogConfig::default())
                .await
                .unwrap_or_else(|e| panic!("recovery failed on bytes: {e}"));
            log.log_end_offset().0
        })
    })
}

/// Recomputes the CRC of each complete batch along the `batchLength` chain.
fn repair_crcs(b: &mut [u8]) {
    let mut pos = 0;
    while let Some((_, len)) = batch::peek_offset_and_len(&b[pos..]) {
        let Some(end) = pos.checked_add(len).filter(|&e| e <= b.len()) else {
            return;
        };
        let crc = batch::compute_crc(&b[pos..end]);
        b[pos + batch::CRC..pos + batch::CRC + 4].copy_from_slice(&crc.to_be_bytes());
        pos = end;
    }
}
