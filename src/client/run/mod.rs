//! The run model: one fan-out of a command as both front-ends see it,
//! free of any terminal or window. The fleet's events go in; out come each
//! host's lines (split one way), its output kept and digested (one head
//! limit, one digest), the groups of identical results (live, while the
//! run goes on), the totals and the history entry. The CLI renders this to
//! a terminal or JSON lines, the desktop client to its models; neither
//! keeps output, groups or records in a way of its own.

mod diff;
mod event;
mod groups;
mod output;
mod rollout;

use std::{collections::HashMap, time::SystemTime};

use bytes::Bytes;

pub use diff::unified;
pub use event::{
    HostOutcome, HostResult, OutcomeParts, RunEvent, Status, Summary, exit_text, gap_notice,
};
pub use groups::{Group, group_by};
pub use output::{HostOutput, LONGEST_LINE, LineSplitter, OutputKey};
pub use rollout::{Order, Plan, RolloutSpec, Size, new_seed};

use crate::{
    client::history::{Entry, EntryKind, HostRecord, OUTPUT_KEPT},
    command::OutputStream,
};

/// With `-b`, the output kept per host and shown for a group: the first
/// 16 MiB (hosts are grouped by the digest of all of it).
pub const GATHER_KEPT: usize = 16 << 20;

/// One host's part of the run.
#[derive(Debug, Clone)]
pub struct RunHost {
    /// Its index in the fleet.
    pub index: usize,
    /// Its name.
    pub name: String,
    /// Its output so far.
    pub output: HostOutput,
    /// How it ended; `None` while it runs.
    pub result: Option<HostResult>,
    lines: LineSplitter,
}

impl RunHost {
    /// "running", or the status of its end as both front-ends word it
    /// ("exit 0", "killed by SIGKILL", "unreachable: …").
    pub fn status_text(&self) -> String {
        self.result
            .as_ref()
            .map_or_else(|| "running".to_owned(), |r| r.outcome.status_text())
    }

    /// Its status, once it has ended.
    pub fn status(&self) -> Option<Status> {
        self.result.as_ref().map(|r| r.outcome.status())
    }
}

/// Hosts with identical output and status, as `-b` and the Grouped view
/// show them.
#[derive(Debug, Clone, PartialEq)]
pub struct RunGroup {
    /// The hosts' slots in the run, in run order.
    pub slots: Vec<usize>,
    /// Their names.
    pub hosts: Vec<String>,
    /// Their common status text ("running" while they run).
    pub status: String,
    /// Their common status, once they have ended.
    pub ended: Option<Status>,
    /// The size of their (identical) output.
    pub total: u64,
}

/// What a group key compares: the output and the status text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct GroupKey {
    output: OutputKey,
    status: String,
}

/// One fan-out of a command.
#[derive(Debug, Clone)]
pub struct Run {
    kind: EntryKind,
    command: String,
    started_at: SystemTime,
    hosts: Vec<RunHost>,
    slots: HashMap<usize, usize>,
    split_lines: bool,
}

impl Run {
    /// A run of `command` on these hosts (fleet index, name), keeping
    /// `head_limit` bytes of each host's output. With `split_lines`, each
    /// host's output is also handed out line by line by [`Run::apply`].
    pub fn new(
        kind: EntryKind,
        command: &str,
        hosts: &[(usize, String)],
        head_limit: usize,
        split_lines: bool,
    ) -> Self {
        Self {
            kind,
            command: command.to_owned(),
            started_at: SystemTime::now(),
            hosts: hosts
                .iter()
                .map(|(index, name)| RunHost {
                    index: *index,
                    name: name.clone(),
                    output: HostOutput::new(head_limit),
                    result: None,
                    lines: LineSplitter::default(),
                })
                .collect(),
            slots: hosts
                .iter()
                .enumerate()
                .map(|(slot, (index, _))| (*index, slot))
                .collect(),
            split_lines,
        }
    }

    /// Applies one event of the fleet; `on_line` gets each line it
    /// completes (slot, stream, line without its newline). Returns the slot
    /// it changed, `None` for a host that is not in the run.
    pub fn apply(
        &mut self,
        event: &RunEvent,
        mut on_line: impl FnMut(usize, OutputStream, Bytes),
    ) -> Option<usize> {
        let index = match event {
            RunEvent::Started { host, .. }
            | RunEvent::Output { host, .. }
            | RunEvent::Finished { host, .. } => *host,
        };
        let slot = *self.slots.get(&index)?;
        let host = &mut self.hosts[slot];
        match event {
            RunEvent::Started { .. } => {}
            RunEvent::Output { stream, data, .. } => {
                host.output.record(*stream, data);
                if self.split_lines {
                    host.lines
                        .push(*stream, data, |line| on_line(slot, *stream, line));
                }
            }
            RunEvent::Finished { result, .. } => {
                host.lines
                    .finish(|stream, line| on_line(slot, stream, line));
                host.result = Some(result.clone());
            }
        }
        Some(slot)
    }

    /// The hosts, in run order (a host's slot is its position).
    pub fn hosts(&self) -> &[RunHost] {
        &self.hosts
    }

    /// The host in `slot`.
    pub fn host(&self, slot: usize) -> Option<&RunHost> {
        self.hosts.get(slot)
    }

    /// The slot of the host with this fleet index.
    pub fn slot_of(&self, index: usize) -> Option<usize> {
        self.slots.get(&index).copied()
    }

    /// The command, as the history records it.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// True once every host has a result.
    pub fn is_done(&self) -> bool {
        self.hosts.iter().all(|h| h.result.is_some())
    }

    /// Hosts grouped by identical output and status, largest group first;
    /// running hosts group by the output they have so far.
    pub fn groups(&self) -> Vec<RunGroup> {
        let keyed = self.hosts.iter().enumerate().map(|(slot, host)| {
            (
                slot,
                GroupKey {
                    output: host.output.key(),
                    status: host.status_text(),
                },
            )
        });
        group_by(keyed)
            .into_iter()
            .map(|group| {
                let slots = group.members;
                let first = &self.hosts[slots[0]];
                RunGroup {
                    hosts: slots.iter().map(|s| self.hosts[*s].name.clone()).collect(),
                    status: group.key.status,
                    ended: first.status(),
                    total: first.output.total(),
                    slots,
                }
            })
            .collect()
    }

    /// The totals of the hosts that have ended.
    pub fn summary(&self) -> Summary {
        let mut summary = Summary::default();
        for result in self.hosts.iter().filter_map(|h| h.result.as_ref()) {
            summary.add(&result.outcome);
        }
        summary
    }

    /// For every group after the largest (in the order of
    /// [`Run::groups`]), its unified diff against the largest, headed by
    /// each side's hosts and status; only the headers when the outputs are
    /// the same and the statuses differ. `vigie exec --diff` and the
    /// Grouped view show these.
    pub fn diffs(&self, groups: &[RunGroup]) -> Vec<String> {
        let Some((reference, others)) = groups.split_first() else {
            return Vec::new();
        };
        let label = |g: &RunGroup| {
            format!(
                "{} ({}) {}",
                crate::client::ranges::compact(&g.hosts),
                g.hosts.len(),
                g.status
            )
        };
        let head = |g: &RunGroup| self.hosts[g.slots[0]].output.head();
        others
            .iter()
            .map(|group| {
                let text = unified(
                    head(reference),
                    head(group),
                    &label(reference),
                    &label(group),
                );
                if text.is_empty() {
                    format!("--- {}\n+++ {}\n", label(reference), label(group))
                } else {
                    text
                }
            })
            .collect()
    }

    /// The history entry of the run, once every host has ended.
    pub fn history_entry(&self) -> Option<Entry> {
        self.is_done().then(|| Entry {
            time_ms: crate::clock::ms_since_epoch(self.started_at),
            kind: self.kind,
            command: self.command.clone(),
            targets: self.hosts.iter().map(|h| h.name.clone()).collect(),
            results: self
                .hosts
                .iter()
                .map(|h| {
                    let result = h.result.as_ref().expect("checked by is_done");
                    HostRecord::of_result(&h.name, result, h.output.head(), h.output.total())
                })
                .collect(),
            rollout: None,
            job: None,
        })
    }
}

/// The head limit of a run that only feeds the history.
pub const HISTORY_KEPT: usize = OUTPUT_KEPT;

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::command::{EndReason, Exit};

    /// A host that exited with `code` (or was killed by `signal`) in 5 ms.
    pub(crate) fn exit(code: i32, signal: Option<i32>, truncated: bool) -> HostResult {
        HostResult {
            outcome: HostOutcome::Exited(Exit {
                exit_code: code,
                signal,
                core_dumped: false,
                timed_out: false,
                truncated,
                duration: Duration::from_millis(5),
                stdout_bytes: 0,
                stderr_bytes: 0,
                reason: EndReason::Exited,
            }),
            duration: Duration::from_millis(5),
        }
    }

    /// An output event of `host`.
    pub(crate) fn output(host: usize, stream: OutputStream, data: &[u8]) -> RunEvent {
        RunEvent::Output {
            host,
            stream,
            data: Bytes::copy_from_slice(data),
        }
    }

    fn finished(host: usize, result: HostResult) -> RunEvent {
        RunEvent::Finished { host, result }
    }

    fn run(names: &[&str], head: usize) -> Run {
        let hosts: Vec<(usize, String)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (i + 10, (*n).to_owned()))
            .collect();
        Run::new(EntryKind::Command, "cmd", &hosts, head, true)
    }

    #[test]
    fn identical_results_group_live_and_at_the_end() {
        let mut r = run(&["web1", "web2", "web3"], 1 << 20);
        for host in [10, 11, 12] {
            r.apply(&output(host, OutputStream::Stdout, b"same\n"), |_, _, _| {});
        }
        // While they run, the same output so far groups them.
        let live = r.groups();
        assert_eq!(live.len(), 1);
        assert_eq!((live[0].status.as_str(), live[0].total), ("running", 5));
        r.apply(&output(12, OutputStream::Stdout, b"more\n"), |_, _, _| {});
        for host in [10, 11, 12] {
            r.apply(&finished(host, exit(0, None, false)), |_, _, _| {});
        }
        let groups = r.groups();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].hosts, ["web1", "web2"]);
        assert_eq!(groups[0].status, "exit 0");
        assert_eq!(groups[0].ended, Some(Status::Ok));
        assert_eq!(groups[1].slots, [2]);
    }

    #[test]
    fn a_signal_reads_the_same_in_groups_summary_and_history() {
        let mut r = run(&["a", "b"], 1 << 20);
        r.apply(&finished(10, exit(137, Some(9), false)), |_, _, _| {});
        assert!(r.history_entry().is_none(), "not before every host ended");
        r.apply(&finished(11, exit(0, None, false)), |_, _, _| {});
        let groups = r.groups();
        assert_eq!(groups[0].status, "killed by SIGKILL");
        assert_eq!(groups[0].ended, Some(Status::Failed));
        assert_eq!(
            r.summary().line(),
            "1 ok, 1 failed, 0 skipped, 0 unreachable"
        );
        let entry = r.history_entry().unwrap();
        assert_eq!(entry.results[0].status, Status::Failed);
        assert_eq!(entry.results[0].describe(), "killed by SIGKILL");
        assert_eq!(entry.results[1].describe(), "exit 0");
    }

    #[test]
    fn output_past_the_head_is_counted_and_marked_in_the_record() {
        let mut r = run(&["a"], 8);
        r.apply(
            &output(10, OutputStream::Stdout, b"0123456789abcdef"),
            |_, _, _| {},
        );
        r.apply(&finished(10, exit(0, None, true)), |_, _, _| {});
        let host = &r.hosts()[0];
        assert_eq!(
            (host.output.head(), host.output.total()),
            (&b"01234567"[..], 16)
        );
        assert!(host.output.is_cut());
        let record = &r.history_entry().unwrap().results[0];
        assert!(record.output_truncated);
        assert_eq!(record.output, "01234567");
        assert_eq!(
            record.describe(),
            "exit 0 (output truncated at the agent's cap)"
        );
    }

    #[test]
    fn statuses_of_hosts_that_did_not_run() {
        let mut r = run(&["a", "b", "c"], 64);
        let result = |outcome| HostResult {
            outcome,
            duration: Duration::ZERO,
        };
        r.apply(
            &finished(10, result(HostOutcome::Skipped("offline".into()))),
            |_, _, _| {},
        );
        r.apply(
            &finished(11, result(HostOutcome::Unreachable("refused".into()))),
            |_, _, _| {},
        );
        r.apply(&finished(12, result(HostOutcome::Cancelled)), |_, _, _| {});
        let statuses: Vec<Option<Status>> = r.hosts().iter().map(RunHost::status).collect();
        assert_eq!(
            statuses,
            [
                Some(Status::Skipped),
                Some(Status::Unreachable),
                Some(Status::Cancelled)
            ]
        );
        assert_eq!(r.hosts()[1].status_text(), "unreachable: refused");
        assert_eq!(
            r.summary().line(),
            "0 ok, 0 failed, 1 skipped, 1 unreachable, 1 cancelled"
        );
    }

    #[test]
    fn lines_come_out_per_host_and_stream() {
        let mut r = run(&["a", "b"], 64);
        let mut seen = Vec::new();
        let mut note = |slot, stream, line: Bytes| seen.push((slot, stream, line.to_vec()));
        r.apply(&output(11, OutputStream::Stderr, b"x\ny"), &mut note);
        r.apply(&output(10, OutputStream::Stdout, b"z\n"), &mut note);
        r.apply(&finished(11, exit(0, None, false)), &mut note);
        assert_eq!(
            seen,
            [
                (1, OutputStream::Stderr, b"x".to_vec()),
                (0, OutputStream::Stdout, b"z".to_vec()),
                (1, OutputStream::Stderr, b"y".to_vec()),
            ]
        );
        assert!(
            r.apply(&output(99, OutputStream::Stdout, b"?"), |_, _, _| {})
                .is_none()
        );
    }
}
