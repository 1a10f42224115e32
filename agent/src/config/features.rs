//! Source and sink types that this build may not have: the protocols behind cargo
//! features (`redis`, `amqp`, `fleet`, `zstd`). A config that uses one the build lacks is refused by
//! `check` and `run`, naming the key, instead of being ignored.

use super::de::Ctx;
use super::ConfigError;

/// The cargo feature source or sink type `kind` needs, if it is not in this build.
pub fn missing(kind: &str) -> Option<&'static str> {
    match kind {
        "redis" if !cfg!(feature = "redis") => Some("redis"),
        "amqp" if !cfg!(feature = "amqp") => Some("amqp"),
        _ => None,
    }
}

/// Refuses type `kind` at `key` if this build lacks its feature.
pub(super) fn require(ctx: &Ctx<'_>, key: &str, kind: &str) -> Result<(), ConfigError> {
    match missing(kind) {
        Some(feature) => Err(ctx.error(
            key,
            format!(
                "`{kind}` is not in this build of outpost (build it with the cargo feature `{feature}`)"
            ),
        )),
        None => Ok(()),
    }
}

/// Refuses `compression = "zstd"` at `key` if this build lacks the `zstd` feature.
pub(super) fn require_compression(
    ctx: &Ctx<'_>,
    key: &str,
    codec: super::Compression,
) -> Result<(), ConfigError> {
    if codec == super::Compression::Zstd && !cfg!(feature = "zstd") {
        return Err(ctx.error(
            key,
            "`zstd` is not in this build of outpost (build it with the cargo feature `zstd`, or use `gzip`)",
        ));
    }
    Ok(())
}

/// Refuses `[fleet]` if this build lacks the `fleet` feature.
pub(super) fn require_fleet() -> Result<(), &'static str> {
    if cfg!(feature = "fleet") {
        Ok(())
    } else {
        Err("fleet management (OpAMP) is not in this build of outpost (build it with the cargo feature `fleet`)")
    }
}
