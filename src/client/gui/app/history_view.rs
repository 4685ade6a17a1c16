//! The history view: the entries shared with the CLI, one entry's details,
//! running one again, and the command recall.

use super::{run_view::PRESETS, *};

impl App {
    pub(super) fn bind_history(&self) {
        let w = &self.inner.window;
        let history = w.global::<HistoryAdapter>();
        history.on_show(with_app!(self, move |app, id| {
            app.show_history_entry(id as usize);
        }));
        history.on_rerun(with_app!(self, move |app, id| {
            app.rerun(id as usize);
        }));
        history.on_reload(with_app!(self, move |app| {
            app.refresh_history();
        }));
    }

    // --- history -------------------------------------------------------

    /// Reads the history again, on the runtime (the file is locked while
    /// it is read, and can be large): the view is filled when it arrives.
    pub(super) fn refresh_history(&self) {
        let Some(history) = self.inner.state.borrow().history.clone() else {
            return;
        };
        let updates = self.inner.updates.clone();
        self.inner.runtime.spawn_blocking(move || {
            let update = match history.load() {
                Ok(loaded) => Update::HistoryLoaded {
                    entries: loaded.entries,
                },
                Err(e) => Update::Status {
                    message: format!("cannot read the history: {e}"),
                    error: true,
                },
            };
            updates.push(update);
        });
    }

    /// Fills the history list from the entries last read.
    pub(super) fn show_history_rows(&self) {
        let state = self.inner.state.borrow();
        let rows: Vec<HistoryItem> = state
            .history_entries
            .iter()
            .enumerate()
            .rev()
            .map(|(i, e)| HistoryItem {
                id: (i + 1) as i32,
                when: crate::clock::utc(e.time_ms).into(),
                command: visible(&e.shown_command()).as_ref().into(),
                hosts: visible(&crate::client::ranges::compact(&e.targets))
                    .as_ref()
                    .into(),
                result: visible(&e.summary()).as_ref().into(),
            })
            .collect();
        update_model(&self.inner.models.history, rows);
    }

    /// Entry `id` (from 1) of the history as last read.
    fn history_entry(&self, id: usize) -> Option<Entry> {
        self.inner
            .state
            .borrow()
            .history_entries
            .get(id.wrapping_sub(1))
            .cloned()
    }

    pub(super) fn show_history_entry(&self, id: usize) {
        let Some(entry) = self.history_entry(id) else {
            return;
        };
        let mut lines = Vec::new();
        for r in &entry.results {
            // The same words as `vigie history show`.
            let status = format!("{} · {} ms", r.shown(), r.duration_ms);
            lines.push(LineItem {
                text: visible(&format!("── {} · {status}", r.host))
                    .as_ref()
                    .into(),
                stderr: !r.status.is_fine(),
                diff: 0,
            });
            for line in r.output.lines() {
                lines.push(LineItem {
                    text: crate::client::gui::controller::output::sanitize(line.as_bytes()).into(),
                    stderr: false,
                    diff: 0,
                });
            }
            if r.output_truncated {
                lines.push(LineItem {
                    text: "   … (only the start of the output is kept)".into(),
                    stderr: false,
                    diff: 0,
                });
            }
        }
        update_model(&self.inner.models.history_detail, lines);
        let adapter = self.inner.window.global::<HistoryAdapter>();
        adapter.set_current(id as i32);
        adapter.set_detail_title(
            format!(
                "#{id} · {} · {}",
                crate::clock::utc(entry.time_ms),
                visible(&entry.shown_command())
            )
            .into(),
        );
    }

    /// Runs a history entry again on the same hosts (those still in the
    /// hosts file).
    pub(super) fn rerun(&self, id: usize) {
        let Some(entry) = self.history_entry(id) else {
            return;
        };
        {
            let mut state = self.inner.state.borrow_mut();
            state.hosts.select_none();
            let indexes: Vec<usize> = (0..state.hosts.fleet().hosts().len())
                .filter(|&i| {
                    entry
                        .targets
                        .iter()
                        .any(|t| t == state.hosts.fleet().hosts()[i].name())
                })
                .collect();
            for i in indexes {
                state.hosts.toggle(i);
            }
        }
        self.refresh_hosts();
        let preset = PRESETS
            .iter()
            .find(|(_, kind, title)| *kind == entry.kind && *title == entry.command);
        match (entry.kind, preset) {
            (EntryKind::Command, _) => {
                self.inner
                    .window
                    .global::<CommandAdapter>()
                    .set_command(entry.command.as_str().into());
                self.run_command(&entry.command);
            }
            (EntryKind::Query, Some((button, _, _))) => self.preset(button),
            _ => self.status(
                &format!(
                    "{} is not run again from the history: use its button",
                    visible(&entry.shown_command())
                ),
                true,
            ),
        }
        self.show_view(0);
    }

    /// The recent-commands combo box: a title, then the newest first.
    pub(super) fn fill_recent(models: &Models, recall: &Recall) {
        let recent: Vec<SharedString> = std::iter::once(SharedString::from("recent…"))
            .chain(recall.newest_first().into_iter().take(30).map(Into::into))
            .collect();
        update_model(&models.recent, recent);
    }
}
