//! The `verifier` admin CLI's contract with scripts: help and exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

const VERIFIER: &str = env!("CARGO_BIN_EXE_verifier");

#[test]
fn help_lists_every_command() {
    let out = Command::new(VERIFIER).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for cmd in ["serve", "enroll", "import", "remove", "show", "list"] {
        assert!(text.contains(cmd), "--help does not mention {cmd}: {text}");
    }
}

#[test]
fn a_bad_command_line_exits_2() {
    let out = Command::new(VERIFIER)
        .args(["enroll", "--uuid"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn serve_without_walkthrough_is_the_secure_mode_and_needs_the_signing_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(VERIFIER)
        .args(["serve", "--plaintext", "--broker", "127.0.0.1:1"])
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--signing-key")
        .arg(dir.path().join("platform.key"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read the signing key"), "{err}");
    assert!(err.contains("--walkthrough"), "{err}");
}

#[test]
fn serve_refuses_a_store_that_is_not_postgres() {
    let out = Command::new(VERIFIER)
        .args(["serve", "--walkthrough", "--store", "mysql://x/y"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("postgres://"), "{err}");
}
