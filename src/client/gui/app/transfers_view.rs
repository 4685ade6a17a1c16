//! The Files view: a push or a pull over the selected hosts on the
//! runtime, its progress read every 200 ms while it runs (and never
//! otherwise), each host's outcome, and Cancel, which cuts the transfer (a
//! push cut this way resumes when it is run again).

use super::*;
use crate::client::{
    fleet::{Fleet, HostState},
    gui::{
        TransferItem, TransfersAdapter,
        controller::transfers::{Direction, Transfer},
    },
    transfer::{self, Plan, Progress},
};

/// How often a running transfer's progress is shown.
const TICK: Duration = Duration::from_millis(200);

/// The transfer the view shows.
pub(super) struct Shown {
    /// Its lines and summary.
    pub transfer: Transfer,
    /// Its counts, shared with the task.
    pub progress: Arc<Progress>,
    /// The task, to cut it.
    pub task: tokio::task::AbortHandle,
    /// Which transfer the updates are about.
    pub generation: u64,
}

impl App {
    pub(super) fn bind_transfers(&self) {
        let w = &self.inner.window;
        let adapter = w.global::<TransfersAdapter>();
        adapter.set_hosts(ModelRc::from(self.inner.models.transfers.clone()));
        if let Some(home) = std::env::var_os("HOME") {
            adapter.set_pull_into(
                Path::new(&home)
                    .join("vigie-pulls")
                    .display()
                    .to_string()
                    .into(),
            );
        }
        adapter.on_choose_local(with_app!(self, move |app| {
            let local = app
                .inner
                .window
                .global::<TransfersAdapter>()
                .get_push_local();
            let near = Path::new(local.as_str()).parent().map(Path::to_owned);
            app.open_chooser(files_view::Purpose::PushSource, near.as_deref());
        }));
        adapter.on_choose_into(with_app!(self, move |app| {
            let into = app
                .inner
                .window
                .global::<TransfersAdapter>()
                .get_pull_into();
            app.open_chooser(
                files_view::Purpose::PullInto,
                Some(Path::new(into.as_str())),
            );
        }));
        adapter.on_toggle_replace(with_app!(self, move |app| {
            let adapter = app.inner.window.global::<TransfersAdapter>();
            adapter.set_replace(!adapter.get_replace());
        }));
        adapter.on_push(with_app!(self, move |app| {
            app.start_push();
        }));
        adapter.on_pull(with_app!(self, move |app| {
            app.start_pull();
        }));
        adapter.on_cancel(with_app!(self, move |app| {
            app.cancel_transfer();
        }));
    }

    /// Starts a transfer of `what` over the selected hosts, unless one
    /// runs or none is selected (said): hosts known to be offline are sent
    /// nothing and shown skipped, as for a command; `work` runs on the
    /// runtime with the fleet, the other selected hosts, the progress, the
    /// update queue and the transfer's generation.
    fn run_transfer<Work, Done>(&self, direction: Direction, what: String, work: Work)
    where
        Work: FnOnce(Fleet, Vec<usize>, Arc<Progress>, Arc<Updates>, u64) -> Done,
        Done: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut state = self.inner.state.borrow_mut();
        if state
            .transfer
            .as_ref()
            .is_some_and(|t| t.transfer.running())
        {
            drop(state);
            self.status("a transfer is running: wait for it or cancel it", true);
            return;
        }
        let selection = state.hosts.selection();
        if selection.is_empty() {
            drop(state);
            self.status("select the hosts to transfer with first", true);
            return;
        }
        let fleet = state.hosts.fleet().clone();
        let names = selection
            .iter()
            .map(|&i| (i, fleet.host(i).map_or("?", |h| h.name()).to_owned()))
            .collect();
        let mut transfer = Transfer::new(direction, what, names);
        let mut reachable = Vec::new();
        for &index in &selection {
            match fleet.host(index).map(|h| h.status().state) {
                Some(HostState::Offline { reason }) => {
                    transfer.skip(index, &format!("offline: {reason}"));
                }
                _ => reachable.push(index),
            }
        }
        state.transfer_generation += 1;
        let generation = state.transfer_generation;
        let progress = Arc::new(Progress::for_hosts(&selection));
        let task = self.inner.runtime.spawn(work(
            fleet,
            reachable,
            progress.clone(),
            self.inner.updates.clone(),
            generation,
        ));
        state.transfer = Some(Shown {
            transfer,
            progress,
            task: task.abort_handle(),
            generation,
        });
        drop(state);
        self.show_transfer();
    }

    fn start_push(&self) {
        let adapter = self.inner.window.global::<TransfersAdapter>();
        let local = PathBuf::from(adapter.get_push_local().trim());
        let remote = adapter.get_push_remote().trim().to_owned();
        let replace = adapter.get_replace();
        if local.as_os_str().is_empty() || remote.is_empty() {
            self.status(
                "a push needs a local file or directory and a path on the hosts",
                true,
            );
            return;
        }
        let what = local.file_name().map_or_else(
            || local.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        self.run_transfer(
            Direction::Push,
            what,
            move |fleet, selection, progress, updates, generation| async move {
                // Every file is hashed before anything is sent.
                let planned = tokio::task::spawn_blocking(move || Plan::new(&[local], &remote))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|planned| planned.map_err(|e| e.to_string()));
                let plan = match planned {
                    Ok(plan) => plan,
                    Err(message) => {
                        updates.push(Update::Transfer(TransferUpdate::Failed(
                            generation, message,
                        )));
                        return;
                    }
                };
                // Everything left out, in one message (the status line
                // shows one at a time).
                if !plan.skipped.is_empty() {
                    let named: Vec<String> = plan
                        .skipped
                        .iter()
                        .take(3)
                        .map(|s| format!("{} ({})", s.path.display(), s.why))
                        .collect();
                    let more = plan.skipped.len().saturating_sub(named.len());
                    updates.push(Update::Status {
                        message: format!(
                            "left out of the push: {}{}",
                            named.join(", "),
                            if more > 0 {
                                format!(" and {more} more")
                            } else {
                                String::new()
                            }
                        ),
                        error: false,
                    });
                }
                let work = transfer::push_plan(&fleet, &selection, &plan, replace, progress);
                let results = ticking(work, &updates, generation).await;
                updates.push(Update::Transfer(TransferUpdate::Pushed(
                    generation, results,
                )));
            },
        );
    }

    fn start_pull(&self) {
        let adapter = self.inner.window.global::<TransfersAdapter>();
        let remote = adapter.get_pull_remote().trim().to_owned();
        let into = PathBuf::from(adapter.get_pull_into().trim());
        if remote.is_empty() || into.as_os_str().is_empty() {
            self.status(
                "a pull needs a path on the hosts and a local directory",
                true,
            );
            return;
        }
        self.run_transfer(
            Direction::Pull,
            remote.clone(),
            move |fleet, selection, progress, updates, generation| async move {
                let work = transfer::pull(&fleet, &selection, &remote, &into, progress);
                let results = ticking(work, &updates, generation).await;
                updates.push(Update::Transfer(TransferUpdate::Pulled(
                    generation, results,
                )));
            },
        );
    }

    /// Cuts the running transfer.
    fn cancel_transfer(&self) {
        {
            let mut state = self.inner.state.borrow_mut();
            let Some(shown) = state.transfer.as_mut().filter(|t| t.transfer.running()) else {
                return;
            };
            shown.task.abort();
            shown.transfer.cancelled();
        }
        self.show_transfer();
    }

    /// Applies a transfer's update (stale generations are ignored).
    pub(super) fn transfer_update(&self, update: TransferUpdate) {
        {
            let mut state = self.inner.state.borrow_mut();
            let Some(shown) = state
                .transfer
                .as_mut()
                .filter(|t| t.generation == update.generation() && t.transfer.running())
            else {
                return;
            };
            match update {
                TransferUpdate::Tick(_) => shown.transfer.tick(&shown.progress),
                TransferUpdate::Pushed(_, results) => {
                    shown.transfer.tick(&shown.progress);
                    shown.transfer.pushed(results);
                }
                TransferUpdate::Pulled(_, results) => {
                    shown.transfer.tick(&shown.progress);
                    shown.transfer.pulled(results);
                }
                TransferUpdate::Failed(_, message) => {
                    shown.transfer.not_started(&message);
                    drop(state);
                    self.status(&message, true);
                }
            }
        }
        self.show_transfer();
    }

    fn show_transfer(&self) {
        let state = self.inner.state.borrow();
        let Some(shown) = &state.transfer else {
            return;
        };
        let rows: Vec<TransferItem> = shown
            .transfer
            .lines()
            .iter()
            .map(|l| TransferItem {
                name: visible(&l.name).as_ref().into(),
                fraction: l.fraction,
                state: visible(&l.state).as_ref().into(),
                kind: match l.good {
                    None => "running",
                    Some(true) => "ok",
                    Some(false) => "failed",
                }
                .into(),
            })
            .collect();
        update_model(&self.inner.models.transfers, rows);
        let adapter = self.inner.window.global::<TransfersAdapter>();
        adapter.set_running(shown.transfer.running());
        adapter.set_summary(visible(&shown.transfer.summary()).as_ref().into());
    }
}

/// A transfer's news for the UI thread.
pub(super) enum TransferUpdate {
    Tick(u64),
    Pushed(
        u64,
        Vec<(usize, Result<transfer::Pushed, transfer::Failed>)>,
    ),
    Pulled(
        u64,
        Vec<(usize, Result<transfer::Pulled, crate::client::Error>)>,
    ),
    Failed(u64, String),
}

impl TransferUpdate {
    fn generation(&self) -> u64 {
        match self {
            Self::Tick(g) | Self::Pushed(g, _) | Self::Pulled(g, _) | Self::Failed(g, _) => *g,
        }
    }
}

/// Runs `work`, telling the UI thread every [`TICK`] to show the progress.
async fn ticking<T>(
    work: impl std::future::Future<Output = T>,
    updates: &Updates,
    generation: u64,
) -> T {
    tokio::pin!(work);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = tick.tick() => updates.push(Update::Transfer(TransferUpdate::Tick(generation))),
        }
    }
}
