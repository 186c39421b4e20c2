//! Process-level runtime setup shared by the broker, the CLI, tests and benchmarks: locked
//! memory for io_uring and building glommio executors.

use std::time::Duration;

/// Locked memory each executor reserves for its io_uring buffers by default.
pub const IO_MEMORY_BYTES_DEFAULT: usize = 2 << 20;

/// Raises RLIMIT_MEMLOCK so that `shards` executors can each lock `io_memory` bytes.
///
/// Returns the soft limit now in force. Fails with a readable message when the kernel refuses
/// and the current limit is too small; callers print it and exit instead of panicking.
pub fn raise_memlock_limit(shards: usize, io_memory: usize) -> Result<u64, String> {
    // io_uring rings themselves also count against the limit on older kernels: keep headroom.
    let wanted = (shards as u64) * (io_memory as u64 + (1 << 20)) + (8 << 20);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        return Err(format!(
            "getrlimit(RLIMIT_MEMLOCK) failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    if lim.rlim_cur == libc::RLIM_INFINITY || lim.rlim_cur >= wanted {
        return Ok(lim.rlim_cur);
    }
    let new_max = if lim.rlim_max == libc::RLIM_INFINITY || lim.rlim_max >= wanted {
        lim.rlim_max
    } else {
        wanted
    };
    let new = libc::rlimit {
        rlim_cur: wanted,
        rlim_max: new_max,
    };
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &new) } == 0 {
        return Ok(wanted);
    }
    Err(format!(
        "locked memory limit is {} KiB but {} shard(s) need {} KiB for io_uring, and raising it failed ({}); \
         run `ulimit -l unlimited` (or set LimitMEMLOCK=infinity in the systemd unit), or lower --shards",
        lim.rlim_cur / 1024,
        shards,
        wanted / 1024,
        std::io::Error::last_os_error()
    ))
}

/// Runs `fut` to completion on a fresh single glommio executor on the calling thread.
///
/// For the CLI, tests and benchmarks: the broker builds its pinned shard executors itself.
pub fn block_on<T, F>(fut: F) -> T
where
    F: std::future::Future<Output = T> + 'static,
    T: 'static,
{
    if let Err(msg) = raise_memlock_limit(1, IO_MEMORY_BYTES_DEFAULT) {
        eprintln!("tidelog: {msg}");
        std::process::exit(1);
    }
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(IO_MEMORY_BYTES_DEFAULT)
        .preempt_timer(Duration::from_millis(10))
        .make()
        .unwrap_or_else(|e| {
            eprintln!("tidelog: cannot start an io_uring executor: {e}");
            std::process::exit(1);
        });
    ex.run(fut)
}
