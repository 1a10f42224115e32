//! The `outpost` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use outpost::config::{Config, ConfigError, LogFormat};
use outpost::plugin::LoadError;

/// Offline-tolerant edge event agent.
#[derive(Parser)]
#[command(name = "outpost", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent.
    Run {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Log format (overrides `[log] format`).
        #[arg(long)]
        log_format: Option<Format>,
    },
    /// Validate the config and load its plugins, then exit (2 on error).
    Check {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Precompile a WASM plugin into a `.cwasm` the agent loads without compiling
    /// (the only kind a runtime-only build loads).
    Compile {
        /// The plugin module (`<name>.wasm`).
        plugin: PathBuf,
        /// Target triple of the agent that will load it (default: this machine).
        #[arg(long)]
        target: Option<String>,
        /// Where to write it (default: `<name>.cwasm` beside the module).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

/// glibc gives threads that allocate their own malloc arena (up to 8 per core). The
/// blocking pool and sled's I/O threads each kept freed 100 KB payload buffers in
/// theirs, so draining a backlog took RSS from 32 to 100 MB; with one arena it peaked at
/// 38 MB with the same throughput (BENCHMARKS.md). `MALLOC_ARENA_MAX` still wins.
/// Called before any thread exists.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a tunable of the allocator; no thread runs yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// Exit status for a bad config or plugin: the operator must fix something.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Run { config, log_format } => run(&config, log_format),
        Command::Compile {
            plugin,
            target,
            output,
        } => match outpost::plugin::compile(&plugin, target.as_deref(), output.as_deref()) {
            Ok(written) => {
                println!("{}", written.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    outpost::logging::init(LogFormat::Text);
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match outpost::app::check(&config) {
        Ok(plugins) => {
            println!("{}: ok", path.display());
            for p in plugins {
                println!("  plugin {p}");
            }
            for (name, sink) in &config.sinks {
                println!("  sink {name} ({})", sink.kind_name());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn run(path: &std::path::Path, log_format: Option<Format>) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            outpost::logging::init(LogFormat::Text);
            tracing::error!("{e}");
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let format = match log_format {
        Some(Format::Json) => LogFormat::Json,
        Some(Format::Text) => LogFormat::Text,
        None => config.log.format,
    };
    outpost::logging::init(format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(outpost::app::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            if e.downcast_ref::<LoadError>().is_some() || e.downcast_ref::<ConfigError>().is_some()
            {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
