//! The command bar and the output view: running a command or a preset on the
//! selection, the tabs and the grouped view as the run goes, cancelling,
//! saving a host's output.

use super::*;
use crate::client::lifecycle::Lifecycle;

impl App {
    pub(super) fn bind_run(&self) {
        let w = &self.inner.window;
        let app = self.weak();
        let command = w.global::<CommandAdapter>();
        command.on_run(with_app!(self, move |app, text| {
            app.run_command(text.as_str());
        }));
        command.on_preset(with_app!(self, move |app, name| {
            app.preset(&name);
        }));
        command.on_lifecycle(with_app!(self, move |app, name| {
            app.preset(&name);
        }));
        command.on_cancel(with_app!(self, move |app| {
            app.cancel();
        }));
        command.on_older({
            let app = app.clone();
            move || {
                app()
                    .and_then(|app| {
                        let mut state = app.inner.state.borrow_mut();
                        state.recall.older().map(SharedString::from)
                    })
                    .unwrap_or_else(|| {
                        app().map_or_else(SharedString::default, |a| {
                            a.inner.window.global::<CommandAdapter>().get_command()
                        })
                    })
            }
        });
        command.on_newer({
            let app = app.clone();
            move || {
                app()
                    .and_then(|app| {
                        let mut state = app.inner.state.borrow_mut();
                        state.recall.newer().map(SharedString::from)
                    })
                    .unwrap_or_else(|| {
                        app().map_or_else(SharedString::default, |a| {
                            a.inner.window.global::<CommandAdapter>().get_command()
                        })
                    })
            }
        });

        let output = w.global::<OutputAdapter>();
        output.on_show_slot(with_app!(self, move |app, slot| {
            app.show_slot(slot as usize);
        }));
        output.on_cancel_slot(with_app!(self, move |app, slot| {
            let state = app.inner.state.borrow();
            let host = app.output().host_of_slot(slot as usize);
            if let (Some(run), Some(host)) = (&state.run, host) {
                run.cancel_host(host);
            }
        }));
        output.on_diff_toggled(with_app!(self, move |app| {
            app.refresh_output(&BTreeSet::new(), true);
        }));
        output.on_save(with_app!(self, move |app, path| {
            app.save_output(Path::new(path.trim()));
        }));
        output.on_copy(with_app!(self, move |app| {
            let slot = app.inner.state.borrow().current_slot;
            let text = slot
                .map(|slot| app.output().tail_text(slot))
                .unwrap_or_default();
            app.inner
                .window
                .global::<OutputAdapter>()
                .set_tail_text(text.into());
        }));
    }

    // --- runs ----------------------------------------------------------

    /// Starts showing a run on the selected hosts; returns its id and the
    /// selection, or None (with a message) when nothing is selected.
    pub(super) fn begin_run(&self, kind: EntryKind, command: &str) -> Option<(u64, Vec<usize>)> {
        let mut state = self.inner.state.borrow_mut();
        let selection = state.hosts.selection();
        if selection.is_empty() {
            drop(state);
            self.status("select at least one host first", true);
            return None;
        }
        if let Some(run) = state.run.take() {
            run.cancel();
        }
        state.attached_job = None;
        state.detached = false;
        let id = state.next_run;
        state.next_run += 1;
        let names: Vec<(usize, String)> = selection
            .iter()
            .map(|&i| (i, state.hosts.fleet().hosts()[i].name().to_owned()))
            .collect();
        let title = {
            let mut output = lock(&self.inner.output);
            output.start(id, kind, command, &names);
            output.title().to_owned()
        };
        state.current_slot = Some(0);
        state.shown_version = u64::MAX;
        drop(state);
        let w = &self.inner.window;
        w.global::<OutputAdapter>()
            .set_title(visible(&title).as_ref().into());
        w.global::<OutputAdapter>().set_current_slot(0);
        w.global::<CommandAdapter>().set_running(true);
        self.refresh_output(&BTreeSet::new(), true);
        self.status(&format!("running on {} hosts…", selection.len()), false);
        Some((id, selection))
    }

    /// Runs a command line on the selected hosts.
    pub fn run_command(&self, text: &str) {
        let text = text.trim();
        if text.is_empty() {
            self.status("type a command first", true);
            return;
        }
        let spec = match self.rollout_fields().spec(crate::client::run::new_seed) {
            Ok(spec) => spec,
            Err(message) => {
                self.status(&message, true);
                return;
            }
        };
        let Some((id, selection)) = self.begin_run(EntryKind::Command, text) else {
            return;
        };
        {
            let mut state = self.inner.state.borrow_mut();
            state.recall.remember(text);
            Self::fill_recent(&self.inner.models, &state.recall);
        }
        let fleet = self.inner.state.borrow().hosts.fleet().clone();
        let _guard = self.inner.runtime.enter();
        let updates = self.inner.updates.clone();
        let output = self.inner.output.clone();
        let request = ExecRequest::new(text);
        let Some(spec) = spec else {
            let mut run = fleet.exec(&selection, request, RunOptions::default());
            self.inner.state.borrow_mut().run = Some(run.handle());
            self.inner.runtime.spawn(async move {
                while let Some(event) = run.events.recv().await {
                    if let Some(slot) = lock(&output).apply(id, event) {
                        updates.push(Update::OutputChanged { slot });
                    }
                }
                updates.push(Update::RunEnded { id });
            });
            return;
        };
        // A rollout: its batches and its stop are told in the status line
        // as they happen; its hosts' events fill the output as usual.
        let plan = crate::client::run::Plan::new(&selection, &spec);
        self.status(
            &format!(
                "rollout in {} batches: {}",
                plan.batches.len(),
                spec.describe()
            ),
            false,
        );
        let names: Vec<String> = fleet.hosts().iter().map(|h| h.name().to_owned()).collect();
        let mut rollout = fleet.rollout(plan, request, RunOptions::default(), spec.pause(), false);
        self.inner.state.borrow_mut().run = Some(rollout.handle());
        self.inner.runtime.spawn(async move {
            use crate::client::fleet::RolloutEvent;
            while let Some(event) = rollout.events.recv().await {
                match event {
                    RolloutEvent::Run(event) => {
                        if let Some(slot) = lock(&output).apply(id, event) {
                            updates.push(Update::OutputChanged { slot });
                        }
                    }
                    RolloutEvent::Batch { number, of, hosts } => {
                        let hosts: Vec<String> = hosts
                            .iter()
                            .filter_map(|&h| names.get(h).cloned())
                            .collect();
                        updates.push(Update::Status {
                            message: visible(&format!(
                                "batch {number}/{of}: {}",
                                crate::client::ranges::compact(&hosts)
                            ))
                            .into_owned(),
                            error: false,
                        });
                    }
                    RolloutEvent::Pausing(pause) => updates.push(Update::Status {
                        message: format!(
                            "pausing {} before the next batch",
                            humantime::format_duration(pause)
                        ),
                        error: false,
                    }),
                    RolloutEvent::Stopped { reason, not_run } => updates.push(Update::Status {
                        message: format!("{reason}: {not_run} hosts not run"),
                        error: true,
                    }),
                    // The window does not ask half-way (see RolloutFields).
                    RolloutEvent::Confirm(answer) => {
                        let _ = answer.send(true);
                    }
                }
            }
            updates.push(Update::RunEnded { id });
        });
    }

    /// The run options as typed in the command bar.
    fn rollout_fields(&self) -> crate::client::gui::controller::rollout::RolloutFields {
        let adapter = self.inner.window.global::<CommandAdapter>();
        crate::client::gui::controller::rollout::RolloutFields {
            batch: adapter.get_rollout_batch().to_string(),
            canary: adapter.get_rollout_canary().to_string(),
            max_fail: adapter.get_rollout_max_fail().to_string(),
            pause: adapter.get_rollout_pause().to_string(),
            random: adapter.get_rollout_random(),
        }
    }

    /// The preset buttons: a query of the brief, connection information,
    /// processes, or a lifecycle action, on the selected hosts.
    pub fn preset(&self, name: &str) {
        let Some(&(_, kind, title)) = PRESETS.iter().find(|(button, _, _)| *button == name) else {
            return;
        };
        let Some((id, selection)) = self.begin_run(kind, title) else {
            return;
        };
        let fleet = self.inner.state.borrow().hosts.fleet().clone();
        let updates = self.inner.updates.clone();
        let _guard = self.inner.runtime.enter();
        let started = Instant::now();
        let query = crate::client::present::Query::parse(name);
        let name = name.to_owned();
        // Lifecycle commands change something and run once; the rest only
        // read and may be tried again when a connection broke.
        let changes = Lifecycle::parse(&name).is_some();
        let action = move |client: crate::client::AgentClient| {
            let name = name.clone();
            async move {
                match (query, name.as_str()) {
                    (Some(query), _) => Ok(info::answer(query, &client.system_info().await?)),
                    (None, "conn") => Ok(info::connection_text(&client.connection_info().await?)),
                    (None, "ps") => Ok(info::processes_text(client.list_processes("").await?)),
                    (None, name) => match Lifecycle::parse(name) {
                        Some(action) => action
                            .perform(&client, "vigie-gui")
                            .await
                            .map(|text| visible(&text).into_owned()),
                        None => Ok(String::new()),
                    },
                }
            }
        };
        let deadline = Some(Duration::from_secs(15));
        let mut answers = if changes {
            fleet.for_each(&selection, 64, deadline, action)
        } else {
            fleet.read_each(&selection, 64, deadline, action)
        };
        let output = self.inner.output.clone();
        self.inner.runtime.spawn(async move {
            let apply = |event: RunEvent| {
                if let Some(slot) = lock(&output).apply(id, event) {
                    updates.push(Update::OutputChanged { slot });
                }
            };
            while let Some((host, outcome)) = answers.recv().await {
                let (text, outcome) = match outcome {
                    Outcome::Done(text) => (Some(text), answered(started.elapsed())),
                    Outcome::Failed(e) => (None, HostOutcome::Failed(e.to_string())),
                    Outcome::Unreachable(e) => (None, HostOutcome::Unreachable(e.to_string())),
                    Outcome::Skipped(reason) => (None, HostOutcome::Skipped(reason)),
                };
                if let Some(text) = text {
                    let mut data = text.into_bytes();
                    if !data.ends_with(b"\n") {
                        data.push(b'\n');
                    }
                    apply(RunEvent::Output {
                        host,
                        stream: crate::command::OutputStream::Stdout,
                        data: data.into(),
                    });
                }
                apply(RunEvent::Finished {
                    host,
                    result: HostResult {
                        outcome,
                        duration: started.elapsed(),
                    },
                });
            }
            updates.push(Update::RunEnded { id });
        });
    }

    /// Cancels the current run on every host.
    pub fn cancel(&self) {
        let (run, attached) = {
            let mut state = self.inner.state.borrow_mut();
            state.detached = state.attached_job.is_some();
            (state.run.clone(), state.attached_job.clone())
        };
        if let Some(run) = run {
            run.cancel();
            match attached {
                // Cancelling an attachment only detaches.
                Some(job) => self.status(
                    &format!("detached from job {job}; it runs on (Jobs: Reattach, Cancel job)"),
                    false,
                ),
                None => self.status("cancelling on every host…", false),
            }
        }
    }

    pub(super) fn show_slot(&self, slot: usize) {
        {
            let mut state = self.inner.state.borrow_mut();
            state.current_slot = Some(slot);
            state.shown_version = u64::MAX;
        }
        self.inner
            .window
            .global::<OutputAdapter>()
            .set_current_slot(slot as i32);
        self.refresh_output(&BTreeSet::new(), false);
    }

    pub(super) fn refresh_output(&self, changed: &BTreeSet<usize>, everything: bool) {
        let mut state = self.inner.state.borrow_mut();
        let output = lock(&self.inner.output);
        let m = &self.inner.models;
        if everything || m.tabs.row_count() != output.tabs().len() {
            let tabs: Vec<TabItem> = output.tabs().into_iter().map(tab_item).collect();
            update_model(&m.tabs, tabs);
        } else {
            for &slot in changed {
                if let Some(tab) = output.tab(slot) {
                    m.tabs.set_row_data(slot, tab_item(tab));
                }
            }
        }
        let adapter = self.inner.window.global::<OutputAdapter>();
        if let Some(slot) = state.current_slot {
            let version = output.version(slot);
            if version != state.shown_version {
                state.shown_version = version;
                let lines: Vec<LineItem> = output.lines(slot).into_iter().map(line_item).collect();
                m.lines.set_vec(lines);
                let (bytes, shown) = output.sizes(slot);
                adapter.set_sizes(
                    format!(
                        "{} · {} lines shown{}",
                        crate::client::format::bytes(bytes),
                        shown,
                        if shown >= crate::client::gui::controller::output::TAIL_LINES {
                            " (the end; Save… keeps everything)"
                        } else {
                            ""
                        }
                    )
                    .into(),
                );
            }
            if let Some(tab) = output.tab(slot) {
                adapter.set_header(format!("{} — {}", tab.name, tab.status).into());
            }
        } else {
            m.lines.set_vec(Vec::new());
            adapter.set_header(SharedString::new());
        }
        let summary = output.summary();
        adapter.set_summary(
            format!(
                "{} ok · {} failed · {} skipped · {} unreachable{} · {}",
                summary.ok,
                summary.failed,
                summary.skipped,
                summary.unreachable,
                [
                    (summary.cancelled, "cancelled"),
                    (summary.not_run, "not run")
                ]
                .iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, what)| format!(" · {n} {what}"))
                .collect::<String>(),
                crate::client::format::duration(output.elapsed())
            )
            .into(),
        );
        // Grouping hashes every host's output: done as hosts finish, not
        // for every chunk.
        if everything
            || changed
                .iter()
                .any(|&slot| output.tab(slot).is_some_and(|t| t.kind != TabKind::Running))
        {
            let diff = self.inner.window.global::<OutputAdapter>().get_diff();
            let groups: Vec<GroupItem> = output
                .grouped(diff)
                .into_iter()
                .map(|g| GroupItem {
                    hosts: g.hosts.into(),
                    count: g.count as i32,
                    status: g.status.into(),
                    ok: g.ok,
                    lines: ModelRc::new(VecModel::from(
                        g.lines
                            .into_iter()
                            .rev()
                            .take(200)
                            .rev()
                            .map(line_item)
                            .collect::<Vec<_>>(),
                    )),
                })
                .collect();
            m.groups.set_vec(groups);
        }
    }

    /// A run is over: record it and say how it went.
    pub(super) fn finish_run(&self) {
        let (entry, summary, elapsed, history, detached_from) = {
            let mut state = self.inner.state.borrow_mut();
            state.run = None;
            let attached = state.attached_job.take();
            let detached = std::mem::take(&mut state.detached);
            let detached_from = attached.clone().filter(|_| detached);
            let output = lock(&self.inner.output);
            // An attachment records the jobs' ends under their fleet job;
            // one detached from saw no end, and records nothing.
            let entry = output
                .history_entry()
                .filter(|_| !detached)
                .map(|mut entry| {
                    entry.job = attached;
                    entry
                });
            (
                entry,
                output.summary(),
                output.elapsed(),
                state.history.clone(),
                detached_from,
            )
        };
        self.inner
            .window
            .global::<CommandAdapter>()
            .set_running(false);
        if let Some(job) = detached_from {
            // Its hosts read as cancelled, but only the attachment was.
            self.status(
                &format!("detached from job {job}; it runs on (Jobs: Reattach, Cancel job)"),
                false,
            );
            return;
        }
        // The totals line of `vigie exec`.
        self.status(
            &format!(
                "{} in {}",
                summary.line(),
                crate::client::format::duration(elapsed)
            ),
            !summary.all_good(),
        );
        if let (Some(entry), Some(history)) = (entry, history) {
            let updates = self.inner.updates.clone();
            self.inner
                .runtime
                .spawn_blocking(move || match history.append(&entry) {
                    Ok(()) => updates.push(Update::HistoryChanged),
                    Err(e) => updates.push(Update::Status {
                        message: format!("not recorded in the history: {e}"),
                        error: true,
                    }),
                });
        }
    }

    /// Saves the current host's whole output: the file is read and written
    /// on the runtime, never on the UI thread, and the result comes back as
    /// a status update.
    pub(super) fn save_output(&self, path: &Path) {
        let slot = self.inner.state.borrow().current_slot;
        let snapshot = match slot {
            Some(slot) => self.output().snapshot(slot),
            None => Err(std::io::Error::other("no output to save")),
        };
        let path = path.to_owned();
        let updates = self.inner.updates.clone();
        self.inner.runtime.spawn_blocking(move || {
            let (message, error) = match snapshot.and_then(|s| s.save(&path)) {
                Ok(bytes) => (
                    format!(
                        "saved {} to {}",
                        crate::client::format::bytes(bytes),
                        path.display()
                    ),
                    false,
                ),
                Err(e) => (format!("cannot save to {}: {e}", path.display()), true),
            };
            updates.push(Update::Status { message, error });
        });
    }
}

/// A successful answer to a preset, as a command that exited with 0.
fn answered(duration: Duration) -> HostOutcome {
    HostOutcome::Exited(Exit {
        exit_code: 0,
        signal: None,
        core_dumped: false,
        timed_out: false,
        truncated: false,
        duration,
        stdout_bytes: 0,
        stderr_bytes: 0,
        reason: EndReason::Exited,
    })
}

fn tab_item(tab: crate::client::gui::controller::output::TabRow) -> TabItem {
    TabItem {
        slot: tab.slot as i32,
        name: tab.name.into(),
        status: tab.status.into(),
        kind: match tab.kind {
            TabKind::Running => "running",
            TabKind::Ok => "ok",
            TabKind::Failed => "failed",
            TabKind::Skipped => "skipped",
            TabKind::Unreachable => "unreachable",
        }
        .into(),
    }
}

fn line_item(line: Line) -> LineItem {
    LineItem {
        text: line.text.into(),
        stderr: line.stderr,
        diff: i32::from(line.diff),
    }
}

/// The preset buttons: the name the window gives each, and how the run is
/// recorded (its kind and its name in the history).
pub(super) const PRESETS: &[(&str, EntryKind, &str)] = &[
    ("os", EntryKind::Query, "OS"),
    ("ram", EntryKind::Query, "RAM"),
    ("cpu", EntryKind::Query, "CPU"),
    ("ip", EntryKind::Query, "IP"),
    ("name", EntryKind::Query, "Name"),
    ("conn", EntryKind::Query, "connection"),
    ("ps", EntryKind::Query, "processes"),
    ("disconnect", EntryKind::Lifecycle, "disconnect"),
    ("kill", EntryKind::Lifecycle, "kill"),
    ("reset", EntryKind::Lifecycle, "reset"),
];
