//! The `registry` admin CLI's contract with scripts: help and exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

const REGISTRY: &str = env!("CARGO_BIN_EXE_registry");

#[test]
fn help_lists_every_command() {
    let out = Command::new(REGISTRY).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for cmd in [
        "assign", "remap", "drain", "undrain", "show", "gateways", "history", "serve", "--json",
    ] {
        assert!(text.contains(cmd), "--help does not mention {cmd}: {text}");
    }
}

#[test]
fn a_bad_command_line_exits_2() {
    let out = Command::new(REGISTRY)
        .args(["remap", "--device", "d"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn serve_without_walkthrough_is_the_secure_mode_and_needs_the_signing_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(REGISTRY)
        .args(["serve", "--plaintext", "--broker", "127.0.0.1:1"])
        .arg("--store")
        .arg(dir.path().join("registry"))
        .arg("--signing-key")
        .arg(dir.path().join("platform.key"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read the signing key"), "{err}");
    assert!(err.contains("--walkthrough"), "{err}");
}
