//! `tidelog configs --markdown` prints the config tables rendered from the schema, the same
//! blocks README.md carries between its `<!-- broker-configs -->` and `<!-- topic-configs -->`
//! markers.

use std::process::Command;

#[test]
fn configs_markdown_prints_the_readme_tables() {
    let out = Command::new(env!("CARGO_BIN_EXE_tidelog"))
        .args(["configs", "--markdown"])
        .output()
        .expect("run tidelog");
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).expect("utf-8");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    for marker in ["broker-configs", "topic-configs"] {
        let begin = format!("<!-- {marker} -->\n");
        let start = readme.find(&begin).expect("begin marker") + begin.len();
        let len = readme[start..]
            .find(&format!("<!-- /{marker} -->"))
            .expect("end marker");
        let block = &readme[start..start + len];
        assert!(block.lines().count() > 10, "{marker}: {block}");
        assert!(
            printed.contains(block),
            "{marker} differs:\n{block}\nprinted:\n{printed}"
        );
    }
    assert!(printed.contains("| `log.retention.ms` | long | null | dynamic | `retention.ms` |"));
}
