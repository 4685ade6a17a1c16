//! The events of a fan-out and how each host's part of it ended, in the
//! words both front-ends show.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::command::{self, Exit, OutputStream};

/// How a host's part of a run ended: what the history stores, what the
/// totals count and what both front-ends colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Exited with status 0.
    Ok,
    /// Exited otherwise, was killed, or the agent refused the request.
    Failed,
    /// Not sent (the host is known offline, or its OS does not fit).
    Skipped,
    /// The agent could not be reached.
    Unreachable,
    /// The connection broke while the command ran: it may have run in part.
    Lost,
    /// The run or this host was cancelled.
    Cancelled,
    /// Not sent: a rollout stopped before it reached the host.
    NotRun,
}

impl Status {
    /// The status as the history and `--json` write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Unreachable => "unreachable",
            Self::Lost => "lost",
            Self::Cancelled => "cancelled",
            Self::NotRun => "not run",
        }
    }

    /// True for the statuses shown as fine: success, and hosts skipped on
    /// purpose.
    pub fn is_fine(self) -> bool {
        matches!(self, Self::Ok | Self::Skipped)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a command's end reads: "exit 3", "killed by SIGKILL", with
/// " (timed out)" and " (output truncated at the agent's cap)" as they
/// apply. The one wording of both front-ends, for a live result and for a
/// history record alike.
pub fn exit_text(exit_code: i32, signal: Option<i32>, timed_out: bool, truncated: bool) -> String {
    let mut text = match signal {
        Some(signal) => format!("killed by {}", command::signal_name(signal)),
        None => format!("exit {exit_code}"),
    };
    if timed_out {
        text.push_str(" (timed out)");
    }
    if truncated {
        text.push_str(" (output truncated at the agent's cap)");
    }
    text
}

/// The line that stands, in a host's stderr, for output a job's log had
/// dropped (its cap keeps the newest output) before it could be replayed:
/// both front-ends show it where the bytes would have been, so that a
/// replay is never silently shorter than what the job wrote.
pub fn gap_notice(length: u64) -> Bytes {
    Bytes::from(format!(
        "[vigie: {length} bytes of this job's output are gone: the agent's job log keeps only \
         its newest output]\n"
    ))
}

/// An event of a fan-out.
#[derive(Debug, Clone)]
pub enum RunEvent {
    /// The command started on a host.
    Started {
        /// The host's index in the fleet.
        host: usize,
        /// The command's pid there.
        pid: i32,
    },
    /// A host's command wrote output.
    Output {
        /// The host's index in the fleet.
        host: usize,
        /// Which stream.
        stream: OutputStream,
        /// The bytes.
        data: Bytes,
    },
    /// A host is done; the last event for it.
    Finished {
        /// The host's index in the fleet.
        host: usize,
        /// How it went.
        result: HostResult,
    },
}

/// How one host's part of a fan-out went.
#[derive(Debug, Clone, PartialEq)]
pub struct HostResult {
    /// What happened.
    pub outcome: HostOutcome,
    /// Time from the start of the fan-out to the end for this host.
    pub duration: Duration,
}

/// What happened on one host.
#[derive(Debug, Clone, PartialEq)]
pub enum HostOutcome {
    /// The command ran and ended.
    Exited(Exit),
    /// The agent refused the request, or the call broke off.
    Failed(String),
    /// Not sent: the host is known offline, or its OS does not fit.
    Skipped(String),
    /// The agent could not be reached.
    Unreachable(String),
    /// The connection to the agent broke after the command started (a
    /// partition, a frozen or rebooted host, a reset): its output may be
    /// incomplete, and it is never re-run silently.
    Lost(String),
    /// The run or this host was cancelled.
    Cancelled,
    /// A rollout stopped before it reached the host (the reason says why).
    NotRun(String),
}

impl HostOutcome {
    /// A short description of an outcome that deserves one ("exit 3",
    /// "killed by SIGKILL (timed out)", "skipped: …"); None for success.
    pub fn describe(&self) -> Option<String> {
        match self {
            Self::Exited(exit) if exit.success() && !exit.truncated => None,
            Self::Exited(exit) => Some(exit_text(
                exit.exit_code,
                exit.signal,
                exit.timed_out,
                exit.truncated,
            )),
            Self::Failed(e) => Some(format!("failed: {e}")),
            Self::Skipped(e) => Some(format!("skipped: {e}")),
            Self::Unreachable(e) => Some(format!("unreachable: {e}")),
            Self::Lost(e) => Some(format!("lost: {e}")),
            Self::Cancelled => Some("cancelled".into()),
            Self::NotRun(reason) => Some(format!("not run: {reason}")),
        }
    }

    /// The outcome's facts as records and JSON lines write them: exit code,
    /// signal, whether it timed out, whether its output was cut, and the
    /// error (or why it did not run).
    pub fn parts(&self) -> OutcomeParts {
        match self {
            Self::Exited(exit) => OutcomeParts {
                exit_code: Some(exit.exit_code),
                signal: exit.signal,
                timed_out: exit.timed_out,
                truncated: exit.truncated,
                error: None,
            },
            Self::Failed(e)
            | Self::Skipped(e)
            | Self::Unreachable(e)
            | Self::Lost(e)
            | Self::NotRun(e) => OutcomeParts {
                error: Some(e.clone()),
                ..OutcomeParts::default()
            },
            Self::Cancelled => OutcomeParts {
                error: Some("cancelled".into()),
                ..OutcomeParts::default()
            },
        }
    }

    /// How it ended, as a status both front-ends name and colour.
    pub fn status(&self) -> Status {
        match self {
            Self::Exited(exit) if exit.success() => Status::Ok,
            Self::Exited(_) | Self::Failed(_) => Status::Failed,
            Self::Skipped(_) => Status::Skipped,
            Self::Unreachable(_) => Status::Unreachable,
            Self::Lost(_) => Status::Lost,
            Self::Cancelled => Status::Cancelled,
            Self::NotRun(_) => Status::NotRun,
        }
    }

    /// The status part of what `-b` and the Grouped view compare: the
    /// description, "exit 0" for a plain success.
    pub fn status_text(&self) -> String {
        self.describe().unwrap_or_else(|| "exit 0".into())
    }
}

/// The facts of an outcome, field by field (see [`HostOutcome::parts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutcomeParts {
    /// Exit code, when the command ran.
    pub exit_code: Option<i32>,
    /// Signal that ended it.
    pub signal: Option<i32>,
    /// True when its time limit ended it.
    pub timed_out: bool,
    /// True when the agent cut its output.
    pub truncated: bool,
    /// The error, or why it did not run.
    pub error: Option<String>,
}

/// Totals of a fan-out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Exited with status 0.
    pub ok: usize,
    /// Exited otherwise, or refused.
    pub failed: usize,
    /// Not sent.
    pub skipped: usize,
    /// Not reachable.
    pub unreachable: usize,
    /// Connection lost while the command ran.
    pub lost: usize,
    /// Cancelled.
    pub cancelled: usize,
    /// Not reached by a rollout that stopped.
    pub not_run: usize,
}

impl Summary {
    /// Counts one host's outcome.
    pub fn add(&mut self, outcome: &HostOutcome) {
        match outcome.status() {
            Status::Ok => self.ok += 1,
            Status::Failed => self.failed += 1,
            Status::Skipped => self.skipped += 1,
            Status::Unreachable => self.unreachable += 1,
            Status::Lost => self.lost += 1,
            Status::Cancelled => self.cancelled += 1,
            Status::NotRun => self.not_run += 1,
        }
    }

    /// "3 ok, 1 failed, 0 skipped, 0 unreachable" (and lost and cancelled
    /// hosts when there are any), the totals line of both front-ends.
    pub fn line(&self) -> String {
        let mut text = format!(
            "{} ok, {} failed, {} skipped, {} unreachable",
            self.ok, self.failed, self.skipped, self.unreachable
        );
        if self.lost > 0 {
            text.push_str(&format!(", {} lost", self.lost));
        }
        if self.cancelled > 0 {
            text.push_str(&format!(", {} cancelled", self.cancelled));
        }
        if self.not_run > 0 {
            text.push_str(&format!(", {} not run", self.not_run));
        }
        text
    }

    /// True when nothing failed, was unreachable, was lost or was
    /// cancelled.
    pub fn all_good(&self) -> bool {
        self.failed == 0
            && self.unreachable == 0
            && self.lost == 0
            && self.cancelled == 0
            && self.not_run == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::EndReason;

    fn exited(code: i32, signal: Option<i32>) -> HostOutcome {
        HostOutcome::Exited(Exit {
            exit_code: code,
            signal,
            core_dumped: false,
            timed_out: false,
            truncated: false,
            duration: Duration::ZERO,
            stdout_bytes: 0,
            stderr_bytes: 0,
            reason: EndReason::Exited,
        })
    }

    #[test]
    fn outcomes_read_the_same_everywhere() {
        assert_eq!(exited(0, None).describe(), None);
        assert_eq!(exited(0, None).status_text(), "exit 0");
        assert_eq!(exited(3, None).status_text(), "exit 3");
        assert_eq!(exited(137, Some(9)).status_text(), "killed by SIGKILL");
        assert_eq!(exited(137, Some(9)).status(), Status::Failed);
        assert_eq!(
            exit_text(143, Some(15), true, true),
            "killed by SIGTERM (timed out) (output truncated at the agent's cap)"
        );
        assert_eq!(
            HostOutcome::Skipped("offline".into()).status(),
            Status::Skipped
        );
        assert!(Status::Skipped.is_fine() && !Status::Cancelled.is_fine());
        let mut summary = Summary::default();
        for outcome in [exited(0, None), exited(1, None), HostOutcome::Cancelled] {
            summary.add(&outcome);
        }
        assert_eq!(
            summary.line(),
            "1 ok, 1 failed, 0 skipped, 0 unreachable, 1 cancelled"
        );
        assert_eq!(
            serde_json::to_string(&Status::Unreachable).unwrap(),
            "\"unreachable\""
        );
    }

    #[test]
    fn a_lost_connection_is_its_own_status_counted_and_never_good() {
        let lost = HostOutcome::Lost("connection lost while the command ran (reset)".into());
        assert_eq!(lost.status(), Status::Lost);
        assert!(!Status::Lost.is_fine());
        assert_eq!(
            lost.describe().as_deref(),
            Some("lost: connection lost while the command ran (reset)")
        );
        assert_eq!(
            lost.parts().error.as_deref(),
            Some("connection lost while the command ran (reset)")
        );
        assert_eq!(serde_json::to_string(&Status::Lost).unwrap(), "\"lost\"");
        let mut summary = Summary::default();
        for outcome in [exited(0, None), lost] {
            summary.add(&outcome);
        }
        assert_eq!(summary.lost, 1);
        assert!(!summary.all_good());
        assert_eq!(
            summary.line(),
            "1 ok, 0 failed, 0 skipped, 0 unreachable, 1 lost"
        );
    }
}
