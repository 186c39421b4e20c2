//! Data files are not world-readable (issue 9.7): everything `tidelog serve` creates under its
//! data directory is 0640 (files) or 0750 (directories), so the broker's user writes, the
//! operator's group may read, and other local users see nothing. Before, files were 0644 under
//! a 0755 directory.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::serve::{command, data_dir, Serve};

fn cli(addr: &str, args: &[&str], stdin: &[u8]) {
    let mut cmd = Command::new(common::tidelog_bin());
    cmd.args(args).args(["--bootstrap-server", addr]);
    let out = common::run_with_stdin(cmd, stdin);
    assert!(out.status.success(), "tidelog {args:?}: {out:?}");
}

/// Every entry under `dir` (itself included), with its permission bits.
fn modes(dir: &Path, out: &mut Vec<(String, bool, u32)>) {
    let meta = std::fs::metadata(dir).unwrap();
    out.push((
        dir.display().to_string(),
        true,
        meta.permissions().mode() & 0o7777,
    ));
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let meta = e.metadata().unwrap();
        if meta.is_dir() {
            modes(&e.path(), out);
        } else {
            out.push((
                e.path().display().to_string(),
                false,
                meta.permissions().mode() & 0o7777,
            ));
        }
    }
}

#[test]
fn data_files_are_0640_and_directories_0750() {
    let tmp = data_dir();
    // A data directory the broker creates itself, so its mode is the broker's choice too.
    let dir = tmp.path().join("data");
    let mut serve = Serve::spawn(command("127.0.0.1:0", &dir, &["--shards", "1"], None));
    let addr = serve.wait_listening().expect("broker starts").to_string();
    cli(
        &addr,
        &["topic", "create", "modes", "--partitions", "2"],
        b"",
    );
    cli(
        &addr,
        &["produce", "modes", "--partition", "0"],
        b"a\nb\nc\n",
    );
    let status = serve.stop();
    assert!(status.success(), "clean shutdown: {status}");

    let mut all = Vec::new();
    modes(&dir, &mut all);
    assert!(
        all.iter().filter(|(_, is_dir, _)| !is_dir).count() >= 4,
        "segments, indexes and metadata were written: {all:?}"
    );
    for (path, is_dir, mode) in &all {
        let want = if *is_dir { 0o750 } else { 0o640 };
        assert_eq!(*mode, want, "{path} has mode {mode:o}, want {want:o}");
    }
}
