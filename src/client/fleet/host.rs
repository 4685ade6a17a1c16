//! One host of a fleet: its entry, its lazily connected client (one
//! channel and one session for the life of the fleet), and its live state,
//! which every call it makes keeps up to date.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::sync::watch;

use super::connections::{self, Slot};

use crate::{
    client::{
        AgentClient, ConnectionSettings, Error,
        connect::{self, Address},
        hosts::HostEntry,
    },
    command::OsFamily,
    types::SystemInfo,
};

/// What the client knows of a host's agent.
#[derive(Debug, Clone, PartialEq)]
pub enum HostState {
    /// Never contacted yet.
    Unknown,
    /// Being contacted.
    Connecting,
    /// Answered; the description it last gave.
    Online(Arc<SystemInfo>),
    /// Could not be reached.
    Offline {
        /// Why.
        reason: String,
    },
}

/// A host's state and when it was last seen.
#[derive(Debug, Clone, PartialEq)]
pub struct HostStatus {
    /// The state.
    pub state: HostState,
    /// When the agent last answered.
    pub last_seen: Option<SystemTime>,
}

/// One host of the fleet.
#[derive(Debug)]
pub struct Host {
    /// Its entry in the hosts file.
    pub entry: HostEntry,
    settings: ConnectionSettings,
    /// Its connection: kept, or leased when the fleet is larger than the
    /// process's connection budget (see `connections`).
    client: tokio::sync::Mutex<Slot>,
    leased: bool,
    /// What its channels are made from, once read.
    dialer: std::sync::OnceLock<Result<connect::Dialer, String>>,
    status: watch::Sender<HostStatus>,
    session: String,
    /// The certificate the agent last showed on this host's channel.
    seen: connect::Captured,
}

impl Host {
    pub(super) fn new(entry: HostEntry, settings: ConnectionSettings, leased: bool) -> Self {
        Self {
            entry,
            settings,
            client: tokio::sync::Mutex::new(Slot::Empty),
            leased,
            dialer: std::sync::OnceLock::new(),
            status: watch::Sender::new(HostStatus {
                state: HostState::Unknown,
                last_seen: None,
            }),
            session: uuid::Uuid::new_v4().to_string(),
            seen: connect::Captured::default(),
        }
    }

    /// What the agent's certificate says, once a TLS connection was made.
    pub fn certificate(&self) -> Option<crate::pki::CertFacts> {
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        crate::pki::CertFacts::parse(&seen).ok()
    }

    /// The host's name.
    pub fn name(&self) -> &str {
        &self.entry.name
    }

    /// Where its agent listens.
    pub fn address(&self) -> Address {
        Address {
            host: self.entry.address.clone(),
            port: self.entry.port,
        }
    }

    /// How its connection notices a silent agent.
    pub fn keepalive(&self) -> connect::Keepalive {
        connect::Keepalive::from_settings(&self.address(), &self.settings)
            .unwrap_or(connect::Keepalive::DEFAULT)
    }

    /// Its current status.
    pub fn status(&self) -> HostStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every change of its status.
    pub fn watch(&self) -> watch::Receiver<HostStatus> {
        self.status.subscribe()
    }

    /// The OS family its agent reported, if known.
    pub fn os(&self) -> Option<OsFamily> {
        match &self.status.borrow().state {
            HostState::Online(info) => info.os_family,
            _ => None,
        }
    }

    /// True when the host is known to be offline.
    pub fn is_offline(&self) -> bool {
        matches!(self.status.borrow().state, HostState::Offline { .. })
    }

    /// The host's client: one channel and one session for the life of the
    /// fleet, dialled on first use and reconnecting by itself. A leased
    /// host's channel lives only while a client of it does: this may wait
    /// for another host's connection to close.
    pub async fn client(&self) -> Result<AgentClient, Error> {
        let settings_error = |reason| Error::Settings {
            address: self.entry.endpoint(),
            reason,
        };
        if !self.leased {
            let mut slot = self.client.lock().await;
            let client = match slot.current() {
                Some(client) => client,
                None => {
                    let client = self.make_client(None);
                    slot.keep(client.clone());
                    client
                }
            };
            return client.map_err(settings_error);
        }
        // Leased. The host's slot is never held while waiting for a
        // permit, so that a call to this host that can share a lease
        // already made never waits behind one that cannot.
        if let Some(client) = self.client.lock().await.current() {
            return client.map_err(settings_error);
        }
        let permit = connections::permit().await;
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.current() {
            // Leased by another call meanwhile: this permit goes back.
            return client.map_err(settings_error);
        }
        let client = self
            .make_client(Some(permit.clone()))
            .map_err(settings_error)?;
        Ok(slot.lease(client, permit))
    }

    /// True when this host's connection is closed whenever it is not in
    /// use (its fleet is larger than the connection budget).
    pub fn is_leased(&self) -> bool {
        self.leased
    }

    /// A new client on a lazily dialled channel (nothing is dialled yet),
    /// whose sockets each keep `hold` alive. The TLS files are read on the
    /// first and kept for the host's life, with the session tickets that
    /// let each new channel resume.
    fn make_client(&self, hold: Option<connect::Hold>) -> Result<AgentClient, String> {
        let address = self.address();
        let dialer = self
            .dialer
            .get_or_init(|| {
                connect::Dialer::new(
                    &address,
                    &self.settings,
                    Some(self.seen.clone()),
                    Some(&self.entry.name),
                )
                .map_err(|e| e.to_string())
            })
            .clone()?;
        let channel = dialer.lazy_channel(hold);
        AgentClient::with_channel(channel, self.session.clone(), self.settings.token.as_ref())
            .map(|c| c.described_as(&address.to_string(), self.settings.uses_tls()))
            .map_err(|e| e.to_string())
    }

    pub(super) fn set(&self, state: HostState) {
        self.status.send_modify(|status| {
            if matches!(state, HostState::Online(_)) {
                status.last_seen = Some(SystemTime::now());
            }
            status.state = state;
        });
    }

    /// Records what a call's outcome says about the host: any answer means
    /// online (the agent is there, even if it refused); a transport failure
    /// means offline.
    pub fn observe<T>(&self, result: &Result<T, Error>) {
        match result {
            Ok(_) | Err(Error::Status(_)) => {
                // Watchers hear of a change of state only: a dashboard's
                // samples, each an answer, would otherwise wake every view
                // of the host with every sample.
                self.status.send_if_modified(|s| {
                    s.last_seen = Some(SystemTime::now());
                    if matches!(s.state, HostState::Online(_) | HostState::Connecting) {
                        false
                    } else {
                        // Online, but with no description yet: keep it
                        // connecting until a probe fills it in.
                        s.state = HostState::Connecting;
                        true
                    }
                });
            }
            Err(e) if is_unreachable(e) => self.set(HostState::Offline {
                reason: e.to_string(),
            }),
            Err(_) => {}
        }
    }

    /// Asks the agent for its description and updates the state. A probe
    /// whose connection broke is tried once more (it only reads).
    pub async fn probe(&self, deadline: Duration) -> Result<Arc<SystemInfo>, Error> {
        if !matches!(self.status.borrow().state, HostState::Online(_)) {
            self.set(HostState::Connecting);
        }
        let result = async {
            let client = self.client().await?;
            let ask = || async {
                tokio::time::timeout(deadline, client.system_info())
                    .await
                    .map_err(|_| Error::Transport {
                        address: self.entry.endpoint(),
                        reason: format!("no answer within {deadline:?}"),
                    })?
            };
            read_once_more(self.name(), ask).await
        }
        .await;
        match result {
            Ok(info) => {
                let info = Arc::new(info);
                self.set(HostState::Online(info.clone()));
                Ok(info)
            }
            Err(e) => {
                let reason = e.to_string();
                self.set(HostState::Offline { reason });
                Err(e)
            }
        }
    }
}

/// True for errors that mean the agent could not be reached at all.
pub(super) fn is_unreachable(error: &Error) -> bool {
    matches!(
        error,
        Error::Connect { .. } | Error::Transport { .. } | Error::Settings { .. }
    )
}

/// The pause before a read whose connection broke is tried again: long
/// enough for the channel to notice the old connection is gone.
const READ_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Runs a call that only reads, and once more after [`READ_RETRY_PAUSE`]
/// when its connection broke (see [`is_retryable`]).
pub(super) async fn read_once_more<T, Fut>(
    host: &str,
    mut call: impl FnMut() -> Fut,
) -> Result<T, Error>
where
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    match call().await {
        Err(e) if is_retryable(&e) => {
            tracing::debug!(host, error = %e, "retrying a read");
            tokio::time::sleep(READ_RETRY_PAUSE).await;
            call().await
        }
        result => result,
    }
}

/// True for failures worth one more try of a call that only reads: the
/// connection broke (reset, closed) rather than being refused or timing
/// out, which a second try at once would not change.
pub(super) fn is_retryable(error: &Error) -> bool {
    let reason = match error {
        Error::Transport { reason, .. } | Error::Connect { reason, .. } => reason,
        _ => return false,
    };
    let reason = reason.to_ascii_lowercase();
    !reason.contains("no answer within")
        && !reason.contains("refused")
        && ["reset", "broken pipe", "closed", "eof", "connection error"]
            .iter()
            .any(|word| reason.contains(word))
}
