//! The `outpost` command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use outpost::cli::{AgentClient, DeadLettersCommand};
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
    /// Show the running agent's queue, storage, sinks, plugins and sources.
    Status {
        /// The running agent's config file (for its address and token).
        #[arg(long, short)]
        config: PathBuf,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// List, replay or purge the running agent's dead letters.
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
    /// Keys and signatures for fleet plugin packages (on the build machine).
    Fleet {
        #[command(subcommand)]
        action: FleetAction,
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

#[derive(Subcommand)]
enum FleetAction {
    /// Make an ed25519 key pair: the private key into FILE, the public key (for
    /// `fleet.trusted_keys`) into FILE.pub (neither overwritten).
    Keygen {
        /// Where the private key goes (not overwritten).
        file: PathBuf,
    },
    /// Sign a plugin package: prints its sha256 and signature (hex, JSON) for the
    /// OpAMP server's package offer.
    Sign {
        /// The private key (from `outpost fleet keygen`).
        #[arg(long, short)]
        key: PathBuf,
        /// The package (a plugin's `.wasm`).
        package: PathBuf,
    },
}

#[derive(Subcommand)]
enum DeadLetterAction {
    /// List dead letters (oldest first per sink).
    List {
        #[arg(long, short)]
        config: PathBuf,
        /// Only this sink's.
        #[arg(long)]
        sink: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Show the payloads too.
        #[arg(long)]
        payload: bool,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Put dead letters back into their sink's FIFO (all, one sink's, or by id).
    Replay {
        #[command(flatten)]
        which: Which,
    },
    /// Delete dead letters (one sink's, by id, or --all).
    Purge {
        #[command(flatten)]
        which: Which,
        /// Every dead letter of every sink.
        #[arg(long)]
        all: bool,
    },
}

/// Which dead letters, of the agent that a config file describes.
#[derive(clap::Args)]
struct Which {
    #[arg(long, short)]
    config: PathBuf,
    /// Only this sink's.
    #[arg(long)]
    sink: Option<String>,
    /// A message id (repeatable).
    #[arg(long = "id")]
    ids: Vec<String>,
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
        Command::Status { config, json } => talk(&config, |c| outpost::cli::status(c, json)),
        Command::DeadLetters { action } => {
            let (config, command) = dead_letter_command(action);
            talk(&config, |c| outpost::cli::dead_letters(c, &command))
        }
        Command::Fleet { action } => {
            let done = match action {
                FleetAction::Keygen { file } => outpost::cli::fleet::keygen(&file),
                FleetAction::Sign { key, package } => outpost::cli::fleet::sign(&key, &package),
            };
            match done {
                Ok(out) => {
                    println!("{out}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
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

fn dead_letter_command(action: DeadLetterAction) -> (PathBuf, DeadLettersCommand) {
    match action {
        DeadLetterAction::List {
            config,
            sink,
            limit,
            payload,
            json,
        } => (
            config,
            DeadLettersCommand::List {
                sink,
                limit,
                payload,
                json,
            },
        ),
        DeadLetterAction::Replay { which } => (
            which.config,
            DeadLettersCommand::Replay {
                sink: which.sink,
                ids: which.ids,
            },
        ),
        DeadLetterAction::Purge { which, all } => (
            which.config,
            DeadLettersCommand::Purge {
                sink: which.sink,
                ids: which.ids,
                all,
            },
        ),
    }
}

/// Runs a command against the agent that `path` configures: its output on stdout, or
/// the error on stderr with exit status 1 (2 for a bad config).
fn talk(
    path: &std::path::Path,
    command: impl FnOnce(&AgentClient) -> Result<String, outpost::cli::ClientError>,
) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match command(&AgentClient::for_config(&config)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
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
