//! Error codes in tests are written by name (`ErrorCode::InvalidRecord.code()`, Python's
//! `KafkaError.INVALID_CONFIG`), never as bare numbers (`87`): a number says nothing to the
//! reader and hides a wrong expectation. This test reads the test sources and fails on a new
//! bare code. `0`, Kafka's "no error", has no `ErrorCode` variant and stays a number.
//!
//! What it finds, by reading source text (no parser, so it is deliberately narrow):
//! - an `assert_eq!` / `assert_ne!` whose one side names an error code (ends in `error_code`,
//!   `.error`, `code` or `.code()`) and whose other side is a nonzero integer literal, also
//!   element by element when both sides are tuples, and the same comparison written with
//!   `==` or `!=` on one line; a call of a helper of the same file declared `-> i16` (or the
//!   `.0` of one declared `-> (i16, ..)`, or a `let` closure whose body ends in `error_code`)
//!   counts as naming a code;
//! - a `const` of type `i16` with a nonzero literal value whose name is (the start of) one of
//!   Kafka's error names (`const UNKNOWN_TOPIC: i16 = 3`);
//! - in Python tests, `code() ==` / `error_code ==` followed by a nonzero number.

use std::path::{Path, PathBuf};

use kafka_protocol::error::ResponseError as ErrorCode;

/// Kafka's error names in SCREAMING_SNAKE_CASE (`UNKNOWN_TOPIC_OR_PARTITION`).
fn kafka_error_names() -> Vec<String> {
    (-1..=200)
        .filter_map(ErrorCode::try_from_code)
        .filter(|e| !matches!(e, ErrorCode::Unknown(_)))
        .map(|e| screaming_snake(&format!("{e:?}")))
        .collect()
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The text of `src` from `open` (just after an opening parenthesis) to its matching
/// parenthesis, skipping string and char literals.
fn balanced(src: &str, open: usize) -> Option<&str> {
    let b = src.as_bytes();
    let mut depth = 1;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'\'' if i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') => {
                // A char literal ('(' or '\n'), not a lifetime.
                i += if b[i + 1] == b'\\' { 3 } else { 2 };
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&src[open..i]);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Splits `args` at its top-level commas.
fn top_level_args(args: &str) -> Vec<&str> {
    let b = args.as_bytes();
    let (mut out, mut depth, mut start, mut i) = (Vec::new(), 0i32, 0, 0);
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b',' if depth == 0 => {
                out.push(args[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    let last = args[start..].trim();
    if !last.is_empty() {
        out.push(last);
    }
    out
}

/// The elements of a parenthesised tuple expression, or `None` if `e` is not one.
fn tuple_elements(e: &str) -> Option<Vec<&str>> {
    let inner = e.strip_prefix('(')?;
    let body = balanced(inner, 0)?;
    (body.len() + 1 == inner.len()).then(|| top_level_args(body))
}

fn names_an_error_code(e: &str) -> bool {
    let e = e.trim().trim_start_matches('*');
    ["error_code", ".error", "code", ".code()", "error_code()"]
        .iter()
        .any(|s| e.ends_with(s))
}

/// The helpers of one test file that return a code: `fn produce(..) -> i16` (the call is the
/// code) and `fn fetch(..) -> (i16, ..)` (its `.0` is).
fn code_helpers(src: &str) -> Vec<(String, bool)> {
    let mut helpers = Vec::new();
    for (pos, _) in src.match_indices("fn ") {
        let rest = &src[pos + 3..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let Some(sig) = rest.split('{').next() else {
            continue;
        };
        let Some((_, ret)) = sig.rsplit_once("->") else {
            continue;
        };
        let ret = ret.trim();
        if ret == "i16" {
            helpers.push((name, false));
        } else if ret.starts_with("(i16,") {
            helpers.push((name, true));
        }
    }
    // Closures whose body ends in a response's `error_code`: `let attempt = |c, ..| { ..
    // c.call(&req, 7).topics[0].error_code };`.
    for (pos, _) in src.match_indices("let ") {
        let rest = &src[pos + 4..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let Some(closure) = rest[name.len()..].trim_start().strip_prefix("= |") else {
            continue;
        };
        let Some(open) = closure.find('{') else {
            continue;
        };
        if let Some(body) = balanced(closure, open + 1) {
            if body.trim_end().ends_with("error_code") {
                helpers.push((name, false));
            }
        }
    }
    helpers
}

/// Whether `e` is a call of one of `helpers` that yields a code.
fn calls_a_code_helper(e: &str, helpers: &[(String, bool)]) -> bool {
    let e = e.trim();
    helpers.iter().any(|(name, tuple)| {
        let Some(args) = e.strip_prefix(&format!("{name}(")) else {
            return false;
        };
        let Some(inner) = balanced(args, 0) else {
            return false;
        };
        let after = &args[inner.len() + 1..];
        if *tuple {
            after == ".0"
        } else {
            after.is_empty()
        }
    })
}

fn nonzero_literal(e: &str) -> bool {
    let e = e.trim().trim_start_matches('-');
    let digits = e.trim_end_matches("i16");
    !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) && digits != "0"
}

/// The bare error codes in one Rust source, as (line, what) pairs.
fn bare_codes_in_rust(src: &str, error_names: &[String]) -> Vec<(usize, String)> {
    let line_of = |pos: usize| src[..pos].matches('\n').count() + 1;
    let mut found = Vec::new();
    let helpers = code_helpers(src);
    for mac in ["assert_eq!(", "assert_ne!("] {
        for (pos, _) in src.match_indices(mac) {
            let Some(args) = balanced(src, pos + mac.len()) else {
                continue;
            };
            let args = top_level_args(args);
            if args.len() < 2 {
                continue;
            }
            let pairs: Vec<(&str, &str)> = match (tuple_elements(args[0]), tuple_elements(args[1]))
            {
                (Some(a), Some(b)) if a.len() == b.len() => a.into_iter().zip(b).collect(),
                _ => vec![(args[0], args[1])],
            };
            for (a, b) in pairs {
                let code = |e: &str| names_an_error_code(e) || calls_a_code_helper(e, &helpers);
                if (code(a) && nonzero_literal(b)) || (code(b) && nonzero_literal(a)) {
                    found.push((line_of(pos), format!("{a} vs {b}")));
                }
            }
        }
    }
    for (n, line) in src.lines().enumerate() {
        for op in [" == ", " != "] {
            let Some((lhs, rhs)) = line.split_once(op) else {
                continue;
            };
            let number: String = rhs.chars().take_while(char::is_ascii_digit).collect();
            if names_an_error_code(lhs) && nonzero_literal(&number) {
                found.push((n + 1, line.trim().to_string()));
            }
        }
    }
    for (pos, _) in src.match_indices("const ") {
        let rest = &src[pos + "const ".len()..];
        let Some((name, rest)) = rest.split_once(':') else {
            continue;
        };
        let Some(value) = rest.trim_start().strip_prefix("i16") else {
            continue;
        };
        let Some(value) = value.trim_start().strip_prefix('=') else {
            continue;
        };
        let value = value.split(';').next().unwrap_or("");
        let name = name.trim();
        if nonzero_literal(value) && error_names.iter().any(|n| n.starts_with(name)) {
            found.push((line_of(pos), format!("const {name} = {}", value.trim())));
        }
    }
    found
}

/// The bare error codes in one Python source.
fn bare_codes_in_python(src: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in src.lines().enumerate() {
        for key in ["code() ==", "error_code =="] {
            if let Some(i) = line.find(key) {
                let rhs = line[i + key.len()..].trim_start();
                let number: String = rhs.chars().take_while(|c| c.is_ascii_digit()).collect();
                if !number.is_empty() && number != "0" {
                    found.push((n + 1, line.trim().to_string()));
                }
            }
        }
    }
    found
}

fn sources(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    files
}

#[test]
fn tests_name_their_error_codes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let names = kafka_error_names();
    let mut bad = Vec::new();
    for path in sources(&root, "rs") {
        if path
            .file_name()
            .is_some_and(|n| n == "error_codes_named.rs")
        {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap();
        for (line, what) in bare_codes_in_rust(&src, &names) {
            bad.push(format!("{}:{line}: {what}", path.display()));
        }
    }
    let python = root.join("python");
    if python.is_dir() {
        for path in sources(&python, "py") {
            let src = std::fs::read_to_string(&path).unwrap();
            for (line, what) in bare_codes_in_python(&src) {
                bad.push(format!("{}:{line}: {what}", path.display()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "bare error codes in tests; write ErrorCode::X.code() (Python: KafkaError.X):\n{}",
        bad.join("\n")
    );
}

/// The scanner itself: it catches each shape it claims to and leaves names and `0` alone.
#[test]
fn the_scanner_finds_bare_codes_and_only_those() {
    let names = kafka_error_names();
    assert!(names.contains(&"UNKNOWN_TOPIC_OR_PARTITION".to_string()));
    let caught = |src: &str| bare_codes_in_rust(src, &names).len();
    assert_eq!(caught("assert_eq!(r.error_code, 87);"), 1);
    assert_eq!(
        caught("assert_eq!(87, r.topics[0].error_code, \"v{v}\");"),
        1
    );
    assert_eq!(
        caught("assert_eq!(\n  c.call(&req, 7).results[0].error_code,\n  37,\n);"),
        1
    );
    assert_eq!(
        caught("assert_eq!((p.error_code, p.low), (16, before));"),
        1
    );
    assert_eq!(caught("assert_ne!(e.code(), 35);"), 1);
    assert_eq!(caught("if r.error_code == 81 {"), 1);
    let helpers = "fn produce(c: &mut Raw) -> i16 { 0 }\nfn fetch(c: &mut Raw) -> (i16, i64) { (0, 0) }\nfn ask(c: &mut Raw) -> (i64, i64) { (0, 0) }\n";
    assert_eq!(
        caught(&format!("{helpers}assert_eq!(produce(&mut c), 87);")),
        1
    );
    assert_eq!(
        caught(&format!("{helpers}assert_eq!(fetch(&mut c).0, 1, \"x\");")),
        1
    );
    assert_eq!(
        caught(&format!("{helpers}assert_eq!(fetch(&mut c).1, 1);")),
        0
    );
    assert_eq!(
        caught(&format!("{helpers}assert_eq!(ask(&mut c).0, 6);")),
        0
    );
    assert_eq!(caught("if r.error_code != 0 {"), 0);
    assert_eq!(caught("const UNKNOWN_TOPIC: i16 = 3;"), 1);
    assert_eq!(caught("assert_eq!(r.error_code, 0);"), 0, "no error is 0");
    assert_eq!(
        caught("assert_eq!(c.call(&req, 7).topics[0].error_code, OK);"),
        0
    );
    assert_eq!(
        caught("assert_eq!(r.error_code, ErrorCode::InvalidRecord.code(), \"(87)\");"),
        0
    );
    assert_eq!(caught("assert_eq!((p.error_code, p.offset), (0, 16));"), 0);
    assert_eq!(
        caught("const API_VERSION: i16 = 3;"),
        0,
        "not an error name"
    );
    let py = |src: &str| bare_codes_in_python(src).len();
    assert_eq!(py("assert e.code() == 40"), 1);
    assert_eq!(py("assert e.code() == KafkaError.INVALID_CONFIG"), 0);
    assert_eq!(py("assert code == 0"), 0);
}
