//! Moving files across the fleet, for both front-ends: a push reads each
//! local file twice whatever the number of hosts (once to hash it, since
//! the agents check the content against the SHA-256 announced first, then
//! once to send it, each chunk shared by every host's stream), with bounded
//! memory; a tree is pushed as its directories (modes kept) and then its
//! files; a pull writes `DIR/HOST/NAME` for each host, through a temporary
//! file renamed into place once the SHA-256 the agent sent matches.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
};

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
    /// Each host's own count, by fleet index, when asked for.
    per_host: BTreeMap<usize, HostProgress>,
}

/// One host's part of a transfer.
#[derive(Debug, Default)]
pub struct HostProgress {
    /// Bytes sent to it or received from it.
    pub bytes: AtomicU64,
    /// Bytes it is to receive or send, once known (a pull learns it from
    /// the agent).
    pub size: AtomicU64,
}

impl Progress {
    /// A progress that also counts each of `hosts` (fleet indexes).
    pub fn for_hosts(hosts: &[usize]) -> Self {
        Self {
            per_host: hosts
                .iter()
                .map(|&i| (i, HostProgress::default()))
                .collect(),
            ..Self::default()
        }
    }

    /// The count of host `index`, when this progress keeps one.
    pub fn host(&self, index: usize) -> Option<&HostProgress> {
        self.per_host.get(&index)
    }

    /// Counts `bytes` moved for host `index`.
    pub(crate) fn add(&self, index: usize, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Some(host) = self.per_host.get(&index) {
            host.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Says how many bytes host `index` moves in all.
    pub(crate) fn expect(&self, index: usize, size: u64) {
        if let Some(host) = self.per_host.get(&index) {
            host.size.store(size, Ordering::Relaxed);
        }
    }
}
