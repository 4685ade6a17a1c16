//! Where `vigie exec` takes its events from: one fan-out to every host, or
//! a rollout (`--batch`, `--canary`, `--max-fail`, …) whose batches, pauses
//! and stop are told between the hosts' events; and the rollout flags.

use std::time::Duration;

use super::output::Printer;
use crate::client::{
    fleet::{Execution, Rollout, RolloutEvent},
    run::{Order, RolloutSpec, Size},
};

/// The rollout flags of `vigie exec`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RolloutArgs {
    /// Run on hosts in batches of N hosts or P% of them, one batch after
    /// the other.
    #[arg(long, value_name = "N|P%")]
    pub batch: Option<Size>,
    /// Run on N hosts first, and on the others only if all N succeeded.
    #[arg(long, value_name = "N")]
    pub canary: Option<usize>,
    /// Stop once more than N hosts (or P% of them) have failed; the hosts
    /// not reached are reported "not run".
    #[arg(long, value_name = "N|P%")]
    pub max_fail: Option<Size>,
    /// Wait this long between batches (e.g. 30s, 2m).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub pause: Option<Duration>,
    /// After the canary, ask on the terminal before going on.
    #[arg(long, requires = "canary")]
    pub confirm: bool,
    /// The hosts' order: the hosts file's, or random (its seed is printed).
    #[arg(long, value_enum, default_value_t = OrderArg::File)]
    pub order: OrderArg,
    /// The seed of `--order random`, to repeat an order.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

/// `--order`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OrderArg {
    /// The hosts file's order.
    #[default]
    File,
    /// Shuffled.
    Random,
}

impl RolloutArgs {
    /// The rollout asked for, if any.
    pub fn spec(&self) -> Option<RolloutSpec> {
        let order = match self.order {
            OrderArg::File => Order::File,
            OrderArg::Random => {
                Order::Random(self.seed.unwrap_or_else(crate::client::run::new_seed))
            }
        };
        let spec = RolloutSpec {
            batch: self.batch,
            canary: self.canary,
            max_fail: self.max_fail,
            pause_ms: self.pause.map_or(0, |p| p.as_millis() as u64),
            confirm: self.confirm,
            order,
        };
        (spec.is_staged() || order != Order::File || self.pause.is_some()).then_some(spec)
    }
}

/// The events of a run, from either source.
pub(super) enum Source {
    /// All hosts at once.
    Plain(Execution),
    /// A rollout.
    Staged(Rollout),
}

impl Source {
    /// The next event; None when every host has its result.
    pub(super) async fn next(&mut self) -> Option<RolloutEvent> {
        match self {
            Self::Plain(run) => run.events.recv().await.map(RolloutEvent::Run),
            Self::Staged(rollout) => rollout.events.recv().await,
        }
    }

    /// Cancels what runs (and, for a rollout, what has not started).
    pub(super) fn cancel(&self) {
        match self {
            Self::Plain(run) => run.cancel(),
            Self::Staged(rollout) => rollout.cancel(),
        }
    }
}

/// Says what a rollout event means, on stderr (or as a JSON line).
pub(super) fn tell(printer: &Printer, event: &RolloutEvent, name: impl Fn(usize) -> String) {
    match event {
        RolloutEvent::Batch { number, of, hosts } => {
            let names: Vec<String> = hosts.iter().map(|&h| name(h)).collect();
            if printer.json {
                printer.json_line(&serde_json::json!({"type": "batch", "number": number, "of": of, "hosts": names}));
            } else {
                printer.note(&printer.dim(&format!(
                    "vigie: batch {number}/{of}: {}",
                    crate::client::text::visible(&crate::client::ranges::compact(&names))
                )));
            }
        }
        RolloutEvent::Pausing(pause) => {
            if !printer.json {
                printer.note(&printer.dim(&format!(
                    "vigie: pausing {} before the next batch",
                    humantime::format_duration(*pause)
                )));
            }
        }
        RolloutEvent::Stopped { reason, not_run } => {
            if printer.json {
                printer.json_line(
                    &serde_json::json!({"type": "stopped", "reason": reason, "not_run": not_run}),
                );
            } else {
                printer.note(
                    &printer.status(false, &format!("vigie: {reason}: {not_run} hosts not run")),
                );
            }
        }
        RolloutEvent::Run(_) | RolloutEvent::Confirm(_) => {}
    }
}
