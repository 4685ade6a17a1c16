//! Fleet jobs, shared by the CLI and the desktop client: a detached run
//! starts one job per host under one fleet job id, which lives only in the
//! history (with each host's job id), so that a fleet job is found again
//! after the client machine rebooted. What the agents say of each host's
//! job, and its words, are here once.

use std::time::Duration;

use futures::StreamExt;

use super::{
    Error,
    fleet::{Fleet, Outcome},
    history::Entry,
    run::{Status, exit_text},
};
use crate::{command::EndReason, types::JobInfo};

/// How long a host may take to answer about its job.
pub const CALL_DEADLINE: Duration = Duration::from_secs(30);

/// A fleet job as the history recorded it when it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetJob {
    /// Its id.
    pub id: String,
    /// When it started (ms since the epoch).
    pub time_ms: i64,
    /// Its command line.
    pub command: String,
    /// (host name, the host's job id), for the hosts where it started.
    pub hosts: Vec<(String, String)>,
}

/// A new fleet job id: short enough to type, random enough not to repeat.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

/// True for what an agent's job id looks like: at most 64 ASCII letters
/// and digits.
pub fn is_job_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The fleet jobs of the history, oldest first.
pub fn fleet_jobs(entries: &[Entry]) -> Vec<FleetJob> {
    entries
        .iter()
        .filter_map(|e| {
            let id = e.job.clone()?;
            let hosts: Vec<(String, String)> = e
                .results
                .iter()
                .filter_map(|r| Some((r.host.clone(), r.job_id.clone()?)))
                .collect();
            // Only the entry that started the job names host jobs; the one
            // an attachment writes when it saw them end does not.
            (!hosts.is_empty()).then(|| FleetJob {
                id,
                time_ms: e.time_ms,
                command: e.command.clone(),
                hosts,
            })
        })
        .collect()
}

/// Why a fleet job id names no job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FindError {
    /// No fleet job starts with it.
    #[error("no fleet job {0} in the history (see `vigie jobs`)")]
    Unknown(String),
    /// More than one does.
    #[error("{id} names {count} fleet jobs: give more of its id")]
    Ambiguous {
        /// What was given.
        id: String,
        /// How many it names.
        count: usize,
    },
}

/// The fleet job `id` names: its whole id or a unique prefix.
pub fn find(jobs: &[FleetJob], id: &str) -> Result<FleetJob, FindError> {
    let matching: Vec<&FleetJob> = jobs
        .iter()
        .filter(|j| !id.is_empty() && j.id.starts_with(id))
        .collect();
    match matching.as_slice() {
        [job] => Ok((*job).clone()),
        [] => Err(FindError::Unknown(id.to_owned())),
        _ => Err(FindError::Ambiguous {
            id: id.to_owned(),
            count: matching.len(),
        }),
    }
}

/// A fleet job's hosts' answers: (host name, its job id, what it said).
pub type Answers = Vec<(String, String, HostJob)>;

/// What a host says of its job.
#[derive(Debug, Clone, PartialEq)]
pub enum HostJob {
    /// Its state.
    Known(JobInfo),
    /// The agent does not know it (any more).
    Forgotten,
    /// It could not be asked, or refused.
    Failed(Status, String),
}

impl HostJob {
    /// One word for scripts: running, finished, forgotten, unreachable or
    /// failed.
    pub fn state(&self) -> &'static str {
        match self {
            Self::Known(job) if job.running() => "running",
            Self::Known(_) => "finished",
            Self::Forgotten => "forgotten",
            Self::Failed(Status::Unreachable | Status::Skipped, _) => "unreachable",
            Self::Failed(..) => "failed",
        }
    }

    /// The state in words: "running", "exit 0", "killed by SIGTERM
    /// (cancelled)", "forgotten by the agent …", "unreachable: …".
    pub fn text(&self) -> String {
        match self {
            Self::Known(job) => match &job.exit {
                None => "running".to_owned(),
                Some(exit) => {
                    let text = exit_text(exit.exit_code, exit.signal, exit.timed_out, false);
                    match exit.reason {
                        EndReason::Cancelled => format!("{text} (cancelled)"),
                        EndReason::AgentStopping => format!("{text} (the agent stopped)"),
                        _ => text,
                    }
                }
            },
            Self::Forgotten => {
                "forgotten by the agent (its retention passed, or the agent restarted)".to_owned()
            }
            Self::Failed(status, reason) => format!("{status}: {reason}"),
        }
    }

    /// The state of a summary: the words of a known job, one word else.
    pub fn short(&self) -> String {
        match self {
            Self::Known(_) => self.text(),
            Self::Forgotten | Self::Failed(..) => self.state().to_owned(),
        }
    }

    /// True when running or ended with success.
    pub fn good(&self) -> bool {
        match self {
            Self::Known(job) => job.exit.as_ref().is_none_or(|e| e.success()),
            Self::Forgotten | Self::Failed(..) => false,
        }
    }

    /// The output bytes its job wrote, when known.
    pub fn output_bytes(&self) -> Option<u64> {
        match self {
            Self::Known(job) => Some(job.output_bytes),
            _ => None,
        }
    }
}

/// "2 running, 1 exit 0": how many hosts are in each state, in order of
/// first appearance.
pub fn summary<'a>(answers: impl IntoIterator<Item = &'a HostJob>) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for answer in answers {
        let text = answer.short();
        match counts.iter_mut().find(|(t, _)| *t == text) {
            Some((_, n)) => *n += 1,
            None => counts.push((text, 1)),
        }
    }
    counts
        .into_iter()
        .map(|(t, n)| format!("{n} {t}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Asks each host about its job (GetJob, or CancelJob with `cancel`), at
/// most `concurrency` at once; answers in the order of `hosts` (fleet
/// index, the host's job id).
pub async fn ask(
    fleet: &Fleet,
    hosts: &[(usize, String)],
    cancel: bool,
    concurrency: usize,
) -> Vec<(usize, String, HostJob)> {
    let calls = hosts.iter().cloned().map(|(index, id)| async move {
        let Some(host) = fleet.host(index) else {
            return (
                index,
                id,
                HostJob::Failed(Status::Failed, "no such host".into()),
            );
        };
        // Waiting for a connection (a leased fleet) is not the host's
        // silence: only the call itself is bounded.
        let result = match host.client().await {
            Ok(client) => {
                let call = async {
                    if cancel {
                        client.cancel_job(&id).await
                    } else {
                        client.get_job(&id).await
                    }
                };
                tokio::time::timeout(CALL_DEADLINE, call)
                    .await
                    .unwrap_or_else(|_| {
                        Err(Error::Transport {
                            address: host.entry.endpoint(),
                            reason: format!("no answer within {CALL_DEADLINE:?}"),
                        })
                    })
            }
            Err(e) => Err(e),
        };
        host.observe(&result);
        let answer = match result {
            Err(e) if e.code() == Some(tonic::Code::NotFound) => HostJob::Forgotten,
            result => match Outcome::from_result(result) {
                Outcome::Done(job) => HostJob::Known(job),
                other => HostJob::Failed(other.status(), other.error().unwrap_or_default()),
            },
        };
        (index, id, answer)
    });
    futures::stream::iter(calls)
        .buffered(concurrency.max(1))
        .collect()
        .await
}

/// The fleet indexes of a fleet job's hosts, with their job ids; hosts no
/// longer in the fleet are left out.
pub fn on_fleet(fleet: &Fleet, job: &FleetJob) -> Vec<(usize, String)> {
    fleet
        .hosts()
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let id = job
                .hosts
                .iter()
                .find(|(name, _)| name == h.name())?
                .1
                .clone();
            Some((i, id))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::history::{EntryKind, HostRecord};

    fn started(job: &str, hosts: &[(&str, Option<&str>)]) -> Entry {
        Entry {
            time_ms: 1,
            kind: EntryKind::Command,
            command: "sleep 1".into(),
            targets: hosts.iter().map(|(h, _)| (*h).to_owned()).collect(),
            results: hosts
                .iter()
                .map(|(h, id)| {
                    let mut record = HostRecord::of_answer(h, Status::Ok, "");
                    record.job_id = id.map(str::to_owned);
                    record
                })
                .collect(),
            rollout: None,
            job: Some(job.to_owned()),
        }
    }

    #[test]
    fn fleet_jobs_come_from_the_entries_that_started_them_and_prefixes_find_them() {
        let mut seen_end = started("abcd1234", &[("a", None)]);
        seen_end.results[0].job_id = None;
        let entries = vec![
            started("abcd1234", &[("a", Some("j1")), ("b", None)]),
            started("abce9999", &[("a", Some("j2"))]),
            seen_end,
        ];
        let jobs = fleet_jobs(&entries);
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].hosts, vec![("a".to_owned(), "j1".to_owned())]);
        assert_eq!(find(&jobs, "abcd").unwrap().id, "abcd1234");
        assert_eq!(
            find(&jobs, "abc"),
            Err(FindError::Ambiguous {
                id: "abc".into(),
                count: 2
            })
        );
        assert!(matches!(find(&jobs, ""), Err(FindError::Unknown(_))));
        assert!(matches!(find(&jobs, "ff"), Err(FindError::Unknown(_))));
    }

    #[test]
    fn a_summary_counts_each_state_once() {
        let running = HostJob::Known(JobInfo {
            job_id: "j".into(),
            identity: "i".into(),
            command: "c".into(),
            pid: 1,
            started_at_ms: 0,
            exit: None,
            ended_at_ms: 0,
            output_bytes: 0,
            retained_from: 0,
            attached: 0,
            expires_at_ms: 0,
        });
        let answers = [
            running.clone(),
            HostJob::Forgotten,
            running,
            HostJob::Failed(Status::Unreachable, "refused".into()),
        ];
        assert_eq!(summary(&answers), "2 running, 1 forgotten, 1 unreachable");
    }
}
