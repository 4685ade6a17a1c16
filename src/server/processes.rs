//! Sending signals to processes on behalf of a client.

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

/// Sends `signal` to the process `pid`.
pub fn send(pid: i32, signal: ProcessSignal) -> Result<(), SignalError> {
    // Checked before `Pid::from_raw`, which asserts on negative values.
    if pid <= 0 {
        return Err(SignalError::InvalidPid(pid));
    }
    let target = Pid::from_raw(pid).ok_or(SignalError::InvalidPid(pid))?;
    if u32::try_from(pid).ok() == Some(std::process::id()) {
        return Err(SignalError::IsAgent(pid));
    }
    rustix::process::kill_process(target, to_os(signal)).map_err(|e| match e {
        rustix::io::Errno::SRCH => SignalError::NotFound(pid),
        rustix::io::Errno::PERM => SignalError::NotPermitted(pid),
        other => SignalError::Other {
            pid,
            message: other.to_string(),
        },
    })
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
            send(0, ProcessSignal::Term),
            Err(SignalError::InvalidPid(0))
        );
        assert_eq!(
            send(-5, ProcessSignal::Kill),
            Err(SignalError::InvalidPid(-5))
        );
        let me = i32::try_from(std::process::id()).unwrap();
        assert_eq!(send(me, ProcessSignal::Term), Err(SignalError::IsAgent(me)));
    }

    #[test]
    fn an_unknown_pid_is_not_found() {
        // Above the largest pid_max Linux allows, so it never exists.
        let pid = 4_194_304 + 1;
        assert_eq!(
            send(pid, ProcessSignal::Term),
            Err(SignalError::NotFound(pid))
        );
    }
}
