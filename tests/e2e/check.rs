//! `weft check` and `weft --version`: exit codes and messages.

use std::process::Command;

use crate::support::weft_bin;

fn check(config: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weft.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(weft_bin())
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_valid_configuration_checks_ok() {
    let (code, out, _) = check("[[service]]\nname = \"e\"\nkind = \"echo\"\nlisten = \"tcp:7\"\n");
    assert_eq!(code, Some(0));
    assert!(out.contains(": ok (1 service)"), "{out}");
}

#[test]
fn an_invalid_configuration_exits_1_naming_file_line_and_key() {
    let (code, _, err) =
        check("[[service]]\nname = \"web\"\nkind = \"http\"\nlisten = \"tcp:8080\"\n");
    assert_eq!(code, Some(1));
    assert!(
        err.contains(
            "weft.toml:3:8: service[0].kind: kind \"http\" is not available in this build"
        ),
        "{err}"
    );
    let (code, _, err) = check("[inspect]\nstall_after = \"soon\"\n");
    assert_eq!(code, Some(1));
    assert!(err.contains("weft.toml:2:15: inspect.stall_after"), "{err}");
}

#[test]
fn a_missing_file_or_argument_fails() {
    let out = Command::new(weft_bin())
        .args(["check", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = Command::new(weft_bin()).arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn version_prints_the_crate_version() {
    let out = Command::new(weft_bin()).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("weft {}", env!("CARGO_PKG_VERSION"))
    );
}
