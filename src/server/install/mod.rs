//! `vigie-agent install` and `uninstall`: this binary as the host's agent,
//! run by systemd (or started by hand where systemd is absent).
//!
//! Install copies the running binary to /usr/local/bin, makes /etc/vigie
//! the fleet directory and /var/log/vigie the log directory (both 0700),
//! writes the agent configuration and the unit, makes sure the agent can
//! be enrolled (a join code, given on stdin or made and shown once) and
//! starts the service. Every step says what it did or what it left alone,
//! so a second run is harmless and says so. Uninstall undoes it all but the
//! fleet directory, which is the host's identity, and the logs, unless
//! asked to purge them.
//!
//! `--root DIR` puts every one of those paths under DIR, and the files
//! written name the paths under DIR, so that an agent started from there
//! touches nothing outside it (the tests install into a temporary one).

mod args;
mod files;
mod process;
mod systemd;
pub mod unit;

use std::{
    ffi::OsString,
    io::{self, BufRead, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use super::enroll::{
    FleetDir, files as fleet_files,
    join::{self, JoinError},
};
pub use args::{InstallArgs, UninstallArgs};
pub use unit::{SERVICE, config_text, unit_text};

/// The system paths of an installed agent.
pub mod paths {
    /// The installed binary.
    pub const BINARY: &str = "/usr/local/bin/vigie-agent";
    /// The binary as the Debian package installs it.
    pub const PACKAGED_BINARY: &str = "/usr/bin/vigie-agent";
    /// The fleet directory, which also holds the configuration.
    pub const FLEET_DIR: &str = "/etc/vigie";
    /// The agent configuration.
    pub const CONFIG: &str = "/etc/vigie/agent.toml";
    /// The log directory.
    pub const LOG_DIR: &str = "/var/log/vigie";
    /// The audit log.
    pub const AUDIT_LOG: &str = "/var/log/vigie/audit.jsonl";
    /// The state directory: detached jobs' output while the agent runs.
    pub const STATE_DIR: &str = "/var/lib/vigie";
    /// The output of an agent started by hand.
    pub const AGENT_LOG: &str = "/var/log/vigie/agent.log";
    /// The systemd unit.
    pub const UNIT: &str = "/etc/systemd/system/vigie-agent.service";
    /// The pid of an agent started by hand.
    pub const PID_FILE: &str = "/run/vigie-agent.pid";
    /// Present exactly when systemd is the running init (sd_booted(3)).
    pub const SYSTEMD_RUNNING: &str = "/run/systemd/system";
}

/// Where the agent listens unless told otherwise: every address, since an
/// installed agent is reached from the operator's machine.
pub fn default_listen() -> String {
    format!("0.0.0.0:{}", crate::wire::DEFAULT_PORT)
}

/// Why install or uninstall stopped.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Not run as root, and no `--root` to work under.
    #[error(
        "{command} must run as root: it writes /usr/local/bin, /etc/vigie, /var/log/vigie and \
         /etc/systemd/system and manages the vigie-agent service; run it with sudo, or pass \
         --root DIR to work under a directory"
    )]
    NotRoot {
        /// `install` or `uninstall`.
        command: &'static str,
    },
    /// A file or directory cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A path exists but is not a directory.
    #[error("{0} exists and is not a directory")]
    NotADirectory(PathBuf),
    /// The kept configuration is not one the agent would start with.
    #[error(
        "{path} is not a valid agent configuration ({reason}); fix it, or pass --force to replace it"
    )]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The configuration cannot be written (a path that is not UTF-8).
    #[error("cannot write the agent configuration: {0}")]
    Serialize(#[from] toml::ser::Error),
    /// A join code cannot be read, made or stored.
    #[error(transparent)]
    Join(#[from] JoinError),
    /// systemctl failed.
    #[error("{command} failed: {reason}")]
    Systemctl {
        /// The command line.
        command: String,
        /// Its exit status, or why it did not run.
        reason: String,
    },
    /// The agent started by hand did not come up.
    #[error("vigie-agent did not start: {reason}; see {log}")]
    NotStarted {
        /// What happened.
        reason: String,
        /// Its log.
        log: PathBuf,
    },
    /// The agent did not stop after SIGTERM.
    #[error(
        "vigie-agent (pid {pid}) is still running 10 s after SIGTERM: stop it (kill -KILL {pid}), \
         then run this again"
    )]
    StillRunning {
        /// Its pid.
        pid: i32,
    },
    /// The agent cannot be signalled.
    #[error("cannot stop vigie-agent (pid {pid}): {source}")]
    Signal {
        /// Its pid.
        pid: i32,
        /// Why.
        source: io::Error,
    },
}

/// Where the system paths are: the system itself, or under a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: Option<PathBuf>,
}

impl Layout {
    /// The system's own paths (`None`), or the same under `root`.
    pub fn new(root: Option<PathBuf>) -> Self {
        Self { root }
    }

    /// A system path (one of [`paths`]) in this layout.
    pub fn path(&self, system: &str) -> PathBuf {
        match &self.root {
            Some(root) => root.join(system.trim_start_matches('/')),
            None => PathBuf::from(system),
        }
    }

    /// True when systemd runs the system this layout belongs to.
    pub fn has_systemd(&self) -> bool {
        self.path(paths::SYSTEMD_RUNNING).is_dir()
    }
}

/// What `install` is asked to do.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Where the written configuration listens.
    pub listen: String,
    /// Read the join code from the first line of the input.
    pub join_code_stdin: bool,
    /// How long a join code stored now stays valid.
    pub join_valid: Duration,
    /// Write everything but start nothing.
    pub no_start: bool,
    /// Without systemd, start the agent detached.
    pub spawn: bool,
    /// Replace an existing configuration.
    pub force: bool,
    /// Where the system paths are.
    pub layout: Layout,
    /// The systemctl program (tests give a stand-in).
    pub systemctl: OsString,
}

/// What `uninstall` is asked to do.
#[derive(Debug, Clone)]
pub struct UninstallOptions {
    /// Remove the fleet directory and the logs too.
    pub purge: bool,
    /// Where the system paths are.
    pub layout: Layout,
    /// The systemctl program (tests give a stand-in).
    pub systemctl: OsString,
}

/// Refuses to run as another user than root on the system's own paths.
pub fn check_root(
    command: &'static str,
    is_root: bool,
    layout: &Layout,
) -> Result<(), InstallError> {
    if is_root || layout.root.is_some() {
        Ok(())
    } else {
        Err(InstallError::NotRoot { command })
    }
}

/// True when this process runs as root.
pub fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Installs the running binary as the host's agent; one line on `out` per
/// step. The join code, if `--join-code-stdin`, is read from `input`.
pub fn install(
    options: &InstallOptions,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), InstallError> {
    check_root("install", running_as_root(), &options.layout)?;
    let layout = &options.layout;
    // Read before anything changes, so that a bad code changes nothing.
    let given = if options.join_code_stdin {
        Some(join::read_code(&mut &mut *input)?)
    } else {
        None
    };
    let mut changed = files::install_binary(&layout.path(paths::BINARY), out)?;
    files::private_dir(&layout.path(paths::FLEET_DIR), out)?;
    files::private_dir(&layout.path(paths::LOG_DIR), out)?;
    files::private_dir(&layout.path(paths::STATE_DIR), out)?;
    let (written, fleet) = files::write_config(options, out)?;
    changed |= written;
    let fleet = FleetDir::new(fleet);
    // An agent awaiting enrollment serves nothing else, so restarting it
    // for a new code costs nothing.
    let config = layout.path(paths::CONFIG);
    changed |= join_code(&fleet, &config, given, options.join_valid, out)? && !fleet.is_enrolled();
    changed |= files::write_if_changed(
        &layout.path(paths::UNIT),
        &unit_text(&layout.path(paths::BINARY), &layout.path(paths::CONFIG)),
        out,
    )?;
    if layout.has_systemd() {
        return systemd::start_service(&options.systemctl, changed, options.no_start, out);
    }
    say(
        out,
        format_args!(
            "systemd is absent (no {}): the unit was written but not enabled",
            layout.path(paths::SYSTEMD_RUNNING).display()
        ),
    )?;
    start_by_hand(options, changed, out)
}

/// Without systemd: starts the agent detached if asked (replacing one that
/// runs an older setup), or says how to start it.
fn start_by_hand(
    options: &InstallOptions,
    changed: bool,
    out: &mut dyn Write,
) -> Result<(), InstallError> {
    let layout = &options.layout;
    if let Some(pid) = process::recorded(layout)? {
        if !changed {
            return say(
                out,
                format_args!("vigie-agent is running (pid {pid}), left alone"),
            );
        }
        if options.spawn {
            process::stop(layout, out)?;
            return process::spawn(layout, out);
        }
        return say(
            out,
            format_args!(
                "vigie-agent (pid {pid}) runs the old setup: stop it and start it again, \
                 or run install again with --spawn"
            ),
        );
    }
    if options.spawn {
        return process::spawn(layout, out);
    }
    if options.no_start {
        say(out, "not started (--no-start)")?;
    }
    let quote = |path: &str| shell_words::quote(&layout.path(path).to_string_lossy()).into_owned();
    say(
        out,
        format_args!(
            "run it by hand: setsid {} --config {} >>{} 2>&1 </dev/null &",
            quote(paths::BINARY),
            quote(paths::CONFIG),
            quote(paths::AGENT_LOG)
        ),
    )?;
    say(out, "or run install again with --spawn to have it started")
}

/// Stops and removes the installed agent; keeps the fleet directory and
/// the logs unless `purge`.
pub fn uninstall(options: &UninstallOptions, out: &mut dyn Write) -> Result<(), InstallError> {
    check_root("uninstall", running_as_root(), &options.layout)?;
    let layout = &options.layout;
    let unit = layout.path(paths::UNIT);
    let systemd = layout.has_systemd();
    if systemd && unit.exists() {
        systemd::systemctl(&options.systemctl, &["disable", "--now", SERVICE])?;
        say(out, format_args!("stopped and disabled {SERVICE}"))?;
    }
    process::stop(layout, out)?;
    let removed_unit = files::remove_file(&unit, out)?;
    if systemd && removed_unit {
        systemd::systemctl(&options.systemctl, &["daemon-reload"])?;
        say(out, "reloaded systemd's units")?;
    }
    files::remove_file(&layout.path(paths::BINARY), out)?;
    for (dir, what) in [
        (paths::FLEET_DIR, "this host's identity in the fleet"),
        (paths::LOG_DIR, "the agent's logs"),
        (
            paths::STATE_DIR,
            "the agent's state (jobs' output while it runs)",
        ),
    ] {
        let dir = layout.path(dir);
        if !dir.exists() {
            say(out, format_args!("{} is already absent", dir.display()))?;
        } else if options.purge {
            std::fs::remove_dir_all(&dir).map_err(io_error(&dir))?;
            say(out, format_args!("removed {} ({what})", dir.display()))?;
        } else {
            say(
                out,
                format_args!("kept {} ({what}; --purge removes it)", dir.display()),
            )?;
        }
    }
    Ok(())
}

/// Makes sure the agent can be enrolled: stores the code given, or makes
/// one (shown once) if the agent is neither enrolled nor holding a live
/// code. True when a code was stored.
fn join_code(
    fleet: &FleetDir,
    config: &Path,
    given: Option<String>,
    valid: Duration,
    out: &mut dyn Write,
) -> Result<bool, InstallError> {
    let file = fleet.file(fleet_files::JOIN);
    let valid_for = humantime::format_duration(valid);
    if let Some(code) = given {
        join::store(fleet, &code, valid)?;
        say(
            out,
            format_args!(
                "stored the join code from stdin as a hash in {} (valid for {valid_for})",
                file.display()
            ),
        )?;
        return Ok(true);
    }
    if fleet.is_enrolled() {
        return say(
            out,
            format_args!(
                "already enrolled ({} exists): no join code made",
                fleet.file(fleet_files::CERT).display()
            ),
        )
        .map(|()| false);
    }
    if let Some(pending) = join::load(fleet)?.filter(|p| p.is_live(crate::clock::now_ms())) {
        let until = std::time::UNIX_EPOCH
            + Duration::from_millis(u64::try_from(pending.expires_at_ms).unwrap_or(0));
        say(
            out,
            format_args!(
                "a join code is pending until {}: left it alone (a new one: vigie-agent join-code --config {})",
                humantime::format_rfc3339_seconds(until),
                config.display()
            ),
        )?;
        return Ok(false);
    }
    let code = join::generate()?;
    join::store(fleet, &code, valid)?;
    // Shown at once: were a later step to fail, a code stored but never
    // shown would hold the next run back from making another.
    say(
        out,
        format_args!(
            "join code, shown only now (only its hash is kept, in {}; valid for {valid_for}):",
            file.display()
        ),
    )?;
    writeln!(out, "{code}").map_err(io_error(Path::new("stdout")))?;
    say(
        out,
        "enroll this agent from the operator's machine: vigie enroll HOST --join-code-stdin",
    )?;
    Ok(true)
}

/// One line of the report.
fn say(out: &mut dyn Write, line: impl std::fmt::Display) -> Result<(), InstallError> {
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(io_error(Path::new("stdout")))
}

/// Names the path an I/O error happened on.
fn io_error(path: &Path) -> impl FnOnce(io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.to_owned(),
        source,
    }
}
