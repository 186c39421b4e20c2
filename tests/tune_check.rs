//! `tidelog tune --check` on this host: it runs, reads the settings tuning.md covers, says for
//! each whether it matches, and changes nothing.

mod common;

use std::process::Command;

#[test]
fn tune_check_reports_every_setting_and_changes_nothing() {
    let before = std::fs::read_to_string("/proc/sys/vm/swappiness").ok();
    let out = Command::new(common::tidelog_bin())
        .args(["tune", "--check"])
        .output()
        .expect("run tidelog tune --check");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for setting in [
        "cpu governor",
        "transparent_hugepage",
        "vm.swappiness",
        "vm.dirty_background_ratio",
        "vm.dirty_ratio",
        "net.core.somaxconn",
        "memlock limit",
        "irqbalance",
    ] {
        assert!(text.contains(setting), "{setting} missing from:\n{text}");
    }
    assert!(text.contains("nothing was changed"), "{text}");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/vm/swappiness").ok(),
        before
    );
}

#[test]
fn tune_without_check_is_refused() {
    let out = Command::new(common::tidelog_bin())
        .arg("tune")
        .output()
        .expect("run tidelog tune");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--check"));
}
