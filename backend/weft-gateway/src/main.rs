//! The `weft` binary: parse the command line, set up logging, run or check a configuration.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand};
use weft_gateway::reload::Source;
use weft_gateway::{Config, LogFormat, app, logging};

#[global_allocator]
static ALLOCATOR: weft_alloc::Allocator = weft_alloc::Allocator;

/// Twisted's event-driven networking on tokio, with an inspector built in.
///
/// With no command, weft runs its built-in demo (as `weft run` does without --config):
/// a service of every kind on 127.0.0.1 with traffic of its own, and the dashboard on
/// http://127.0.0.1:9180/.
#[derive(Debug, Parser)]
#[command(name = "weft", version, about, long_about)]
struct Cli {
    /// How the log on stderr is written: `text`, or `json` (one object per line);
    /// overrides `[log] format`. `RUST_LOG` sets what is logged.
    #[arg(long, global = true, value_name = "FORMAT",
          value_parser = PossibleValuesParser::new(LogFormat::NAMES)
              .map(|name| name.parse::<LogFormat>().expect("a listed name")))]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the services of a configuration (without one: the built-in demo, also what
    /// `weft` alone runs).
    Run {
        /// The configuration file (weft.toml), as `check` takes it.
        #[arg(conflicts_with = "config")]
        file: Option<PathBuf>,
        /// The configuration file (weft.toml).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check a configuration as `run` checks it before it starts, and exit: 0 if it is
    /// valid, 1 with the reason if not.
    #[command(
        override_usage = "weft check [OPTIONS] <FILE>\n       weft check [OPTIONS] --config <FILE>"
    )]
    Check {
        /// The configuration file.
        #[arg(required_unless_present = "config", conflicts_with = "config")]
        file: Option<PathBuf>,
        /// The configuration file, named as `run` takes it.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Do not try the listeners' ports: for a file checked by another user, or on
        /// another machine, than the one that will run it.
        #[arg(long)]
        no_ports: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let demo = Command::Run {
        file: None,
        config: None,
    };
    let result = match cli.command.unwrap_or(demo) {
        Command::Run { file, config } => run(file.or(config), cli.log_format),
        Command::Check {
            file,
            config,
            no_ports,
        } => {
            // Clap makes sure one of the two is there.
            check(
                &file.or(config).unwrap_or_default(),
                !no_ports,
                cli.log_format,
            )
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            logging::fatal(&logging::reason(&e), cli.log_format);
            ExitCode::FAILURE
        }
    }
}

/// Takes SIGHUP and SIGUSR1 from their default action (ending the process) before
/// anything else: a reload (`systemctl reload`) or a log rotation's USR1 landing while the
/// configuration is still being read and checked (a large zone takes a second or more)
/// would otherwise kill a gateway that is starting. Once installed, tokio's handler stays
/// for the life of the process; the reload and log-reopening listeners made later see
/// what arrives after they are made (the file being read now is the latest anyway).
fn hold_early_signals() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    else {
        return;
    };
    let _entered = runtime.enter();
    for kind in [SignalKind::hangup(), SignalKind::user_defined1()] {
        let _ = signal(kind);
    }
}

/// Keeps the process's memory in 4 KiB pages. mimalloc asks the kernel for transparent
/// huge pages on the memory it reserves, so each thread's first touch of its part (every
/// blocking-pool thread that opens or reads a file, say) made 2 MiB resident: ten HTTP/2
/// streams of large files a client stalled cost 23 MiB, a hundred 67 MiB. weft's heap is
/// many small blocks, few of them long-lived; what huge pages save in TLB misses there is
/// little, what they cost in memory a peer can make it spend is not.
/// Where the kernel cannot (before Linux 3.15), they stay on, and that is all.
fn small_pages() {
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

fn run(file: Option<PathBuf>, log_format: Option<LogFormat>) -> anyhow::Result<()> {
    small_pages();
    hold_early_signals();
    // The file is read before anything is logged: it says how to log.
    let mut config = match &file {
        Some(path) => Config::load(path).inspect_err(|_| log_as_declared(path, log_format))?,
        None => Config::demo(),
    };
    config.pin_history_file();
    // The configuration keeps the file's `[log]`, so a reload compares file with file.
    logging::init(log_format, config.log.format);
    if file.is_none() {
        tracing::info!("no --config given: running the built-in demo configuration");
    }
    // As `check` tries them, before anything is bound: a port another program holds is
    // refused naming that program, in `check`'s words, rather than after the dashboard
    // has started, in the system's.
    match &file {
        Some(path) => {
            check_history_file(&config, path)?;
            config
                .check_ports(path)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
        None => {
            config
                .check_ports(std::path::Path::new("the built-in demo configuration"))
                .map_err(|e| {
                    anyhow::anyhow!(
                        "the built-in demo cannot start: {e}; or run weft with a \
                         configuration of your own (`weft run FILE`, see the README's \
                         \"The gateway\")"
                    )
                })?;
        }
    }
    let source = match file {
        Some(path) => Source::File(path),
        None => Source::Demo,
    };
    app::run(&config, source).context("cannot run the gateway")
}

/// What opening the history file would refuse (not a database, another program's tables,
/// written by a later weft), found read only, for `check` and for `run` before it binds
/// anything, in the same words.
fn check_history_file(config: &Config, file: &std::path::Path) -> anyhow::Result<()> {
    if config.store.url.is_none() && config.store.path.exists() {
        current_thread()?
            .block_on(weft_store::Store::check_file(&config.store.path))
            .map_err(|e| anyhow::anyhow!("{}: store.path: {e}", file.display()))?;
    }
    Ok(())
}

/// What opening a PostgreSQL history would refuse at start (a server that answers and
/// refuses the login, a role that may not create the tables), for `check`; `run` finds it
/// out as it opens the store, and a second connection there would only double its wait
/// for a server out of reach (which passes both).
fn check_history_database(config: &Config, file: &std::path::Path) -> anyhow::Result<()> {
    let Some(url) = &config.store.url else {
        return Ok(());
    };
    current_thread()?
        .block_on(weft_store::Store::check_database(
            url,
            // As long as the start waits for the server (`StoreOptions::busy_timeout`).
            std::time::Duration::from_secs(2),
        ))
        .map_err(|e| anyhow::anyhow!("{}: store.url: {e}", file.display()))
}

fn current_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Sets up the log for a file that was refused as the file itself asks (its `[log]
/// format`, the flag over it), so the refusal is said in JSON to a log read as JSON.
fn log_as_declared(file: &std::path::Path, log_format: Option<LogFormat>) {
    if let Some(declared) = Config::declared_log_format(file) {
        logging::init(log_format, declared);
    }
}

fn check(file: &std::path::Path, ports: bool, log_format: Option<LogFormat>) -> anyhow::Result<()> {
    let config = Config::load(file).inspect_err(|_| log_as_declared(file, log_format))?;
    // As `run` logs: the file's `[log]` once it is read, the flag over it.
    logging::init(log_format, config.log.format);
    check_history_file(&config, file)?;
    check_history_database(&config, file)?;
    // The ports, tried now: privileged ones this process may not bind, and ones another
    // program holds, are refused; ones the gateway running this file holds are noted.
    let notes = match ports {
        true => config
            .check_ports(file)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?,
        false => Vec::new(),
    };
    let mut stderr = std::io::stderr();
    for note in notes {
        let _ = writeln!(stderr, "weft: note: {note}");
    }
    for warning in &config.warnings {
        let _ = writeln!(stderr, "weft: warning: {warning}");
    }
    // Only a hint, read without the lock: taking it, even for a moment, could refuse a
    // `weft run` starting at that moment.
    if let Some(pid) = config
        .store
        .url
        .is_none()
        .then(|| weft_store::Store::writer_pid(&config.store.path))
        .flatten()
    {
        let _ = writeln!(
            stderr,
            "weft: note: the history database {} is in use by process {pid}; `weft run` with \
             this file is refused while that process runs",
            config.store.path.display()
        );
    }
    // The verdict is the exit code; a verdict that cannot be written is an error.
    writeln!(
        std::io::stdout(),
        "{}: ok ({} service{})",
        file.display(),
        config.services.len(),
        if config.services.len() == 1 { "" } else { "s" }
    )
    .and_then(|()| std::io::stdout().flush())
    .context("cannot write the result to stdout")?;
    Ok(())
}
