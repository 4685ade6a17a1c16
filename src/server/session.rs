//! Sessions: what ties a client's calls together, so that `Disconnect`, or
//! the client simply going away, ends everything that client started and
//! nothing else.
//!
//! A session is named by the `x-vigie-session` header; a request without it
//! belongs to a session bound to its connection, under an unguessable id. A
//! session belongs to the identity that opened it: the same id sent by
//! another identity names another session, so no caller can reach, end or
//! even detect a session it did not open. A session lives while at least
//! one connection that carried it is open, or until `Disconnect`. Ending a
//! session cancels its token, which every command and metric stream of the
//! session watches.
//!
//! Limits keep one caller from locking the others out: sessions per
//! connection, per identity and in all, with a share of the total that only
//! admins may use, so an admin can always reach the agent to stop it. A
//! session that holds no command and no stream is idle: it costs nothing
//! to forget, so idle sessions are reclaimed, least recently used first,
//! whenever a new session needs their room.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
};

use tokio_util::sync::CancellationToken;

use super::auth::{Identity, Role};

pub use crate::wire::SESSION_HEADER;

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
    /// The agent already has as many sessions as this caller may use.
    #[error("too many sessions: the agent allows {0}")]
    TooMany(usize),
    /// This identity has as many busy sessions as it may.
    #[error("too many sessions for {identity}: the agent allows {limit} per identity")]
    TooManyForIdentity {
        /// The identity.
        identity: String,
        /// The limit.
        limit: usize,
    },
    /// This connection carries as many busy sessions as it may.
    #[error("too many sessions on this connection: the agent allows {0} per connection")]
    TooManyForConnection(usize),
    /// The session has as many running commands as it allows.
    #[error("too many running commands in this session: the agent allows {0}")]
    TooManyCommands(u32),
    /// The agent runs as many commands as it allows (this caller).
    #[error("too many running commands on this agent: it allows {0}")]
    TooManyCommandsTotal(u32),
    /// This identity runs as many commands as it may.
    #[error("too many running commands for {identity}: the agent allows {limit} per identity")]
    TooManyCommandsForIdentity {
        /// The identity.
        identity: String,
        /// The limit.
        limit: u32,
    },
    /// The session ended (Disconnect, or its connections closed) while the
    /// request was on its way.
    #[error("the session has ended")]
    Ended,
}

/// Limits on sessions and commands.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// Most sessions at once.
    pub max_sessions: usize,
    /// Of those, how many only admins may open.
    pub admin_reserved_sessions: usize,
    /// Most sessions one identity may hold.
    pub max_sessions_per_identity: usize,
    /// Most sessions one connection may carry.
    pub max_sessions_per_connection: usize,
    /// Most running commands in one session.
    pub max_commands_per_session: u32,
    /// Most running commands of one identity.
    pub max_commands_per_identity: u32,
    /// Most running commands in all.
    pub max_commands_total: u32,
    /// Of those, how many only admins may start.
    pub admin_reserved_commands: u32,
}

/// A session's name: the identity that opened it and the id it chose.
type Key = (String, String);

/// What a session's calls share, alive as long as any of them runs.
#[derive(Debug)]
struct Shared {
    token: CancellationToken,
    /// Running commands.
    running: AtomicU32,
    /// Open streams (metrics) and other holds that keep it busy.
    holds: AtomicU32,
}

impl Shared {
    fn is_idle(&self) -> bool {
        self.running.load(Ordering::Relaxed) == 0 && self.holds.load(Ordering::Relaxed) == 0
    }
}

#[derive(Debug)]
struct Entry {
    shared: Arc<Shared>,
    /// Connections that carried this session and are still open.
    connections: HashSet<u64>,
    /// When it was last used, as a tick of [`Sessions::clock`].
    last_used: u64,
}

#[derive(Debug, Default)]
struct Registry {
    entries: HashMap<Key, Entry>,
    per_identity: HashMap<String, usize>,
    per_connection: HashMap<u64, usize>,
    /// Connections open now: a session is never registered on a closed one.
    open_connections: HashSet<u64>,
    /// Running commands per identity (kept for the few identities there
    /// are: an access file names them).
    running_by_identity: HashMap<String, Arc<AtomicU32>>,
}

/// Every open session of the agent.
#[derive(Debug)]
pub struct Sessions {
    inner: Mutex<Registry>,
    running_total: Arc<AtomicU32>,
    clock: AtomicU64,
    limits: SessionLimits,
}

/// A request's view of its session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The session id, as the client named it.
    pub id: String,
    /// Cancelled when the session ends.
    pub token: CancellationToken,
    owner: String,
    admin: bool,
    connection: u64,
    shared: Arc<Shared>,
}

impl Session {
    /// Commands the session runs now.
    pub fn running(&self) -> u32 {
        self.shared.running.load(Ordering::Relaxed)
    }
}

/// Counts one running command against its session, its identity and the
/// agent; the counts drop when this is dropped.
#[derive(Debug)]
pub struct CommandSlot {
    shared: Arc<Shared>,
    identity: Arc<AtomicU32>,
    total: Arc<AtomicU32>,
}

impl Drop for CommandSlot {
    fn drop(&mut self) {
        self.shared.running.fetch_sub(1, Ordering::Relaxed);
        self.identity.fetch_sub(1, Ordering::Relaxed);
        self.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Keeps a session busy (not reclaimable) while a stream of it is open.
#[derive(Debug)]
pub struct SessionHold {
    shared: Arc<Shared>,
}

impl Drop for SessionHold {
    fn drop(&mut self) {
        self.shared.holds.fetch_sub(1, Ordering::Relaxed);
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

/// An unguessable id for the session of a connection whose requests name
/// none: 122 random bits, so that nobody can name another connection's
/// implicit session.
pub fn implicit_id() -> String {
    format!("conn-{}", uuid::Uuid::new_v4().simple())
}

impl Sessions {
    /// An empty registry with these limits.
    pub fn new(limits: SessionLimits) -> Self {
        Self {
            inner: Mutex::new(Registry::default()),
            running_total: Arc::new(AtomicU32::new(0)),
            clock: AtomicU64::new(0),
            limits,
        }
    }

    /// Joins (or opens) the session `id` of `identity` for a request on
    /// `connection`.
    pub fn enter(
        &self,
        id: &str,
        connection: u64,
        identity: &Identity,
    ) -> Result<Session, SessionError> {
        let key: Key = (identity.name.clone(), id.to_owned());
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut registry = self.lock();
        let shared = if let Some(shared) = registry.touch(&key, now) {
            if !registry.entries[&key].connections.contains(&connection) {
                self.make_room_on_connection(&mut registry, connection, &key)?;
                registry.join(&key, connection);
            }
            shared
        } else {
            self.make_room(&mut registry, identity, connection)?;
            registry.open(key.clone(), connection, now)
        };
        Ok(Session {
            id: id.to_owned(),
            token: shared.token.clone(),
            owner: key.0,
            admin: identity.role == Role::Admin,
            connection,
            shared,
        })
    }

    /// Reserves a slot for one more command of `session`, within the limits
    /// of the session, its identity and the agent (less the share kept for
    /// admins, unless the caller is one).
    pub fn start_command(&self, session: &Session) -> Result<CommandSlot, SessionError> {
        let limits = self.limits;
        let mut registry = self.lock();
        // Registered and counted under one lock, so that no reclaim can
        // forget the session between the two.
        self.keep_registered(&mut registry, session)?;
        let identity = registry
            .running_by_identity
            .entry(session.owner.clone())
            .or_default()
            .clone();
        let total_cap = if session.admin {
            limits.max_commands_total
        } else {
            limits
                .max_commands_total
                .saturating_sub(limits.admin_reserved_commands)
        };
        if session.shared.running.load(Ordering::Relaxed) >= limits.max_commands_per_session {
            return Err(SessionError::TooManyCommands(
                limits.max_commands_per_session,
            ));
        }
        if identity.load(Ordering::Relaxed) >= limits.max_commands_per_identity {
            return Err(SessionError::TooManyCommandsForIdentity {
                identity: session.owner.clone(),
                limit: limits.max_commands_per_identity,
            });
        }
        if reserve(&self.running_total, total_cap).is_err() {
            return Err(SessionError::TooManyCommandsTotal(total_cap));
        }
        session.shared.running.fetch_add(1, Ordering::Relaxed);
        identity.fetch_add(1, Ordering::Relaxed);
        Ok(CommandSlot {
            shared: session.shared.clone(),
            identity,
            total: self.running_total.clone(),
        })
    }

    /// Marks `session` busy while a stream of it is open.
    pub fn hold(&self, session: &Session) -> Result<SessionHold, SessionError> {
        let mut registry = self.lock();
        self.keep_registered(&mut registry, session)?;
        session.shared.holds.fetch_add(1, Ordering::Relaxed);
        Ok(SessionHold {
            shared: session.shared.clone(),
        })
    }

    /// Ends the session `id` of `session`'s owner: cancels everything it
    /// runs. Returns how many commands were running, or `None` when it was
    /// not open.
    pub fn end(&self, session: &Session) -> Option<u32> {
        let key = (session.owner.clone(), session.id.clone());
        let entry = self.lock().remove(&key)?;
        entry.shared.token.cancel();
        Some(entry.shared.running.load(Ordering::Relaxed))
    }

    /// Ends every session of `identity` (its certificate was revoked):
    /// cancels everything they run. Returns how many sessions ended.
    pub fn end_identity(&self, identity: &str) -> usize {
        let ended: Vec<CancellationToken> = {
            let mut registry = self.lock();
            let keys: Vec<Key> = registry
                .entries
                .keys()
                .filter(|(owner, _)| owner == identity)
                .cloned()
                .collect();
            keys.iter()
                .filter_map(|key| registry.remove(key))
                .map(|entry| entry.shared.token.clone())
                .collect()
        };
        for token in &ended {
            token.cancel();
        }
        ended.len()
    }

    /// Notes an accepted connection, on which sessions may be registered.
    pub fn connection_opened(&self, connection: u64) {
        self.lock().open_connections.insert(connection);
    }

    /// Forgets a closed connection; sessions left without any open
    /// connection end.
    pub fn connection_closed(&self, connection: u64) {
        let mut ended = Vec::new();
        {
            let mut registry = self.lock();
            registry.open_connections.remove(&connection);
            let keys: Vec<Key> = registry
                .entries
                .iter()
                .filter(|(_, e)| e.connections.contains(&connection))
                .map(|(k, _)| k.clone())
                .collect();
            for key in keys {
                let entry = registry.entries.get_mut(&key).expect("listed above");
                entry.connections.remove(&connection);
                if entry.connections.is_empty()
                    && let Some(entry) = registry.remove(&key)
                {
                    ended.push(entry.shared.token.clone());
                }
            }
            registry.per_connection.remove(&connection);
        }
        // Cancelling runs the commands' wake-ups; do it outside the lock.
        for token in ended {
            token.cancel();
        }
    }

    /// Open sessions.
    pub fn count(&self) -> usize {
        self.lock().entries.len()
    }

    /// Open sessions of one identity.
    pub fn count_of(&self, identity: &str) -> usize {
        self.lock().per_identity.get(identity).copied().unwrap_or(0)
    }

    /// Commands running now, all sessions together.
    pub fn running_total(&self) -> u32 {
        self.running_total.load(Ordering::Relaxed)
    }

    /// Commands one identity runs now.
    pub fn running_of(&self, identity: &str) -> u32 {
        self.lock()
            .running_by_identity
            .get(identity)
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }

    /// Makes sure a session about to become busy is in the registry, as
    /// the very session the request entered: an idle one may have been
    /// reclaimed between the request's `enter` and now, and comes back
    /// before it holds anything, unless it has ended meanwhile or its
    /// connection has closed.
    fn keep_registered(
        &self,
        registry: &mut Registry,
        session: &Session,
    ) -> Result<(), SessionError> {
        let key = (session.owner.clone(), session.id.clone());
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        match registry.entries.get_mut(&key) {
            Some(entry) if Arc::ptr_eq(&entry.shared, &session.shared) => {
                entry.last_used = now;
                return Ok(());
            }
            // Another session of the same name was opened after this one
            // was forgotten: this request's session is gone.
            Some(_) => return Err(SessionError::Ended),
            None => {}
        }
        if session.token.is_cancelled() || !registry.open_connections.contains(&session.connection)
        {
            return Err(SessionError::Ended);
        }
        let identity = Identity {
            name: session.owner.clone(),
            role: if session.admin {
                Role::Admin
            } else {
                Role::Viewer
            },
        };
        self.make_room(registry, &identity, session.connection)?;
        registry.reopen(key, session.shared.clone(), session.connection, now);
        Ok(())
    }

    /// Frees room for one more session of `identity` on `connection`, by
    /// reclaiming idle sessions when a limit is reached.
    fn make_room(
        &self,
        registry: &mut Registry,
        identity: &Identity,
        connection: u64,
    ) -> Result<(), SessionError> {
        let limits = self.limits;
        let key_owner = identity.name.as_str();
        self.make_room_on_connection(registry, connection, &(String::new(), String::new()))?;
        if registry.per_identity.get(key_owner).copied().unwrap_or(0)
            >= limits.max_sessions_per_identity
            && !registry.reclaim(|(owner, _), _| owner == key_owner)
        {
            return Err(SessionError::TooManyForIdentity {
                identity: identity.name.clone(),
                limit: limits.max_sessions_per_identity,
            });
        }
        let cap = if identity.role == Role::Admin {
            limits.max_sessions
        } else {
            limits
                .max_sessions
                .saturating_sub(limits.admin_reserved_sessions)
        };
        if registry.entries.len() >= cap && !registry.reclaim(|_, _| true) {
            return Err(SessionError::TooMany(cap));
        }
        Ok(())
    }

    fn make_room_on_connection(
        &self,
        registry: &mut Registry,
        connection: u64,
        keep: &Key,
    ) -> Result<(), SessionError> {
        let limit = self.limits.max_sessions_per_connection;
        if registry
            .per_connection
            .get(&connection)
            .copied()
            .unwrap_or(0)
            >= limit
            && !registry
                .reclaim(|key, entry| key != keep && entry.connections.contains(&connection))
        {
            return Err(SessionError::TooManyForConnection(limit));
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // The counts are updated together with the map under the lock, and
        // nothing in between can panic, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Registry {
    /// The session's shared part, marked as used now, if it is open.
    fn touch(&mut self, key: &Key, now: u64) -> Option<Arc<Shared>> {
        let entry = self.entries.get_mut(key)?;
        entry.last_used = now;
        Some(entry.shared.clone())
    }

    fn open(&mut self, key: Key, connection: u64, now: u64) -> Arc<Shared> {
        let shared = Arc::new(Shared {
            token: CancellationToken::new(),
            running: AtomicU32::new(0),
            holds: AtomicU32::new(0),
        });
        self.reopen(key, shared.clone(), connection, now);
        shared
    }

    fn reopen(&mut self, key: Key, shared: Arc<Shared>, connection: u64, now: u64) {
        *self.per_identity.entry(key.0.clone()).or_default() += 1;
        *self.per_connection.entry(connection).or_default() += 1;
        self.entries.insert(
            key,
            Entry {
                shared,
                connections: HashSet::from([connection]),
                last_used: now,
            },
        );
    }

    fn join(&mut self, key: &Key, connection: u64) {
        if let Some(entry) = self.entries.get_mut(key)
            && entry.connections.insert(connection)
        {
            *self.per_connection.entry(connection).or_default() += 1;
        }
    }

    fn remove(&mut self, key: &Key) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        decrement(&mut self.per_identity, &key.0);
        for connection in &entry.connections {
            decrement(&mut self.per_connection, connection);
        }
        Some(entry)
    }

    /// Forgets the least recently used idle session that `which` accepts;
    /// false when there is none. An idle session holds nothing, so
    /// forgetting it changes nothing its client could see: the next call
    /// that names it opens it again.
    fn reclaim(&mut self, which: impl Fn(&Key, &Entry) -> bool) -> bool {
        let oldest = self
            .entries
            .iter()
            .filter(|(key, entry)| entry.shared.is_idle() && which(key, entry))
            .min_by_key(|(_, entry)| entry.last_used)
            .map(|(key, _)| key.clone());
        match oldest {
            Some(key) => self.remove(&key).is_some(),
            None => false,
        }
    }
}

fn decrement<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(count) = counts.get_mut(key) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            counts.remove(key);
        }
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

    fn limits() -> SessionLimits {
        SessionLimits {
            max_sessions: 4,
            admin_reserved_sessions: 1,
            max_sessions_per_identity: 3,
            max_sessions_per_connection: 3,
            max_commands_per_session: 2,
            max_commands_per_identity: 3,
            max_commands_total: 3,
            admin_reserved_commands: 0,
        }
    }

    /// A registry whose connections 1 to 9 are open.
    fn with_limits(limits: SessionLimits) -> Sessions {
        let s = Sessions::new(limits);
        for connection in 1..10 {
            s.connection_opened(connection);
        }
        s
    }

    fn sessions() -> Sessions {
        with_limits(limits())
    }

    fn who(name: &str, role: Role) -> Identity {
        Identity::for_tests(name, role)
    }

    fn viewer() -> Identity {
        who("token:v", Role::Viewer)
    }

    #[test]
    fn a_session_ends_with_its_last_connection() {
        let s = sessions();
        let a = s.enter("a", 1, &viewer()).unwrap();
        let again = s.enter("a", 2, &viewer()).unwrap();
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
        let a = s.enter("a", 1, &viewer()).unwrap();
        let b = s.enter("b", 1, &viewer()).unwrap();
        let _slot = s.start_command(&a).unwrap();
        assert_eq!(s.end(&a), Some(1));
        assert!(a.token.is_cancelled());
        assert!(!b.token.is_cancelled());
        assert_eq!(s.end(&a), None);
    }

    #[test]
    fn the_same_id_names_another_session_for_another_identity() {
        let s = sessions();
        let admin = who("token:admin", Role::Admin);
        let mine = s.enter("conn-1", 1, &admin).unwrap();
        let _busy = s.start_command(&mine).unwrap();
        let theirs = s.enter("conn-1", 2, &viewer()).unwrap();
        assert_eq!(s.end(&theirs), Some(0), "the viewer ends its own session");
        assert!(!mine.token.is_cancelled(), "the admin's is untouched");
        assert_eq!(mine.running(), 1);
    }

    #[test]
    fn command_limits_are_enforced_and_released() {
        let s = with_limits(SessionLimits {
            max_commands_per_identity: 10,
            ..limits()
        });
        let a = s.enter("a", 1, &viewer()).unwrap();
        let b = s.enter("b", 1, &viewer()).unwrap();
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
    fn busy_sessions_are_limited_per_connection_identity_and_in_all() {
        let s = sessions();
        // One connection: three busy sessions, then no more on it.
        let mut holds = Vec::new();
        for id in ["a", "b", "c"] {
            let session = s.enter(id, 1, &viewer()).unwrap();
            holds.push(s.hold(&session).unwrap());
        }
        assert_eq!(
            s.enter("d", 1, &viewer()).unwrap_err(),
            SessionError::TooManyForConnection(3)
        );
        // The same identity on another connection: its limit is reached.
        assert!(matches!(
            s.enter("d", 2, &viewer()).unwrap_err(),
            SessionError::TooManyForIdentity { limit: 3, .. }
        ));
        // Another operator: the last non-admin place of four, less one
        // reserved for admins, is taken by the viewer's three.
        let operator = who("token:o", Role::Operator);
        assert_eq!(
            s.enter("x", 3, &operator).unwrap_err(),
            SessionError::TooMany(3)
        );
        // The admin still gets in, into the reserved place.
        let admin = who("token:admin", Role::Admin);
        assert!(s.enter("x", 4, &admin).is_ok());
        drop(holds);
    }

    #[test]
    fn idle_sessions_are_reclaimed_for_new_ones() {
        let s = sessions();
        // A viewer opens sessions on one connection and lets them idle.
        for id in ["a", "b", "c"] {
            s.enter(id, 1, &viewer()).unwrap();
        }
        // Its fourth pushes out its own least recently used idle one.
        s.enter("a", 1, &viewer()).unwrap();
        s.enter("d", 1, &viewer()).unwrap();
        assert_eq!(s.count(), 3);
        // Idle sessions of anyone make room for an admin and an operator.
        let operator = who("token:o", Role::Operator);
        let busy = s.enter("x", 2, &operator).unwrap();
        let _running = s.start_command(&busy).unwrap();
        assert!(s.enter("y", 3, &who("token:admin", Role::Admin)).is_ok());
        assert!(s.count() <= 4);
    }

    #[test]
    fn a_reclaimed_session_comes_back_before_it_holds_a_command() {
        let s = with_limits(SessionLimits {
            max_sessions_per_connection: 1,
            ..limits()
        });
        let first = s.enter("a", 1, &viewer()).unwrap();
        // "b" on the same connection reclaims the idle "a".
        let _b = s.enter("b", 1, &viewer()).unwrap();
        // "a" was reclaimed, and "b" is idle: "a" comes back in its place
        // and then holds its command; Disconnect still finds it.
        let slot = s.start_command(&first).unwrap();
        assert_eq!(s.end(&first), Some(1));
        assert!(first.token.is_cancelled());
        drop(slot);
    }

    #[test]
    fn an_ended_session_never_comes_back() {
        let s = sessions();
        let ended = s.enter("a", 1, &viewer()).unwrap();
        s.end(&ended);
        assert_eq!(s.start_command(&ended).unwrap_err(), SessionError::Ended);
        // Nor one whose connection closed, nor one replaced by a newer
        // session of the same name.
        let closed = s.enter("b", 2, &viewer()).unwrap();
        s.connection_closed(2);
        assert_eq!(s.hold(&closed).unwrap_err(), SessionError::Ended);
        let old = s.enter("c", 3, &viewer()).unwrap();
        s.end(&old);
        let _new = s.enter("c", 3, &viewer()).unwrap();
        assert_eq!(s.start_command(&old).unwrap_err(), SessionError::Ended);
        assert_eq!(s.count(), 1);
    }

    #[test]
    fn one_identity_cannot_take_every_command_slot() {
        let s = with_limits(SessionLimits {
            max_commands_per_identity: 2,
            max_commands_total: 4,
            admin_reserved_commands: 1,
            ..limits()
        });
        let operator = who("token:o", Role::Operator);
        let a = s.enter("a", 1, &operator).unwrap();
        let b = s.enter("b", 1, &operator).unwrap();
        let _a1 = s.start_command(&a).unwrap();
        let _b1 = s.start_command(&b).unwrap();
        assert!(matches!(
            s.start_command(&b).unwrap_err(),
            SessionError::TooManyCommandsForIdentity { limit: 2, .. }
        ));
        assert_eq!(s.running_of("token:o"), 2);
        let other = who("token:p", Role::Operator);
        let c = s.enter("c", 2, &other).unwrap();
        let _c1 = s.start_command(&c).unwrap();
        // Three of four run; the last place is the admins'.
        assert_eq!(
            s.start_command(&c).unwrap_err(),
            SessionError::TooManyCommandsTotal(3)
        );
        let admin = s.enter("d", 3, &who("token:admin", Role::Admin)).unwrap();
        assert!(s.start_command(&admin).is_ok());
    }

    #[test]
    fn session_ids_are_checked_and_implicit_ones_unguessable() {
        assert!(validate_id("0f8c7a2e-5b7b-4a7e-9a59-3c1f1e3b6d21").is_ok());
        for bad in ["", "has space", "tab\t", &"x".repeat(129), "é"] {
            assert_eq!(validate_id(bad), Err(SessionError::InvalidId), "{bad:?}");
        }
        let (a, b) = (implicit_id(), implicit_id());
        assert_ne!(a, b);
        assert!(a.starts_with("conn-") && a.len() == 5 + 32, "{a}");
        assert!(validate_id(&a).is_ok());
    }
}
