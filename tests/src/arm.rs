//! The ARM targets the agent ships for, built the docker-free way (Debian's cross gcc,
//! `.cargo/config.toml`) and run under qemu-user.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use crate::agent::Launcher;

/// One ARM target.
pub struct ArmTarget {
    pub triple: &'static str,
    /// Debian's cross compiler (and its package, for the message when it is missing).
    pub gcc: &'static str,
    pub packages: &'static str,
    pub qemu: &'static str,
    pub sysroot: &'static str,
    /// The ELF header's `e_machine`.
    pub e_machine: u16,
}

pub const AARCH64: ArmTarget = ArmTarget {
    triple: "aarch64-unknown-linux-gnu",
    gcc: "aarch64-linux-gnu-gcc",
    packages: "gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user",
    qemu: "qemu-aarch64",
    sysroot: "/usr/aarch64-linux-gnu",
    e_machine: 183,
};

/// 32-bit ARM cameras (armv7-a, hard float): WASM runs there on wasmtime's Pulley
/// interpreter.
pub const ARMV7: ArmTarget = ArmTarget {
    triple: "armv7-unknown-linux-gnueabihf",
    gcc: "arm-linux-gnueabihf-gcc",
    packages: "gcc-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user",
    qemu: "qemu-arm",
    sysroot: "/usr/arm-linux-gnueabihf",
    e_machine: 40,
};

/// The profile the ARM builds of the test suite use: `qemu` (release optimisation,
/// no whole-program LTO), whose compiled dependencies the ARM unit tests in CI share.
pub const PROFILE: &str = "qemu";

/// Where cross builds for `triple` go (cross/cargo.sh; not the main target dir: the
/// test run holds its lock). `.ci/run` packages and unit-tests from the same builds.
pub fn target_dir(triple: &str) -> PathBuf {
    workspace().join("target").join("cross").join(triple)
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn found(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .status()
        .is_ok_and(|s| s.success())
}

impl ArmTarget {
    /// Builds `outpost` for this target in the [`PROFILE`] profile; its path.
    pub fn build(&self) -> PathBuf {
        for tool in [self.gcc, self.qemu] {
            assert!(
                found(tool),
                "{tool} not found: apt-get install {} (tests/setup.sh does)",
                self.packages
            );
        }
        let began = Instant::now();
        // cross/cargo.sh: the docker-free cross build, with std built from source where
        // rustup has no prebuilt one for the target; CI packages this binary.
        let status = Command::new(workspace().join("cross").join("cargo.sh"))
            .current_dir(workspace())
            .args([self.triple, "build", "--profile", PROFILE])
            .args(["-p", "outpost", "--bin", "outpost"])
            .status()
            .expect("run cross/cargo.sh");
        assert!(status.success(), "{} cross build failed", self.triple);
        eprintln!(
            "{} {PROFILE} build: {:.0} s",
            self.triple,
            began.elapsed().as_secs_f64()
        );
        let bin = target_dir(self.triple)
            .join(self.triple)
            .join(PROFILE)
            .join("outpost");
        let elf = std::fs::read(&bin).unwrap();
        assert_eq!(&elf[..4], b"\x7fELF");
        assert_eq!(
            u16::from_le_bytes([elf[18], elf[19]]),
            self.e_machine,
            "e_machine of {}",
            self.triple
        );
        bin
    }

    /// Runs `bin` under qemu-user.
    pub fn launcher(&self, bin: PathBuf) -> Launcher {
        Launcher {
            program: bin,
            prefix: vec![self.qemu.into(), "-L".into(), self.sysroot.into()],
        }
    }
}
