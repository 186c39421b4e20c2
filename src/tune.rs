//! `tidelog tune --check`: reads the OS settings that matter to a thread-per-core broker,
//! compares each with the recommendation in tuning.md ("OS settings"), and prints what to
//! change and how. It changes nothing itself: tuning a host is the operator's decision, and a
//! broker that quietly rewrote sysctls would surprise whoever runs the machine.
//!
//! Every reading goes through a root directory (`/` in production), so the tests can point it
//! at a fake `/proc` and `/sys` tree and check each verdict.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The verdict on one setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Matches the recommendation.
    Ok,
    /// Differs from it: the finding says how to change it.
    Change,
    /// Not readable here (a VM without cpufreq, a container without /sys).
    Unknown,
}

/// One setting, read and judged.
#[derive(Clone, Debug)]
pub struct Finding {
    /// The setting's name as the OS spells it (`vm.swappiness`).
    pub setting: String,
    pub current: String,
    pub recommended: String,
    pub verdict: Verdict,
    /// The command that would change it.
    pub how: String,
}

/// Reads the host below `root`.
pub struct Host {
    root: PathBuf,
}

impl Host {
    pub fn new(root: impl Into<PathBuf>) -> Host {
        Host { root: root.into() }
    }

    fn read(&self, path: &str) -> Option<String> {
        let p = self.root.join(path.trim_start_matches('/'));
        std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned())
    }

    fn list(&self, dir: &str) -> Vec<String> {
        let p = self.root.join(dir.trim_start_matches('/'));
        let mut names: Vec<String> = std::fs::read_dir(p)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

fn finding(
    setting: &str,
    current: Option<String>,
    recommended: &str,
    ok: impl Fn(&str) -> bool,
    how: &str,
) -> Finding {
    let verdict = match &current {
        None => Verdict::Unknown,
        Some(c) if ok(c) => Verdict::Ok,
        Some(_) => Verdict::Change,
    };
    Finding {
        setting: setting.to_owned(),
        current: current.unwrap_or_else(|| "not readable".into()),
        recommended: recommended.to_owned(),
        verdict,
        how: how.to_owned(),
    }
}

fn num(s: &str) -> Option<u64> {
    s.split_whitespace().next()?.parse().ok()
}

/// A sysctl under /proc/sys, judged numerically.
fn sysctl(
    host: &Host,
    name: &str,
    recommended: &str,
    ok: impl Fn(u64) -> bool,
    value: &str,
) -> Finding {
    let path = format!("proc/sys/{}", name.replace('.', "/"));
    finding(
        name,
        host.read(&path),
        recommended,
        |c| num(c).is_some_and(&ok),
        &format!("sysctl -w {name}={value} (persist in /etc/sysctl.d/90-tidelog.conf)"),
    )
}

/// The bracketed choice in a sysfs selector such as `always [madvise] never`.
fn selected(s: &str) -> Option<&str> {
    let start = s.find('[')?;
    let end = s[start..].find(']')? + start;
    Some(&s[start + 1..end])
}

fn cpu_governor(host: &Host) -> Finding {
    let governors: Vec<String> = host
        .list("sys/devices/system/cpu")
        .iter()
        .filter(|c| c.starts_with("cpu") && c[3..].chars().all(|d| d.is_ascii_digit()))
        .filter_map(|c| {
            host.read(&format!(
                "sys/devices/system/cpu/{c}/cpufreq/scaling_governor"
            ))
        })
        .collect();
    let current = (!governors.is_empty()).then(|| {
        let mut g = governors.clone();
        g.dedup();
        g.join(",")
    });
    finding(
        "cpu governor",
        current,
        "performance",
        |c| c.split(',').all(|g| g == "performance"),
        "cpupower frequency-set -g performance",
    )
}

fn thp(host: &Host) -> Finding {
    let current = host
        .read("sys/kernel/mm/transparent_hugepage/enabled")
        .and_then(|s| selected(&s).map(str::to_owned));
    finding(
        "transparent_hugepage",
        current,
        "madvise (or never)",
        |c| c == "madvise" || c == "never",
        "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled",
    )
}

/// `Max locked memory` or `Max open files` from /proc/self/limits: (soft, hard) as text.
fn limit(host: &Host, name: &str) -> Option<String> {
    let limits = host.read("proc/self/limits")?;
    let line = limits.lines().find(|l| l.starts_with(name))?;
    let fields: Vec<&str> = line[name.len()..].split_whitespace().collect();
    Some(fields.first()?.to_string())
}

/// io_uring's locked buffers: one shard per core at the default `io_memory`, plus slack (see
/// `runtime::raise_memlock_limit`, which also accepts CAP_IPC_LOCK instead).
fn memlock(host: &Host) -> Finding {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let needed = cores * crate::config::IO_MEMORY_BYTES_DEFAULT as u64
        + crate::config::MEMLOCK_RESERVE_BYTES;
    finding(
        "memlock limit (RLIMIT_MEMLOCK)",
        limit(host, "Max locked memory"),
        &format!("unlimited (at least {needed} bytes for {cores} shards)"),
        |c| c == "unlimited" || num(c).is_some_and(|n| n >= needed),
        "ulimit -l unlimited; systemd: LimitMEMLOCK=infinity (or grant CAP_IPC_LOCK)",
    )
}

fn nofile(host: &Host) -> Finding {
    finding(
        "open files limit (RLIMIT_NOFILE)",
        limit(host, "Max open files"),
        ">= 1048576",
        |c| c == "unlimited" || num(c).is_some_and(|n| n >= 1 << 20),
        "ulimit -n 1048576; systemd: LimitNOFILE=1048576",
    )
}

/// The I/O scheduler (`none`) and merge policy (`nomerges=2`) of every NVMe and virtio disk.
fn disks(host: &Host) -> Vec<Finding> {
    let mut out = Vec::new();
    for dev in host.list("sys/block") {
        if !(dev.starts_with("nvme") || dev.starts_with("vd")) {
            continue;
        }
        let q = format!("sys/block/{dev}/queue");
        out.push(finding(
            &format!("{dev} scheduler"),
            host.read(&format!("{q}/scheduler"))
                .map(|s| selected(&s).unwrap_or(&s).to_owned()),
            "none",
            |c| c == "none",
            &format!("echo none > /sys/block/{dev}/queue/scheduler"),
        ));
        if dev.starts_with("nvme") {
            out.push(finding(
                &format!("{dev} nomerges"),
                host.read(&format!("{q}/nomerges")),
                "2",
                |c| c == "2",
                &format!("echo 2 > /sys/block/{dev}/queue/nomerges"),
            ));
        }
    }
    out
}

/// Whether irqbalance runs: it moves NIC and NVMe interrupts onto the cores that run shards.
fn irqbalance(host: &Host) -> Finding {
    let running = host
        .list("proc")
        .iter()
        .filter(|p| p.chars().all(|c| c.is_ascii_digit()))
        .any(|p| host.read(&format!("proc/{p}/comm")).as_deref() == Some("irqbalance"));
    let readable = !host.list("proc").is_empty();
    finding(
        "irqbalance (IRQ affinity)",
        readable.then(|| if running { "running" } else { "not running" }.to_owned()),
        "not running; NIC/NVMe IRQs pinned by hand",
        |c| c == "not running",
        "systemctl disable --now irqbalance; write each NIC/NVMe IRQ's cores to \
         /proc/irq/N/smp_affinity_list (see tuning.md)",
    )
}

/// Reads every setting tuning.md makes a recommendation for.
pub fn check(host: &Host) -> Vec<Finding> {
    let mut f = vec![
        cpu_governor(host),
        thp(host),
        sysctl(host, "vm.swappiness", "<= 1", |v| v <= 1, "1"),
        sysctl(host, "vm.dirty_background_ratio", "<= 5", |v| v <= 5, "5"),
        sysctl(host, "vm.dirty_ratio", ">= 40", |v| v >= 40, "60"),
        sysctl(
            host,
            "vm.max_map_count",
            ">= 262144",
            |v| v >= 262_144,
            "262144",
        ),
        sysctl(host, "net.core.somaxconn", ">= 4096", |v| v >= 4096, "4096"),
        sysctl(
            host,
            "net.core.rmem_max",
            ">= 16777216",
            |v| v >= 16 << 20,
            "16777216",
        ),
        sysctl(
            host,
            "net.core.wmem_max",
            ">= 16777216",
            |v| v >= 16 << 20,
            "16777216",
        ),
        sysctl(host, "kernel.io_uring_disabled", "0", |v| v == 0, "0"),
        memlock(host),
        nofile(host),
        irqbalance(host),
    ];
    // kernel.io_uring_disabled exists from Linux 6.6 only; older kernels always allow io_uring.
    if let Some(io) = f
        .iter_mut()
        .find(|x| x.setting == "kernel.io_uring_disabled")
    {
        if io.verdict == Verdict::Unknown {
            io.verdict = Verdict::Ok;
            io.current = "absent (kernel < 6.6: io_uring enabled)".into();
        }
    }
    f.extend(disks(host));
    f
}

/// The report `tidelog tune --check` prints.
pub fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    let width = findings.iter().map(|f| f.setting.len()).max().unwrap_or(10);
    for f in findings {
        let mark = match f.verdict {
            Verdict::Ok => "ok    ",
            Verdict::Change => "CHANGE",
            Verdict::Unknown => "?     ",
        };
        let _ = writeln!(
            out,
            "{mark}  {:width$}  now: {}  recommended: {}",
            f.setting, f.current, f.recommended
        );
        if f.verdict == Verdict::Change {
            let _ = writeln!(out, "        {:width$}  -> {}", "", f.how);
        }
    }
    let changes = findings
        .iter()
        .filter(|f| f.verdict == Verdict::Change)
        .count();
    let _ = writeln!(
        out,
        "\n{changes} setting(s) differ from tuning.md's recommendations; nothing was changed."
    );
    out
}

/// Runs the check on this host and prints the report.
pub fn run_check() -> std::process::ExitCode {
    print!("{}", render(&check(&Host::new(Path::new("/")))));
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(root: &Path, path: &str, text: &str) {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn verdict(f: &[Finding], setting: &str) -> Verdict {
        f.iter()
            .find(|x| x.setting == setting)
            .unwrap_or_else(|| panic!("{setting} missing"))
            .verdict
    }

    #[test]
    fn each_setting_is_judged_against_the_recommendation() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        put(r, "proc/sys/vm/swappiness", "60\n");
        put(r, "proc/sys/vm/dirty_ratio", "60\n");
        put(r, "proc/sys/net/core/somaxconn", "4096\n");
        put(
            r,
            "sys/kernel/mm/transparent_hugepage/enabled",
            "[always] madvise never\n",
        );
        put(
            r,
            "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
            "performance\n",
        );
        put(
            r,
            "sys/devices/system/cpu/cpu1/cpufreq/scaling_governor",
            "powersave\n",
        );
        put(
            r,
            "sys/block/nvme0n1/queue/scheduler",
            "[mq-deadline] none\n",
        );
        put(r, "sys/block/nvme0n1/queue/nomerges", "2\n");
        put(r, "sys/block/loop0/queue/scheduler", "[none]\n");
        put(
            r,
            "proc/self/limits",
            "Limit                     Soft Limit           Hard Limit           Units\n\
             Max open files            1024                 524288               files\n\
             Max locked memory         unlimited            unlimited            bytes\n",
        );
        put(r, "proc/42/comm", "irqbalance\n");
        let f = check(&Host::new(r));
        assert_eq!(verdict(&f, "vm.swappiness"), Verdict::Change);
        assert_eq!(verdict(&f, "vm.dirty_ratio"), Verdict::Ok);
        assert_eq!(verdict(&f, "vm.dirty_background_ratio"), Verdict::Unknown);
        assert_eq!(verdict(&f, "net.core.somaxconn"), Verdict::Ok);
        assert_eq!(verdict(&f, "transparent_hugepage"), Verdict::Change);
        assert_eq!(verdict(&f, "cpu governor"), Verdict::Change);
        assert_eq!(verdict(&f, "nvme0n1 scheduler"), Verdict::Change);
        assert_eq!(verdict(&f, "nvme0n1 nomerges"), Verdict::Ok);
        assert_eq!(verdict(&f, "memlock limit (RLIMIT_MEMLOCK)"), Verdict::Ok);
        assert_eq!(
            verdict(&f, "open files limit (RLIMIT_NOFILE)"),
            Verdict::Change
        );
        assert_eq!(verdict(&f, "irqbalance (IRQ affinity)"), Verdict::Change);
        assert_eq!(verdict(&f, "kernel.io_uring_disabled"), Verdict::Ok);
        assert!(!f.iter().any(|x| x.setting.starts_with("loop0")));
        let text = render(&f);
        assert!(text.contains("sysctl -w vm.swappiness=1"), "{text}");
        assert!(text.contains("nothing was changed"), "{text}");
    }
}
