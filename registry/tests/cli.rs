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
        "assign", "remap", "drain", "undrain", "show", "gateways", "history", "--json",
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
