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

pub mod connections;
mod fanout;
mod host;
mod rollout;

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

pub use fanout::{Execution, Outcome, RunHandle, RunOptions};
use fanout::{Start, run_on_host};
pub use host::{Host, HostState, HostStatus};
pub use rollout::{Rollout, RolloutEvent};

pub use super::run::{HostOutcome, HostResult, RunEvent, Summary};
use super::{AgentClient, ConnectionSettings, Error, hosts::HostEntry};
use crate::{
    command::{self, ExecRequest},
    types::SystemInfo,
};

/// How many hosts a fan-out talks to at once, unless told otherwise.
pub const DEFAULT_CONCURRENCY: usize = 256;

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
        let entries: Vec<HostEntry> = entries.into_iter().collect();
        let leased = connections::budget().must_lease(entries.len());
        Self::made(entries, settings, leased)
    }

    /// A fleet whose hosts' connections are each closed as soon as nothing
    /// uses them: for a program that talks to each host once and exits
    /// (the CLI), whose memory then stays that of the hosts it talks to at
    /// once (some 60 KiB each, TLS and HTTP/2 buffers) rather than growing
    /// with every host it has talked to. A stream keeps its connection for
    /// as long as it runs, and calls to one host while another is under
    /// way share its connection.
    pub fn closing_idle(
        entries: impl IntoIterator<Item = HostEntry>,
        settings: impl Fn(&HostEntry) -> ConnectionSettings,
    ) -> Self {
        Self::made(entries.into_iter().collect(), settings, true)
    }

    fn made(
        entries: Vec<HostEntry>,
        settings: impl Fn(&HostEntry) -> ConnectionSettings,
        leased: bool,
    ) -> Self {
        let hosts = entries
            .into_iter()
            .map(|entry| {
                let settings = settings(&entry);
                Arc::new(Host::new(entry, settings, leased))
            })
            .collect();
        Self {
            hosts: Arc::new(hosts),
        }
    }

    /// When this fleet is too large to keep a connection to each host: the
    /// notice to give once, saying how many are kept open at once.
    pub fn connection_notice(&self) -> Option<String> {
        self.connection_limit()
            .map(|_| connections::budget().notice(self.hosts.len()))
    }

    /// How many hosts' connections may be open at once (the process's
    /// budget), when this fleet cannot keep them all.
    pub fn connection_limit(&self) -> Option<usize> {
        let budget = connections::budget();
        budget
            .must_lease(self.hosts.len())
            .then_some(budget.connections)
    }

    /// A fleet of these hosts that reuses this fleet's hosts whose name,
    /// address and port are unchanged, with their channels and state: what
    /// the desktop client does after a host is added or removed.
    pub fn rebuilt(
        &self,
        entries: impl IntoIterator<Item = HostEntry>,
        settings: impl Fn(&HostEntry) -> ConnectionSettings,
    ) -> Self {
        let entries: Vec<HostEntry> = entries.into_iter().collect();
        let leased = connections::budget().must_lease(entries.len());
        // By name, address and port, so that rebuilding a fleet of 10,000
        // hosts after one edit is linear, not 10,000 searches of 10,000.
        let kept: std::collections::HashMap<(&str, &str, u16), &Arc<Host>> = self
            .hosts
            .iter()
            .filter(|h| h.is_leased() == leased)
            .map(|h| {
                (
                    (
                        h.entry.name.as_str(),
                        h.entry.address.as_str(),
                        h.entry.port,
                    ),
                    h,
                )
            })
            .collect();
        let hosts = entries
            .into_iter()
            .map(|entry| {
                kept.get(&(entry.name.as_str(), entry.address.as_str(), entry.port))
                    .map(|h| Arc::clone(h))
                    .unwrap_or_else(|| {
                        let settings = settings(&entry);
                        Arc::new(Host::new(entry, settings, leased))
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
    /// come as they finish. The action runs once: use this for calls that
    /// change something (signals, lifecycle commands).
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
        self.each(selection, concurrency, deadline, false, action)
    }

    /// Like [`Fleet::for_each`], for calls that only read (system info,
    /// connection info, process lists): one whose connection broke (a
    /// reset, a connection that died while idle) is tried once more on a
    /// new connection before the host is reported unreachable.
    pub fn read_each<T, F, Fut>(
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
        self.each(selection, concurrency, deadline, true, action)
    }

    fn each<T, F, Fut>(
        &self,
        selection: &[usize],
        concurrency: usize,
        deadline: Option<Duration>,
        retry: bool,
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
                // The deadline is the agent's: time spent waiting for a
                // connection of the budget (a leased fleet) is not counted,
                // or a reachable host would be reported unreachable.
                let client = match host.client().await {
                    Ok(client) => client,
                    Err(e) => {
                        let result = Err(e);
                        host.observe(&result);
                        return Outcome::from_result(result);
                    }
                };
                let run = async {
                    if retry {
                        host::read_once_more(host.name(), || action(client.clone())).await
                    } else {
                        action(client).await
                    }
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
    pub fn exec(
        &self,
        selection: &[usize],
        request: ExecRequest,
        options: RunOptions,
    ) -> Execution {
        let prefix = command::parse(&request.command);
        let requirement = (prefix.shell, prefix.required_os);
        self.run(
            selection,
            Start::Execute {
                request,
                requirement,
            },
            options,
        )
    }

    /// Attaches to a job on each of these hosts (fleet index, the host's
    /// job id): each host's events replay its job's output from the start,
    /// then follow it live, as a run's do. Cancelling detaches; the jobs
    /// run on.
    pub fn attach(&self, jobs: &[(usize, String)], options: RunOptions) -> Execution {
        let selection: Vec<usize> = jobs.iter().map(|(i, _)| *i).collect();
        self.run(
            &selection,
            Start::Attach(jobs.iter().cloned().collect()),
            options,
        )
    }

    fn run(&self, selection: &[usize], start: Start, options: RunOptions) -> Execution {
        let (tx, rx) = mpsc::channel(1024);
        let cancel = CancellationToken::new();
        let per_host: Vec<CancellationToken> =
            selection.iter().map(|_| cancel.child_token()).collect();
        let hosts = self.hosts.clone();
        let selection = selection.to_vec();
        let task_selection = selection.clone();
        let options = Arc::new(options);
        let limit = Arc::new(Semaphore::new(options.concurrency.max(1)));
        let start = Arc::new(start);
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
                let start = start.clone();
                let cancel = task_tokens[slot].clone();
                tasks.spawn(async move {
                    let started = Instant::now();
                    let outcome = tokio::select! {
                        biased;
                        () = cancel.cancelled() => HostOutcome::Cancelled,
                        outcome = run_on_host(&host, index, &start, &options, &limit, &tx) => outcome,
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
        Execution {
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
    /// One task and one timer for the whole fleet (the next check due),
    /// whatever its size, and at most [`MONITOR_AT_ONCE`] checks under way;
    /// each host's first check is spread over the first 200 ms. After the
    /// first round, online hosts are checked [`MONITOR_PER_SECOND`] a second
    /// at most on average: ten thousand hosts every 50 s rather than every
    /// `interval`, so that watching a large fleet costs it and the client
    /// a bounded load (any call to a host, and the dashboard's streams,
    /// still update its state at once). Stops when `stop` is cancelled.
    pub fn monitor(&self, interval: Duration, stop: CancellationToken) {
        let hosts = self.hosts.clone();
        // A check's wait is jittered to between half and all of the
        // interval, three quarters on average: the floor keeps the average
        // rate at MONITOR_PER_SECOND.
        let interval = interval.max(Duration::from_secs_f64(
            hosts.len() as f64 / (0.75 * MONITOR_PER_SECOND),
        ));
        tokio::spawn(async move {
            use std::{cmp::Reverse, collections::BinaryHeap};
            let start = tokio::time::Instant::now();
            // When each host is due, earliest first.
            let mut due: BinaryHeap<Reverse<(tokio::time::Instant, usize)>> = (0..hosts.len())
                .map(|i| Reverse((start + jitter(Duration::from_millis(200)), i)))
                .collect();
            let mut backoff = vec![Duration::from_secs(1); hosts.len()];
            let at_once = Arc::new(Semaphore::new(MONITOR_AT_ONCE));
            let (done_tx, mut done) = mpsc::unbounded_channel::<(usize, bool)>();
            loop {
                let next = due.peek().map(|Reverse((at, _))| *at);
                tokio::select! {
                    () = stop.cancelled() => return,
                    // A check ended: schedule the host's next one.
                    Some((index, online)) = done.recv() => {
                        let wait = if online {
                            backoff[index] = Duration::from_secs(1);
                            jitter(interval)
                        } else {
                            let wait = jitter(backoff[index]);
                            backoff[index] = (backoff[index] * 2).min(interval);
                            wait
                        };
                        due.push(Reverse((tokio::time::Instant::now() + wait, index)));
                    }
                    () = sleep_until(next) => {
                        let Some(Reverse((_, index))) = due.pop() else { continue };
                        let turn = tokio::select! {
                            () = stop.cancelled() => return,
                            turn = at_once.clone().acquire_owned() => match turn {
                                Ok(turn) => turn,
                                Err(_) => return,
                            },
                        };
                        let (host, done_tx, stop) = (hosts[index].clone(), done_tx.clone(), stop.clone());
                        tokio::spawn(async move {
                            let _turn = turn;
                            let online = tokio::select! {
                                () = stop.cancelled() => return,
                                probed = host.probe(Duration::from_secs(5)) => probed.is_ok(),
                            };
                            let _ = done_tx.send((index, online));
                        });
                    }
                }
            }
        });
    }
}

/// How many checks the monitor has under way at once: as many as a
/// fan-out, so that hosts that do not answer (each held up to its 5 s
/// deadline) slow the round down only when there are hundreds of them.
pub const MONITOR_AT_ONCE: usize = DEFAULT_CONCURRENCY;

/// The most checks a second, on average, the monitor makes of online
/// hosts once every host had its first.
pub const MONITOR_PER_SECOND: f64 = 200.0;

/// Sleeps until `at`, or forever when nothing is due.
pub(crate) async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A random duration between half and all of `base`.
pub(crate) fn jitter(base: Duration) -> Duration {
    let mut byte = [0u8; 2];
    let _ = getrandom::fill(&mut byte);
    let fraction = f64::from(u16::from_le_bytes(byte)) / f64::from(u16::MAX);
    base.mul_f64(0.5 + 0.5 * fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet() -> Fleet {
        let mut entries: Vec<HostEntry> = ["web1", "web2", "web3", "db1"]
            .iter()
            .map(|n| HostEntry::new(*n, "127.0.0.1", 1))
            .collect();
        entries[3].tags = vec!["db".into()];
        Fleet::new(entries, |_| ConnectionSettings::default())
    }

    #[test]
    fn hosts_are_selected_by_name_range_and_tag_in_file_order() {
        let f = fleet();
        assert_eq!(f.select(&Selector::All).unwrap(), [0, 1, 2, 3]);
        assert_eq!(f.select(&Selector::Tag("db".into())).unwrap(), [3]);
        let names = Selector::Names(vec!["db1".into(), "web[1-2]".into(), "web1".into()]);
        assert_eq!(
            f.select(&names).unwrap(),
            [0, 1, 3],
            "once each, file order"
        );
        assert_eq!(
            f.select(&Selector::Names(vec!["web9".into()])),
            Err(SelectError::UnknownHost("web9".into()))
        );
        assert_eq!(
            f.select(&Selector::Tag("none".into())),
            Err(SelectError::UnknownTag("none".into()))
        );
        assert!(matches!(
            f.select(&Selector::Names(vec!["web[1-".into()])),
            Err(SelectError::BadPattern(_))
        ));
    }

    #[test]
    fn reconnects_are_spread_over_half_to_all_of_the_interval() {
        let base = Duration::from_secs(10);
        for _ in 0..200 {
            let wait = jitter(base);
            assert!(wait >= base / 2 && wait <= base, "{wait:?}");
        }
    }
}
