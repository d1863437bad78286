//! The `stox` command line: `stox check-config --config FILE` accepts the sample config and
//! rejects broken ones with a non-zero exit and a message naming the problem.

use std::fs;

use stox_tests::stox::check_config;
use stox_tests::workspace_root;

#[test]
fn check_config_accepts_the_sample_config() {
    let out = check_config(&workspace_root().join("examples/stox.toml")).unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_config_rejects_an_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let sample = fs::read_to_string(workspace_root().join("examples/stox.toml")).unwrap();
    let broken = sample.replace("[admin]", "[admin]\nfavourite_colour = \"blue\"");
    let path = dir.path().join("broken.toml");
    fs::write(&path, broken).unwrap();
    let out = check_config(&path).unwrap();
    assert!(!out.status.success(), "an unknown key must be refused");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("favourite_colour"),
        "the error names the key: {text}"
    );
}

#[test]
fn check_config_rejects_a_missing_file() {
    let out = check_config(&workspace_root().join("examples/does-not-exist.toml")).unwrap();
    assert!(!out.status.success());
}
