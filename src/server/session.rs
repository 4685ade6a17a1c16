//! Sessions: what ties a client's calls together, so that `Disconnect`, or
//! the client simply going away, ends everything that client started and
//! nothing else.
//!
//! A session is named by the `x-vigie-session` header; a request without it
//! belongs to a session bound to its connection. A session lives while at
//! least one connection that carried it is open, or until `Disconnect`.
//! Ending a session cancels its token, which every command and metric stream
//! of the session watches.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
};

use tokio_util::sync::CancellationToken;

/// The metadata header that carries the session id.
pub const SESSION_HEADER: &str = "x-vigie-session";

/// Longest accepted session id, in bytes.
pub const MAX_SESSION_ID_LEN: usize = 128;

/// Why a request cannot join a session.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    /// The header is empty, too long or not printable ASCII.
    #[error(
        "the x-vigie-session header must be 1 to 128 printable ASCII characters without spaces"
    )]
    InvalidId,
    /// The agent already has as many sessions as it allows.
    #[error("too many sessions: the agent allows {0}")]
    TooMany(usize),
    /// The session has as many running commands as it allows.
    #[error("too many running commands in this session: the agent allows {0}")]
    TooManyCommands(u32),
    /// The agent runs as many commands as it allows.
    #[error("too many running commands on this agent: it allows {0}")]
    TooManyCommandsTotal(u32),
}

/// Limits on sessions and commands.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Most sessions at once.
    pub max_sessions: usize,
    /// Most running commands in one session.
    pub max_commands_per_session: u32,
    /// Most running commands in all.
    pub max_commands_total: u32,
}

/// Every open session of the agent.
#[derive(Debug)]
pub struct Sessions {
    inner: Mutex<HashMap<String, Entry>>,
    running_total: Arc<AtomicU32>,
    limits: SessionLimits,
}

#[derive(Debug)]
struct Entry {
    token: CancellationToken,
    running: Arc<AtomicU32>,
    /// Connections that carried this session and are still open.
    connections: HashSet<u64>,
}

/// A request's view of its session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The session id.
    pub id: String,
    /// Cancelled when the session ends.
    pub token: CancellationToken,
    running: Arc<AtomicU32>,
}

impl Session {
    /// Commands the session runs now.
    pub fn running(&self) -> u32 {
        self.running.load(Ordering::Relaxed)
    }
}

/// Counts one running command against its session and the agent; the count
/// drops when this is dropped.
#[derive(Debug)]
pub struct CommandSlot {
    session: Arc<AtomicU32>,
    total: Arc<AtomicU32>,
}

impl Drop for CommandSlot {
    fn drop(&mut self) {
        self.session.fetch_sub(1, Ordering::Relaxed);
        self.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Checks a client-chosen session id.
pub fn validate_id(id: &str) -> Result<(), SessionError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_SESSION_ID_LEN
        && id.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(SessionError::InvalidId)
    }
}

impl Sessions {
    /// An empty registry with these limits.
    pub fn new(limits: SessionLimits) -> Self {
        Self {
            inner: Mutex::new(HashMap::new()),
            running_total: Arc::new(AtomicU32::new(0)),
            limits,
        }
    }

    /// Joins (or opens) the session `id` for a request on `connection`.
    pub fn enter(&self, id: &str, connection: u64) -> Result<Session, SessionError> {
        let mut sessions = self.lock();
        if let Some(entry) = sessions.get_mut(id) {
            entry.connections.insert(connection);
            return Ok(Session {
                id: id.to_owned(),
                token: entry.token.clone(),
                running: entry.running.clone(),
            });
        }
        if sessions.len() >= self.limits.max_sessions {
            return Err(SessionError::TooMany(self.limits.max_sessions));
        }
        let entry = Entry {
            token: CancellationToken::new(),
            running: Arc::new(AtomicU32::new(0)),
            connections: HashSet::from([connection]),
        };
        let session = Session {
            id: id.to_owned(),
            token: entry.token.clone(),
            running: entry.running.clone(),
        };
        sessions.insert(id.to_owned(), entry);
        Ok(session)
    }

    /// Reserves a slot for one more command of `session`, within the limits.
    pub fn start_command(&self, session: &Session) -> Result<CommandSlot, SessionError> {
        let limits = self.limits;
        reserve(&session.running, limits.max_commands_per_session)
            .map_err(|()| SessionError::TooManyCommands(limits.max_commands_per_session))?;
        if reserve(&self.running_total, limits.max_commands_total).is_err() {
            session.running.fetch_sub(1, Ordering::Relaxed);
            return Err(SessionError::TooManyCommandsTotal(
                limits.max_commands_total,
            ));
        }
        Ok(CommandSlot {
            session: session.running.clone(),
            total: self.running_total.clone(),
        })
    }

    /// Ends the session `id`: cancels everything it runs. Returns how many
    /// commands were running, or `None` for an unknown session.
    pub fn end(&self, id: &str) -> Option<u32> {
        let entry = self.lock().remove(id)?;
        entry.token.cancel();
        Some(entry.running.load(Ordering::Relaxed))
    }

    /// Forgets a closed connection; sessions left without any open
    /// connection end.
    pub fn connection_closed(&self, connection: u64) {
        let mut ended = Vec::new();
        self.lock().retain(|_, entry| {
            entry.connections.remove(&connection);
            let keep = !entry.connections.is_empty();
            if !keep {
                ended.push(entry.token.clone());
            }
            keep
        });
        // Cancelling runs the commands' wake-ups; do it outside the lock.
        for token in ended {
            token.cancel();
        }
    }

    /// Open sessions.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Commands running now, all sessions together.
    pub fn running_total(&self) -> u32 {
        self.running_total.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // The map holds no invariant that a panic halfway could break, so a
        // poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn reserve(counter: &AtomicU32, limit: u32) -> Result<(), ()> {
    counter
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < limit).then_some(n + 1)
        })
        .map(|_| ())
        .map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions() -> Sessions {
        Sessions::new(SessionLimits {
            max_sessions: 2,
            max_commands_per_session: 2,
            max_commands_total: 3,
        })
    }

    #[test]
    fn a_session_ends_with_its_last_connection() {
        let s = sessions();
        let a = s.enter("a", 1).unwrap();
        let again = s.enter("a", 2).unwrap();
        assert_eq!(s.count(), 1);
        s.connection_closed(1);
        assert!(!a.token.is_cancelled());
        s.connection_closed(2);
        assert!(a.token.is_cancelled() && again.token.is_cancelled());
        assert_eq!(s.count(), 0);
    }

    #[test]
    fn ending_a_session_leaves_the_others() {
        let s = sessions();
        let a = s.enter("a", 1).unwrap();
        let b = s.enter("b", 1).unwrap();
        let _slot = s.start_command(&a).unwrap();
        assert_eq!(s.end("a"), Some(1));
        assert!(a.token.is_cancelled());
        assert!(!b.token.is_cancelled());
        assert_eq!(s.end("a"), None);
    }

    #[test]
    fn limits_are_enforced_and_released() {
        let s = sessions();
        let a = s.enter("a", 1).unwrap();
        let b = s.enter("b", 1).unwrap();
        assert_eq!(s.enter("c", 1).unwrap_err(), SessionError::TooMany(2));
        let a1 = s.start_command(&a).unwrap();
        let _a2 = s.start_command(&a).unwrap();
        assert_eq!(
            s.start_command(&a).unwrap_err(),
            SessionError::TooManyCommands(2)
        );
        let _b1 = s.start_command(&b).unwrap();
        assert_eq!(
            s.start_command(&b).unwrap_err(),
            SessionError::TooManyCommandsTotal(3)
        );
        assert_eq!(b.running(), 1, "a refused command is not counted");
        drop(a1);
        assert_eq!(s.running_total(), 2);
        assert!(s.start_command(&b).is_ok());
    }

    #[test]
    fn session_ids_are_checked() {
        assert!(validate_id("0f8c7a2e-5b7b-4a7e-9a59-3c1f1e3b6d21").is_ok());
        for bad in ["", "has space", "tab\t", &"x".repeat(129), "é"] {
            assert_eq!(validate_id(bad), Err(SessionError::InvalidId), "{bad:?}");
        }
    }
}
