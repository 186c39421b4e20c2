//! Process-level runtime setup shared by the broker, the CLI, tests and benchmarks: locked
//! memory for io_uring and building glommio executors.

use std::time::Duration;

pub use crate::config::{IO_MEMORY_BYTES_DEFAULT, IO_MEMORY_BYTES_MIN};
use crate::config::{IO_MEMORY_GRANULE_BYTES, MEMLOCK_RESERVE_BYTES, TOOL_PREEMPT_TIMER_MS};

/// How much locked memory the executors may reserve, decided from the process's limits.
#[derive(Clone, Copy, Debug)]
pub struct MemlockPlan {
    /// `io_memory` for each executor.
    pub io_memory: usize,
    /// RLIMIT_MEMLOCK's soft limit now in force, in bytes (`u64::MAX`: unlimited).
    pub limit: u64,
    /// Whether CAP_IPC_LOCK lifts the limit for this process.
    pub cap_ipc_lock: bool,
}

/// Makes room for `shards` executors to each lock `io_memory` bytes: raises RLIMIT_MEMLOCK
/// where the hard limit or CAP_SYS_RESOURCE allows, relies on CAP_IPC_LOCK where the process has
/// it, and otherwise shrinks `io_memory` to fit. Fails with one readable line, never a panic,
/// when not even the minimum fits.
pub fn raise_memlock_limit(shards: usize, io_memory: usize) -> Result<MemlockPlan, String> {
    let shards = shards.max(1) as u64;
    let wanted = shards * io_memory as u64 + MEMLOCK_RESERVE_BYTES;
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
    let cap_ipc_lock = has_cap_ipc_lock();
    let plan = |limit| MemlockPlan {
        io_memory,
        limit,
        cap_ipc_lock,
    };
    if lim.rlim_cur == libc::RLIM_INFINITY || lim.rlim_cur >= wanted {
        return Ok(plan(lim.rlim_cur));
    }
    let new_max = if lim.rlim_max == libc::RLIM_INFINITY {
        lim.rlim_max
    } else {
        lim.rlim_max.max(wanted)
    };
    let new = libc::rlimit {
        rlim_cur: wanted,
        rlim_max: new_max,
    };
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &new) } == 0 {
        return Ok(plan(wanted));
    }
    // Raise the soft limit as far as the hard limit goes; that needs no privilege.
    let hard = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: as above.
    let cur = if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &hard) } == 0 {
        lim.rlim_max
    } else {
        lim.rlim_cur
    };
    if cap_ipc_lock {
        return Ok(plan(cur));
    }
    let fits = (cur.saturating_sub(MEMLOCK_RESERVE_BYTES) / shards) as usize
        & !(IO_MEMORY_GRANULE_BYTES - 1);
    if fits >= IO_MEMORY_BYTES_MIN {
        return Ok(MemlockPlan {
            io_memory: fits.min(io_memory),
            limit: cur,
            cap_ipc_lock,
        });
    }
    Err(format!(
        "locked memory limit is {} KiB but {shards} shard(s) need at least {} KiB for io_uring, and raising it \
         failed; run `ulimit -l unlimited` (or set LimitMEMLOCK=infinity in the systemd unit), or lower --shards",
        cur / 1024,
        (shards * IO_MEMORY_BYTES_MIN as u64 + MEMLOCK_RESERVE_BYTES) / 1024,
    ))
}

/// CAP_IPC_LOCK exempts a process from RLIMIT_MEMLOCK, io_uring's buffers included.
fn has_cap_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("CapEff:"))?;
            u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// Runs `fut` to completion on a fresh single glommio executor on the calling thread.
///
/// For the CLI, tests and benchmarks: the broker builds its pinned shard executors itself.
pub fn block_on<T, F>(fut: F) -> T
where
    F: std::future::Future<Output = T> + 'static,
    T: 'static,
{
    let plan = raise_memlock_limit(1, IO_MEMORY_BYTES_DEFAULT).unwrap_or_else(|msg| {
        eprintln!("tidelog: {msg}");
        std::process::exit(1);
    });
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(plan.io_memory)
        .preempt_timer(Duration::from_millis(TOOL_PREEMPT_TIMER_MS))
        .make()
        .unwrap_or_else(|e| {
            eprintln!("tidelog: cannot start an io_uring executor: {e}");
            std::process::exit(1);
        });
    ex.run(fut)
}

/// Raises RLIMIT_NOFILE's soft limit to its hard limit: every open partition keeps its active
/// segment and index descriptors, so the common default of 1024 runs out after a few hundred
/// partitions. Returns the soft limit now in force.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}
