//! The `vigie-agent` command line: parses flags, sets up logging, runs the
//! agent, and restarts it in place by `exec` when asked.

use std::{
    ffi::OsString,
    io::Write,
    os::fd::{AsRawFd, OwnedFd},
    path::PathBuf,
    process::ExitCode,
};

use clap::{Parser, ValueEnum};
use tokio_util::sync::CancellationToken;

use super::{Agent, AgentConfig, Outcome, StartError, exec::LISTEN_FD_ENV, net};

/// The vigie agent: serves remote management of this host over gRPC.
#[derive(Debug, Parser)]
#[command(name = "vigie-agent", version, about, long_about = None)]
pub struct AgentArgs {
    /// Address to listen on, HOST:PORT (port 0 picks a free port) [default: 127.0.0.1:7421]
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,

    /// Agent configuration file (TOML); flags override it.
    #[arg(long, value_name = "FILE", env = "VIGIE_AGENT_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log level: error, warn, info, debug or trace (or a tracing filter).
    #[arg(long, default_value = "info", env = "VIGIE_LOG")]
    pub log_level: String,

    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Worker threads of the runtime [default: the number of CPUs].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Time between TERM and KILL when the agent ends a command, in ms.
    #[arg(long, value_name = "MS")]
    pub kill_grace_ms: Option<u64>,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per line.
    Json,
}

/// Why the agent did not run.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The config file cannot be read or parsed.
    #[error("cannot load {path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The agent could not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The runtime or the restart failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl AgentArgs {
    /// The configuration: the file's (or the defaults), then the flags.
    pub fn config(&self) -> Result<AgentConfig, CliError> {
        let mut config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| CliError::Config {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                toml::from_str(&text).map_err(|e| CliError::Config {
                    path: path.clone(),
                    reason: e.to_string(),
                })?
            }
            None => AgentConfig::default(),
        };
        if let Some(listen) = &self.listen {
            config.listen.clone_from(listen);
        }
        if let Some(ms) = self.kill_grace_ms {
            config.kill_grace_ms = ms;
        }
        Ok(config)
    }
}

/// The whole `vigie-agent` program.
pub fn main() -> ExitCode {
    let args = AgentArgs::parse();
    init_logging(&args.log_level, args.log_format);
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "vigie-agent stopped");
            eprintln!("vigie-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &AgentArgs) -> Result<(), CliError> {
    let config = args.config()?;
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        builder.worker_threads(threads.max(1));
    }
    let runtime = builder.enable_all().build()?;
    let restart_with = runtime.block_on(serve(config))?;
    // Every task has ended by now; wait briefly for the runtime's threads.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match restart_with {
        Some(listener) => Err(restart_in_place(&listener).into()),
        None => Ok(()),
    }
}

/// Serves until stopped; returns the listening socket to hand over when a
/// restart was asked.
async fn serve(config: AgentConfig) -> Result<Option<OwnedFd>, CliError> {
    let agent = Agent::bind(config)?;
    announce(&agent);
    let stop = CancellationToken::new();
    tokio::spawn(stop_on_signals(stop.clone()));
    match agent.serve_generation(&stop).await? {
        Outcome::Restart if !stop.is_cancelled() => {
            Ok(Some(net::inheritable_copy(agent.listener())?))
        }
        _ => {
            tracing::info!("agent stopped");
            Ok(None)
        }
    }
}

/// Prints the bound address on stdout, where scripts look for it.
fn announce(agent: &Agent) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening on {}", agent.local_addr());
    let _ = stdout.flush();
}

async fn stop_on_signals(stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot watch SIGTERM/SIGINT; stop the agent with the Shutdown rpc");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    stop.cancel();
}

/// Replaces this process with a fresh copy of the same binary and
/// arguments, handing over the listening socket. Returns only on failure.
fn restart_in_place(listener: &OwnedFd) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    // /proc/self/exe is this very binary even if the file was replaced or
    // deleted since it started; elsewhere, the path it was started from.
    let exe: PathBuf = if cfg!(target_os = "linux") {
        PathBuf::from("/proc/self/exe")
    } else {
        match std::env::current_exe() {
            Ok(path) => path,
            Err(e) => return e,
        }
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| OsString::from("vigie-agent"));
    tracing::info!("restarting in place");
    let _ = std::io::stderr().flush();
    std::process::Command::new(exe)
        .arg0(arg0)
        .args(args)
        .env(LISTEN_FD_ENV, listener.as_raw_fd().to_string())
        .exec()
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
