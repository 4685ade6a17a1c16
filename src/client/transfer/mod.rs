//! Moving files across the fleet, for both front-ends: a push reads each
//! local file twice whatever the number of hosts (once to hash it, since
//! the agents check the content against the SHA-256 announced first, then
//! once to send it, each chunk shared by every host's stream), with bounded
//! memory; a tree is pushed as its directories (modes kept) and then its
//! files; a pull writes `DIR/HOST/NAME` for each host, through a temporary
//! file renamed into place once the SHA-256 the agent sent matches.

use std::sync::atomic::AtomicU64;

mod local;
mod pull;
mod push;

pub use local::{Entry, LocalError, LocalFile, Plan, Skipped};
pub use pull::{Pulled, pull};
pub use push::{Failed, Pushed, push_plan};

/// Bytes read from a local file at once.
const CHUNK: usize = 256 * 1024;
/// Chunks queued per host: what a push holds in memory is this many chunks
/// per file (shared between hosts), whatever the number of hosts.
const QUEUED: usize = 8;

/// Bytes moved so far, for a progress bar: shared with the caller.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes sent or received, all hosts together.
    pub bytes: AtomicU64,
    /// Hosts done (whatever the outcome).
    pub hosts: AtomicU64,
}
