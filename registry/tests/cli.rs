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

/// A CA certificate that no platform uses (made once with openssl):
/// enough for a client to start TLS with, which is all an unreachable
/// platform lets it do.
const SOME_CA: &str = "\
-----BEGIN CERTIFICATE-----
MIIBxzCCAW2gAwIBAgIUT2xyvwZ61RuvEKYpiVGU127p6yIwCgYIKoZIzj0EAwIw
OTEXMBUGA1UECgwOcGxhdGZvcm0gdGVzdHMxHjAcBgNVBAMMFWEgQ0Egbm8gcGxh
dGZvcm0gdXNlczAeFw0yNjEyMDExNTM1NDFaFw0zNjExMjgxNTM1NDFaMDkxFzAV
BgNVBAoMDnBsYXRmb3JtIHRlc3RzMR4wHAYDVQQDDBVhIENBIG5vIHBsYXRmb3Jt
IHVzZXMwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQwYupbliDuTizFkW2aKVJ9
2BtpSj3ginV/XnLWU8mrlnisfukyviKRft1NAoUGo8tdaAQtWXqBNT/up1xTRqL4
o1MwUTAdBgNVHQ4EFgQUvjBQ1dWVggH5EJhiZdN82yIOSwIwHwYDVR0jBBgwFoAU
vjBQ1dWVggH5EJhiZdN82yIOSwIwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQD
AgNIADBFAiASpVNc6kODKrRMbrrOj0OGIDT/j8vgml7tHKgCBYREwQIhAJCIl+U8
0QqM5KU/nLBqDBmn/CJUxf/h/lAACMjHKqwh
-----END CERTIFICATE-----
";

/// A loopback port nobody listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `registry --broker 127.0.0.1:PORT --timeout 1 gateways` with `args` first,
/// in `cwd`: (exit code, stderr).
fn unreachable(cwd: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(REGISTRY)
        .current_dir(cwd)
        .args(args)
        .args(["--broker", &format!("127.0.0.1:{}", closed_port())])
        .args(["--timeout", "1", "gateways"])
        .env_remove("PLATFORM_CAFILE")
        .env_remove("PLATFORM_PLAINTEXT")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn an_unreachable_platform_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, SOME_CA).unwrap();
    // Over TLS, the default, trusting a CA; and in plaintext.
    for args in [&["--cafile", ca.to_str().unwrap()][..], &["--plaintext"]] {
        let (code, stderr) = unreachable(dir.path(), args);
        assert_eq!(code, Some(3), "{args:?}: {stderr}");
        assert!(stderr.contains("no connection"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_missing_ca_file_is_named_with_the_way_out() {
    // The default --cafile is data/ca.pem, relative to where it runs.
    let dir = tempfile::tempdir().unwrap();
    let (code, stderr) = unreachable(dir.path(), &[]);
    // An unreadable input file, as in every binary: not an outage.
    assert_eq!(code, Some(2), "{stderr}");
    for needed in ["data/ca.pem", "--cafile", "--plaintext"] {
        assert!(stderr.contains(needed), "{needed}: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_bad_command_line_exits_2() {
    let out = Command::new(REGISTRY)
        .args(["remap", "--device", "d"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
