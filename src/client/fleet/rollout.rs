//! Running a [`Plan`] batch after batch: each batch is an ordinary fan-out,
//! its events forwarded as they come; between batches the failures are
//! counted against the plan's limit, and once it is passed every host not
//! reached ends as "not run" with the reason. Cancelling stops the batch
//! running (its commands are killed) and leaves the rest not run.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Fleet, RunOptions};
use crate::{
    client::run::{HostOutcome, HostResult, Plan, RunEvent},
    command::ExecRequest,
};

/// What a rollout tells its front-end.
#[derive(Debug)]
pub enum RolloutEvent {
    /// A batch starts (`number` from 1).
    Batch {
        /// Its number.
        number: usize,
        /// How many batches there are.
        of: usize,
        /// Its hosts.
        hosts: Vec<usize>,
    },
    /// Something happened on a host.
    Run(RunEvent),
    /// Waiting this long before the next batch.
    Pausing(Duration),
    /// The canary succeeded: answer true to go on.
    Confirm(oneshot::Sender<bool>),
    /// The rollout stopped early; the hosts not reached follow as "not run".
    Stopped {
        /// Why.
        reason: String,
        /// How many hosts were not reached.
        not_run: usize,
    },
}

/// A rollout under way.
#[derive(Debug)]
pub struct Rollout {
    /// Its events; the channel closes when every host has its result.
    pub events: mpsc::Receiver<RolloutEvent>,
    cancel: CancellationToken,
}

impl Rollout {
    /// Stops it: the running batch is cancelled, the rest not run.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// A handle that stops it. Its `cancel_host` does nothing: a rollout
    /// is stopped as a whole.
    pub fn handle(&self) -> super::RunHandle {
        super::RunHandle {
            cancel: self.cancel.clone(),
            per_host: std::sync::Arc::new(Vec::new()),
        }
    }
}

impl Fleet {
    /// Runs `request` on the hosts of `plan`, batch after batch, pausing
    /// `pause` between batches and asking before going on after a canary
    /// when `confirm` is set.
    pub fn rollout(
        &self,
        plan: Plan,
        request: ExecRequest,
        options: RunOptions,
        pause: Duration,
        confirm: bool,
    ) -> Rollout {
        let (tx, rx) = mpsc::channel(1024);
        let cancel = CancellationToken::new();
        let fleet = self.clone();
        let stop = cancel.clone();
        tokio::spawn(async move {
            let of = plan.batches.len();
            let mut failures = 0;
            let mut stopped: Option<String> = None;
            let mut next = 0;
            while next < of {
                let batch = &plan.batches[next];
                if next > 0 {
                    if plan.canary && next == 1 && confirm {
                        let (answer, asked) = oneshot::channel();
                        if tx.send(RolloutEvent::Confirm(answer)).await.is_err() {
                            return;
                        }
                        if !asked.await.unwrap_or(false) {
                            stopped =
                                Some("rollout stopped: not confirmed after the canary".into());
                            break;
                        }
                    }
                    if !pause.is_zero() {
                        let _ = tx.send(RolloutEvent::Pausing(pause)).await;
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            () = stop.cancelled() => {}
                        }
                    }
                }
                if stop.is_cancelled() {
                    stopped = Some("rollout cancelled".into());
                    break;
                }
                let event = RolloutEvent::Batch {
                    number: next + 1,
                    of,
                    hosts: batch.clone(),
                };
                if tx.send(event).await.is_err() {
                    return;
                }
                let mut run = fleet.exec(batch, request.clone(), options.clone());
                let mut cancelled = false;
                loop {
                    let event = tokio::select! {
                        event = run.events.recv() => event,
                        () = stop.cancelled(), if !cancelled => {
                            cancelled = true;
                            run.cancel();
                            continue;
                        }
                    };
                    let Some(event) = event else { break };
                    if let RunEvent::Finished { result, .. } = &event
                        && !result.outcome.status().is_fine()
                    {
                        failures += 1;
                    }
                    if tx.send(RolloutEvent::Run(event)).await.is_err() {
                        run.cancel();
                        return;
                    }
                }
                next += 1;
                if cancelled {
                    stopped = Some("rollout cancelled".into());
                    break;
                }
                if let Some(reason) = plan.stop_after(next - 1, failures)
                    && next < of
                {
                    stopped = Some(reason);
                    break;
                }
            }
            let not_run: Vec<usize> = plan.batches[next.min(of)..].concat();
            if let Some(reason) = stopped
                && !not_run.is_empty()
            {
                let _ = tx
                    .send(RolloutEvent::Stopped {
                        reason: reason.clone(),
                        not_run: not_run.len(),
                    })
                    .await;
                for host in not_run {
                    let result = HostResult {
                        outcome: HostOutcome::NotRun(reason.clone()),
                        duration: Duration::ZERO,
                    };
                    if tx
                        .send(RolloutEvent::Run(RunEvent::Finished { host, result }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
        Rollout { events: rx, cancel }
    }
}
