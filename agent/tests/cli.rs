//! The command line: `outpost check` exit codes and messages.

use std::process::Command;

fn check(config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        config.replace("{DATA}", &dir.path().join("data").display().to_string()),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

#[test]
fn valid_config_checks_ok() {
    let (code, out) = check(
        "[agent]\ndata_dir = \"{DATA}\"\n[plugins]\nactive = [\"forward\"]\n\
         [plugins.settings.forward]\nsink = \"s\"\n[sinks.s]\ntype = \"http\"\nurl = \"http://127.0.0.1:9/x\"\n",
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("forward (native"), "{out}");
}

#[test]
fn bad_config_exits_2_naming_file_and_key() {
    let (code, out) =
        check("[agent]\ndata_dir = \"{DATA}\"\n[sinks.s]\ntype = \"http\"\nurl = \"ftp://x\"\n");
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("agent.toml") && out.contains("sinks.s.url"),
        "{out}"
    );

    let (code, out) = check("[agent]\ndata_dir = \"{DATA}\"\nbogus = 1\n");
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("bogus"), "{out}");
}

#[test]
fn missing_config_file_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(["check", "--config", "/nonexistent/outpost.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/outpost.toml"));
}
