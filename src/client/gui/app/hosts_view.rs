//! The hosts view: loading a hosts file (or starting the private agent for
//! this machine), the list with its states, filter and selection, adding and
//! removing hosts.

use super::*;

impl App {
    pub(super) fn bind_hosts(&self) {
        let w = &self.inner.window;
        let app = self.weak();
        let hosts = w.global::<HostsAdapter>();
        hosts.on_load(with_app!(self, move |app, path| {
            app.load(Path::new(path.trim()));
        }));
        hosts.on_browse(with_app!(self, move |app| {
            app.open_chooser(files_view::Purpose::HostsFile, None);
        }));
        hosts.on_filter_edited(with_app!(self, move |app, text| {
            app.inner.state.borrow_mut().hosts.set_filter(&text);
            app.refresh_hosts();
        }));
        hosts.on_toggle(with_app!(self, move |app, index| {
            app.inner.state.borrow_mut().hosts.toggle(index as usize);
            app.refresh_hosts();
            app.follow_selection();
        }));
        hosts.on_select_all(with_app!(self, move |app| {
            app.inner.state.borrow_mut().hosts.select_all();
            app.refresh_hosts();
            app.follow_selection();
        }));
        hosts.on_select_none(with_app!(self, move |app| {
            app.inner.state.borrow_mut().hosts.select_none();
            app.refresh_hosts();
            app.follow_selection();
        }));
        hosts.on_select_group(with_app!(self, move |app, tag| {
            app.inner.state.borrow_mut().hosts.select_group(&tag);
            app.refresh_hosts();
            app.follow_selection();
        }));
        hosts.on_show_host(with_app!(self, move |app, index| {
            app.show_host(index as usize);
        }));
        hosts.on_add({
            let app = app.clone();
            move |name, address, port| app().is_some_and(|app| app.add_host(&name, &address, &port))
        });
        hosts.on_remove_selected(with_app!(self, move |app| {
            app.remove_selected();
        }));
    }

    // --- hosts ---------------------------------------------------------

    pub(super) fn settings_for(
        config: &ClientConfig,
    ) -> impl Fn(&HostEntry) -> ConnectionSettings + '_ {
        move |entry| config.settings_for(&entry.name)
    }

    /// Loads a hosts file; the lines that cannot be read are reported in
    /// the status bar, the others load.
    pub fn load(&self, path: &Path) {
        let loaded = {
            let state = self.inner.state.borrow();
            HostsController::load(path, &Self::settings_for(&state.config))
        };
        match loaded {
            Ok((hosts, errors)) => {
                // The filter box keeps its text across files: what it says
                // is what the list shows.
                let filter = self.inner.window.global::<HostsAdapter>().get_filter();
                {
                    let mut state = self.inner.state.borrow_mut();
                    state.hosts = hosts;
                    state.hosts.set_filter(&filter);
                    state.local_agent = None;
                    state.settings.last_hosts_file = Some(path.to_owned());
                    self.save_settings(&state);
                }
                self.inner
                    .window
                    .global::<HostsAdapter>()
                    .set_path(path.display().to_string().into());
                self.inner
                    .window
                    .set_window_title(format!("vigie — {}", path.display()).into());
                self.watch_fleet();
                self.refresh_hosts();
                self.follow_selection();
                let (count, notice) = {
                    let state = self.inner.state.borrow();
                    let fleet = state.hosts.fleet();
                    (fleet.hosts().len(), fleet.connection_notice())
                };
                let mut message = format!("loaded {count} hosts from {}", path.display());
                if let Some(first) = errors.first() {
                    message.push_str(&format!(
                        "; {} lines skipped ({first}{})",
                        errors.len(),
                        if errors.len() > 1 { ", …" } else { "" }
                    ));
                }
                // Said once per file opened: a too-small limit slows the
                // window down; it does not fail hosts.
                if let Some(notice) = &notice {
                    message.push_str(&format!("; {notice}"));
                }
                self.status(&message, !errors.is_empty() || notice.is_some());
            }
            Err(e) => self.status(&e, true),
        }
    }

    /// With no hosts file: an agent in this process, for this machine.
    pub(super) fn start_local(&self) {
        // A Unix socket that only this user can reach: while the window is
        // open, no other local user can borrow its rights.
        let agent = crate::server::PrivateAgent::start(crate::server::AgentConfig::default());
        match agent {
            Ok(agent) => {
                let entry = HostEntry::new("this machine", agent.path().to_string_lossy(), 0);
                {
                    let mut state = self.inner.state.borrow_mut();
                    state.hosts = HostsController::detached(vec![entry]);
                    state.local_agent = Some(agent);
                }
                self.watch_fleet();
                self.refresh_hosts();
                self.follow_selection();
                self.status(
                    "no hosts file: this machine, through an agent started in this window. Open a hosts file to manage others.",
                    false,
                );
                self.show_host(0);
            }
            Err(e) => self.status(&format!("cannot start the local agent: {e}"), true),
        }
    }

    /// Starts monitoring the fleet's hosts and forwarding their changes.
    pub(super) fn watch_fleet(&self) {
        let (fleet, stop, interval) = {
            let mut state = self.inner.state.borrow_mut();
            // A new fleet: no row of the old one is kept.
            state.host_items.clear();
            state.monitor_stop.cancel();
            state.monitor_stop = CancellationToken::new();
            (
                state.hosts.fleet().clone(),
                state.monitor_stop.clone(),
                state.monitor_interval,
            )
        };
        let _guard = self.inner.runtime.enter();
        fleet.monitor(interval, stop.clone());
        for (index, host) in fleet.hosts().iter().enumerate() {
            let mut changes = host.watch();
            let updates = self.inner.updates.clone();
            let stop = stop.clone();
            self.inner.runtime.spawn(async move {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        changed = changes.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            updates.push(Update::HostChanged { index });
                        }
                    }
                }
            });
        }
    }

    /// Shows the hosts list again after the filter, the selection or the
    /// fleet changed: every row the filter lets through, from the cache of
    /// rows (a host's row is made again only when its state changed).
    pub(super) fn refresh_hosts(&self) {
        let rows: Vec<HostItem> = {
            let mut state = self.inner.state.borrow_mut();
            let state = &mut *state;
            let count = state.hosts.fleet().hosts().len();
            if state.host_items.len() != count {
                state.host_items = vec![None; count];
            }
            let shown = state.hosts.shown();
            state.host_rows = vec![usize::MAX; count];
            for (row, &index) in shown.iter().enumerate() {
                state.host_rows[index] = row;
            }
            shown
                .iter()
                .map(|&index| Self::host_item(state, index))
                .collect()
        };
        update_model(&self.inner.models.hosts, rows);
        self.refresh_hosts_summary(true);
    }

    /// After these hosts' states changed: their rows only, unless the
    /// filter now lets through other hosts than it did.
    pub(super) fn refresh_changed_hosts(&self, changed: &[usize]) {
        let rows = {
            let mut state = self.inner.state.borrow_mut();
            let state = &mut *state;
            Self::changed_rows(state, changed)
        };
        // None: the filter now lets through other hosts than it did.
        let Some(rows) = rows else {
            return self.refresh_hosts();
        };
        let model = &self.inner.models.hosts;
        for (row, item) in rows {
            if model.row_data(row).as_ref() != Some(&item) {
                model.set_row_data(row, item);
            }
        }
        self.refresh_hosts_summary(false);
    }

    fn changed_rows(state: &mut State, changed: &[usize]) -> Option<Vec<(usize, HostItem)>> {
        if state.host_items.len() != state.hosts.fleet().hosts().len() {
            return None;
        }
        // Every changed row is made again, whichever way this returns.
        for &index in changed {
            if let Some(slot) = state.host_items.get_mut(index) {
                *slot = None;
            }
        }
        let mut rows = Vec::with_capacity(changed.len());
        for &index in changed {
            if index >= state.host_items.len() {
                continue;
            }
            let row = state.host_rows[index];
            // A host's state is part of what the filter reads (its OS).
            if (row != usize::MAX) != state.hosts.matches(index) {
                return None;
            }
            if row != usize::MAX {
                rows.push((row, Self::host_item(state, index)));
            }
        }
        Some(rows)
    }

    /// The row of a host, from the cache, with its selection.
    fn host_item(state: &mut State, index: usize) -> HostItem {
        let hosts = &state.hosts;
        let mut item = state.host_items[index]
            .get_or_insert_with(|| {
                let r = hosts.row(index);
                HostItem {
                    index: r.index as i32,
                    name: r.name.into(),
                    address: r.address.into(),
                    state: match r.state {
                        StateKind::Unknown => "unknown",
                        StateKind::Connecting => "connecting",
                        StateKind::Online => "online",
                        StateKind::Offline => "offline",
                    }
                    .into(),
                    os: r.os.into(),
                    detail: r.detail.into(),
                    tags: r.tags.into(),
                    selected: false,
                }
            })
            .clone();
        item.selected = hosts.is_selected(index);
        item
    }

    /// The summary line, the current host and the selection's size; with
    /// `groups`, the group list too (it changes only with the fleet).
    fn refresh_hosts_summary(&self, groups: bool) {
        let state = self.inner.state.borrow();
        if groups {
            // The combo box's first entry is its title.
            let groups = state.hosts.groups();
            let title = if groups.is_empty() {
                "no groups"
            } else {
                "group…"
            };
            let tags: Vec<SharedString> = std::iter::once(title.into())
                .chain(groups.into_iter().map(Into::into))
                .collect();
            update_model(&self.inner.models.groups_tags, tags);
        }
        let adapter = self.inner.window.global::<HostsAdapter>();
        adapter.set_summary(state.hosts.summary().into());
        adapter.set_editable(state.hosts.path().is_some());
        adapter.set_current(state.shown_host.map_or(-1, |h| h as i32));
        self.inner
            .window
            .global::<CommandAdapter>()
            .set_selected_count(state.hosts.selected_count() as i32);
    }

    pub(super) fn add_host(&self, name: &str, address: &str, port: &str) -> bool {
        let adapter = self.inner.window.global::<HostsAdapter>();
        let entry = HostEntry::from_fields(name, address, port);
        let result = entry.and_then(|entry| {
            let mut state = self.inner.state.borrow_mut();
            let State { hosts, config, .. } = &mut *state;
            let name = entry.name.clone();
            hosts.add(entry, &Self::settings_for(config)).map(|()| name)
        });
        match result {
            Ok(name) => {
                adapter.set_add_error(SharedString::new());
                self.watch_fleet();
                self.refresh_hosts();
                self.follow_selection();
                let path = self
                    .inner
                    .state
                    .borrow()
                    .hosts
                    .path()
                    .map(|p| p.display().to_string());
                self.status(
                    &format!("added {name} to {}", path.unwrap_or_default()),
                    false,
                );
                true
            }
            Err(e) => {
                adapter.set_add_error(visible(&e).as_ref().into());
                false
            }
        }
    }

    pub(super) fn remove_selected(&self) {
        let result = {
            let mut state = self.inner.state.borrow_mut();
            let State { hosts, config, .. } = &mut *state;
            hosts.remove_selected(&Self::settings_for(config))
        };
        match result {
            Ok(count) => {
                self.watch_fleet();
                self.refresh_hosts();
                self.follow_selection();
                self.status(&format!("removed {count} hosts from the hosts file"), false);
            }
            Err(e) => self.status(&e, true),
        }
    }

    /// Shows a host in the system-information panel and the chart.
    pub(super) fn show_host(&self, index: usize) {
        let name = {
            let mut state = self.inner.state.borrow_mut();
            let Some(host) = state.hosts.fleet().host(index) else {
                return;
            };
            let name = host.name().to_owned();
            state.shown_host = Some(index);
            state.chart.clear();
            state.metrics_stop.cancel();
            state.metrics_stop = CancellationToken::new();
            state.metrics_generation += 1;
            name
        };
        let w = &self.inner.window;
        let name = visible(&name);
        w.global::<InfoAdapter>().set_host(name.as_ref().into());
        w.global::<ChartAdapter>().set_host(name.as_ref().into());
        self.inner.models.info.set_vec(Vec::new());
        self.refresh_chart();
        self.refresh_hosts();
        self.fetch_info(index);
        self.watch_metrics(index);
    }
}
