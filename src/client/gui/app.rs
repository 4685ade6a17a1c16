//! The adapter between the controllers and the window.
//!
//! Callbacks from the window start work on the tokio runtime and return at
//! once; results come back as [`Update`]s in a queue, and [`App::pump`]
//! applies them on the UI thread: first to the controllers, then to the
//! window's models, changed rows only. The event loop never waits on the
//! network, and a thousand hosts changing state cost one model refresh per
//! pump, not a thousand. In the program, pushing an update wakes the event
//! loop once (`invoke_from_event_loop`); tests without an event loop call
//! `pump` themselves.

use std::{
    cell::RefCell,
    collections::BTreeSet,
    path::{Path, PathBuf},
    rc::{Rc, Weak},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use slint::{ComponentHandle, Model, ModelRc, SharedString, VecModel};
use tokio_util::sync::CancellationToken;

use super::{
    ChartAdapter, CommandAdapter, FileItem, FilesAdapter, GroupItem, HistoryAdapter, HistoryItem,
    HostItem, HostsAdapter, InfoAdapter, InfoItem, LineItem, MainWindow, OutputAdapter,
    StatusAdapter, TabItem,
    controller::{
        chart::ChartController,
        command::Recall,
        files::FileBrowser,
        hosts::{HostsController, StateKind},
        info,
        output::{Line, OutputController, TabKind},
        settings::Settings,
    },
};
use crate::{
    client::{
        ClientConfig, ConnectionSettings,
        fleet::{HostOutcome, HostResult, Outcome, RunEvent, RunHandle, RunOptions},
        history::{EntryKind, History},
        hosts::{HostEntry, split_host_port},
        text::visible,
    },
    command::{EndReason, ExecRequest, Exit},
    types::{MetricsSample, SystemInfo},
};

/// How the window starts.
#[derive(Debug, Default)]
pub struct Options {
    /// A hosts file to load; without one, the remembered one, and without
    /// that an agent started in this process for this machine.
    pub hosts_file: Option<PathBuf>,
    /// TLS settings and tokens.
    pub config: ClientConfig,
    /// Where the window's settings are remembered (none: not remembered).
    pub settings_path: Option<PathBuf>,
    /// The shared command history (none: not recorded).
    pub history: Option<History>,
    /// Time between checks of online hosts.
    pub monitor_interval: Duration,
}

/// Something that happened in the background, for the UI thread.
enum Update {
    HostsChanged,
    /// A host's output or status changed in the output controller.
    OutputChanged {
        slot: usize,
    },
    RunEnded {
        id: u64,
    },
    Info {
        host: usize,
        result: Result<Box<SystemInfo>, String>,
    },
    Metrics {
        generation: u64,
        sample: Result<MetricsSample, String>,
    },
    Status {
        message: String,
        error: bool,
    },
    HistoryChanged,
}

/// The queue between background tasks and the UI thread.
struct Updates {
    queue: Mutex<Vec<Update>>,
    scheduled: AtomicBool,
    wake: Box<dyn Fn() + Send + Sync>,
}

impl Updates {
    fn push(&self, update: Update) {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(update);
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            (self.wake)();
        }
    }

    fn take(&self) -> Vec<Update> {
        self.scheduled.store(false, Ordering::Release);
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

thread_local! {
    /// The application of this (UI) thread, for wake-ups from the event loop.
    static CURRENT: RefCell<Weak<Inner>> = const { RefCell::new(Weak::new()) };
}

/// The desktop client.
#[derive(Clone)]
pub struct App {
    inner: Rc<Inner>,
}

struct Inner {
    window: MainWindow,
    runtime: tokio::runtime::Handle,
    updates: Arc<Updates>,
    /// Filled by the runs' background tasks (splitting, hashing and
    /// spilling output off the UI thread); the UI thread only copies the
    /// visible part.
    output: Arc<Mutex<OutputController>>,
    state: RefCell<State>,
    models: Models,
}

struct Models {
    hosts: Rc<VecModel<HostItem>>,
    groups_tags: Rc<VecModel<SharedString>>,
    tabs: Rc<VecModel<TabItem>>,
    lines: Rc<VecModel<LineItem>>,
    groups: Rc<VecModel<GroupItem>>,
    info: Rc<VecModel<InfoItem>>,
    history: Rc<VecModel<HistoryItem>>,
    history_detail: Rc<VecModel<LineItem>>,
    files: Rc<VecModel<FileItem>>,
    recent: Rc<VecModel<SharedString>>,
}

struct State {
    config: ClientConfig,
    hosts: HostsController,
    chart: ChartController,
    recall: Recall,
    files: FileBrowser,
    settings: Settings,
    settings_path: Option<PathBuf>,
    history: Option<History>,
    monitor_interval: Duration,
    monitor_stop: CancellationToken,
    next_run: u64,
    run: Option<RunHandle>,
    current_slot: Option<usize>,
    shown_version: u64,
    shown_host: Option<usize>,
    metrics_stop: CancellationToken,
    metrics_generation: u64,
    local_agent: Option<crate::server::PrivateAgent>,
}

impl App {
    /// Builds the window and loads the hosts. `wake_event_loop` says
    /// whether background results wake a running event loop (false in
    /// tests, which call [`App::pump`]).
    pub fn new(
        options: Options,
        runtime: tokio::runtime::Handle,
        wake_event_loop: bool,
    ) -> Result<Self, slint::PlatformError> {
        let window = MainWindow::new()?;
        let wake: Box<dyn Fn() + Send + Sync> = if wake_event_loop {
            Box::new(|| {
                let _ = slint::invoke_from_event_loop(|| {
                    if let Some(inner) = CURRENT.with(|c| c.borrow().upgrade()) {
                        App { inner }.pump();
                    }
                });
            })
        } else {
            Box::new(|| {})
        };
        let settings = options
            .settings_path
            .as_deref()
            .map(Settings::load)
            .unwrap_or_default();
        let models = Models {
            hosts: Rc::new(VecModel::default()),
            groups_tags: Rc::new(VecModel::default()),
            tabs: Rc::new(VecModel::default()),
            lines: Rc::new(VecModel::default()),
            groups: Rc::new(VecModel::default()),
            info: Rc::new(VecModel::default()),
            history: Rc::new(VecModel::default()),
            history_detail: Rc::new(VecModel::default()),
            files: Rc::new(VecModel::default()),
            recent: Rc::new(VecModel::default()),
        };
        let recall = Recall::new(
            options
                .history
                .as_ref()
                .and_then(|h| h.load().ok())
                .map(|loaded| {
                    loaded
                        .entries
                        .into_iter()
                        .filter(|e| e.kind == EntryKind::Command)
                        .map(|e| e.command)
                })
                .into_iter()
                .flatten(),
        );
        let start_dir = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from);
        let inner = Rc::new(Inner {
            window,
            runtime,
            updates: Arc::new(Updates {
                queue: Mutex::new(Vec::new()),
                scheduled: AtomicBool::new(false),
                wake,
            }),
            output: Arc::new(Mutex::new(OutputController::default())),
            state: RefCell::new(State {
                config: options.config,
                hosts: HostsController::detached(Vec::new()),
                chart: ChartController::new(120_000),
                recall,
                files: FileBrowser::at(&start_dir),
                settings,
                settings_path: options.settings_path,
                history: options.history,
                monitor_interval: options.monitor_interval.max(Duration::from_secs(1)),
                monitor_stop: CancellationToken::new(),
                next_run: 1,
                run: None,
                current_slot: None,
                shown_version: 0,
                shown_host: None,
                metrics_stop: CancellationToken::new(),
                metrics_generation: 0,
                local_agent: None,
            }),
            models,
        });
        CURRENT.with(|c| *c.borrow_mut() = Rc::downgrade(&inner));
        let app = App { inner };
        app.bind_models();
        app.bind_callbacks();
        Self::fill_recent(&app.inner.models, &app.inner.state.borrow().recall);
        let dark = !app.inner.state.borrow().settings.light_theme;
        app.inner.window.invoke_set_dark(dark);

        let file = options
            .hosts_file
            .or_else(|| app.inner.state.borrow().settings.last_hosts_file.clone())
            .filter(|p| p.exists());
        match file {
            Some(path) => app.load(&path),
            None => app.start_local(),
        }
        app.refresh_history();
        Ok(app)
    }

    /// The window.
    pub fn window(&self) -> &MainWindow {
        &self.inner.window
    }

    /// Applies every update that arrived from the background.
    pub fn pump(&self) {
        let updates = self.inner.updates.take();
        if updates.is_empty() {
            return;
        }
        let mut hosts_changed = false;
        let mut tabs_changed = BTreeSet::new();
        let mut run_ended = false;
        let mut history_changed = false;
        let mut chart_changed = false;
        {
            let mut state = self.inner.state.borrow_mut();
            for update in updates {
                match update {
                    Update::HostsChanged => hosts_changed = true,
                    Update::OutputChanged { slot } => {
                        tabs_changed.insert(slot);
                    }
                    Update::RunEnded { id } => {
                        if self.output().run_id() == Some(id) {
                            run_ended = true;
                        }
                    }
                    Update::Info { host, result } => {
                        if state.shown_host == Some(host) {
                            let rows = match result {
                                Ok(info) => info::rows(&info),
                                Err(e) => info::error_rows(&e),
                            };
                            self.inner.models.info.set_vec(
                                rows.into_iter()
                                    .map(|r| InfoItem {
                                        label: r.label.into(),
                                        value: r.value.into(),
                                    })
                                    .collect::<Vec<_>>(),
                            );
                        }
                    }
                    Update::Metrics { generation, sample } => {
                        if generation == state.metrics_generation {
                            match sample {
                                Ok(sample) => {
                                    state.chart.push(sample);
                                    chart_changed = true;
                                }
                                Err(e) => self.status(&format!("chart: {e}"), true),
                            }
                        }
                    }
                    Update::Status { message, error } => self.status(&message, error),
                    Update::HistoryChanged => history_changed = true,
                }
            }
        }
        if hosts_changed {
            self.refresh_hosts();
        }
        if !tabs_changed.is_empty() || run_ended {
            self.refresh_output(&tabs_changed, run_ended);
        }
        if run_ended {
            self.finish_run();
        }
        if chart_changed {
            self.refresh_chart();
        }
        if history_changed {
            self.refresh_history();
        }
    }

    fn output(&self) -> std::sync::MutexGuard<'_, OutputController> {
        lock(&self.inner.output)
    }

    fn status(&self, message: &str, error: bool) {
        // Every status message goes through here, and many quote an agent
        // (its errors, its answers): shown, never obeyed.
        let status = self.inner.window.global::<StatusAdapter>();
        status.set_message(visible(message).as_ref().into());
        status.set_error(error);
    }

    // --- wiring --------------------------------------------------------

    fn bind_models(&self) {
        let w = &self.inner.window;
        let m = &self.inner.models;
        let hosts = w.global::<HostsAdapter>();
        hosts.set_hosts(ModelRc::from(m.hosts.clone()));
        hosts.set_groups(ModelRc::from(m.groups_tags.clone()));
        let output = w.global::<OutputAdapter>();
        output.set_tabs(ModelRc::from(m.tabs.clone()));
        output.set_lines(ModelRc::from(m.lines.clone()));
        output.set_groups(ModelRc::from(m.groups.clone()));
        w.global::<InfoAdapter>()
            .set_rows(ModelRc::from(m.info.clone()));
        let history = w.global::<HistoryAdapter>();
        history.set_entries(ModelRc::from(m.history.clone()));
        history.set_detail(ModelRc::from(m.history_detail.clone()));
        w.global::<FilesAdapter>()
            .set_entries(ModelRc::from(m.files.clone()));
        w.global::<CommandAdapter>()
            .set_recent(ModelRc::from(m.recent.clone()));
    }

    /// Connects a window callback to an `App` method without keeping the
    /// window alive through its own callbacks.
    fn weak(&self) -> impl Fn() -> Option<App> + Clone + 'static {
        let weak = Rc::downgrade(&self.inner);
        move || weak.upgrade().map(|inner| App { inner })
    }

    fn bind_callbacks(&self) {
        let w = &self.inner.window;
        let hosts = w.global::<HostsAdapter>();
        let app = self.weak();
        hosts.on_load({
            let app = app.clone();
            move |path| {
                if let Some(app) = app() {
                    app.load(Path::new(path.trim()));
                }
            }
        });
        hosts.on_browse({
            let app = app.clone();
            move || {
                if let Some(app) = app() {
                    app.refresh_files();
                    app.inner.window.invoke_show_file_dialog();
                }
            }
        });
        hosts.on_filter_edited({
            let app = app.clone();
            move |text| {
                if let Some(app) = app() {
                    app.inner.state.borrow_mut().hosts.set_filter(&text);
                    app.refresh_hosts();
                }
            }
        });
        hosts.on_toggle({
            let app = app.clone();
            move |index| {
                if let Some(app) = app() {
                    app.inner.state.borrow_mut().hosts.toggle(index as usize);
                    app.refresh_hosts();
                }
            }
        });
        hosts.on_select_all({
            let app = app.clone();
            move || {
                if let Some(app) = app() {
                    app.inner.state.borrow_mut().hosts.select_all();
                    app.refresh_hosts();
                }
            }
        });
        hosts.on_select_none({
            let app = app.clone();
            move || {
                if let Some(app) = app() {
                    app.inner.state.borrow_mut().hosts.select_none();
                    app.refresh_hosts();
                }
            }
        });
        hosts.on_select_group({
            let app = app.clone();
            move |tag| {
                if let Some(app) = app() {
                    app.inner.state.borrow_mut().hosts.select_group(&tag);
                    app.refresh_hosts();
                }
            }
        });
        hosts.on_show_host({
            let app = app.clone();
            move |index| {
                if let Some(app) = app() {
                    app.show_host(index as usize);
                }
            }
        });
        hosts.on_add({
            let app = app.clone();
            move |name, address, port| app().is_some_and(|app| app.add_host(&name, &address, &port))
        });
        hosts.on_remove_selected({
            let app = app.clone();
            move || {
                if let Some(app) = app() {
                    app.remove_selected();
                }
            }
        });

        let command = w.global::<CommandAdapter>();
        command.on_run({
            let app = app.clone();
            move |text| {
                if let Some(app) = app() {
                    app.run_command(text.as_str());
                }
            }
        });
        command.on_preset({
            let app = app.clone();
            move |name| {
                if let Some(app) = app() {
                    app.preset(&name);
                }
            }
        });
        command.on_lifecycle({
            let app = app.clone();
            move |name| {
                if let Some(app) = app() {
                    app.preset(&name);
                }
            }
        });
        command.on_cancel({
            let app = app.clone();
            move || {
                if let Some(app) = app() {
                    app.cancel();
                }
            }
        });
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
        output.on_show_slot({
            let app = app.clone();
            move |slot| {
                if let Some(app) = app() {
                    app.show_slot(slot as usize);
                }
            }
        });
        output.on_cancel_slot({
            let app = app.clone();
            move |slot| {
                if let Some(app) = app() {
                    let state = app.inner.state.borrow();
                    let host = app.output().host_of_slot(slot as usize);
                    if let (Some(run), Some(host)) = (&state.run, host) {
                        run.cancel_host(host);
                    }
                }
            }
        });
        output.on_save({
            let app = app.clone();
            move |path| {
                if let Some(app) = app() {
                    app.save_output(Path::new(path.trim()));
                }
            }
        });
        output.on_copy({
            let app = app.clone();
            move || {
                if let Some(app) = app() {
                    let slot = app.inner.state.borrow().current_slot;
                    let text = slot
                        .map(|slot| app.output().tail_text(slot))
                        .unwrap_or_default();
                    app.inner
                        .window
                        .global::<OutputAdapter>()
                        .set_tail_text(text.into());
                }
            }
        });

        w.global::<ChartAdapter>().on_resized({
            let app = app.clone();
            move |width, height| {
                if let Some(app) = app() {
                    app.inner
                        .state
                        .borrow_mut()
                        .chart
                        .resize(f64::from(width), f64::from(height));
                    app.refresh_chart();
                }
            }
        });
        w.global::<InfoAdapter>().on_refresh({
            let app = app.clone();
            move || {
                if let Some(app) = app() {
                    let host = app.inner.state.borrow().shown_host;
                    if let Some(host) = host {
                        app.fetch_info(host);
                    }
                }
            }
        });

        let history = w.global::<HistoryAdapter>();
        history.on_show({
            let app = app.clone();
            move |id| {
                if let Some(app) = app() {
                    app.show_history_entry(id as usize);
                }
            }
        });
        history.on_rerun({
            let app = app.clone();
            move |id| {
                if let Some(app) = app() {
                    app.rerun(id as usize);
                }
            }
        });
        history.on_reload({
            let app = app.clone();
            move || {
                if let Some(app) = app() {
                    app.refresh_history();
                }
            }
        });

        let files = w.global::<FilesAdapter>();
        files.on_open({
            let app = app.clone();
            move |name| {
                if let Some(app) = app() {
                    let chosen = app.inner.state.borrow_mut().files.open(&name);
                    match chosen {
                        Some(path) => {
                            app.inner.window.invoke_close_file_dialog();
                            app.load(&path);
                        }
                        None => app.refresh_files(),
                    }
                }
            }
        });
        files.on_choose_path({
            let app = app.clone();
            move |path| {
                if let Some(app) = app() {
                    let path = PathBuf::from(path.trim());
                    if path.is_file() {
                        app.inner.window.invoke_close_file_dialog();
                        app.load(&path);
                    } else {
                        app.inner.state.borrow_mut().files = FileBrowser::at(&path);
                        app.refresh_files();
                    }
                }
            }
        });

        w.global::<StatusAdapter>().on_toggle_theme({
            let app = app.clone();
            move || {
                if let Some(app) = app() {
                    let dark = app.inner.window.global::<super::Theme>().get_dark();
                    let mut state = app.inner.state.borrow_mut();
                    state.settings.light_theme = !dark;
                    app.save_settings(&state);
                }
            }
        });
    }

    // --- hosts ---------------------------------------------------------

    fn settings_for(config: &ClientConfig) -> impl Fn(&HostEntry) -> ConnectionSettings + '_ {
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
                {
                    let mut state = self.inner.state.borrow_mut();
                    state.hosts = hosts;
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
                let count = self.inner.state.borrow().hosts.fleet().hosts().len();
                match errors.first() {
                    None => self.status(
                        &format!("loaded {count} hosts from {}", path.display()),
                        false,
                    ),
                    Some(first) => self.status(
                        &format!(
                            "loaded {count} hosts from {}; {} lines skipped ({first}{})",
                            path.display(),
                            errors.len(),
                            if errors.len() > 1 { ", …" } else { "" }
                        ),
                        true,
                    ),
                }
            }
            Err(e) => self.status(&e, true),
        }
    }

    /// With no hosts file: an agent in this process, for this machine.
    fn start_local(&self) {
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
    fn watch_fleet(&self) {
        let (fleet, stop, interval) = {
            let mut state = self.inner.state.borrow_mut();
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
        for host in fleet.hosts() {
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
                            updates.push(Update::HostsChanged);
                        }
                    }
                }
            });
        }
    }

    fn refresh_hosts(&self) {
        let state = self.inner.state.borrow();
        let rows: Vec<HostItem> = state
            .hosts
            .rows()
            .into_iter()
            .map(|r| HostItem {
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
                selected: r.selected,
            })
            .collect();
        update_model(&self.inner.models.hosts, rows);
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
        let adapter = self.inner.window.global::<HostsAdapter>();
        adapter.set_summary(state.hosts.summary().into());
        adapter.set_editable(state.hosts.path().is_some());
        adapter.set_current(state.shown_host.map_or(-1, |h| h as i32));
        self.inner
            .window
            .global::<CommandAdapter>()
            .set_selected_count(state.hosts.selection().len() as i32);
    }

    fn add_host(&self, name: &str, address: &str, port: &str) -> bool {
        let adapter = self.inner.window.global::<HostsAdapter>();
        let entry = (|| {
            let name = name.trim();
            if name.is_empty() {
                return Err("give the host a name".to_owned());
            }
            let address = if address.trim().is_empty() {
                name
            } else {
                address.trim()
            };
            let (address, default_port) = split_host_port(address)?;
            let port = match port.trim() {
                "" => default_port,
                text => text
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("bad port {text:?} (1 to 65535)"))?,
            };
            Ok(HostEntry::new(name, address, port))
        })();
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

    fn remove_selected(&self) {
        let result = {
            let mut state = self.inner.state.borrow_mut();
            let State { hosts, config, .. } = &mut *state;
            hosts.remove_selected(&Self::settings_for(config))
        };
        match result {
            Ok(count) => {
                self.watch_fleet();
                self.refresh_hosts();
                self.status(&format!("removed {count} hosts from the hosts file"), false);
            }
            Err(e) => self.status(&e, true),
        }
    }

    /// Shows a host in the system-information panel and the chart.
    fn show_host(&self, index: usize) {
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

    fn fetch_info(&self, index: usize) {
        let Some(host) = self.inner.state.borrow().hosts.fleet().host(index).cloned() else {
            return;
        };
        let updates = self.inner.updates.clone();
        self.inner.runtime.spawn(async move {
            let result = async {
                let client = host.client().await?;
                client.system_info().await
            }
            .await
            .map(Box::new)
            .map_err(|e| e.to_string());
            updates.push(Update::Info {
                host: index,
                result,
            });
        });
    }

    fn watch_metrics(&self, index: usize) {
        let (host, stop, generation) = {
            let state = self.inner.state.borrow();
            let Some(host) = state.hosts.fleet().host(index).cloned() else {
                return;
            };
            (host, state.metrics_stop.clone(), state.metrics_generation)
        };
        let updates = self.inner.updates.clone();
        self.inner.runtime.spawn(async move {
            use futures::StreamExt;
            let stream = async {
                let client = host.client().await?;
                client.watch_metrics(Duration::from_secs(1), false).await
            };
            let mut samples = match stream.await {
                Ok(samples) => samples,
                Err(e) => {
                    updates.push(Update::Metrics {
                        generation,
                        sample: Err(e.to_string()),
                    });
                    return;
                }
            };
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    sample = samples.next() => match sample {
                        Some(sample) => updates.push(Update::Metrics {
                            generation,
                            sample: sample.map_err(|e| e.to_string()),
                        }),
                        None => return,
                    }
                }
            }
        });
    }

    fn refresh_chart(&self) {
        let view = self.inner.state.borrow().chart.view();
        let chart = self.inner.window.global::<ChartAdapter>();
        chart.set_cpu_path(view.cpu_path.into());
        chart.set_memory_path(view.memory_path.into());
        chart.set_cpu_now(view.cpu_now.into());
        chart.set_memory_now(view.memory_now.into());
        let labels: Vec<SharedString> = view.time_labels.into_iter().map(Into::into).collect();
        chart.set_time_labels(ModelRc::new(VecModel::from(labels)));
    }

    // --- runs ----------------------------------------------------------

    /// Starts showing a run on the selected hosts; returns its id and the
    /// selection, or None (with a message) when nothing is selected.
    fn begin_run(&self, kind: EntryKind, command: &str) -> Option<(u64, Vec<usize>)> {
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
        let mut run = fleet.exec(&selection, ExecRequest::new(text), RunOptions::default());
        self.inner.state.borrow_mut().run = Some(run.handle());
        let updates = self.inner.updates.clone();
        let output = self.inner.output.clone();
        self.inner.runtime.spawn(async move {
            while let Some(event) = run.events.recv().await {
                if let Some(slot) = lock(&output).apply(id, event) {
                    updates.push(Update::OutputChanged { slot });
                }
            }
            updates.push(Update::RunEnded { id });
        });
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
        let mut answers = fleet.for_each(
            &selection,
            64,
            Some(Duration::from_secs(15)),
            move |client| {
                let name = name.clone();
                async move {
                    match (query, name.as_str()) {
                        (Some(query), _) => Ok(info::answer(query, &client.system_info().await?)),
                        (None, "conn") => {
                            Ok(info::connection_text(&client.connection_info().await?))
                        }
                        (None, "ps") => Ok(info::processes_text(client.list_processes("").await?)),
                        (None, "disconnect") => client
                            .disconnect()
                            .await
                            .map(|n| format!("session ended, {n} running commands cancelled")),
                        (None, "kill") => client
                            .shutdown("vigie-gui kill")
                            .await
                            .map(|boot| format!("the agent is stopping (boot {})", visible(&boot))),
                        (None, "reset") => client.restart("vigie-gui reset").await.map(|boot| {
                            format!("the agent is restarting (boot {})", visible(&boot))
                        }),
                        _ => Ok(String::new()),
                    }
                }
            },
        );
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
        let run = self.inner.state.borrow().run.clone();
        if let Some(run) = run {
            run.cancel();
            self.status("cancelling on every host…", false);
        }
    }

    fn show_slot(&self, slot: usize) {
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

    fn refresh_output(&self, changed: &BTreeSet<usize>, everything: bool) {
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
                        if shown >= super::controller::output::TAIL_LINES {
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
                if summary.cancelled > 0 {
                    format!(" · {} cancelled", summary.cancelled)
                } else {
                    String::new()
                },
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
            let groups: Vec<GroupItem> = output
                .groups()
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
    fn finish_run(&self) {
        let (entry, summary, elapsed, history) = {
            let mut state = self.inner.state.borrow_mut();
            state.run = None;
            let output = lock(&self.inner.output);
            (
                output.history_entry(),
                output.summary(),
                output.elapsed(),
                state.history.clone(),
            )
        };
        self.inner
            .window
            .global::<CommandAdapter>()
            .set_running(false);
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
    fn save_output(&self, path: &Path) {
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

    // --- history -------------------------------------------------------

    fn refresh_history(&self) {
        let Some(history) = self.inner.state.borrow().history.clone() else {
            return;
        };
        let entries = history.load().map(|l| l.entries).unwrap_or_default();
        let rows: Vec<HistoryItem> = entries
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

    fn show_history_entry(&self, id: usize) {
        let Some(history) = self.inner.state.borrow().history.clone() else {
            return;
        };
        let entries = history.load().map(|l| l.entries).unwrap_or_default();
        let Some(entry) = entries.get(id.wrapping_sub(1)) else {
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
            });
            for line in r.output.lines() {
                lines.push(LineItem {
                    text: super::controller::output::sanitize(line.as_bytes()).into(),
                    stderr: false,
                });
            }
            if r.output_truncated {
                lines.push(LineItem {
                    text: "   … (only the start of the output is kept)".into(),
                    stderr: false,
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
    fn rerun(&self, id: usize) {
        let Some(history) = self.inner.state.borrow().history.clone() else {
            return;
        };
        let entries = history.load().map(|l| l.entries).unwrap_or_default();
        let Some(entry) = entries.get(id.wrapping_sub(1)).cloned() else {
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
        self.inner.window.set_view(0);
    }

    /// The recent-commands combo box: a title, then the newest first.
    fn fill_recent(models: &Models, recall: &Recall) {
        let recent: Vec<SharedString> = std::iter::once(SharedString::from("recent…"))
            .chain(recall.newest_first().into_iter().take(30).map(Into::into))
            .collect();
        update_model(&models.recent, recent);
    }

    // --- files and settings --------------------------------------------

    fn refresh_files(&self) {
        let state = self.inner.state.borrow();
        let entries: Vec<FileItem> = state
            .files
            .entries()
            .into_iter()
            .map(|e| FileItem {
                name: e.name.into(),
                is_dir: e.is_dir,
            })
            .collect();
        update_model(&self.inner.models.files, entries);
        self.inner
            .window
            .global::<FilesAdapter>()
            .set_dir(state.files.dir().display().to_string().into());
    }

    fn save_settings(&self, state: &State) {
        if let Some(path) = &state.settings_path
            && let Err(e) = state.settings.save(path)
        {
            tracing::warn!(error = %e, "cannot save the window's settings");
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let state = self.state.get_mut();
        state.monitor_stop.cancel();
        state.metrics_stop.cancel();
        if let Some(run) = &state.run {
            run.cancel();
        }
    }
}

/// Locks the output controller; a panic elsewhere while it was locked
/// leaves it usable.
fn lock(output: &Mutex<OutputController>) -> std::sync::MutexGuard<'_, OutputController> {
    output.lock().unwrap_or_else(|e| e.into_inner())
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

fn tab_item(tab: super::controller::output::TabRow) -> TabItem {
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
    }
}

/// Replaces a model's rows with `rows`, touching only the rows that changed
/// when the count is the same, so that views keep their scroll position.
fn update_model<T: Clone + PartialEq + 'static>(model: &VecModel<T>, rows: Vec<T>) {
    if model.row_count() != rows.len() {
        model.set_vec(rows);
        return;
    }
    for (i, row) in rows.into_iter().enumerate() {
        if model.row_data(i).as_ref() != Some(&row) {
            model.set_row_data(i, row);
        }
    }
}

/// The preset buttons: the name the window gives each, and how the run is
/// recorded (its kind and its name in the history).
const PRESETS: &[(&str, EntryKind, &str)] = &[
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
