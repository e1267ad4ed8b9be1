//! A program that uses the inspector pulls in none of the gateway's services or its
//! command line and configuration file handling.

use std::path::Path;
use std::process::Command;

/// Crates the inspector must never bring in.
const FORBIDDEN: [&str; 5] = ["weft-web", "weft-names", "hickory-proto", "clap", "toml"];

#[test]
fn the_inspector_depends_on_no_service_nor_the_gateways_cli_or_config() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    let out = Command::new(cargo)
        .args(["tree", "--offline", "-p", "weft-inspector", "-e", "normal"])
        .args(["--prefix", "none", "--format", "{p}"])
        .arg("--manifest-path")
        .arg(&manifest)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout).expect("cargo tree prints UTF-8");
    let names: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(
        names.contains(&"weft-inspector") && names.contains(&"weft-store"),
        "an unexpected tree:\n{tree}"
    );
    for name in FORBIDDEN {
        assert!(
            !names.contains(&name),
            "weft-inspector depends on {name}:\n{tree}"
        );
    }
}
