//! Builds the WASM plugins the end-to-end tests load, from `plugins/`, so that
//! `cargo test --workspace` needs no extra step. A nested cargo with its own target
//! directory (the outer build holds the lock on `target/`).

use std::path::{Path, PathBuf};
use std::process::Command;

const PLUGINS: &[(&str, &str)] = &[
    ("event_sending_plugin_example", "wasm32-unknown-unknown"),
    ("request_monitoring_plugin", "wasm32-unknown-unknown"),
    ("teapot_plugin", "wasm32-unknown-unknown"),
    ("monitoring_batcher", "wasm32-unknown-unknown"),
    // wasip1: it must be able to try the filesystem, to prove the sandbox stops it.
    ("faulty_plugin", "wasm32-wasip1"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    println!("cargo:rerun-if-changed={}", root.join("plugins").display());
    println!("cargo:rerun-if-changed={}", root.join("pdk").display());

    let target_dir = root.join("target").join("test-plugins");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("plugins");
    std::fs::create_dir_all(&out).unwrap();
    for (name, target) in PLUGINS {
        build(&root, &target_dir, name, target);
        let built = target_dir
            .join(target)
            .join("plugin")
            .join(format!("{name}.wasm"));
        std::fs::copy(&built, out.join(format!("{name}.wasm")))
            .unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
    }
    println!("cargo:rustc-env=OUTPOST_TEST_PLUGINS={}", out.display());
}

fn build(root: &Path, target_dir: &Path, name: &str, target: &str) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--quiet",
            "--profile",
            "plugin",
            "--target",
            target,
            "-p",
            name,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("cannot run cargo");
    assert!(
        status.success(),
        "building plugin {name} for {target} failed (is the {target} target installed? \
         rust-toolchain.toml lists it)"
    );
}
