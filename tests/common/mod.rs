//! Integration-test harness: runs the real `tidelog` binary as a broker, the way a user would,
//! and drives it with real clients (our CLI here; kafka-python and kcat in tests/python).
//!
//! The broker is started as `tidelog serve --listen 127.0.0.1:0 --data-dir <tempdir>` and
//! announces readiness with exactly one stdout line, `listening on 127.0.0.1:PORT`. Its other
//! output is forwarded through `eprintln!`, so the test harness shows it for failing tests only.

// Each tests/*.rs file compiles this module separately and uses a different part of it.
#![allow(dead_code)]

pub mod cluster;
pub mod netns;
pub mod raw;
pub mod txn;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a broker may take to print its `listening on` line.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a broker may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The path of the `tidelog` binary under test.
pub fn tidelog_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tidelog")
}

/// How to start a broker.
#[derive(Debug, Clone, Default)]
pub struct BrokerOptions {
    /// `--shards N`; the broker's default when `None`.
    pub shards: Option<usize>,
    /// `--set key=value` settings.
    pub sets: Vec<(String, String)>,
    /// `--config FILE`.
    pub config_file: Option<std::path::PathBuf>,
    /// No `--listen`: the config file's `listeners` say where (its client listener's port
    /// must then be fixed, not 0, for a restart to find it again).
    pub listen_from_config: bool,
    /// Environment variables of the broker process (`TIDELOG_CRASH_POINT`).
    pub envs: Vec<(String, String)>,
}

impl BrokerOptions {
    /// Adds a `--set key=value`.
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.sets.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Sets `--config`.
    pub fn config_file(mut self, path: &Path) -> Self {
        self.config_file = Some(path.to_owned());
        self
    }

    /// Leaves `--listen` out, so that the config file's `listeners` apply.
    pub fn listen_from_config(mut self) -> Self {
        self.listen_from_config = true;
        self
    }

    /// Sets `--shards`.
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = Some(n);
        self
    }

    /// Sets an environment variable of the broker process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// A running (or stopped) broker process with its own data directory. Killed on drop.
pub struct Broker {
    child: Option<Child>,
    data_dir: tempfile::TempDir,
    options: BrokerOptions,
    /// The address the broker listens on; kept across restarts.
    addr: SocketAddr,
}

impl Broker {
    /// Starts a broker with default options on a fresh data directory.
    pub fn start() -> Broker {
        Broker::start_with(BrokerOptions::default())
    }

    /// Starts a broker with `options` on a fresh data directory and an OS-chosen port.
    pub fn start_with(options: BrokerOptions) -> Broker {
        let data_dir = tempfile::Builder::new()
            .prefix("tidelog-test-")
            .tempdir()
            .expect("create a temporary data directory");
        let (child, addr) = spawn(data_dir.path(), &options, "127.0.0.1:0");
        Broker {
            child: Some(child),
            data_dir,
            options,
            addr,
        }
    }

    /// `127.0.0.1:PORT`, for `--bootstrap-server`.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// The broker's data directory.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The broker process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the broker with SIGTERM (a clean shutdown) and returns its exit status.
    ///
    /// Panics if it has not exited within [`STOP_TIMEOUT`] (after killing it).
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("broker is running");
        signal(&child, libc::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("wait for broker") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("broker did not exit within {STOP_TIMEOUT:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the broker with SIGKILL (a crash: no shutdown code runs) and reaps it.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("broker is running");
        signal(&child, libc::SIGKILL);
        let _ = child.wait();
    }

    /// Waits up to `timeout` for the broker to exit by itself (a crash point), reaping it.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut().expect("broker is running");
            if let Some(status) = child.try_wait().expect("wait for broker") {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Forgets the environment variables set with [`BrokerOptions::env`], for the next start.
    pub fn clear_envs(&mut self) {
        self.options.envs.clear();
    }

    /// Starts the stopped (or killed) broker again on the same data directory and port.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "broker is still running");
        let (child, addr) = spawn(self.data_dir.path(), &self.options, &self.addr.to_string());
        assert_eq!(
            addr, self.addr,
            "a restarted broker listens where it did before"
        );
        self.child = Some(child);
    }

    /// Clean restart: SIGTERM, wait, start on the same data directory and port.
    pub fn restart(&mut self) {
        let status = self.stop();
        assert!(status.success(), "broker exited with {status} on SIGTERM");
        self.start_again();
    }

    /// Crash restart: SIGKILL, then start on the same data directory and port.
    pub fn kill_and_restart(&mut self) {
        self.kill();
        self.start_again();
    }

    /// A `tidelog` client command aimed at this broker (`--bootstrap-server` appended).
    pub fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(tidelog_bin());
        cmd.args(args).args(["--bootstrap-server", &self.addr()]);
        cmd
    }

    /// Runs a client command with `stdin` as its input and returns its output.
    pub fn run_cli(&self, args: &[&str], stdin: &[u8]) -> Output {
        run_with_stdin(self.cli(args), stdin)
    }

    /// Runs a client command that must succeed, returning its stdout.
    pub fn cli_ok(&self, args: &[&str], stdin: &[u8]) -> String {
        let out = self.run_cli(args, stdin);
        assert!(
            out.status.success(),
            "tidelog {args:?} failed with {}:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("CLI output is UTF-8")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `cmd` with `stdin` piped in, collecting its output.
pub fn run_with_stdin(mut cmd: Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tidelog");
    let mut pipe = child.stdin.take().expect("stdin is piped");
    let input = stdin.to_vec();
    // Write from a thread: a command that prints while it reads must not deadlock on full pipes.
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait for tidelog");
    let _ = writer.join();
    out
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on the pid of a child we have not yet reaped, so it cannot be reused.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

/// Spawns `tidelog serve` and waits for its `listening on` line.
fn spawn(data_dir: &Path, options: &BrokerOptions, listen: &str) -> (Child, SocketAddr) {
    let mut cmd = Command::new(tidelog_bin());
    cmd.arg("serve").arg("--data-dir").arg(data_dir);
    if !options.listen_from_config {
        cmd.args(["--listen", listen]);
    }
    if let Some(n) = options.shards {
        cmd.args(["--shards", &n.to_string()]);
    }
    if let Some(f) = &options.config_file {
        cmd.arg("--config").arg(f);
    }
    for (k, v) in &options.sets {
        cmd.args(["--set", &format!("{k}={v}")]);
    }
    cmd.envs(options.envs.iter().map(|(k, v)| (k, v)));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tidelog_bin()));
    forward_lines(child.stderr.take().expect("stderr is piped"), None);
    let (tx, rx) = mpsc::channel();
    forward_lines(child.stdout.take().expect("stdout is piped"), Some(tx));
    match rx.recv_timeout(START_TIMEOUT) {
        Ok(addr) => (child, addr),
        Err(e) => {
            let _ = child.kill();
            let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
            let why = match e {
                mpsc::RecvTimeoutError::Timeout => {
                    format!("did not print `listening on` within {START_TIMEOUT:?}")
                }
                mpsc::RecvTimeoutError::Disconnected => {
                    format!("exited ({status}) before listening")
                }
            };
            panic!("broker `{cmd:?}` {why}; its output is above");
        }
    }
}

/// Forwards a broker output stream line by line to the test's stderr; on stdout, the first
/// `listening on ADDR` line is also parsed and sent to `ready`.
fn forward_lines(
    stream: impl std::io::Read + Send + 'static,
    ready: Option<mpsc::Sender<SocketAddr>>,
) {
    std::thread::spawn(move || {
        let mut ready = ready;
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            eprintln!("[tidelog] {line}");
            if let Some(addr) = line
                .strip_prefix("listening on ")
                .and_then(|a| a.trim().parse().ok())
            {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(addr);
                }
            }
        }
    });
}

/// Polls `f` until it returns `Some`, for up to `timeout`.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The readiness line is found among other output and parsed; a process that exits
    /// without it closes the channel instead of leaving the caller waiting.
    #[test]
    fn the_listening_line_is_parsed() {
        let mut child = Command::new("sh")
            .args([
                "-c",
                "echo starting; echo listening on 127.0.0.1:4321; echo more",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        forward_lines(child.stdout.take().unwrap(), Some(tx));
        let addr = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(addr.to_string(), "127.0.0.1:4321");
        child.wait().unwrap();

        let mut child = Command::new("true").stdout(Stdio::piped()).spawn().unwrap();
        let (tx, rx) = mpsc::channel::<SocketAddr>();
        forward_lines(child.stdout.take().unwrap(), Some(tx));
        child.wait().unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
    }
}

/// `tidelog serve` as a plain child process (exit status, stderr, RLIMIT_NOFILE).
pub mod serve;
