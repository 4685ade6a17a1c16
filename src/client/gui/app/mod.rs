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

/// A window callback that runs its body on the App while the App lives:
/// the window holds its callbacks, so they hold the App only weakly.
/// `with_app!(self, move |app, arg| { … })` gives the body `app: &App`.
macro_rules! with_app {
    ($self:expr, move |$app:ident $(, $arg:ident)*| $body:block) => {{
        let weak = $self.weak();
        move |$($arg),*| {
            if let Some($app) = weak() {
                let $app = &$app;
                $body
            }
        }
    }};
}

mod dashboard_view;
mod files_view;
mod history_view;
mod hosts_view;
mod info_view;
mod jobs_view;
mod run_view;
mod transfers_view;

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
    ChartAdapter, CommandAdapter, DashRow, DashboardAdapter, FileItem, FilesAdapter, GroupItem,
    HeatCell, HistoryAdapter, HistoryItem, HostItem, HostsAdapter, InfoAdapter, InfoItem, LineItem,
    MainWindow, OutputAdapter, StatusAdapter, TabItem,
    controller::{
        chart::ChartController,
        files::FileBrowser,
        hosts::{HostsController, StateKind},
        info,
        output::{Line, OutputController, TabKind},
        recall::Recall,
        settings::Settings,
    },
};
use crate::{
    client::{
        ClientConfig, ConnectionSettings,
        fleet::{HostOutcome, HostResult, Outcome, RunEvent, RunHandle, RunOptions},
        history::{Entry, EntryKind, History},
        hosts::HostEntry,
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
    /// A host's state changed.
    HostChanged {
        index: usize,
    },
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
    /// The history as read from its file, oldest first.
    HistoryLoaded {
        entries: Vec<Entry>,
    },
    /// Fleet jobs with what each host said of its job.
    JobsLoaded {
        jobs: Vec<(crate::client::jobs::FleetJob, crate::client::jobs::Answers)>,
    },
    /// A job changed (cancelled): ask again.
    JobsChanged,
    /// A file transfer progressed or ended.
    Transfer(transfers_view::TransferUpdate),
    /// What the dashboard's streams said since the last batch.
    Dashboard {
        generation: u64,
        news: Vec<(usize, crate::client::dashboard::News)>,
    },
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
    jobs: Rc<VecModel<super::JobItem>>,
    job_detail: Rc<VecModel<LineItem>>,
    files: Rc<VecModel<FileItem>>,
    recent: Rc<VecModel<SharedString>>,
    transfers: Rc<VecModel<super::TransferItem>>,
    dash_rows: Rc<VecModel<DashRow>>,
    dash_cells: Rc<VecModel<HeatCell>>,
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
    /// The history as last read: what the history view shows and re-runs.
    history_entries: Vec<Entry>,
    /// True once the recall has been filled from the history.
    recall_loaded: bool,
    /// What the Jobs view shows.
    jobs: crate::client::gui::controller::jobs::JobsController,
    /// The fleet job the current run is attached to, if it is one.
    attached_job: Option<String>,
    /// True once the user detached from it (Cancel).
    detached: bool,
    /// What the file chooser is open for.
    files_purpose: files_view::Purpose,
    /// The file transfer the Files view shows.
    transfer: Option<transfers_view::Shown>,
    /// Counts transfers, so that a cut one's late news is ignored.
    transfer_generation: u64,
    /// Each host's row of the hosts list, made when first shown and again
    /// only when its state changed (by fleet index; the selection is set
    /// on each copy shown).
    host_items: Vec<Option<HostItem>>,
    /// Each host's model row in the list (`usize::MAX`: filtered out).
    host_rows: Vec<usize>,
    /// What the dashboard watches while it is open.
    dashboard: Option<dashboard_view::Watch>,
    /// Counts the dashboard's watches, so that an ended one's late news is
    /// ignored.
    dashboard_generation: u64,
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
            jobs: Rc::new(VecModel::default()),
            job_detail: Rc::new(VecModel::default()),
            files: Rc::new(VecModel::default()),
            recent: Rc::new(VecModel::default()),
            transfers: Rc::new(VecModel::default()),
            dash_rows: Rc::new(VecModel::default()),
            dash_cells: Rc::new(VecModel::default()),
        };
        // The recall fills when the history has been read, off this
        // thread (see `refresh_history`).
        let recall = Recall::new(std::iter::empty());
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
                history_entries: Vec::new(),
                recall_loaded: false,
                jobs: Default::default(),
                attached_job: None,
                detached: false,
                files_purpose: Default::default(),
                transfer: None,
                transfer_generation: 0,
                host_items: Vec::new(),
                host_rows: Vec::new(),
                dashboard: None,
                dashboard_generation: 0,
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
        let mut hosts_changed = Vec::new();
        let mut tabs_changed = BTreeSet::new();
        let mut run_ended = false;
        let mut history_changed = false;
        let mut history_loaded = false;
        let mut chart_changed = false;
        let mut jobs_loaded = None;
        let mut jobs_changed = false;
        let mut transfers = Vec::new();
        let mut dashboard_changed = false;
        {
            let mut state = self.inner.state.borrow_mut();
            for update in updates {
                match update {
                    Update::HostChanged { index } => hosts_changed.push(index),
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
                    Update::HistoryLoaded { entries } => {
                        if !state.recall_loaded {
                            state.recall_loaded = true;
                            state.recall = Recall::new(
                                entries
                                    .iter()
                                    .filter(|e| e.kind == EntryKind::Command)
                                    .map(|e| e.command.clone()),
                            );
                            Self::fill_recent(&self.inner.models, &state.recall);
                        }
                        state.history_entries = entries;
                        history_loaded = true;
                    }
                    Update::JobsLoaded { jobs } => jobs_loaded = Some(jobs),
                    Update::JobsChanged => jobs_changed = true,
                    Update::Transfer(update) => transfers.push(update),
                    Update::Dashboard { generation, news } => {
                        dashboard_changed |= self.dashboard_news(&mut state, generation, news);
                    }
                }
            }
        }
        if !hosts_changed.is_empty() {
            hosts_changed.sort_unstable();
            hosts_changed.dedup();
            self.refresh_changed_hosts(&hosts_changed);
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
        if history_loaded {
            self.show_history_rows();
        }
        if let Some(jobs) = jobs_loaded {
            self.show_jobs(jobs);
        }
        if jobs_changed {
            self.refresh_jobs();
        }
        for update in transfers {
            self.transfer_update(update);
        }
        if dashboard_changed {
            self.refresh_dashboard();
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
        self.bind_hosts();
        self.bind_run();
        self.bind_info();
        self.bind_history();
        self.bind_jobs();
        self.bind_files();
        self.bind_transfers();
        self.bind_dashboard();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let state = self.state.get_mut();
        state.monitor_stop.cancel();
        state.metrics_stop.cancel();
        if let Some(watch) = &state.dashboard {
            watch.stop();
        }
        if let Some(run) = &state.run {
            run.cancel();
        }
        // A transfer never outlives its window.
        if let Some(shown) = &state.transfer {
            shown.task.abort();
        }
    }
}

/// Locks the output controller; a panic elsewhere while it was locked
/// leaves it usable.
fn lock(output: &Mutex<OutputController>) -> std::sync::MutexGuard<'_, OutputController> {
    output.lock().unwrap_or_else(|e| e.into_inner())
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
