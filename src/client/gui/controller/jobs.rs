//! The Jobs view's logic: the fleet jobs of the history with what each
//! host said of its job, as rows and as one job's detail lines.

use crate::client::{
    jobs::{self, Answers, FleetJob},
    ranges,
};

/// The fleet jobs shown, newest first, and each one's hosts' answers.
#[derive(Debug, Default)]
pub struct JobsController {
    jobs: Vec<(FleetJob, Answers)>,
}

/// One row of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    /// The fleet job id.
    pub id: String,
    /// When it started.
    pub when: String,
    /// Its command.
    pub command: String,
    /// Its hosts, compacted ("web[1-3]").
    pub hosts: String,
    /// "2 running, 1 exit 0".
    pub state: String,
    /// True when every host runs it or ended it with success.
    pub good: bool,
}

/// One line of a job's detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetailLine {
    /// The text.
    pub text: String,
    /// True when the host's state is not good.
    pub bad: bool,
}

impl JobsController {
    /// Replaces what is shown: the jobs, oldest first as the history has
    /// them, each with (host, host job id, answer).
    pub fn set(&mut self, mut jobs: Vec<(FleetJob, Answers)>) {
        jobs.reverse();
        self.jobs = jobs;
    }

    /// The rows, newest first.
    pub fn rows(&self) -> Vec<JobRow> {
        self.jobs
            .iter()
            .map(|(job, answers)| JobRow {
                id: job.id.clone(),
                when: crate::clock::utc(job.time_ms),
                command: job.command.clone(),
                hosts: ranges::compact(
                    &job.hosts.iter().map(|(h, _)| h.clone()).collect::<Vec<_>>(),
                ),
                state: if answers.is_empty() {
                    "no host of this job is in the hosts file".to_owned()
                } else {
                    jobs::summary(answers.iter().map(|(_, _, a)| a))
                },
                good: !answers.is_empty() && answers.iter().all(|(_, _, a)| a.good()),
            })
            .collect()
    }

    /// The job at row `index`.
    pub fn job(&self, index: usize) -> Option<&FleetJob> {
        self.jobs.get(index).map(|(job, _)| job)
    }

    /// The title and lines of the job at row `index`: one line per host.
    pub fn detail(&self, index: usize) -> Option<(String, Vec<DetailLine>)> {
        let (job, answers) = self.jobs.get(index)?;
        let title = format!(
            "job {} · {} · {}",
            job.id,
            crate::clock::utc(job.time_ms),
            job.command
        );
        let lines = answers
            .iter()
            .map(|(host, host_job, answer)| {
                let output = answer
                    .output_bytes()
                    .map(|b| format!(" · {} of output", crate::client::format::bytes(b)))
                    .unwrap_or_default();
                DetailLine {
                    text: format!("{host} · {}{output} · host job {host_job}", answer.text()),
                    bad: !answer.good(),
                }
            })
            .collect();
        Some((title, lines))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{jobs::HostJob, run::Status};

    #[test]
    fn rows_are_newest_first_with_each_hosts_state() {
        let job = |id: &str| FleetJob {
            id: id.into(),
            time_ms: 0,
            command: "sleep 9".into(),
            hosts: vec![("web1".into(), "j1".into()), ("web2".into(), "j2".into())],
        };
        let mut controller = JobsController::default();
        controller.set(vec![
            (job("old"), vec![]),
            (
                job("new"),
                vec![
                    ("web1".into(), "j1".into(), HostJob::Forgotten),
                    (
                        "web2".into(),
                        "j2".into(),
                        HostJob::Failed(Status::Unreachable, "refused".into()),
                    ),
                ],
            ),
        ]);
        let rows = controller.rows();
        assert_eq!(rows[0].id, "new");
        assert_eq!(rows[0].hosts, "web[1-2]");
        assert_eq!(rows[0].state, "1 forgotten, 1 unreachable");
        assert!(!rows[0].good);
        assert!(rows[1].state.contains("no host"));
        let (title, lines) = controller.detail(0).unwrap();
        assert!(title.starts_with("job new"));
        assert!(lines[1].text.starts_with("web2 · unreachable: refused"));
        assert!(lines.iter().all(|l| l.bad));
    }
}
