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
fn an_unreachable_platform_exits_3_with_a_message() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(VERIFIER)
        .args([
            "--broker",
            &format!("127.0.0.1:{port}"),
            "--timeout",
            "1",
            "list",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no connection"));
}

#[test]
fn a_bad_command_line_exits_2() {
    let out = Command::new(VERIFIER)
        .args(["enroll", "--uuid"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
