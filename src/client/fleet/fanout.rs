//! A fan-out in progress: its options, its handle (cancel it whole or one
//! host), the outcome of a call that does not stream, and one host's part
//! of a command run.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::{DEFAULT_CONCURRENCY, Host, HostState, host::is_unreachable};
use crate::{
    client::{
        Error,
        connect::Keepalive,
        run::{HostOutcome, RunEvent},
    },
    command::{self, Event, ExecRequest, OsFamily},
};

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
pub struct Execution {
    /// Events of every host, in the order they happen.
    pub events: mpsc::Receiver<RunEvent>,
    pub(super) cancel: CancellationToken,
    pub(super) per_host: Vec<(usize, CancellationToken)>,
    pub(super) done: CancellationToken,
}

impl Execution {
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
    pub(super) cancel: CancellationToken,
    pub(super) per_host: Arc<Vec<(usize, CancellationToken)>>,
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
    pub fn status(&self) -> crate::client::run::Status {
        use crate::client::run::Status;
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

    /// The outcome of a call's result.
    pub fn from_result(result: Result<T, Error>) -> Self {
        match result {
            Ok(value) => Self::Done(value),
            Err(e) if is_unreachable(&e) => Self::Unreachable(e),
            Err(e) => Self::Failed(e),
        }
    }
}

/// What each host's part of a run starts.
#[derive(Debug)]
pub(super) enum Start {
    /// This command, which needs this shell and OS.
    Execute {
        /// The request.
        request: ExecRequest,
        /// What its OS prefix asks of the host.
        requirement: (command::Shell, Option<OsFamily>),
    },
    /// An attachment to each host's job, by fleet index.
    Attach(std::collections::HashMap<usize, String>),
}

/// One host's part of a fan-out, up to its outcome.
pub(super) async fn run_on_host(
    host: &Host,
    index: usize,
    start: &Start,
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
    let attach = matches!(start, Start::Attach(_));
    let work = async {
        let client = match host.client().await {
            Ok(client) => client,
            Err(e) => return HostOutcome::Unreachable(e.to_string()),
        };
        let started = match start {
            Start::Execute {
                request,
                requirement,
            } => execute_on(host, &client, request, *requirement, options).await,
            Start::Attach(jobs) => match jobs.get(&index) {
                Some(job) => Ok(client.attach_job(job, 0).await),
                None => Err(HostOutcome::Failed("no job on this host".into())),
            },
        };
        let started = match started {
            Ok(started) => started,
            Err(outcome) => return outcome,
        };
        host.observe(&started);
        let mut stream = match started {
            Ok(stream) => stream,
            Err(e) if is_unreachable(&e) => return HostOutcome::Unreachable(e.to_string()),
            Err(e) => return HostOutcome::Failed(e.to_string()),
        };
        let mut last_heard = Instant::now();
        while let Some(event) = stream.next().await {
            let silent = last_heard.elapsed();
            last_heard = Instant::now();
            let forwarded = match event {
                Ok(Event::Started { pid, .. }) => RunEvent::Started { host: index, pid },
                Ok(Event::Output { stream, data }) => RunEvent::Output {
                    host: index,
                    stream,
                    data,
                },
                Ok(Event::Gap { length, .. }) => RunEvent::Output {
                    host: index,
                    stream: command::OutputStream::Stderr,
                    data: crate::client::run::gap_notice(length),
                },
                Ok(Event::Exited(exit)) => return HostOutcome::Exited(exit),
                Err(e) => {
                    let lost = is_unreachable(&e);
                    let why = lost_reason(&e, silent, host.keepalive());
                    let message = match (lost, attach) {
                        // The connection, not the agent, ended the call: the
                        // command may have run in part, and the agent ends
                        // it when it notices the connection is gone.
                        (true, false) => format!(
                            "connection lost while the command ran ({why}); the agent ends the \
                             command when it notices; it is not re-run"
                        ),
                        (true, true) => format!(
                            "connection lost while attached ({why}); the job runs on: attach \
                             again to follow it"
                        ),
                        (false, _) => format!("the command's stream broke off: {e}"),
                    };
                    host.observe::<()>(&Err(e));
                    return if lost {
                        HostOutcome::Lost(message)
                    } else {
                        HostOutcome::Failed(message)
                    };
                }
            };
            if events.send(forwarded).await.is_err() {
                return HostOutcome::Cancelled;
            }
        }
        HostOutcome::Lost("the command's stream ended without an exit; it is not re-run".into())
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

/// Starts a command on one host, once the host's OS is known to fit.
async fn execute_on(
    host: &Host,
    client: &crate::client::AgentClient,
    request: &ExecRequest,
    (shell, required_os): (command::Shell, Option<OsFamily>),
    options: &RunOptions,
) -> Result<Result<crate::client::agent::EventStream, Error>, HostOutcome> {
    // An OS-prefixed command needs the host's OS: learn it first.
    if required_os.is_some() || shell == command::Shell::Cmd {
        let os = match host.os() {
            Some(os) => Some(os),
            None => match host.probe(Duration::from_secs(5)).await {
                Ok(info) => info.os_family,
                Err(e) => return Err(HostOutcome::Unreachable(e.to_string())),
            },
        };
        if let Some(os) = os
            && let Err(incompatible) = command::check_compatible(os, shell, required_os)
        {
            return Err(HostOutcome::Skipped(incompatible.to_string()));
        }
    }
    let mut request = request.clone();
    if let Some(deadline) = options.deadline {
        request.timeout = Some(request.timeout.map_or(deadline, |t| t.min(deadline)));
    }
    Ok(client.execute(request).await)
}

/// Why a connection broke, in an operator's words. When nothing had come
/// for longer than the keepalive interval, the keepalive gave the agent
/// up (HTTP/2 itself only says "broken pipe" then): the host is down,
/// frozen or cut off. Otherwise the transport's own reason (a reset, a
/// close), without the address, which is shown beside it already.
fn lost_reason(error: &Error, silent: Duration, keepalive: Keepalive) -> String {
    if silent >= keepalive.interval {
        return format!(
            "no answer from the agent for {:.1} s, keepalive included: the host is down, \
             frozen or cut off",
            silent.as_secs_f64()
        );
    }
    match error {
        Error::Transport { reason, .. } | Error::Connect { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broken(reason: &str) -> Error {
        Error::Transport {
            address: "10.0.0.2:7421".into(),
            reason: reason.into(),
        }
    }

    #[test]
    fn a_silence_past_the_keepalive_is_named_as_such_not_as_a_broken_pipe() {
        let keepalive = Keepalive::DEFAULT;
        let silent = lost_reason(
            &broken("stream closed because of a broken pipe"),
            Duration::from_secs(8),
            keepalive,
        );
        assert!(
            silent.contains("no answer from the agent for 8.0 s"),
            "{silent}"
        );
        assert!(!silent.contains("broken pipe"), "{silent}");
        // A reset while data flowed keeps the transport's own words.
        let reset = lost_reason(
            &broken("connection reset by peer"),
            Duration::from_millis(50),
            keepalive,
        );
        assert_eq!(reset, "connection reset by peer");
    }
}
