//! The agent started by hand, where systemd is absent (`install --spawn`):
//! a detached process whose pid is kept in a pid file, and stopping it
//! again (`uninstall`, or `install` replacing it).

use std::{
    io::{self, Write},
    os::unix::{fs::OpenOptionsExt, process::CommandExt},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use rustix::process::{Pid, PidfdFlags, Signal};

use super::{InstallError, Layout, io_error, paths, say};
use crate::server::net::LISTEN_FD_ENV;

/// How long the agent may take to listen, or to stop after SIGTERM.
pub const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(50);

/// The pid of the agent named by the pid file, if that process is alive
/// and is a vigie-agent (a stale pid file may name a reused pid).
pub fn recorded(layout: &Layout) -> Result<Option<i32>, InstallError> {
    let path = layout.path(paths::PID_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(&path)(e)),
    };
    Ok(text
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|&pid| pid > 1 && is_live_agent(pid)))
}

/// Starts the installed agent detached from this process: in a session of
/// its own, stdin from /dev/null, stdout and stderr appended to the agent
/// log, its pid in the pid file. Waits until it says it listens.
pub fn spawn(layout: &Layout, out: &mut dyn Write) -> Result<(), InstallError> {
    let log_path = layout.path(paths::AGENT_LOG);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(io_error(&log_path))?;
    // Only what this agent writes counts: the log may hold earlier runs.
    let start = log.metadata().map_err(io_error(&log_path))?.len();
    let mut command = Command::new(layout.path(paths::BINARY));
    command
        .arg("--config")
        .arg(layout.path(paths::CONFIG))
        .current_dir("/")
        // A socket handed over by a restart is not ours to pass on.
        .env_remove(LISTEN_FD_ENV)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io_error(&log_path))?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe and touches no memory of the
    // parent; it makes the agent a session leader, so that neither the
    // terminal nor the SSH session that ran `install` can signal it.
    unsafe {
        command.pre_exec(|| rustix::process::setsid().map(drop).map_err(io::Error::from));
    }
    let binary = layout.path(paths::BINARY);
    let mut child = command.spawn().map_err(io_error(&binary))?;
    let pid = child.id();
    let pid_file = layout.path(paths::PID_FILE);
    if let Some(dir) = pid_file.parent() {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    super::files::write_file(&pid_file, format!("{pid}\n").as_bytes(), 0o644)?;
    let deadline = Instant::now() + WAIT_LIMIT;
    let failure = loop {
        if let Some(addr) = listening_in(&log_path, start) {
            say(
                out,
                format_args!(
                    "started vigie-agent (pid {pid}), listening on {addr}; its log is {}",
                    log_path.display()
                ),
            )?;
            say(out, format_args!("its pid is in {}", pid_file.display()))?;
            return Ok(());
        }
        match child.try_wait() {
            Ok(Some(status)) => break format!("it exited ({status})"),
            Ok(None) if Instant::now() >= deadline => {
                // An agent nobody knows about is worse than none.
                let _ = child.kill();
                let _ = child.wait();
                break format!(
                    "it did not listen within {} s, so it was killed",
                    WAIT_LIMIT.as_secs()
                );
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => break e.to_string(),
        }
    };
    let _ = std::fs::remove_file(&pid_file);
    Err(InstallError::NotStarted {
        reason: failure,
        log: log_path,
    })
}

/// Stops the agent of the pid file (SIGTERM, then up to [`WAIT_LIMIT`])
/// and removes the file. Says what it found.
pub fn stop(layout: &Layout, out: &mut dyn Write) -> Result<(), InstallError> {
    let pid_file = layout.path(paths::PID_FILE);
    if !pid_file.exists() {
        return say(
            out,
            format_args!(
                "no {}: no agent started by install is running",
                pid_file.display()
            ),
        );
    }
    match recorded(layout)? {
        Some(pid) => {
            terminate(pid)?;
            say(out, format_args!("stopped vigie-agent (pid {pid})"))?;
        }
        None => say(
            out,
            format_args!("{} names no running vigie-agent", pid_file.display()),
        )?,
    }
    std::fs::remove_file(&pid_file).map_err(io_error(&pid_file))?;
    say(out, format_args!("removed {}", pid_file.display()))
}

/// Sends SIGTERM to a vigie-agent and waits until it has exited. The
/// process is held by a pidfd from the check to the signal, so that a pid
/// reused meanwhile is never signalled.
fn terminate(pid: i32) -> Result<(), InstallError> {
    let signal_error = |source: io::Error| InstallError::Signal { pid, source };
    let target =
        Pid::from_raw(pid).ok_or_else(|| signal_error(io::ErrorKind::InvalidInput.into()))?;
    let sent = match rustix::process::pidfd_open(target, PidfdFlags::empty()) {
        Ok(pidfd) => {
            // Checked again now that the process is held.
            if !is_live_agent(pid) {
                return Ok(());
            }
            rustix::process::pidfd_send_signal(&pidfd, Signal::TERM)
        }
        // Kernels before 5.3: the window between check and signal is all
        // there is.
        Err(rustix::io::Errno::NOSYS) => rustix::process::kill_process(target, Signal::TERM),
        Err(e) => Err(e),
    };
    match sent {
        Ok(()) => {}
        Err(rustix::io::Errno::SRCH) => return Ok(()),
        Err(e) => return Err(signal_error(e.into())),
    }
    let deadline = Instant::now() + WAIT_LIMIT;
    while is_running(pid) {
        if Instant::now() >= deadline {
            return Err(InstallError::StillRunning { pid });
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

/// The address in the first "listening on ADDR" line the agent wrote to
/// its log after `start`.
fn listening_in(log: &Path, start: u64) -> Option<String> {
    let text = std::fs::read(log).ok()?;
    let new = text.get(usize::try_from(start).ok()?..)?;
    String::from_utf8_lossy(new)
        .lines()
        .find_map(|line| line.strip_prefix("listening on "))
        .map(|addr| addr.trim().to_owned())
}

/// True when `pid` runs (not a zombie) and its program is vigie-agent: the
/// file it runs, or its name when the link cannot be read. A binary
/// replaced since it started reads as `vigie-agent (deleted)`.
fn is_live_agent(pid: i32) -> bool {
    if !is_running(pid) {
        return false;
    }
    match std::fs::read_link(format!("/proc/{pid}/exe")) {
        Ok(exe) => exe
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("vigie-agent")),
        Err(_) => std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.trim() == "vigie-agent"),
    }
}

/// True while `pid` exists and has not exited. An exited process nobody
/// has reaped yet (a zombie) has stopped all the same.
fn is_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised name: "pid (name) S ...".
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}
