//! The fleet dashboard: while the view is open, one metrics stream per
//! watched host (the selected hosts, or every host when none is), shown as
//! a heat map and a table that sorts and filters; clicking a host opens its
//! chart. Closing the view (any other view, or the window) ends the streams.

use super::*;
use std::collections::HashMap;

use crate::client::{
    dashboard::{self, Board, Feeder, News, Thresholds},
    fleet::Fleet,
    gui::controller::dashboard as view,
};

/// How often each watched host sends a sample.
const INTERVAL: Duration = Duration::from_secs(2);

/// How long news gathers before the window is told: a thousand hosts'
/// samples cost the UI thread four refreshes a second, not a thousand.
const GATHER: Duration = Duration::from_millis(250);

/// What the open dashboard watches.
pub(super) struct Watch {
    board: Board,
    /// The fleet its host indexes belong to.
    fleet: Fleet,
    /// The hosts watched, in fleet order.
    hosts: Vec<usize>,
    /// True when no host was selected, so every host is watched.
    all: bool,
    /// Ends every stream of this watch.
    stop: CancellationToken,
    generation: u64,
    /// Opens the streams of hosts that join the watch.
    feeder: Feeder,
    /// Each watched host's stream, to end it alone when the host leaves.
    streams: HashMap<usize, CancellationToken>,
}

impl Watch {
    /// Ends its streams.
    pub(super) fn stop(&self) {
        self.stop.cancel();
    }

    /// Watches `hosts` from now on: the streams of hosts that left end,
    /// hosts that joined get one, the others keep theirs.
    fn follow(&mut self, hosts: Vec<usize>) {
        let wanted: std::collections::HashSet<usize> = hosts.iter().copied().collect();
        self.streams.retain(|host, stream| {
            let keep = wanted.contains(host);
            if !keep {
                stream.cancel();
            }
            keep
        });
        for &host in &hosts {
            self.streams.entry(host).or_insert_with(|| {
                let stream = self.stop.child_token();
                self.feeder.watch(&self.fleet, host, stream.clone());
                stream
            });
        }
        let mut board = Board::new(names(&self.fleet, &hosts), self.board.thresholds());
        board.take_over(&self.board);
        self.board = board;
        self.hosts = hosts;
    }
}

/// The hosts to watch: the selection, or every host when none is
/// selected (then true).
fn watched(state: &State) -> (Vec<usize>, bool) {
    let selection = state.hosts.selection();
    if selection.is_empty() {
        ((0..state.hosts.fleet().hosts().len()).collect(), true)
    } else {
        (selection, false)
    }
}

/// The board's rows: each host's fleet index and name.
fn names<'a>(fleet: &'a Fleet, hosts: &'a [usize]) -> impl Iterator<Item = (usize, String)> + 'a {
    hosts
        .iter()
        .map(|&i| (i, fleet.hosts()[i].entry.name.clone()))
}

impl App {
    pub(super) fn bind_dashboard(&self) {
        let adapter = self.inner.window.global::<DashboardAdapter>();
        adapter.set_rows(ModelRc::from(self.inner.models.dash_rows.clone()));
        adapter.set_cells(ModelRc::from(self.inner.models.dash_cells.clone()));
        let thresholds = self.inner.state.borrow().settings.thresholds;
        adapter.set_thresholds(thresholds.to_string().into());
        adapter.on_shown(with_app!(self, move |app, open| {
            if open {
                app.start_dashboard();
            } else {
                app.stop_dashboard();
            }
        }));
        adapter.on_sort(with_app!(self, move |app, key| {
            if let Some(key) = view::sort_key(&key)
                && let Some(watch) = app.inner.state.borrow_mut().dashboard.as_mut()
            {
                watch.board.sort_by(key);
            }
            app.refresh_dashboard();
        }));
        adapter.on_filter_edited(with_app!(self, move |app, text| {
            if let Some(watch) = app.inner.state.borrow_mut().dashboard.as_mut() {
                watch.board.set_filter(text.trim());
            }
            app.refresh_dashboard();
        }));
        adapter.on_thresholds_edited(with_app!(self, move |app, text| {
            app.set_thresholds(&text);
        }));
        adapter.on_open_host(with_app!(self, move |app, host| {
            // A row or cell of this board: its host is in this fleet.
            // The dashboard's streams end first: on an agent that allows
            // an identity few streams, the chart's takes the place of the
            // dashboard's.
            if let Ok(host) = usize::try_from(host) {
                app.show_view(3);
                app.show_host(host);
            }
        }));
    }

    /// Shows a view, ending the dashboard's streams when it is left.
    pub(super) fn show_view(&self, index: i32) {
        let window = &self.inner.window;
        if window.get_view() == 7 && index != 7 {
            self.stop_dashboard();
        }
        window.set_view(index);
    }

    /// Opens the dashboard's streams for the hosts to watch, anew.
    fn start_dashboard(&self) {
        // The filter box outlives the view: what it says is what is shown.
        let filter = self.inner.window.global::<DashboardAdapter>().get_filter();
        {
            let mut state = self.inner.state.borrow_mut();
            let state = &mut *state;
            if let Some(old) = state.dashboard.take() {
                old.stop();
            }
            let fleet = state.hosts.fleet().clone();
            let (hosts, all) = watched(state);
            let mut board = Board::new(names(&fleet, &hosts), state.settings.thresholds);
            board.set_filter(filter.trim());
            state.dashboard_generation += 1;
            let generation = state.dashboard_generation;
            let stop = CancellationToken::new();
            let _guard = self.inner.runtime.enter();
            let (feeder, receiver) = Feeder::new(&fleet, INTERVAL);
            let mut watch = Watch {
                board,
                fleet,
                hosts: Vec::new(),
                all,
                stop: stop.clone(),
                generation,
                feeder,
                streams: HashMap::new(),
            };
            watch.follow(hosts);
            tokio::spawn(gather(
                receiver,
                self.inner.updates.clone(),
                generation,
                stop,
            ));
            state.dashboard = Some(watch);
        }
        self.refresh_dashboard();
    }

    /// Ends the streams and empties the view.
    pub(super) fn stop_dashboard(&self) {
        if let Some(watch) = self.inner.state.borrow_mut().dashboard.take() {
            watch.stop.cancel();
        }
        self.inner.models.dash_rows.set_vec(Vec::new());
        self.inner.models.dash_cells.set_vec(Vec::new());
        self.inner
            .window
            .global::<DashboardAdapter>()
            .set_thresholds_error(SharedString::new());
    }

    /// After the selection or the fleet changed: an open dashboard watches
    /// what is now to be watched.
    pub(super) fn follow_selection(&self) {
        let restart = {
            let mut state = self.inner.state.borrow_mut();
            let state = &mut *state;
            let (hosts, all) = watched(state);
            let fleet = state.hosts.fleet();
            let Some(watch) = state.dashboard.as_mut() else {
                return;
            };
            if same_fleet(&watch.fleet, fleet) {
                if watch.hosts != hosts {
                    let _guard = self.inner.runtime.enter();
                    watch.follow(hosts);
                }
                watch.all = all;
                false
            } else {
                true
            }
        };
        if restart {
            self.start_dashboard();
        } else {
            self.refresh_dashboard();
        }
    }

    /// Takes in what the feed gathered.
    pub(super) fn dashboard_news(
        &self,
        state: &mut State,
        generation: u64,
        news: Vec<(usize, News)>,
    ) -> bool {
        match state.dashboard.as_mut() {
            Some(watch) if watch.generation == generation => {
                for (host, feed) in news {
                    watch.board.update(host, feed);
                }
                true
            }
            _ => false,
        }
    }

    fn set_thresholds(&self, text: &str) {
        let adapter = self.inner.window.global::<DashboardAdapter>();
        match Thresholds::parse(text) {
            Ok(thresholds) => {
                {
                    let mut state = self.inner.state.borrow_mut();
                    state.settings.thresholds = thresholds;
                    if let Some(watch) = state.dashboard.as_mut() {
                        watch.board.set_thresholds(thresholds);
                    }
                    self.save_settings(&state);
                }
                adapter.set_thresholds_error(SharedString::new());
                adapter.set_thresholds(thresholds.to_string().into());
                self.refresh_dashboard();
            }
            Err(e) => adapter.set_thresholds_error(format!("thresholds: {}", visible(&e)).into()),
        }
    }

    /// Shows the board: changed rows and cells only.
    pub(super) fn refresh_dashboard(&self) {
        let shown = {
            let mut state = self.inner.state.borrow_mut();
            state.dashboard.as_mut().map(|watch| {
                let rows: Vec<DashRow> = view::table(&mut watch.board)
                    .into_iter()
                    .map(|r| DashRow {
                        host: r.host as i32,
                        name: r.name.into(),
                        standing: r.standing.word().into(),
                        cpu: r.figures[0].as_str().into(),
                        memory: r.figures[1].as_str().into(),
                        load: r.figures[2].as_str().into(),
                        disk: r.figures[3].as_str().into(),
                        cpu_hot: r.hot[0],
                        memory_hot: r.hot[1],
                        load_hot: r.hot[2],
                        disk_hot: r.hot[3],
                        detail: r.detail.into(),
                    })
                    .collect();
                let cells: Vec<HeatCell> = view::cells(&watch.board)
                    .into_iter()
                    .map(|c| HeatCell {
                        host: c.host as i32,
                        standing: c.standing.word().into(),
                        heat: c.heat,
                        hot: c.hot,
                        label: c.label.into(),
                    })
                    .collect();
                let summary = view::summary(&watch.board, watch.all);
                (rows, cells, summary, watch.board.sort())
            })
        };
        let Some((rows, cells, summary, (key, reversed))) = shown else {
            return;
        };
        update_model(&self.inner.models.dash_rows, rows);
        update_model(&self.inner.models.dash_cells, cells);
        let adapter = self.inner.window.global::<DashboardAdapter>();
        adapter.set_summary(summary.into());
        adapter.set_sort_key(view::sort_name(key).into());
        adapter.set_reversed(reversed);
    }
}

/// Two handles on the same fleet (the same hosts, so the same indexes).
fn same_fleet(a: &Fleet, b: &Fleet) -> bool {
    std::ptr::eq(a.hosts(), b.hosts())
}

/// Forwards the feed's news to the window in batches, one every
/// [`GATHER`] at most, until `stop`. A batch holds the latest news of each
/// host, made small here (figures, bounded text), off the UI thread: an
/// agent sending samples as fast as it can costs the window one entry, not
/// one per sample. No timer runs while nothing arrives.
async fn gather(
    mut receiver: tokio::sync::mpsc::Receiver<(usize, dashboard::Feed)>,
    updates: Arc<Updates>,
    generation: u64,
    stop: CancellationToken,
) {
    let mut batch: HashMap<usize, News> = HashMap::new();
    let mut due: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            news = receiver.recv() => match news {
                Some((host, feed)) => {
                    batch.insert(host, News::from(feed));
                    due.get_or_insert_with(|| tokio::time::Instant::now() + GATHER);
                }
                None => return,
            },
            () = crate::client::fleet::sleep_until(due) => {
                due = None;
                updates.push(Update::Dashboard {
                    generation,
                    news: batch.drain().collect(),
                });
            }
        }
    }
}
