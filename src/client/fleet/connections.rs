//! How many connections the process may keep open, and the leases of a
//! fleet too large for them.
//!
//! Each host's channel holds one descriptor while it is connected. A fleet
//! whose hosts all fit in the open-file limit keeps every host's channel
//! for its life (the next call to a host needs no new handshake). A fleet
//! larger than that cannot: connecting to every host in turn and keeping
//! them would starve the history, the hosts file and the later hosts of
//! descriptors ("Too many open files"). Its hosts are *leased* instead: a
//! host's connection takes a permit from one budget for the whole process,
//! lives while anything uses it (nested calls to one host share it) and is
//! closed, its permit given back, when nothing does.

use std::sync::{Arc, OnceLock, Weak};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::client::{AgentClient, connect::Hold};

/// Descriptors left for everything that is not a host's connection: the
/// standard streams, the runtime's own, the history and its lock, the
/// hosts file, TLS files read while dialling, a pull's files, a name
/// lookup's socket, and a connection that is still closing after its
/// permit was given back.
const RESERVED: u64 = 96;

/// The fewest leased connections, whatever the limit: below this a fleet
/// would crawl rather than fail, which a too-small limit should not do
/// silently either (the front-ends say what the budget is).
const FLOOR: usize = 4;

/// The process's budget of host connections.
#[derive(Debug)]
pub struct Budget {
    /// How many connections may be open at once.
    pub connections: usize,
    /// The open-file limit it was made from (`None`: unlimited).
    pub open_files: Option<u64>,
    permits: Arc<Semaphore>,
}

/// The budget, from the open-file limit when first asked (the front-ends
/// raise that limit before anything connects).
pub fn budget() -> &'static Budget {
    static BUDGET: OnceLock<Budget> = OnceLock::new();
    BUDGET.get_or_init(|| Budget::for_limit(crate::rlimit::open_files()))
}

impl Budget {
    fn for_limit(open_files: Option<u64>) -> Self {
        let connections = match open_files {
            None => Semaphore::MAX_PERMITS,
            Some(limit) => usize::try_from(limit.saturating_sub(RESERVED))
                .unwrap_or(Semaphore::MAX_PERMITS)
                .clamp(FLOOR, Semaphore::MAX_PERMITS),
        };
        Self {
            connections,
            open_files,
            permits: Arc::new(Semaphore::new(connections)),
        }
    }

    /// True when a fleet of `hosts` cannot keep a connection to each.
    pub fn must_lease(&self, hosts: usize) -> bool {
        hosts > self.connections
    }

    /// What the front-ends say, once, when a fleet of `hosts` is leased.
    pub fn notice(&self, hosts: usize) -> String {
        let limit = self
            .open_files
            .map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
        format!(
            "the open-file limit ({limit}, its hard limit included) cannot hold a connection to \
             each of {hosts} hosts: at most {} are kept open at once, each closed when its host \
             is done (raise the hard limit, `ulimit -Hn`, or the service's LimitNOFILE, to keep \
             them all)",
            self.connections
        )
    }

    /// A permit for one connection, waiting for one to be given back.
    async fn acquire(&self) -> OwnedSemaphorePermit {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .expect("the budget's semaphore is never closed")
    }
}

/// Waits for a permit for one connection. It is given back when the last
/// thing holding it goes: the lease, and each socket dialled under it
/// (sockets close a little after their channel is dropped: the permit
/// must outlive them, or the limit would be overshot while they close).
pub(super) async fn permit() -> Hold {
    Arc::new(budget().acquire().await)
}

/// A leased connection: its client and its permit. When the last client
/// using it is dropped, the channel goes, and with it the lease's share of
/// the permit; its sockets hold the rest until they are closed.
#[derive(Debug)]
pub(super) struct Lease {
    client: AgentClient,
    _permit: Hold,
}

/// A host's connection as the host keeps it.
#[derive(Debug, Default)]
pub(super) enum Slot {
    /// Nothing yet (or, for a leased host, nothing in use).
    #[default]
    Empty,
    /// Kept for the fleet's life.
    Kept(Box<Result<AgentClient, String>>),
    /// Leased: the connection while anything still uses it (held weakly,
    /// so that the slot alone never keeps it open).
    Leased(Weak<Lease>),
}

impl Slot {
    /// The client to use now, if this slot has one: a kept one, or a
    /// leased one still in use (which then stays alive for this caller).
    pub(super) fn current(&self) -> Option<Result<AgentClient, String>> {
        match self {
            Self::Empty => None,
            Self::Kept(client) => Some((**client).clone()),
            Self::Leased(lease) => {
                let lease = lease.upgrade()?;
                Some(Ok(lease.client.clone().holding(lease)))
            }
        }
    }

    /// Keeps `client` for the fleet's life.
    pub(super) fn keep(&mut self, client: Result<AgentClient, String>) {
        *self = Self::Kept(Box::new(client));
    }

    /// Leases `client`, made under `permit`: the slot keeps only a weak
    /// reference, the client returned (and its clones) the lease.
    pub(super) fn lease(&mut self, client: AgentClient, permit: Hold) -> AgentClient {
        let lease = Arc::new(Lease {
            client: client.clone(),
            _permit: permit,
        });
        *self = Slot::Leased(Arc::downgrade(&lease));
        client.holding(lease)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_leaves_room_for_everything_else_and_never_falls_to_nothing() {
        let budget = Budget::for_limit(Some(1024));
        assert_eq!(budget.connections, 1024 - 96);
        assert!(!budget.must_lease(928));
        assert!(budget.must_lease(929));
        assert!(budget.notice(1000).contains("at most 928 are kept open"));
        assert_eq!(Budget::for_limit(Some(50)).connections, FLOOR);
        assert!(!Budget::for_limit(None).must_lease(1_000_000));
    }
}
