//! The `vigie` command line: drives a fleet of agents from a hosts file.
//!
//! Scripts depend on `vigie --hosts FILE exec -- COMMAND…`,
//! `vigie --hosts FILE info`, `vigie --hosts FILE hosts check` and `--json`
//! on each; those names do not change.

mod conn;
mod deploy;
mod exec;
mod files;
mod gather;
mod history;
mod hosts;
mod info;
mod jobs;
mod lifecycle;
mod pki;
mod ps;
mod script;
mod staged;
mod top;
mod watch;

pub mod output;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand};

use self::output::{ColorChoice, Printer};
use super::{
    ClientConfig, ConnectionSettings, Secret,
    fleet::{DEFAULT_CONCURRENCY, Fleet, Selector},
    history::History,
    hosts::{HostEntry, HostsError, HostsFile, split_host_port},
};

/// Drive many vigie agents at once: run commands, read system information,
/// watch CPU and memory, manage processes and agents.
#[derive(Debug, Parser)]
#[command(name = "vigie", version, about, long_about = None, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,

    #[command(subcommand)]
    pub command: Command,
}

const EXAMPLES: &str = "\
Examples:
  vigie info                                   this machine, through an agent started in-process
  vigie --hosts hosts.csv exec -- uptime       every host of the file
  vigie --hosts hosts.csv -g web exec -b -- 'systemctl is-active nginx'
  vigie --hosts hosts.csv -H 'web[1-3]' info ram
  vigie --config ~/vigie/client.toml -H 10.0.0.5 kill";

/// Options of every command.
#[derive(Debug, Args)]
pub struct Global {
    /// Hosts file (CSV or text) [default: `hosts` of the config]
    #[arg(long, global = true, value_name = "FILE", env = "VIGIE_HOSTS")]
    pub hosts: Option<PathBuf>,

    /// Client config (TLS, tokens, default hosts file)
    /// [default: ~/.config/vigie/client.toml when it exists]
    #[arg(long, global = true, value_name = "FILE", env = "VIGIE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Hosts by name, comma-separated, ranges allowed: web[1-3],db1.
    /// A name not in the hosts file is taken as an address (host[:port]).
    #[arg(short = 'H', long = "host", global = true, value_name = "HOSTS")]
    pub hosts_selected: Vec<String>,

    /// Hosts with this tag (the `tags` column of a CSV hosts file).
    #[arg(short = 'g', long = "group", global = true, value_name = "TAG")]
    pub group: Option<String>,

    /// Every host of the file (the default when no -H or -g is given).
    #[arg(short = 'a', long, global = true)]
    pub all: bool,

    /// One JSON object per line on stdout, with stable field names.
    #[arg(long, global = true)]
    pub json: bool,

    /// Hosts contacted at once.
    #[arg(long, global = true, value_name = "N")]
    pub concurrency: Option<usize>,

    /// Colours.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// Bearer token for every host (overrides the config).
    #[arg(long, global = true, env = "VIGIE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// CA certificate (PEM) of the agents' certificates; turns TLS on.
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// Client certificate (PEM) for agents that require mutual TLS.
    #[arg(long, global = true, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,

    /// The client certificate's private key (PEM).
    #[arg(long, global = true, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,

    /// Pinned SHA-256 fingerprint of the agent's certificate; turns TLS on.
    #[arg(long, global = true, value_name = "SHA256")]
    pub fingerprint: Option<String>,

    /// Allow tokens in plaintext to non-loopback agents.
    #[arg(long, global = true)]
    pub insecure_plaintext: bool,

    /// While a call is open, time without a frame from an agent before
    /// pinging it, in ms [default: 4000]
    #[arg(long, global = true, value_name = "MS")]
    pub keepalive_interval_ms: Option<u64>,

    /// Time a ping may go unanswered before an agent is given up (its
    /// commands report "lost"), in ms [default: 4000]
    #[arg(long, global = true, value_name = "MS")]
    pub keepalive_timeout_ms: Option<u64>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command on the selected hosts, with live output.
    Exec(exec::ExecArgs),
    /// System information: os, ram, cpu, ip, name, disks, uptime, or all.
    Info {
        /// What to show [default: a summary line per host].
        #[arg(value_enum)]
        what: Option<crate::client::present::Query>,
    },
    /// Show, edit and check the hosts file.
    Hosts {
        #[command(subcommand)]
        action: hosts::HostsAction,
    },
    /// List processes.
    Ps {
        /// Only processes whose name or command line contains this.
        filter: Option<String>,
    },
    /// Send a signal to a process.
    Signal {
        /// The process id.
        pid: i32,
        /// TERM, KILL, INT, HUP, QUIT, STOP, CONT, USR1 or USR2.
        #[arg(default_value = "TERM")]
        signal: crate::types::ProcessSignal,
    },
    /// Live CPU and memory of the selected hosts.
    Watch {
        /// Time between samples (100ms to 60s).
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Stop after this many samples per host.
        #[arg(long)]
        count: Option<u64>,
    },
    /// A full-screen live view of the selected hosts (CPU, memory, load,
    /// fullest disk), sorted and filtered, with keys to select hosts and
    /// run a command on them. Needs a terminal; `watch` prints lines.
    Top {
        /// Time between samples (100ms to 60s).
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Where a host becomes hot, e.g. `cpu=95,memory=90,load=8,disk=90`
        /// (percent; the load in runnable processes).
        #[arg(long, value_parser = crate::client::dashboard::Thresholds::parse)]
        thresholds: Option<crate::client::dashboard::Thresholds>,
    },
    /// What each agent sees of this client, and its own state.
    Conn,
    /// End this client's session on the selected agents (their commands are killed).
    Disconnect,
    /// Stop the selected agents.
    Kill {
        /// Do not ask for confirmation.
        #[arg(short, long)]
        yes: bool,
    },
    /// Restart the selected agents in place.
    Reset {
        /// Do not ask for confirmation.
        #[arg(short, long)]
        yes: bool,
    },
    /// The fleet CA on this machine: init, operators, revocation, tokens, renewal.
    Pki {
        /// The fleet CA's directory.
        #[command(flatten)]
        dir: pki::PkiDir,
        #[command(subcommand)]
        action: pki::PkiAction,
    },
    /// Enroll agents that await enrollment, with their join codes.
    Enroll(pki::EnrollArgs),
    /// Copy, install, enroll and check the agent on the selected hosts over SSH.
    Deploy(deploy::DeployArgs),
    /// Run a local script on the selected hosts with its `#!` interpreter.
    Script(script::ScriptArgs),
    /// Copy a local file to the selected hosts (checked by SHA-256).
    Push(files::PushArgs),
    /// Copy a file from the selected hosts into DIR/HOST/NAME.
    Pull(files::PullArgs),
    /// Fleet jobs (`exec --detach`) with each host's state, newest last.
    Jobs {
        /// One fleet job, host by host.
        id: Option<String>,
        /// How many of the latest fleet jobs.
        #[arg(short = 'n', long, default_value_t = 20)]
        count: usize,
    },
    /// Follow a fleet job again: replays what each host's job log keeps,
    /// then follows it live. Ctrl-C detaches; the jobs run on.
    Attach {
        #[command(flatten)]
        job: jobs::JobArgs,
        /// Gather identical output (like exec -b).
        #[arg(short = 'b', long = "gather")]
        gather: bool,
        /// Gather, then show each group as a diff against the largest.
        #[arg(long)]
        diff: bool,
    },
    /// Cancel a fleet job on every host (its process groups are killed).
    Cancel(jobs::JobArgs),
    /// Commands run before: list, show one, run one again.
    History {
        #[command(subcommand)]
        action: Option<history::HistoryAction>,
    },
    /// Print a shell completion script.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// Why the CLI stopped before doing its work.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A usage or configuration problem.
    #[error("{0}")]
    Usage(String),
    /// The hosts file is unusable.
    #[error(transparent)]
    Hosts(#[from] HostsError),
    /// The client config is unusable.
    #[error(transparent)]
    Config(#[from] super::config::ConfigError),
    /// The embedded agent did not start.
    #[error("cannot start the local agent: {0}")]
    LocalAgent(String),
}

/// The whole `vigie` program.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // One connection per host: a fan-out to a thousand hosts needs more
    // descriptors than a desktop's default soft limit. Refused only by an
    // unusual kernel; the limit then stays as it was.
    let _ = crate::rlimit::raise_open_files();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("vigie: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(cli));
    // Channels and streams still open close without waiting for agents.
    runtime.shutdown_timeout(Duration::from_millis(200));
    code
}

/// Runs one parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let printer = Printer::new(cli.global.json, cli.global.color);
    match dispatch(cli, &printer).await {
        Ok(code) => code,
        Err(e) => {
            // Errors can quote a host (a certificate's names, a status
            // message): shown, never obeyed.
            printer.note(&format!("vigie: {}", super::text::visible(&e.to_string())));
            ExitCode::from(2)
        }
    }
}

async fn dispatch(cli: Cli, printer: &Printer) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "vigie", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::History { action } => {
            let context = Context::history_only(&cli.global)?;
            history::run(&cli.global, &context, action, printer).await
        }
        Command::Hosts { action } => hosts::run(&cli.global, action, printer).await,
        Command::Pki { dir, action } => pki::run(&cli.global, &dir, action, printer).await,
        Command::Enroll(args) => pki::enroll_hosts(&cli.global, args, printer).await,
        Command::Deploy(args) => deploy::run(&cli.global, args, printer).await,
        Command::Jobs { id, count } => jobs::list(&cli.global, id.as_deref(), count, printer).await,
        Command::Attach { job, gather, diff } => {
            jobs::attach(&cli.global, &job, exec::View::of(gather, diff), printer).await
        }
        Command::Cancel(job) => jobs::cancel(&cli.global, &job, printer).await,
        command => {
            let context = Context::new(&cli.global, printer).await?;
            match command {
                Command::Exec(args) => exec::run(&context, args, printer).await,
                Command::Push(args) => files::push(&context, args, printer).await,
                Command::Script(args) => script::run(&context, args, printer).await,
                Command::Pull(args) => files::pull(&context, args, printer).await,
                Command::Info { what } => info::info(&context, what, printer).await,
                Command::Ps { filter } => {
                    ps::ps(&context, filter.unwrap_or_default(), printer).await
                }
                Command::Signal { pid, signal } => ps::signal(&context, pid, signal, printer).await,
                Command::Watch { interval, count } => {
                    watch::watch(&context, interval, count, printer).await
                }
                Command::Top {
                    interval,
                    thresholds,
                } => top::top(&context, interval, thresholds.unwrap_or_default()).await,
                Command::Conn => conn::conn(&context, printer).await,
                Command::Disconnect => {
                    lifecycle::lifecycle(&context, lifecycle::Lifecycle::Disconnect, false, printer)
                        .await
                }
                Command::Kill { yes } => {
                    lifecycle::lifecycle(&context, lifecycle::Lifecycle::Kill, yes, printer).await
                }
                Command::Reset { yes } => {
                    lifecycle::lifecycle(&context, lifecycle::Lifecycle::Reset, yes, printer).await
                }
                Command::Completions { .. }
                | Command::History { .. }
                | Command::Hosts { .. }
                | Command::Pki { .. }
                | Command::Enroll(_)
                | Command::Deploy(_)
                | Command::Jobs { .. }
                | Command::Attach { .. }
                | Command::Cancel(_) => {
                    unreachable!("handled above")
                }
            }
        }
    }
}

/// Everything a fan-out command needs.
pub struct Context {
    /// The hosts.
    pub fleet: Fleet,
    /// The hosts the command addresses.
    pub selection: Vec<usize>,
    /// Hosts at once.
    pub concurrency: usize,
    /// Where runs are recorded.
    pub history: Option<History>,
    /// The agent started in this process when there is no hosts file.
    _local_agent: Option<crate::server::PrivateAgent>,
}

impl Context {
    fn history_only(global: &Global) -> Result<Self, CliError> {
        let _ = load_config(global)?;
        Ok(Self {
            fleet: Fleet::new(Vec::new(), |_| ConnectionSettings::default()),
            selection: Vec::new(),
            concurrency: DEFAULT_CONCURRENCY,
            history: History::default_location(),
            _local_agent: None,
        })
    }

    async fn new(global: &Global, printer: &Printer) -> Result<Self, CliError> {
        Self::build(global, &global.hosts_selected, printer).await
    }

    /// A context whose selection is these hosts (names or addresses).
    async fn for_hosts(
        global: &Global,
        names: &[String],
        printer: &Printer,
    ) -> Result<Self, CliError> {
        Self::build(global, names, printer).await
    }

    async fn build(
        global: &Global,
        selected: &[String],
        printer: &Printer,
    ) -> Result<Self, CliError> {
        let config = load_config(global)?;
        let overrides = flag_settings(global);
        let hosts_path = global.hosts.clone().or_else(|| config.hosts.clone());
        let concurrency = global
            .concurrency
            .or(config.concurrency)
            .unwrap_or(DEFAULT_CONCURRENCY)
            .max(1);
        let history = History::default_location();

        let mut entries = match &hosts_path {
            Some(path) => {
                let file = HostsFile::load(path)?;
                for error in &file.errors {
                    printer.note(&super::text::visible(&format!(
                        "vigie: {}: {error} (line skipped)",
                        path.display()
                    )));
                }
                file.hosts
            }
            None => Vec::new(),
        };
        let mut local_agent = None;
        if hosts_path.is_none() && selected.is_empty() {
            // No hosts at all: show something real with an agent of our
            // own, for this machine, on a socket only this user can reach.
            let agent = crate::server::PrivateAgent::start(crate::server::AgentConfig::default())
                .map_err(|e| CliError::LocalAgent(e.to_string()))?;
            if !global.json {
                printer.note(&printer.dim(
                    "vigie: no hosts file: using an agent started in this process (this machine, \
                     on a socket only you can reach); give --hosts FILE for other hosts",
                ));
            }
            entries.push(HostEntry::new(
                "localhost",
                agent.path().to_string_lossy(),
                0,
            ));
            local_agent = Some(agent);
        }
        // Names given with -H that the file does not know are addresses.
        for pattern in selected {
            for name in super::ranges::expand(pattern).map_err(CliError::Usage)? {
                if entries.iter().any(|e| e.name == name) {
                    continue;
                }
                let (address, port) = split_host_port(&name)
                    .map_err(|reason| CliError::Usage(format!("-H {name}: {reason}")))?;
                entries.push(HostEntry::new(name.clone(), address, port));
            }
        }
        // Each command talks to each host once: connections close when
        // done, so that memory does not grow with the number of hosts.
        let fleet = Fleet::closing_idle(entries, |entry| {
            let settings = overrides.merged_over(&config.settings_for(&entry.name));
            // The agent started here runs without access control; it needs
            // no credentials and speaks plaintext.
            if local_agent.is_some() {
                ConnectionSettings::default()
            } else {
                settings
            }
        });
        let selector = if !selected.is_empty() {
            Selector::Names(selected.to_vec())
        } else if let Some(tag) = &global.group {
            Selector::Tag(tag.clone())
        } else {
            Selector::All
        };
        let selection = fleet
            .select(&selector)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        if selection.is_empty() {
            return Err(CliError::Usage(
                "no hosts selected: the hosts file is empty".into(),
            ));
        }
        if let Some(notice) = fleet.connection_notice() {
            eprintln!("vigie: note: {notice}");
        }
        Ok(Self {
            fleet,
            selection,
            concurrency,
            history,
            _local_agent: local_agent,
        })
    }

    /// True when the hosts are this process's own agent.
    pub fn has_local_agent(&self) -> bool {
        self._local_agent.is_some()
    }

    /// The name of the host at `index`.
    pub fn name(&self, index: usize) -> &str {
        self.fleet.host(index).map_or("?", |h| h.name())
    }
}

/// The client config: `--config`, else the default file when it exists.
fn load_config(global: &Global) -> Result<ClientConfig, CliError> {
    match &global.config {
        Some(path) => Ok(ClientConfig::load(path)?),
        None => match super::config::default_path().filter(|p| p.exists()) {
            Some(path) => Ok(ClientConfig::load(&path)?),
            None => Ok(ClientConfig::default()),
        },
    }
}

/// The connection settings given by flags (and VIGIE_TOKEN).
fn flag_settings(global: &Global) -> ConnectionSettings {
    ConnectionSettings {
        tls: None,
        ca: global.ca.clone(),
        cert: global.cert.clone(),
        key: global.key.clone(),
        fingerprint: global.fingerprint.clone(),
        crl: None,
        server_name: None,
        token: global.token.clone().map(Secret::new),
        insecure_plaintext: global.insecure_plaintext.then_some(true),
        keepalive_interval_ms: global.keepalive_interval_ms,
        keepalive_timeout_ms: global.keepalive_timeout_ms,
    }
}

/// Asks the user to confirm on the terminal; false when stdin is not one.
fn confirm(question: &str) -> bool {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return false;
    }
    let mut err = std::io::stderr();
    let _ = write!(err, "{question} [y/N] ");
    let _ = err.flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes")
}
