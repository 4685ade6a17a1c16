//! Running one command: planning it from a request, spawning it in its own
//! process group, streaming its output through a bounded channel, and ending
//! it, group and all, when it exits, times out, is cancelled or its client
//! goes away.
//!
//! The rules this module keeps:
//! - Every command is the leader of a new process group, so one signal
//!   reaches everything it started (unless a process left the group on
//!   purpose with `setsid`).
//! - The leader's exit is observed without reaping it (`waitid` with
//!   `WNOWAIT`). While the zombie leader exists, its pid, which is also the
//!   group id, cannot be reused, so signalling the group can never hit an
//!   unrelated process. The leader is reaped only once its output is done.
//! - Output is read only when the channel to the client has room (a permit
//!   is held), so a slow client slows the command through the pipe instead
//!   of growing memory. Cancellation, timeouts and exit are still seen while
//!   waiting for room.
//! - After a normal exit, output is read until every writer has closed the
//!   pipes (as `ssh host cmd` does). Whatever is left in the group after
//!   that is terminated, so no command leaves anything behind.

use std::{io, sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

pub use crate::command::{Event, ExecRequest};

mod drive;
mod plan;
mod spawn;

pub use drive::drive;
pub use plan::{CommandSpec, Host, plan};
pub use spawn::{OUTPUT_PIPE, Spawned, spawn};

/// Why a command could not be planned or started.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Neither a command line nor an argv was given.
    #[error("the command is empty")]
    EmptyCommand,
    /// A string of the request cannot be passed to a process.
    #[error("{0}")]
    InvalidArgument(String),
    /// The host's OS or shells do not fit the command.
    #[error("{0}")]
    Incompatible(String),
    /// The working directory is missing or not a directory.
    #[error("working directory {path}: {reason}")]
    WorkingDirectory {
        /// The directory asked for.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A program to run directly (no shell) is not on the PATH.
    #[error("program `{0}` not found")]
    ProgramNotFound(String),
    /// The program exists but cannot be executed.
    #[error("cannot execute `{program}`: {source}")]
    NotExecutable {
        /// The program.
        program: String,
        /// The OS error.
        source: io::Error,
    },
    /// Spawning failed for another reason (out of processes, memory...).
    #[error("cannot start the command: {0}")]
    Spawn(#[source] io::Error),
    /// The exec policy does not allow this command for this caller.
    #[error("{0}")]
    NotAllowed(String),
}

/// Tunables for running commands.
#[derive(Debug, Clone)]
pub struct ExecTuning {
    /// Time between TERM and KILL when the agent ends a command.
    pub kill_grace: Duration,
    /// Events the channel to the client holds before the command waits.
    pub channel_capacity: usize,
    /// Largest output chunk read at once.
    pub max_chunk: usize,
    /// Output bytes all commands together may hold beyond [`MIN_CHUNK`](drive::MIN_CHUNK)
    /// each; shared by the clones of one tuning.
    pub budget: OutputBudget,
}

impl Default for ExecTuning {
    fn default() -> Self {
        Self {
            kill_grace: Duration::from_secs(2),
            channel_capacity: 4,
            max_chunk: 256 * 1024,
            // Enough for one command streaming at full speed (its read and
            // a full channel of the largest chunks, 1.25 MiB); 4 MiB made
            // 100 commands at once hold 2 MiB more, with no gain for one.
            budget: OutputBudget::new(2 << 20),
        }
    }
}

/// Bounds the output the agent holds for all commands at once, from the
/// read of a pipe until the chunk is encoded for the client.
///
/// A command streaming in bulk reads large chunks (fewer wake-ups and
/// frames per megabyte), and up to [`ExecTuning::channel_capacity`] of them
/// wait for a slow client. Without a shared bound, 100 such commands held
/// some 2 MiB each. A read larger than [`MIN_CHUNK`](drive::MIN_CHUNK) takes its size from
/// this budget and gives it back when the chunk is dropped; when the budget
/// is spent, commands read [`MIN_CHUNK`](drive::MIN_CHUNK) at a time, so a stalled client
/// slows others down to small chunks but never stops them.
#[derive(Debug, Clone)]
pub struct OutputBudget(Arc<tokio::sync::Semaphore>);

impl OutputBudget {
    pub fn new(bytes: usize) -> Self {
        Self(Arc::new(tokio::sync::Semaphore::new(bytes)))
    }

    /// Bytes still free, for tests.
    pub fn available(&self) -> usize {
        self.0.available_permits()
    }

    pub(super) fn try_take(&self, bytes: usize) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let bytes = u32::try_from(bytes).ok()?;
        self.0.clone().try_acquire_many_owned(bytes).ok()
    }
}

/// What can end a command early, besides its time limit.
#[derive(Debug, Clone)]
pub struct Stops {
    /// Fires when the command's session ends.
    pub session: CancellationToken,
    /// Fires when the agent stops or restarts.
    pub agent: CancellationToken,
    /// Fires when a job is cancelled (CancelJob); never for a plain command.
    pub cancel: CancellationToken,
}
