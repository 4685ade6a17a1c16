//! The Jobs view: fleet jobs from the history with each host's state
//! (asked when the view opens or on Refresh, never polled), following one
//! again in the output view, and cancelling one.

use super::*;
use crate::client::{
    gui::{JobItem, JobsAdapter},
    jobs::{self, FleetJob, HostJob},
};

/// The most fleet jobs the view asks about.
const SHOWN: usize = 50;

impl App {
    pub(super) fn bind_jobs(&self) {
        let w = &self.inner.window;
        let adapter = w.global::<JobsAdapter>();
        adapter.set_jobs(ModelRc::from(self.inner.models.jobs.clone()));
        adapter.set_detail(ModelRc::from(self.inner.models.job_detail.clone()));
        adapter.on_reload(with_app!(self, move |app| {
            app.refresh_jobs();
        }));
        adapter.on_show(with_app!(self, move |app, index| {
            app.show_job(index as usize);
        }));
        adapter.on_reattach(with_app!(self, move |app, index| {
            app.reattach(index as usize);
        }));
        adapter.on_cancel(with_app!(self, move |app, index| {
            app.cancel_job(index as usize);
        }));
    }

    /// Reads the history and asks each fleet job's hosts about it, on the
    /// runtime; the view fills when the answers arrive.
    pub(super) fn refresh_jobs(&self) {
        let Some(history) = self.inner.state.borrow().history.clone() else {
            self.status("no history: jobs are found through it", true);
            return;
        };
        let fleet = self.inner.state.borrow().hosts.fleet().clone();
        let updates = self.inner.updates.clone();
        self.inner.window.global::<JobsAdapter>().set_loading(true);
        self.inner.runtime.spawn(async move {
            let loaded = tokio::task::spawn_blocking(move || history.load()).await;
            let entries = match loaded {
                Ok(Ok(loaded)) => loaded.entries,
                Ok(Err(e)) => {
                    updates.push(Update::Status {
                        message: format!("cannot read the history: {e}"),
                        error: true,
                    });
                    Vec::new()
                }
                Err(_) => Vec::new(),
            };
            let all = jobs::fleet_jobs(&entries);
            let recent = all[all.len().saturating_sub(SHOWN)..].to_vec();
            let mut shown = Vec::new();
            for job in recent {
                let hosts = jobs::on_fleet(&fleet, &job);
                let answers = jobs::ask(&fleet, &hosts, false, 64)
                    .await
                    .into_iter()
                    .map(|(index, id, answer)| {
                        let name = fleet.host(index).map_or("?", |h| h.name()).to_owned();
                        (name, id, answer)
                    })
                    .collect();
                shown.push((job, answers));
            }
            updates.push(Update::JobsLoaded { jobs: shown });
        });
    }

    /// Fills the list from the answers last received.
    pub(super) fn show_jobs(&self, loaded: Vec<(FleetJob, jobs::Answers)>) {
        let rows: Vec<JobItem> = {
            let mut state = self.inner.state.borrow_mut();
            state.jobs.set(loaded);
            state
                .jobs
                .rows()
                .into_iter()
                .enumerate()
                .map(|(i, r)| JobItem {
                    index: i as i32,
                    id: r.id.into(),
                    when: r.when.into(),
                    command: visible(&r.command).as_ref().into(),
                    hosts: visible(&r.hosts).as_ref().into(),
                    state: visible(&r.state).as_ref().into(),
                    good: r.good,
                })
                .collect()
        };
        update_model(&self.inner.models.jobs, rows);
        let adapter = self.inner.window.global::<JobsAdapter>();
        adapter.set_loading(false);
        let current = adapter.get_current();
        if current >= 0 {
            self.show_job(current as usize);
        }
    }

    fn show_job(&self, index: usize) {
        let Some((title, lines)) = self.inner.state.borrow().jobs.detail(index) else {
            return;
        };
        let items: Vec<LineItem> = lines
            .into_iter()
            .map(|l| LineItem {
                text: visible(&l.text).as_ref().into(),
                stderr: l.bad,
                diff: 0,
            })
            .collect();
        update_model(&self.inner.models.job_detail, items);
        let adapter = self.inner.window.global::<JobsAdapter>();
        adapter.set_current(index as i32);
        adapter.set_detail_title(visible(&title).as_ref().into());
    }

    /// Follows a fleet job again in the output view: each host's output
    /// replays from the start of what its log keeps, then goes on live.
    /// Cancelling detaches.
    fn reattach(&self, index: usize) {
        let Some(job) = self.inner.state.borrow().jobs.job(index).cloned() else {
            return;
        };
        let hosts = {
            let mut state = self.inner.state.borrow_mut();
            let hosts = jobs::on_fleet(state.hosts.fleet(), &job);
            state.hosts.select_none();
            for (i, _) in &hosts {
                state.hosts.toggle(*i);
            }
            hosts
        };
        self.refresh_hosts();
        if hosts.is_empty() {
            self.status("no host of this job is in the hosts file", true);
            return;
        }
        let Some((id, _)) = self.begin_run(EntryKind::Command, &job.command) else {
            return;
        };
        let fleet = self.inner.state.borrow().hosts.fleet().clone();
        let _guard = self.inner.runtime.enter();
        let mut run = fleet.attach(&hosts, RunOptions::default());
        {
            let mut state = self.inner.state.borrow_mut();
            state.run = Some(run.handle());
            state.attached_job = Some(job.id.clone());
        }
        let (updates, output) = (self.inner.updates.clone(), self.inner.output.clone());
        self.inner.runtime.spawn(async move {
            while let Some(event) = run.events.recv().await {
                if let Some(slot) = lock(&output).apply(id, event) {
                    updates.push(Update::OutputChanged { slot });
                }
            }
            updates.push(Update::RunEnded { id });
        });
        self.status(
            &format!(
                "attached to job {} on {} hosts: its output replays, then goes on live",
                job.id,
                hosts.len()
            ),
            false,
        );
        self.show_view(0);
    }

    /// Cancels a fleet job on each of its hosts, then shows their states.
    fn cancel_job(&self, index: usize) {
        let Some(job) = self.inner.state.borrow().jobs.job(index).cloned() else {
            return;
        };
        let fleet = self.inner.state.borrow().hosts.fleet().clone();
        let hosts = jobs::on_fleet(&fleet, &job);
        let updates = self.inner.updates.clone();
        self.status(
            &format!("cancelling job {} on {} hosts…", job.id, hosts.len()),
            false,
        );
        self.inner.runtime.spawn(async move {
            let answers = jobs::ask(&fleet, &hosts, true, 64).await;
            let failed = answers
                .iter()
                .filter(|(_, _, a)| !matches!(a, HostJob::Known(_)))
                .count();
            updates.push(Update::Status {
                message: format!(
                    "job {}: cancelled on {} hosts{}",
                    job.id,
                    answers.len() - failed,
                    if failed > 0 {
                        format!(", {failed} could not be asked")
                    } else {
                        String::new()
                    }
                ),
                error: failed > 0,
            });
            updates.push(Update::JobsChanged);
        });
    }
}
