//! `tidelog serve` as a plain child process, for tests that need what [`super::Broker`] hides:
//! its exact exit status and stderr, a lower RLIMIT_NOFILE, or a start that is meant to fail.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// A `tidelog serve` child whose stderr lines are kept for the test to inspect.
pub struct Serve {
    pub child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    ready: mpsc::Receiver<SocketAddr>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    pub addr: Option<SocketAddr>,
}

/// A `tidelog serve --listen LISTEN --data-dir DIR ARGS...` command. `nofile`: RLIMIT_NOFILE
/// (soft and hard, so that the broker cannot raise it) for the child only.
pub fn command(listen: &str, data_dir: &Path, args: &[&str], nofile: Option<u64>) -> Command {
    let mut cmd = Command::new(super::tidelog_bin());
    cmd.arg("serve")
        .args(["--listen", listen])
        .arg("--data-dir")
        .arg(data_dir)
        .args(args);
    if let Some(n) = nofile {
        // SAFETY: setrlimit is async-signal-safe and only affects the child being spawned.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: n,
                    rlim_max: n,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd
}

impl Serve {
    /// Spawns `cmd`, forwarding its output to the test's stderr and keeping stderr's lines.
    pub fn spawn(mut cmd: Command) -> Serve {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run tidelog serve");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = lines.clone();
        let stderr = child.stderr.take().expect("stderr is piped");
        let stderr_reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                eprintln!("[tidelog] {line}");
                kept.lock().unwrap().push(line);
            }
        });
        let (tx, ready) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                eprintln!("[tidelog] {line}");
                if let Some(a) = line.strip_prefix("listening on ") {
                    if let Ok(a) = a.trim().parse() {
                        let _ = tx.send(a);
                    }
                }
            }
        });
        Serve {
            child,
            lines,
            ready,
            stderr_reader: Some(stderr_reader),
            addr: None,
        }
    }

    /// Waits for the `listening on` line; `None` if the broker exited (or hung) first.
    pub fn wait_listening(&mut self) -> Option<SocketAddr> {
        let addr = self.ready.recv_timeout(super::START_TIMEOUT).ok();
        self.addr = addr;
        addr
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait for tidelog") {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM (a clean shutdown), then the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        self.wait_exit(super::STOP_TIMEOUT)
            .expect("broker exits after SIGTERM")
    }

    /// Every stderr line so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Stderr in full, once the process has exited (the reader thread ends at EOF).
    pub fn stderr_after_exit(&mut self) -> String {
        assert!(
            self.child.try_wait().expect("wait").is_some(),
            "the broker has exited"
        );
        if let Some(r) = self.stderr_reader.take() {
            let _ = r.join();
        }
        self.stderr_lines().join("\n")
    }

    /// `VmHWM` (peak resident memory) of the process, in KiB.
    pub fn vm_hwm_kib(&self) -> u64 {
        status_field(self.child.id(), "VmHWM:")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A numeric field (KiB) of /proc/PID/status.
pub fn status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

/// Open descriptors of a process.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .count()
}

/// A fresh temporary directory for a broker's data.
pub fn data_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("tidelog-test-")
        .tempdir()
        .expect("create a temporary data directory")
}
