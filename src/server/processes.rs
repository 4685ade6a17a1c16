//! Sending signals to processes on behalf of a client.
//!
//! The agent must never be stopped or killed this way: Shutdown and Restart
//! are admin-only, and SIGSTOP on the agent would freeze it for everyone.
//! `kill(2)` on any thread id of a process signals the whole process, so
//! the check is on the target's thread-group id, not on its number. The
//! target is also held by a pidfd from the check to the signal, so a pid
//! reused in between cannot receive a signal meant for another process.
//!
//! Never signalled: the agent (any of its threads), init (pid 1), the
//! agent's parent (its supervisor: killing it may take the agent down too)
//! and the other members of the agent's own process group (a pipeline it
//! was started in). Commands the agent runs are each in a group of their
//! own, so they are not affected by that rule.

use std::{
    collections::HashMap,
    os::fd::OwnedFd,
    sync::{Arc, Mutex},
};

use rustix::process::{Pid, Signal};

use crate::types::ProcessSignal;

/// Why a signal was not sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignalError {
    /// The pid is zero or negative (which would mean a whole group).
    #[error("pid must be a positive process id, got {0}")]
    InvalidPid(i32),
    /// The request named the agent itself; Shutdown and Restart do that.
    #[error("pid {0} is the agent itself: use Shutdown or Restart")]
    IsAgent(i32),
    /// The pid is a thread of another process, not a process.
    #[error("pid {pid} is a thread of process {process}: signal the process")]
    IsThread {
        /// The thread id given.
        pid: i32,
        /// The process it belongs to.
        process: i32,
    },
    /// A process the agent never signals.
    #[error("pid {pid} is {what}: the agent never signals it")]
    Protected {
        /// The process.
        pid: i32,
        /// Why it is protected.
        what: &'static str,
    },
    /// The caller may signal only the agent's own commands.
    #[error(
        "pid {0} is not a process of a command this agent runs: Execute is restricted for this \
         caller (no_exec or exec_allow), so it may signal only those (signal_any_process widens it)"
    )]
    NotOwnCommand(i32),
    /// No such process.
    #[error("no process with pid {0}")]
    NotFound(i32),
    /// The agent's user may not signal it.
    #[error("not allowed to signal pid {0}")]
    NotPermitted(i32),
    /// Another OS error.
    #[error("cannot signal pid {pid}: {message}")]
    Other {
        /// The process.
        pid: i32,
        /// The OS error.
        message: String,
    },
}

/// The process groups of the commands this agent runs now, with the
/// identity that started each, so that a caller limited to its own commands
/// can be checked.
#[derive(Debug, Default, Clone)]
pub struct OwnGroups(Arc<Mutex<HashMap<i32, String>>>);

/// Keeps a command's group registered until dropped.
#[derive(Debug)]
pub struct GroupRegistration {
    groups: OwnGroups,
    pgid: i32,
}

impl Drop for GroupRegistration {
    fn drop(&mut self) {
        self.groups.lock().remove(&self.pgid);
    }
}

impl OwnGroups {
    /// Registers the group of a command that `owner` just started.
    pub fn register(&self, pgid: i32, owner: &str) -> GroupRegistration {
        self.lock().insert(pgid, owner.to_owned());
        GroupRegistration {
            groups: self.clone(),
            pgid,
        }
    }

    fn owned_by(&self, pgid: i32, owner: &str) -> bool {
        self.lock().get(&pgid).is_some_and(|o| o == owner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, String>> {
        // A set of numbers cannot be left half-changed by a panic.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The process that received a signal, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signalled {
    /// Its pid.
    pub pid: i32,
    /// Its command line as /proc shows it (arguments separated by spaces).
    pub command_line: String,
}

/// Whom a caller may signal.
#[derive(Debug, Clone, Copy)]
pub enum Reach<'a> {
    /// Any process the agent's user may signal (but the protected ones).
    Any,
    /// Only processes in the groups of the agent's running commands that
    /// this identity started.
    OwnCommands(&'a OwnGroups, &'a str),
}

/// Sends `signal` to the process `pid`, if `reach` allows it.
pub fn send(pid: i32, signal: ProcessSignal, reach: Reach<'_>) -> Result<Signalled, SignalError> {
    // Checked before `Pid::from_raw`, which asserts on negative values.
    if pid <= 0 {
        return Err(SignalError::InvalidPid(pid));
    }
    let target = Pid::from_raw(pid).ok_or(SignalError::InvalidPid(pid))?;
    let agent = std::process::id() as i32;
    if pid == agent {
        return Err(SignalError::IsAgent(pid));
    }
    // Hold the process first: every check below is then about the process
    // the signal reaches, even if the pid is reused meanwhile.
    let pidfd = open_pidfd(target)?;
    let started = start_time(pid);
    let process = thread_group(pid)?;
    if process != pid {
        return Err(if process == agent {
            SignalError::IsAgent(pid)
        } else {
            SignalError::IsThread { pid, process }
        });
    }
    if pid == 1 {
        return Err(SignalError::Protected { pid, what: "init" });
    }
    if Some(pid) == rustix::process::getppid().map(|p| p.as_raw_nonzero().get()) {
        return Err(SignalError::Protected {
            pid,
            what: "the agent's parent",
        });
    }
    let group = rustix::process::getpgid(Some(target)).map_err(|e| os_error(pid, e))?;
    let own_group = rustix::process::getpgid(None).map_err(|e| os_error(pid, e))?;
    if group == own_group {
        return Err(SignalError::Protected {
            pid,
            what: "in the agent's own process group",
        });
    }
    if let Reach::OwnCommands(groups, identity) = reach
        && !groups.owned_by(group.as_raw_nonzero().get(), identity)
    {
        return Err(SignalError::NotOwnCommand(pid));
    }
    let command_line = command_line(pid);
    let sent = match &pidfd {
        Some(fd) => rustix::process::pidfd_send_signal(fd, to_os(signal)),
        None => {
            // Without a pidfd the pid could have been reused since the
            // checks: the process must still be the one checked (same
            // start time, same thread group) just before the signal.
            if start_time(pid) != started || thread_group(pid)? != pid {
                return Err(SignalError::NotFound(pid));
            }
            rustix::process::kill_process(target, to_os(signal))
        }
    };
    sent.map_err(|e| os_error(pid, e))?;
    Ok(Signalled { pid, command_line })
}

/// A pidfd for the process, or `None` where the kernel has none (before
/// 5.3); a pid that is a thread but not a process leader is reported by
/// `thread_group` afterwards.
fn open_pidfd(target: Pid) -> Result<Option<OwnedFd>, SignalError> {
    let pid = target.as_raw_nonzero().get();
    match rustix::process::pidfd_open(target, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => Ok(Some(fd)),
        // A thread id that is not a process leader is INVAL before Linux
        // 6.9 and NOENT since; `thread_group` then says what it is.
        Err(
            rustix::io::Errno::NOSYS
            | rustix::io::Errno::PERM
            | rustix::io::Errno::INVAL
            | rustix::io::Errno::NOENT,
        ) => Ok(None),
        Err(rustix::io::Errno::SRCH) => Err(SignalError::NotFound(pid)),
        Err(e) => Err(os_error(pid, e)),
    }
}

/// The thread-group id (the process) that `pid` belongs to, from
/// `/proc/PID/status`, which exists for thread ids too.
fn thread_group(pid: i32) -> Result<i32, SignalError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|_| SignalError::NotFound(pid))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Tgid:"))
        .and_then(|tgid| tgid.trim().parse().ok())
        .ok_or_else(|| SignalError::Other {
            pid,
            message: "its /proc status has no Tgid".into(),
        })
}

/// The process's start time (field 22 of `/proc/PID/stat`, in clock ticks
/// since boot): with the pid, it names one process for good.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name may hold spaces and parentheses: count after the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The process's command line, at most 4 KiB of it, for the audit log.
fn command_line(pid: i32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let raw = &raw[..raw.len().min(4096)];
    String::from_utf8_lossy(raw)
        .trim_end_matches('\0')
        .replace('\0', " ")
}

fn os_error(pid: i32, e: rustix::io::Errno) -> SignalError {
    match e {
        rustix::io::Errno::SRCH => SignalError::NotFound(pid),
        rustix::io::Errno::PERM => SignalError::NotPermitted(pid),
        other => SignalError::Other {
            pid,
            message: other.to_string(),
        },
    }
}

fn to_os(signal: ProcessSignal) -> Signal {
    match signal {
        ProcessSignal::Hup => Signal::HUP,
        ProcessSignal::Int => Signal::INT,
        ProcessSignal::Quit => Signal::QUIT,
        ProcessSignal::Kill => Signal::KILL,
        ProcessSignal::Usr1 => Signal::USR1,
        ProcessSignal::Usr2 => Signal::USR2,
        ProcessSignal::Term => Signal::TERM,
        ProcessSignal::Cont => Signal::CONT,
        ProcessSignal::Stop => Signal::STOP,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_groups_and_itself() {
        assert_eq!(
            send(0, ProcessSignal::Term, Reach::Any),
            Err(SignalError::InvalidPid(0))
        );
        assert_eq!(
            send(-5, ProcessSignal::Kill, Reach::Any),
            Err(SignalError::InvalidPid(-5))
        );
        let me = i32::try_from(std::process::id()).unwrap();
        assert_eq!(
            send(me, ProcessSignal::Term, Reach::Any),
            Err(SignalError::IsAgent(me))
        );
        assert!(matches!(
            send(1, ProcessSignal::Cont, Reach::Any),
            Err(SignalError::Protected { .. } | SignalError::NotPermitted(_))
        ));
    }

    #[test]
    fn refuses_every_thread_of_the_agent() {
        // A thread of this process: signalling it would reach the process.
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            tx.send(rustix::thread::gettid().as_raw_nonzero().get())
                .unwrap();
            let _ = stop_rx.recv();
        });
        let tid = rx.recv().unwrap();
        assert_eq!(
            send(tid, ProcessSignal::Stop, Reach::Any),
            Err(SignalError::IsAgent(tid))
        );
        drop(stop_tx);
        thread.join().unwrap();
    }

    #[test]
    fn an_unknown_pid_is_not_found() {
        // Above the largest pid_max Linux allows, so it never exists.
        let pid = 4_194_304 + 1;
        assert_eq!(
            send(pid, ProcessSignal::Term, Reach::Any),
            Err(SignalError::NotFound(pid))
        );
    }

    #[test]
    fn a_restricted_caller_reaches_only_registered_groups() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // The spawn returns while the child is still becoming `sleep`: wait
        // until /proc shows its arguments.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while command_line(pid).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let groups = OwnGroups::default();
        assert_eq!(
            send(
                pid,
                ProcessSignal::Cont,
                Reach::OwnCommands(&groups, "token:o")
            ),
            Err(SignalError::NotOwnCommand(pid))
        );
        let registered = groups.register(pid, "token:o");
        assert_eq!(
            send(
                pid,
                ProcessSignal::Cont,
                Reach::OwnCommands(&groups, "token:other")
            ),
            Err(SignalError::NotOwnCommand(pid)),
            "another identity's command is not this caller's"
        );
        assert!(start_time(pid).is_some());
        let signalled = send(
            pid,
            ProcessSignal::Kill,
            Reach::OwnCommands(&groups, "token:o"),
        )
        .unwrap();
        assert_eq!(signalled.command_line, "sleep 30");
        drop(registered);
        assert!(!groups.owned_by(pid, "token:o"));
        child.wait().unwrap();
    }
}
