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

use super::{
    Agent, AgentConfig, Outcome, StartError,
    net::{self, LISTEN_FD_ENV},
};

/// The vigie agent: serves remote management of this host over gRPC.
#[derive(Debug, Parser)]
#[command(name = "vigie-agent", version, about, long_about = None)]
pub struct AgentArgs {
    /// Set-up commands; without one, the agent serves.
    #[command(subcommand)]
    pub command: Option<AgentCommand>,

    /// Address to listen on, HOST:PORT (port 0 picks a free port) [default: 127.0.0.1:7421]
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,

    /// Agent configuration file (TOML); flags override it.
    #[arg(long, global = true, value_name = "FILE", env = "VIGIE_AGENT_CONFIG")]
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

    /// Time without a frame from a client before the agent pings it, in ms
    /// [default: 5000].
    #[arg(long, value_name = "MS")]
    pub keepalive_interval_ms: Option<u64>,

    /// Time a ping may go unanswered before the agent drops the connection
    /// and ends its commands, in ms [default: 5000].
    #[arg(long, value_name = "MS")]
    pub keepalive_timeout_ms: Option<u64>,

    /// Fleet directory: the agent's own key, its certificate from the fleet
    /// CA and the fleet's CA and revocation list (see `vigie enroll`);
    /// replaces --tls-cert, --tls-key and --client-ca.
    // Not a clap conflict: a global flag may only conflict with global ones
    // (clap panics on every subcommand otherwise), so `config` checks it.
    #[arg(long, global = true, value_name = "DIR")]
    pub fleet_dir: Option<PathBuf>,

    /// TLS certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// CA that signs client certificates; clients must then present one.
    #[arg(long, value_name = "FILE")]
    pub client_ca: Option<PathBuf>,

    /// Access file: tokens (hashed) and certificate subjects with roles.
    #[arg(long, value_name = "FILE")]
    pub access_file: Option<PathBuf>,

    /// Audit log file (JSON lines).
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,

    /// Allow plaintext on a non-loopback address (isolated networks only:
    /// commands, output and tokens travel in the clear).
    #[arg(long)]
    pub insecure_plaintext: bool,

    /// Refuse every Execute: the agent only reports and signals.
    #[arg(long)]
    pub no_exec: bool,
}

/// Set-up commands of `vigie-agent`.
#[derive(Debug, clap::Subcommand)]
pub enum AgentCommand {
    /// Create a CA, certificates, an access file with an admin token, and
    /// agent and client configs, in one directory.
    Init {
        /// Directory to create them in (created if missing; existing files
        /// are never overwritten).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Another name or address for the server certificate (repeatable);
        /// this host's name, localhost and its addresses are always in it.
        #[arg(long = "name", value_name = "NAME")]
        names: Vec<String>,
        /// Address the generated agent config listens on.
        #[arg(long, value_name = "HOST:PORT", default_value_t = super::init::default_listen())]
        listen: String,
    },
    /// Make a one-time join code for enrolling this agent in a fleet and
    /// print it (only its hash is stored, in the fleet directory).
    JoinCode {
        /// How long the code stays valid, e.g. 15m, 1h, 2d.
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
        valid: std::time::Duration,
        /// Read the code from the first line of stdin instead of making one
        /// (what `vigie deploy` does: the operator's machine makes the code).
        #[arg(long)]
        stdin: bool,
    },
    /// Install this binary as the host's agent, run by systemd: the binary
    /// in /usr/local/bin, /etc/vigie (configuration and fleet directory),
    /// /var/log/vigie, the vigie-agent unit, and a join code to enroll it.
    /// A second run changes only what differs, and says what it left alone.
    Install(super::install::InstallArgs),
    /// Stop and remove the agent that `install` set up; the fleet
    /// directory (this host's identity) and the logs stay unless --purge.
    Uninstall(super::install::UninstallArgs),
    /// Print a certificate request for this agent's key (PEM), for
    /// enrolling a host with no network path to the operator
    /// (`vigie pki sign-host` signs it).
    Request,
    /// Install a bundle made by `vigie pki sign-host` (certificate, CA,
    /// revocation list, tokens) after checking it; restart the agent after.
    Import {
        /// The bundle's directory.
        bundle: PathBuf,
    },
    /// Manage tokens of an access file.
    Token {
        /// What to do.
        #[command(subcommand)]
        action: TokenAction,
    },
}

/// Token commands.
#[derive(Debug, clap::Subcommand)]
pub enum TokenAction {
    /// Add a token for a role and print it (only its hash is stored).
    Add {
        /// The access file to change [default: the one of --config].
        #[arg(long, value_name = "FILE")]
        access: Option<PathBuf>,
        /// Who will hold the token (the identity becomes token:NAME).
        #[arg(long)]
        name: String,
        /// viewer, operator or admin.
        #[arg(long)]
        role: super::auth::Role,
    },
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
    /// `init` or `token add` failed.
    #[error(transparent)]
    Init(#[from] super::init::InitError),
    /// A join code cannot be made or stored.
    #[error(transparent)]
    Join(#[from] super::enroll::join::JoinError),
    /// `install` or `uninstall` failed.
    #[error(transparent)]
    Install(#[from] super::install::InstallError),
    /// `install` or `uninstall` given a fleet directory of its own.
    #[error(
        "install and uninstall use /etc/vigie as the fleet directory; --fleet-dir does not apply \
         (change fleet_dir in /etc/vigie/agent.toml afterwards)"
    )]
    FleetDirForInstall,
    /// `join-code` has no fleet directory.
    #[error("no fleet directory: pass --fleet-dir DIR, or --config with a fleet_dir")]
    NoFleetDir,
    /// A fleet directory and TLS files of its own, from flags or the file.
    #[error(
        "fleet_dir replaces tls_cert, tls_key and client_ca: set either the fleet directory or those"
    )]
    FleetDirWithTls,
    /// `token add` has no access file to change.
    #[error("no access file: pass --access FILE, or --config with an access_file")]
    NoAccessFile,
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
        if let Some(path) = &self.config {
            config.resolve_paths(path.parent().unwrap_or(std::path::Path::new(".")));
        }
        for (flag, setting) in [
            (self.kill_grace_ms, &mut config.kill_grace_ms),
            (
                self.keepalive_interval_ms,
                &mut config.keepalive_interval_ms,
            ),
            (self.keepalive_timeout_ms, &mut config.keepalive_timeout_ms),
        ] {
            if let Some(ms) = flag {
                *setting = ms;
            }
        }
        for (flag, setting) in [
            (&self.fleet_dir, &mut config.fleet_dir),
            (&self.tls_cert, &mut config.tls_cert),
            (&self.tls_key, &mut config.tls_key),
            (&self.client_ca, &mut config.client_ca),
            (&self.access_file, &mut config.access_file),
            (&self.audit_log, &mut config.audit_log),
        ] {
            if flag.is_some() {
                setting.clone_from(flag);
            }
        }
        config.insecure_plaintext |= self.insecure_plaintext;
        config.no_exec |= self.no_exec;
        if config.fleet_dir.is_some()
            && (config.tls_cert.is_some() || config.tls_key.is_some() || config.client_ca.is_some())
        {
            return Err(CliError::FleetDirWithTls);
        }
        Ok(config)
    }
}

/// The whole `vigie-agent` program.
pub fn main() -> ExitCode {
    // Before any other thread exists, since it names the calling thread.
    restore_name();
    let args = AgentArgs::parse();
    init_logging(&args.log_level, args.log_format);

    let result = match &args.command {
        None => run(&args),
        Some(command) => set_up(&args, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if args.command.is_none() {
                tracing::error!(error = %e, "vigie-agent stopped");
            }
            eprintln!("vigie-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Bulk output passes through buffers of a few hundred KiB that live for
/// microseconds. By default glibc serves each from a fresh mmap, or trims
/// the heap after each, so every chunk costs page faults and page zeroing:
/// in a profile of a 1 GiB stream that was a tenth of the agent's CPU time.
/// Serving them from the heap, and giving memory back only past 16 MiB of
/// free space at its top, removes that at a bounded memory cost.
///
/// The bound holds for one arena. By default glibc gives each thread that
/// allocates its own arena, each keeping its own free space: with 100
/// commands streaming at once, the two worker threads' arenas held 22 MiB
/// each, and the agent's peak RSS was 52 MiB against 25 MB of live heap.
/// With one arena shared by all threads it was 33 MiB, at no cost in
/// throughput: the agent allocates once or twice per chunk of up to
/// 256 KiB, so even many worker threads rarely meet on the arena's lock.
/// An operator's `MALLOC_ARENA_MAX` is left as it is.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 20);
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// Runs a set-up command.
fn set_up(args: &AgentArgs, command: &AgentCommand) -> Result<(), CliError> {
    match command {
        AgentCommand::Init { dir, names, listen } => {
            let made = super::init::init(dir, names, listen)?;
            let mut out = std::io::stdout().lock();
            for file in &made.files {
                writeln!(out, "created {}", file.display())?;
            }
            writeln!(
                out,
                "server certificate valid for: {}",
                made.server_names.join(", ")
            )?;
            writeln!(out, "agent certificate fingerprint: {}", made.fingerprint)?;
            writeln!(
                out,
                "admin token: {} (shown once, stored only as a hash; for scripts and grpcurl)",
                made.admin_token
            )?;
            let agent = dir.join(super::init::files::AGENT_CONFIG);
            let client = dir.join(super::init::files::CLIENT_CONFIG);
            writeln!(
                out,
                "start the agent:  vigie-agent --config {}",
                agent.display()
            )?;
            writeln!(
                out,
                "then connect:     vigie --config {} -H HOST info",
                client.display()
            )?;
            Ok(())
        }
        AgentCommand::JoinCode { valid, stdin } => {
            let dir = args.config()?.fleet_dir.ok_or(CliError::NoFleetDir)?;
            let dir = super::enroll::FleetDir::new(dir);
            dir.create()?;
            let code = if *stdin {
                super::enroll::join::read_code(&mut std::io::stdin().lock())?
            } else {
                super::enroll::join::generate()?
            };
            super::enroll::join::store(&dir, &code, *valid)?;
            if !*stdin {
                writeln!(std::io::stdout().lock(), "{code}")?;
            }
            eprintln!(
                "join code stored as a hash in {}, valid for {}; enroll with: vigie enroll HOST",
                dir.file(super::enroll::files::JOIN).display(),
                humantime::format_duration(*valid)
            );
            Ok(())
        }
        AgentCommand::Install(_) | AgentCommand::Uninstall(_) if args.fleet_dir.is_some() => {
            Err(CliError::FleetDirForInstall)
        }
        AgentCommand::Install(install) => {
            let mut out = std::io::stdout().lock();
            super::install::install(&install.options()?, &mut std::io::stdin().lock(), &mut out)?;
            Ok(())
        }
        AgentCommand::Uninstall(uninstall) => {
            super::install::uninstall(&uninstall.options()?, &mut std::io::stdout().lock())?;
            Ok(())
        }
        AgentCommand::Request => {
            let dir = args.config()?.fleet_dir.ok_or(CliError::NoFleetDir)?;
            let pem = super::enroll::offline::request(&super::enroll::FleetDir::new(dir))
                .map_err(|e| CliError::Io(std::io::Error::other(e.to_string())))?;
            std::io::stdout().lock().write_all(pem.as_bytes())?;
            Ok(())
        }
        AgentCommand::Import { bundle } => {
            let dir = args.config()?.fleet_dir.ok_or(CliError::NoFleetDir)?;
            let facts = super::enroll::offline::import(&super::enroll::FleetDir::new(dir), bundle)
                .map_err(|e| CliError::Io(std::io::Error::other(e.to_string())))?;
            writeln!(
                std::io::stdout().lock(),
                "imported {} (serial {}), valid until {} UTC; restart the agent to serve it \
                 (systemctl restart vigie-agent)",
                facts.subject,
                facts.serial_hex(),
                crate::clock::utc(facts.not_after_ms)
            )?;
            Ok(())
        }
        AgentCommand::Token {
            action: TokenAction::Add { access, name, role },
        } => {
            let access = match access {
                Some(path) => path.clone(),
                None => args.config()?.access_file.ok_or(CliError::NoAccessFile)?,
            };
            let added = super::init::add_token(&access, name, *role)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "token for {name} ({role}): {}", added.token)?;
            Ok(())
        }
    }
}

fn run(args: &AgentArgs) -> Result<(), CliError> {
    let config = args.config()?;
    tune_allocator();
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
            let listener = agent
                .tcp_listener()
                .ok_or_else(|| std::io::Error::other("only a TCP agent restarts by exec"))?;
            Ok(Some(net::inheritable_copy(listener)?))
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
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| OsString::from("vigie-agent"));
    tracing::info!("restarting in place");
    let _ = std::io::stderr().flush();
    std::process::Command::new(running_binary())
        .arg0(arg0)
        .args(args)
        .env(LISTEN_FD_ENV, listener.as_raw_fd().to_string())
        .exec()
}

/// The path to exec for a restart: this very binary, even if its file was
/// replaced or deleted since it started. On Linux that is `/proc/self/exe`
/// (the path it was started from could name another file by the time of
/// the exec); the kernel then names the new process `exe`, and
/// [`restore_name`] gives it its name back.
fn running_binary() -> PathBuf {
    if cfg!(target_os = "linux") {
        PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().unwrap_or_else(|_| PathBuf::from("vigie-agent"))
    }
}

/// After a restart through `/proc/self/exe` the kernel names the process
/// `exe`; give it back the name of its first argument.
fn restore_name() {
    #[cfg(target_os = "linux")]
    if std::env::var_os(LISTEN_FD_ENV).is_some()
        && std::fs::read_to_string("/proc/self/comm").is_ok_and(|name| name.trim() == "exe")
        && let Some(arg0) = std::env::args_os().next()
    {
        use std::os::unix::ffi::OsStrExt;
        let name = std::path::Path::new(&arg0)
            .file_name()
            .map(|n| n.as_bytes().iter().copied().take(15).collect::<Vec<u8>>())
            .unwrap_or_else(|| b"vigie-agent".to_vec());
        if let Ok(name) = std::ffi::CString::new(name) {
            let _ = rustix::thread::set_name(&name);
        }
    }
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file must hold text, not escape
    // sequences (text from clients is written escaped, see service.rs).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_arguments_hold_together_for_every_subcommand() {
        // Clap checks these only in debug builds, and only for the
        // subcommand being parsed: a global --fleet-dir that conflicted
        // with flags of the top level once made every subcommand panic.
        AgentArgs::command().debug_assert();
        let args = AgentArgs::try_parse_from(["vigie-agent", "join-code", "--fleet-dir", "/f"]);
        assert_eq!(
            args.unwrap().config().unwrap().fleet_dir,
            Some(PathBuf::from("/f"))
        );
    }

    #[test]
    fn a_fleet_directory_excludes_tls_files_of_its_own() {
        let args = AgentArgs::try_parse_from([
            "vigie-agent",
            "--fleet-dir",
            "/f",
            "--client-ca",
            "/ca.pem",
        ])
        .unwrap();
        assert!(matches!(args.config(), Err(CliError::FleetDirWithTls)));
    }
}
