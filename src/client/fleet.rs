//! A fleet of agents: what the CLI and the desktop client drive.
//!
//! Each host has its own lazily connected channel (nothing is dialled until
//! it is used), its own TLS settings and token, its own session id, and a
//! live state: connecting, online (with the OS and hostname the agent
//! reported), or offline (with the reason), plus when it was last seen.
//!
//! Commands are never sent to hosts known to be offline, nor to hosts whose
//! OS does not match an OS-prefixed command: those are reported as
//! skipped, not failed. A fan-out runs on a selection of hosts with a
//! concurrency limit and per-host deadlines, can be cancelled whole or per
//! host, and reports per-host events as they happen and a result per host.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use futures::StreamExt;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use super::run::{HostOutcome, HostResult, RunEvent, Summary};
use super::{
    AgentClient, ConnectionSettings, Error,
    connect::{self, Address},
    hosts::HostEntry,
};
use crate::{
    command::{self, Event, ExecRequest, OsFamily},
    types::SystemInfo,
};

/// How many hosts a fan-out talks to at once, unless told otherwise.
pub const DEFAULT_CONCURRENCY: usize = 256;

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
    client: tokio::sync::OnceCell<Result<AgentClient, String>>,
    status: watch::Sender<HostStatus>,
    session: String,
}

impl Host {
    fn new(entry: HostEntry, settings: ConnectionSettings) -> Self {
        Self {
            entry,
            settings,
            client: tokio::sync::OnceCell::new(),
            status: watch::Sender::new(HostStatus {
                state: HostState::Unknown,
                last_seen: None,
            }),
            session: uuid::Uuid::new_v4().to_string(),
        }
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
    /// fleet. The channel dials on first use and reconnects by itself.
    pub async fn client(&self) -> Result<AgentClient, Error> {
        let client = self
            .client
            .get_or_init(|| async {
                let address = self.address();
                let channel = connect::channel(&address, &self.settings, true)
                    .await
                    .map_err(|e| e.to_string())?;
                AgentClient::with_channel(
                    channel,
                    self.session.clone(),
                    self.settings.token.as_ref(),
                )
                .map(|c| c.described_as(&address.to_string(), self.settings.uses_tls()))
                .map_err(|e| e.to_string())
            })
            .await;
        client.clone().map_err(|reason| Error::Settings {
            address: self.entry.endpoint(),
            reason,
        })
    }

    fn set(&self, state: HostState) {
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
    fn observe<T>(&self, result: &Result<T, Error>) {
        match result {
            Ok(_) | Err(Error::Status(_)) => {
                self.status.send_modify(|s| {
                    s.last_seen = Some(SystemTime::now());
                    if !matches!(s.state, HostState::Online(_)) {
                        // Online, but with no description yet: keep it
                        // connecting until a probe fills it in.
                        s.state = HostState::Connecting;
                    }
                });
            }
            Err(e) if is_unreachable(e) => self.set(HostState::Offline {
                reason: e.to_string(),
            }),
            Err(_) => {}
        }
    }

    /// Asks the agent for its description and updates the state.
    pub async fn probe(&self, deadline: Duration) -> Result<Arc<SystemInfo>, Error> {
        if !matches!(self.status.borrow().state, HostState::Online(_)) {
            self.set(HostState::Connecting);
        }
        let result = async {
            let client = self.client().await?;
            tokio::time::timeout(deadline, client.system_info())
                .await
                .map_err(|_| Error::Transport {
                    address: self.entry.endpoint(),
                    reason: format!("no answer within {deadline:?}"),
                })?
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
fn is_unreachable(error: &Error) -> bool {
    matches!(
        error,
        Error::Connect { .. } | Error::Transport { .. } | Error::Settings { .. }
    )
}

/// Which hosts of a fleet to address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Every host.
    All,
    /// Hosts by name (ranges like `web[1-3]` allowed).
    Names(Vec<String>),
    /// Hosts with this tag.
    Tag(String),
}

/// Why a selection failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectError {
    /// A name matches no host.
    #[error("no host named {0:?} (see `vigie hosts list`)")]
    UnknownHost(String),
    /// No host has the tag.
    #[error("no host has the tag {0:?}")]
    UnknownTag(String),
    /// A range is malformed.
    #[error("{0}")]
    BadPattern(String),
}

/// Many hosts.
#[derive(Debug, Clone)]
pub struct Fleet {
    hosts: Arc<Vec<Arc<Host>>>,
}

impl Fleet {
    /// A fleet of these hosts; `settings` gives each host's connection
    /// settings (TLS, token) by name.
    pub fn new(
        entries: impl IntoIterator<Item = HostEntry>,
        settings: impl Fn(&HostEntry) -> ConnectionSettings,
    ) -> Self {
        let hosts = entries
            .into_iter()
            .map(|entry| {
                let settings = settings(&entry);
                Arc::new(Host::new(entry, settings))
            })
            .collect();
        Self {
            hosts: Arc::new(hosts),
        }
    }

    /// A fleet of these hosts that reuses this fleet's hosts whose name,
    /// address and port are unchanged, with their channels and state: what
    /// the desktop client does after a host is added or removed.
    pub fn rebuilt(
        &self,
        entries: impl IntoIterator<Item = HostEntry>,
        settings: impl Fn(&HostEntry) -> ConnectionSettings,
    ) -> Self {
        let hosts = entries
            .into_iter()
            .map(|entry| {
                self.hosts
                    .iter()
                    .find(|h| {
                        h.entry.name == entry.name
                            && h.entry.address == entry.address
                            && h.entry.port == entry.port
                    })
                    .cloned()
                    .unwrap_or_else(|| {
                        let settings = settings(&entry);
                        Arc::new(Host::new(entry, settings))
                    })
            })
            .collect();
        Self {
            hosts: Arc::new(hosts),
        }
    }

    /// Every host, in file order.
    pub fn hosts(&self) -> &[Arc<Host>] {
        &self.hosts
    }

    /// The host at `index`.
    pub fn host(&self, index: usize) -> Option<&Arc<Host>> {
        self.hosts.get(index)
    }

    /// The indexes of the selected hosts, in file order.
    pub fn select(&self, selector: &Selector) -> Result<Vec<usize>, SelectError> {
        match selector {
            Selector::All => Ok((0..self.hosts.len()).collect()),
            Selector::Tag(tag) => {
                let chosen: Vec<usize> = (0..self.hosts.len())
                    .filter(|&i| self.hosts[i].entry.tags.iter().any(|t| t == tag))
                    .collect();
                if chosen.is_empty() {
                    return Err(SelectError::UnknownTag(tag.clone()));
                }
                Ok(chosen)
            }
            Selector::Names(patterns) => {
                let mut chosen = Vec::new();
                for pattern in patterns {
                    for name in super::ranges::expand(pattern).map_err(SelectError::BadPattern)? {
                        let index = self
                            .hosts
                            .iter()
                            .position(|h| h.entry.name == name)
                            .ok_or_else(|| SelectError::UnknownHost(name.clone()))?;
                        if !chosen.contains(&index) {
                            chosen.push(index);
                        }
                    }
                }
                chosen.sort_unstable();
                Ok(chosen)
            }
        }
    }

    /// Probes the selected hosts (GetSystemInfo) and updates their state;
    /// returns each host's outcome as it comes.
    pub fn check(
        &self,
        selection: &[usize],
        concurrency: usize,
        deadline: Duration,
    ) -> mpsc::Receiver<(usize, Result<Arc<SystemInfo>, Error>)> {
        self.fan_out(selection, concurrency, move |host| async move {
            host.probe(deadline).await
        })
    }

    /// Runs `action` with each selected host's client, at most
    /// `concurrency` at once, skipping hosts known to be offline. Results
    /// come as they finish.
    pub fn for_each<T, F, Fut>(
        &self,
        selection: &[usize],
        concurrency: usize,
        deadline: Option<Duration>,
        action: F,
    ) -> mpsc::Receiver<(usize, Outcome<T>)>
    where
        T: Send + 'static,
        F: Fn(AgentClient) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, Error>> + Send,
    {
        let action = Arc::new(action);
        self.fan_out(selection, concurrency, move |host| {
            let action = action.clone();
            async move {
                if let HostState::Offline { reason } = host.status().state {
                    return Outcome::Skipped(format!("offline: {reason}"));
                }
                let run = async {
                    let client = host.client().await?;
                    action(client).await
                };
                let result = match deadline {
                    Some(limit) => tokio::time::timeout(limit, run).await.unwrap_or_else(|_| {
                        Err(Error::Transport {
                            address: host.entry.endpoint(),
                            reason: format!("no answer within {limit:?}"),
                        })
                    }),
                    None => run.await,
                };
                host.observe(&result);
                Outcome::from_result(result)
            }
        })
    }

    /// Runs `work` for each selected host on a background task, at most
    /// `concurrency` at once; each result comes with its host's index as
    /// soon as it is ready.
    fn fan_out<T, F, Fut>(
        &self,
        selection: &[usize],
        concurrency: usize,
        work: F,
    ) -> mpsc::Receiver<(usize, T)>
    where
        T: Send + 'static,
        F: Fn(Arc<Host>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = T> + Send,
    {
        let (tx, rx) = mpsc::channel(selection.len().max(1));
        let hosts = self.hosts.clone();
        let selection = selection.to_vec();
        tokio::spawn(async move {
            futures::stream::iter(selection)
                .map(|i| {
                    let result = work(hosts[i].clone());
                    async move { (i, result.await) }
                })
                .buffer_unordered(concurrency.max(1))
                .for_each(|item| {
                    let tx = tx.clone();
                    async move {
                        let _ = tx.send(item).await;
                    }
                })
                .await;
        });
        rx
    }

    /// Runs one command on the selected hosts. See [`Run`].
    pub fn exec(&self, selection: &[usize], request: ExecRequest, options: RunOptions) -> Run {
        let (tx, rx) = mpsc::channel(1024);
        let cancel = CancellationToken::new();
        let per_host: Vec<CancellationToken> =
            selection.iter().map(|_| cancel.child_token()).collect();
        let hosts = self.hosts.clone();
        let selection = selection.to_vec();
        let task_selection = selection.clone();
        let options = Arc::new(options);
        let limit = Arc::new(Semaphore::new(options.concurrency.max(1)));
        let prefix = command::parse(&request.command);
        let requirement = (prefix.shell, prefix.required_os);
        let request = Arc::new(request);
        let task_tokens = per_host.clone();
        let done = CancellationToken::new();
        let finished = done.clone();
        tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for (slot, &index) in task_selection.iter().enumerate() {
                let host = hosts[index].clone();
                let options = options.clone();
                let tx = tx.clone();
                let limit = limit.clone();
                let request = request.clone();
                let cancel = task_tokens[slot].clone();
                tasks.spawn(async move {
                    let started = Instant::now();
                    let outcome = tokio::select! {
                        biased;
                        () = cancel.cancelled() => HostOutcome::Cancelled,
                        outcome = run_on_host(&host, index, &request, requirement, &options, &limit, &tx) => outcome,
                    };
                    let _ = tx
                        .send(RunEvent::Finished {
                            host: index,
                            result: HostResult {
                                outcome,
                                duration: started.elapsed(),
                            },
                        })
                        .await;
                });
            }
            while tasks.join_next().await.is_some() {}
            finished.cancel();
        });
        Run {
            events: rx,
            cancel,
            per_host: selection.into_iter().zip(per_host).collect(),
            done,
        }
    }

    /// Watches the hosts' state in the background: online hosts are checked
    /// every `interval`, offline ones retried with exponential backoff (from
    /// one second up to `interval`), each with random jitter, so that a
    /// thousand agents restarting are not all dialled in the same instant.
    /// Stops when `stop` is cancelled.
    pub fn monitor(&self, interval: Duration, stop: CancellationToken) {
        for host in self.hosts.iter() {
            let host = host.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut backoff = Duration::from_secs(1);
                // Spread the first checks too.
                let mut wait = jitter(Duration::from_millis(200));
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                    let online = host.probe(Duration::from_secs(5)).await.is_ok();
                    wait = if online {
                        backoff = Duration::from_secs(1);
                        jitter(interval)
                    } else {
                        let next = jitter(backoff);
                        backoff = (backoff * 2).min(interval);
                        next
                    };
                }
            });
        }
    }
}

/// A random duration between half and all of `base`.
fn jitter(base: Duration) -> Duration {
    let mut byte = [0u8; 2];
    let _ = getrandom::fill(&mut byte);
    let fraction = f64::from(u16::from_le_bytes(byte)) / f64::from(u16::MAX);
    base.mul_f64(0.5 + 0.5 * fraction)
}

/// Options of a fan-out.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Hosts running at once.
    pub concurrency: usize,
    /// Time limit per host, from connecting to the end of the command; the
    /// agent is also told, so it kills the command itself.
    pub deadline: Option<Duration>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            concurrency: DEFAULT_CONCURRENCY,
            deadline: None,
        }
    }
}

/// A fan-out in progress.
#[derive(Debug)]
pub struct Run {
    /// Events of every host, in the order they happen.
    pub events: mpsc::Receiver<RunEvent>,
    cancel: CancellationToken,
    per_host: Vec<(usize, CancellationToken)>,
    done: CancellationToken,
}

impl Run {
    /// Cancels every host that has not finished: their commands are killed
    /// on the agents.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Cancels one host.
    pub fn cancel_host(&self, host: usize) {
        self.handle().cancel_host(host);
    }

    /// A token that fires when every host has finished.
    pub fn done(&self) -> CancellationToken {
        self.done.clone()
    }

    /// A handle that cancels this run from elsewhere while another task
    /// reads its events.
    pub fn handle(&self) -> RunHandle {
        RunHandle {
            cancel: self.cancel.clone(),
            per_host: Arc::new(self.per_host.clone()),
        }
    }
}

/// Cancels a run; cheap to clone.
#[derive(Debug, Clone)]
pub struct RunHandle {
    cancel: CancellationToken,
    per_host: Arc<Vec<(usize, CancellationToken)>>,
}

impl RunHandle {
    /// Cancels every host that has not finished.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Cancels one host.
    pub fn cancel_host(&self, host: usize) {
        if let Some((_, token)) = self.per_host.iter().find(|(i, _)| *i == host) {
            token.cancel();
        }
    }
}

/// The outcome of a non-streaming action on one host.
#[derive(Debug)]
pub enum Outcome<T> {
    /// It worked.
    Done(T),
    /// The agent answered with an error.
    Failed(Error),
    /// Not sent: the host is known offline.
    Skipped(String),
    /// The agent could not be reached.
    Unreachable(Error),
}

impl<T> Outcome<T> {
    /// How it went, as both front-ends name it.
    pub fn status(&self) -> super::run::Status {
        use super::run::Status;
        match self {
            Self::Done(_) => Status::Ok,
            Self::Failed(_) => Status::Failed,
            Self::Skipped(_) => Status::Skipped,
            Self::Unreachable(_) => Status::Unreachable,
        }
    }

    /// Why it did not work, when it did not.
    pub fn error(&self) -> Option<String> {
        match self {
            Self::Done(_) => None,
            Self::Failed(e) | Self::Unreachable(e) => Some(e.to_string()),
            Self::Skipped(reason) => Some(reason.clone()),
        }
    }

    fn from_result(result: Result<T, Error>) -> Self {
        match result {
            Ok(value) => Self::Done(value),
            Err(e) if is_unreachable(&e) => Self::Unreachable(e),
            Err(e) => Self::Failed(e),
        }
    }
}

/// One host's part of a fan-out, up to its outcome.
async fn run_on_host(
    host: &Host,
    index: usize,
    request: &ExecRequest,
    (shell, required_os): (command::Shell, Option<OsFamily>),
    options: &RunOptions,
    limit: &Semaphore,
    events: &mpsc::Sender<RunEvent>,
) -> HostOutcome {
    if let HostState::Offline { reason } = host.status().state {
        return HostOutcome::Skipped(format!("offline: {reason}"));
    }
    let Ok(_permit) = limit.acquire().await else {
        return HostOutcome::Cancelled;
    };
    let work = async {
        // An OS-prefixed command needs the host's OS: learn it first.
        if required_os.is_some() || shell == command::Shell::Cmd {
            let os = match host.os() {
                Some(os) => Some(os),
                None => match host.probe(Duration::from_secs(5)).await {
                    Ok(info) => info.os_family,
                    Err(e) => return HostOutcome::Unreachable(e.to_string()),
                },
            };
            if let Some(os) = os
                && let Err(incompatible) = command::check_compatible(os, shell, required_os)
            {
                return HostOutcome::Skipped(incompatible.to_string());
            }
        }
        let client = match host.client().await {
            Ok(client) => client,
            Err(e) => return HostOutcome::Unreachable(e.to_string()),
        };
        let mut request = request.clone();
        if let Some(deadline) = options.deadline {
            request.timeout = Some(request.timeout.map_or(deadline, |t| t.min(deadline)));
        }
        let started = client.execute(request).await;
        host.observe(&started);
        let mut stream = match started {
            Ok(stream) => stream,
            Err(e) if is_unreachable(&e) => return HostOutcome::Unreachable(e.to_string()),
            Err(e) => return HostOutcome::Failed(e.to_string()),
        };
        while let Some(event) = stream.next().await {
            let forwarded = match event {
                Ok(Event::Started { pid, .. }) => RunEvent::Started { host: index, pid },
                Ok(Event::Output { stream, data }) => RunEvent::Output {
                    host: index,
                    stream,
                    data,
                },
                Ok(Event::Exited(exit)) => return HostOutcome::Exited(exit),
                Err(e) => {
                    let message = format!("the command's stream broke off: {e}");
                    host.observe::<()>(&Err(e));
                    return HostOutcome::Failed(message);
                }
            };
            if events.send(forwarded).await.is_err() {
                return HostOutcome::Cancelled;
            }
        }
        HostOutcome::Failed("the command's stream ended without an exit".into())
    };
    match options.deadline {
        // A little beyond the agent's own timeout, so that normally the
        // agent reports the timeout itself, with the output so far.
        Some(deadline) => tokio::time::timeout(deadline + Duration::from_secs(2), work)
            .await
            .unwrap_or_else(|_| {
                HostOutcome::Failed(format!("no result within the {deadline:?} deadline"))
            }),
        None => work.await,
    }
}
