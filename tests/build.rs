//! Builds the WASM plugins the end-to-end tests load, from `plugins/`, so that
//! `cargo test --workspace` needs no extra step. A nested cargo with its own target
//! directory (the outer build holds the lock on `target/`), and npm for the
//! AssemblyScript plugin (`plugins/as_forward`), built in that directory too.

use std::path::{Path, PathBuf};
use std::process::Command;

const PLUGINS: &[(&str, &str)] = &[
    ("event_sending_plugin_example", "wasm32-unknown-unknown"),
    ("request_monitoring_plugin", "wasm32-unknown-unknown"),
    ("teapot_plugin", "wasm32-unknown-unknown"),
    ("monitoring_batcher", "wasm32-unknown-unknown"),
    // wasip1: it must be able to try the filesystem, to prove the sandbox stops it.
    ("faulty_plugin", "wasm32-wasip1"),
    // Only extism-pdk, no outpost-pdk: the Extism kernel path.
    ("plain_extism_plugin", "wasm32-unknown-unknown"),
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
    build_assemblyscript(&root.join("plugins").join("as_forward"), &target_dir, &out);
    println!("cargo:rustc-env=OUTPOST_TEST_PLUGINS={}", out.display());
}

/// Builds `as_forward.wasm` with npm (its pinned `package-lock.json`) in a copy under
/// `target_dir`. Without node/npm, or offline with an empty npm cache, it warns and
/// skips: only the tests that load it fail, saying why.
fn build_assemblyscript(src: &Path, target_dir: &Path, out: &Path) {
    let work = target_dir.join("as_forward");
    std::fs::create_dir_all(work.join("assembly")).unwrap();
    for file in ["package.json", "package-lock.json", "assembly/index.ts"] {
        std::fs::copy(src.join(file), work.join(file))
            .unwrap_or_else(|e| panic!("copy {file}: {e}"));
    }
    let npm = |args: &[&str]| {
        Command::new("npm")
            .args(args)
            .current_dir(&work)
            .status()
            .is_ok_and(|s| s.success())
    };
    let built = npm(&["install", "--no-audit", "--no-fund", "--prefer-offline"])
        && npm(&["run", "--silent", "build"]);
    let wasm = work.join("build").join("as_forward.wasm");
    if built {
        std::fs::copy(&wasm, out.join("as_forward.wasm")).unwrap();
    } else {
        let _ = std::fs::remove_file(out.join("as_forward.wasm"));
        println!(
            "cargo:warning=as_forward (AssemblyScript) not built: needs node and npm \
             (apt-get install nodejs npm) and the npm registry or a warm npm cache"
        );
    }
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
