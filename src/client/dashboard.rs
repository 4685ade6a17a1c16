//! The fleet dashboard both front-ends show (`vigie top`, the desktop
//! client's Fleet view): every watched host's latest CPU, memory, load and
//! fullest disk, sorted and filtered, with the hosts crossing a threshold
//! marked; and the feed that keeps it live, one metrics stream per host,
//! running only while someone looks.

use std::{collections::HashSet, time::Duration};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::fleet::Fleet;
use crate::types::MetricsSample;

/// What a dashboard row shows of one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// CPU usage, percent of all CPUs.
    pub cpu: f64,
    /// Memory in use, percent of the total.
    pub memory: f64,
    /// Load over the last minute, where the OS has one.
    pub load: Option<f64>,
    /// How full the fullest disk is, percent, and where it is mounted.
    pub disk: Option<(f64, String)>,
}

impl Reading {
    /// The figures of a sample.
    pub fn of(sample: &MetricsSample) -> Self {
        let m = &sample.memory;
        let memory = if m.total_bytes == 0 {
            0.0
        } else {
            m.used_bytes as f64 * 100.0 / m.total_bytes as f64
        };
        Self {
            cpu: f64::from(sample.cpu_usage_percent),
            memory,
            load: sample.load_average.as_ref().map(|l| l.one),
            disk: sample
                .fullest_disk
                .as_ref()
                .map(|d| (d.used_percent(), bounded(&d.mount_point))),
        }
    }

    /// The value of one metric.
    pub fn value(&self, metric: Metric) -> Option<f64> {
        match metric {
            Metric::Cpu => Some(self.cpu),
            Metric::Memory => Some(self.memory),
            Metric::Load => self.load,
            Metric::Disk => self.disk.as_ref().map(|(p, _)| *p),
        }
    }
}

/// The longest text (a mount point, a failure's reason) a board keeps of a
/// host, in characters: a hostile agent could send megabytes in every
/// sample, and a dashboard keeps them for every host.
const TEXT_MAX: usize = 256;

fn bounded(text: &str) -> String {
    match text.char_indices().nth(TEXT_MAX) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

/// A metric of the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// CPU usage.
    Cpu,
    /// Memory in use.
    Memory,
    /// Load average over a minute.
    Load,
    /// The fullest disk.
    Disk,
}

impl Metric {
    /// Every metric, in the dashboard's column order.
    pub const ALL: [Metric; 4] = [Metric::Cpu, Metric::Memory, Metric::Load, Metric::Disk];

    /// Its column heading.
    pub fn label(self) -> &'static str {
        match self {
            Metric::Cpu => "CPU",
            Metric::Memory => "MEM",
            Metric::Load => "LOAD",
            Metric::Disk => "DISK",
        }
    }
}

/// What rows are ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// The host's name (file order for equal names).
    Name,
    /// A metric, highest first unless reversed.
    By(Metric),
}

/// Where each metric becomes worth a look: a host at or above any of them
/// is *hot*. Percentages, except the load, which is runnable processes.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// CPU usage, percent.
    pub cpu: f64,
    /// Memory in use, percent.
    pub memory: f64,
    /// One-minute load.
    pub load: f64,
    /// The fullest disk, percent.
    pub disk: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            cpu: 90.0,
            memory: 90.0,
            load: 8.0,
            disk: 90.0,
        }
    }
}

impl Thresholds {
    /// The threshold of one metric.
    pub fn of(&self, metric: Metric) -> f64 {
        match metric {
            Metric::Cpu => self.cpu,
            Metric::Memory => self.memory,
            Metric::Load => self.load,
            Metric::Disk => self.disk,
        }
    }

    /// Reads `cpu=95,memory=80,load=4,disk=85` (any of them, in any
    /// order; the others keep their defaults).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut thresholds = Self::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').ok_or_else(|| {
                format!("{part:?}: expected NAME=VALUE (cpu, memory, load, disk)")
            })?;
            let value: f64 = value
                .trim()
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("{part:?}: the value must be a number, 0 or more"))?;
            match name.trim() {
                "cpu" => thresholds.cpu = value,
                "memory" | "mem" => thresholds.memory = value,
                "load" => thresholds.load = value,
                "disk" => thresholds.disk = value,
                other => {
                    return Err(format!("{other:?}: not a metric (cpu, memory, load, disk)"));
                }
            }
        }
        Ok(thresholds)
    }
}

/// The form [`Thresholds::parse`] reads: `cpu=90,memory=90,load=8,disk=90`.
impl std::fmt::Display for Thresholds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cpu={},memory={},load={},disk={}",
            self.cpu, self.memory, self.load, self.disk
        )
    }
}

/// How a watched host stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Live {
    /// Its stream is being opened.
    Waiting,
    /// Samples arrive; the latest.
    Reading(Reading),
    /// Its stream failed (it is opened again after a pause); why, and the
    /// last reading it had, if any.
    Lost(String, Option<Reading>),
}

impl Live {
    /// The latest figures, whether or not the stream still runs.
    pub fn reading(&self) -> Option<&Reading> {
        match self {
            Live::Reading(r) | Live::Lost(_, Some(r)) => Some(r),
            _ => None,
        }
    }
}

/// One host of the dashboard.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Its index in the fleet.
    pub host: usize,
    /// Its name.
    pub name: String,
    /// How it stands.
    pub live: Live,
}

/// The dashboard's state: rows, order, filter, selection, thresholds.
#[derive(Debug, Clone)]
pub struct Board {
    rows: Vec<Row>,
    /// Fleet index to row, for updates in constant time.
    by_host: std::collections::HashMap<usize, usize>,
    sort: SortKey,
    reversed: bool,
    filter: String,
    selected: HashSet<usize>,
    thresholds: Thresholds,
    /// The rows shown, in order (indexes into `rows`); rebuilt lazily.
    order: Vec<usize>,
    stale: bool,
}

impl Board {
    /// A board of these hosts (fleet index, name), all waiting.
    pub fn new(hosts: impl IntoIterator<Item = (usize, String)>, thresholds: Thresholds) -> Self {
        let rows: Vec<Row> = hosts
            .into_iter()
            .map(|(host, name)| Row {
                host,
                name,
                live: Live::Waiting,
            })
            .collect();
        let by_host = rows.iter().enumerate().map(|(i, r)| (r.host, i)).collect();
        Self {
            rows,
            by_host,
            sort: SortKey::By(Metric::Cpu),
            reversed: false,
            filter: String::new(),
            selected: HashSet::new(),
            thresholds,
            order: Vec::new(),
            stale: true,
        }
    }

    /// Takes over from `old` (a board of the same fleet): the last news
    /// of every host they share, the order and the filter, so that a view
    /// watching a new selection neither blanks the hosts it was already
    /// showing nor forgets how it was sorted.
    pub fn take_over(&mut self, old: &Board) {
        for row in &mut self.rows {
            if let Some(&i) = old.by_host.get(&row.host) {
                row.live = old.rows[i].live.clone();
            }
        }
        self.sort = old.sort;
        self.reversed = old.reversed;
        self.filter.clone_from(&old.filter);
        self.stale = true;
    }

    /// Takes in what the feed said of a host (a [`Feed`], or the
    /// [`News`] made of it).
    pub fn update(&mut self, host: usize, news: impl Into<News>) {
        let Some(&row) = self.by_host.get(&host) else {
            return;
        };
        let live = &mut self.rows[row].live;
        *live = match news.into() {
            News::Reading(reading) => Live::Reading(reading),
            News::Lost(reason) => Live::Lost(reason, live.reading().cloned()),
        };
        self.stale = true;
    }

    /// Orders rows by `key`; the same key again reverses the order.
    pub fn sort_by(&mut self, key: SortKey) {
        if self.sort == key {
            self.reversed = !self.reversed;
        } else {
            self.sort = key;
            self.reversed = false;
        }
        self.stale = true;
    }

    /// The order in force: its key, and whether it is reversed.
    pub fn sort(&self) -> (SortKey, bool) {
        (self.sort, self.reversed)
    }

    /// Shows only hosts whose name contains `filter` (any case); empty
    /// shows all.
    pub fn set_filter(&mut self, filter: &str) {
        self.filter = filter.to_lowercase();
        self.stale = true;
    }

    /// The filter in force.
    pub fn filter(&self) -> &str {
        &self.filter
    }

    /// The thresholds in force.
    pub fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    /// Replaces the thresholds.
    pub fn set_thresholds(&mut self, thresholds: Thresholds) {
        self.thresholds = thresholds;
    }

    /// The metrics of a row at or above their threshold.
    pub fn hot(&self, row: &Row) -> Vec<Metric> {
        let Some(reading) = row.live.reading() else {
            return Vec::new();
        };
        Metric::ALL
            .into_iter()
            .filter(|&m| reading.value(m).is_some_and(|v| v >= self.thresholds.of(m)))
            .collect()
    }

    /// The rows shown, in order.
    pub fn shown(&mut self) -> Vec<&Row> {
        if self.stale {
            self.reorder();
        }
        self.order.iter().map(|&i| &self.rows[i]).collect()
    }

    /// How many rows are shown.
    pub fn shown_count(&mut self) -> usize {
        if self.stale {
            self.reorder();
        }
        self.order.len()
    }

    /// The row shown at `position`.
    pub fn shown_at(&mut self, position: usize) -> Option<&Row> {
        if self.stale {
            self.reorder();
        }
        self.order.get(position).map(|&i| &self.rows[i])
    }

    fn reorder(&mut self) {
        let filter = &self.filter;
        let mut order: Vec<usize> = (0..self.rows.len())
            .filter(|&i| filter.is_empty() || self.rows[i].name.to_lowercase().contains(filter))
            .collect();
        let rows = &self.rows;
        let reversed = self.reversed;
        let turn = |ordering: std::cmp::Ordering| {
            if reversed {
                ordering.reverse()
            } else {
                ordering
            }
        };
        match self.sort {
            SortKey::Name => order.sort_by(|&a, &b| turn(rows[a].name.cmp(&rows[b].name))),
            SortKey::By(metric) => {
                // Highest first; hosts without a figure last either way.
                let value = |i: usize| rows[i].live.reading().and_then(|r| r.value(metric));
                order.sort_by(|&a, &b| match (value(a), value(b)) {
                    (Some(x), Some(y)) => turn(y.total_cmp(&x)),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => rows[a].name.cmp(&rows[b].name),
                });
            }
        }
        self.order = order;
        self.stale = false;
    }

    /// Every row, in fleet order.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// Selects or unselects a host (fleet index).
    pub fn toggle(&mut self, host: usize) {
        if !self.selected.remove(&host) {
            self.selected.insert(host);
        }
    }

    /// Selects every host shown (all if all were already selected: then
    /// clears them).
    pub fn toggle_shown(&mut self) {
        let shown: Vec<usize> = self.shown().iter().map(|r| r.host).collect();
        if shown.iter().all(|h| self.selected.contains(h)) {
            for host in shown {
                self.selected.remove(&host);
            }
        } else {
            self.selected.extend(shown);
        }
    }

    /// True when the host is selected.
    pub fn is_selected(&self, host: usize) -> bool {
        self.selected.contains(&host)
    }

    /// The selected hosts, in fleet order.
    pub fn selection(&self) -> Vec<usize> {
        let mut hosts: Vec<usize> = self.selected.iter().copied().collect();
        hosts.sort_unstable();
        hosts
    }

    /// How many hosts are live, lost and hot.
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for row in &self.rows {
            match row.live {
                Live::Waiting => counts.waiting += 1,
                Live::Reading(_) => counts.live += 1,
                Live::Lost(..) => counts.lost += 1,
            }
            if !self.hot(row).is_empty() {
                counts.hot += 1;
            }
        }
        counts
    }
}

/// How many hosts stand how.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Streams being opened.
    pub waiting: usize,
    /// Streams delivering samples.
    pub live: usize,
    /// Streams that failed.
    pub lost: usize,
    /// Hosts at or above a threshold.
    pub hot: usize,
}

/// What the feed says of a host.
#[derive(Debug, Clone)]
pub enum Feed {
    /// A new sample.
    Sample(MetricsSample),
    /// The stream failed; why. It is opened again after a pause.
    Lost(String),
}

/// What a board keeps of a [`Feed`]: the figures of a sample, or a
/// failure's reason, each bounded in size, whatever the agent sent.
#[derive(Debug, Clone, PartialEq)]
pub enum News {
    /// The figures of a new sample.
    Reading(Reading),
    /// Why the stream failed.
    Lost(String),
}

impl From<Feed> for News {
    fn from(feed: Feed) -> Self {
        match feed {
            Feed::Sample(sample) => News::Reading(Reading::of(&sample)),
            Feed::Lost(reason) => News::Lost(bounded(&reason)),
        }
    }
}

/// The longest pause before a failed stream is opened again; a stream
/// that lived this long before failing starts the pauses again from one
/// second.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Keeps one metrics stream per selected host open until `stop`: each
/// sample, and each failure (the stream is opened again after a pause that
/// doubles from one second to 30, jittered, so that hosts coming back are
/// not dialled as one herd). At most [`DEFAULT_CONCURRENCY`] streams are
/// being opened at once, the first ones spread over a second. A host of a
/// leased fleet (more hosts than the client's open-file limit holds)
/// gives its connection back after each sample, so that every host is
/// sampled in turn. Bounded: a slow reader slows the streams.
///
/// [`DEFAULT_CONCURRENCY`]: super::fleet::DEFAULT_CONCURRENCY
pub fn feed(
    fleet: &Fleet,
    selection: &[usize],
    interval: Duration,
    stop: CancellationToken,
) -> mpsc::Receiver<(usize, Feed)> {
    let (feeder, rx) = Feeder::new(fleet, interval);
    for &index in selection {
        feeder.watch(fleet, index, stop.clone());
    }
    rx
}

/// What [`feed`] is made of, for a view whose hosts come and go while it
/// runs (the desktop client's dashboard follows the selection): each host
/// is watched until its own token is cancelled, all into one channel, with
/// one bound on the streams being opened at once.
#[derive(Debug, Clone)]
pub struct Feeder {
    tx: mpsc::Sender<(usize, Feed)>,
    opening: std::sync::Arc<tokio::sync::Semaphore>,
    interval: Duration,
    /// Streams to every host cannot all be open: each host gets its turn.
    one_each: bool,
}

impl Feeder {
    /// A feeder for hosts of `fleet`, and the receiving end of its news.
    pub fn new(fleet: &Fleet, interval: Duration) -> (Self, mpsc::Receiver<(usize, Feed)>) {
        let (tx, rx) = mpsc::channel(1024);
        let feeder = Self {
            tx,
            opening: std::sync::Arc::new(tokio::sync::Semaphore::new(
                super::fleet::DEFAULT_CONCURRENCY,
            )),
            interval,
            one_each: fleet.connection_limit().is_some(),
        };
        (feeder, rx)
    }

    /// Watches the host at `index` until `stop` (or until the receiver
    /// goes). Must be called within a tokio runtime.
    pub fn watch(&self, fleet: &Fleet, index: usize, stop: CancellationToken) {
        let Some(host) = fleet.host(index).cloned() else {
            return;
        };
        let (tx, opening) = (self.tx.clone(), self.opening.clone());
        let (interval, one_each) = (self.interval, self.one_each);
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = watch_host(&host, index, interval, one_each, &tx, &opening) => {}
            }
        });
    }
}

/// One host's part of [`feed`], until its receiver goes (the caller's
/// `stop` ends it from outside).
async fn watch_host(
    host: &super::fleet::Host,
    index: usize,
    interval: Duration,
    one_each: bool,
    tx: &mpsc::Sender<(usize, Feed)>,
    opening: &tokio::sync::Semaphore,
) {
    let mut pause = Duration::from_secs(1);
    tokio::time::sleep(super::fleet::jitter(Duration::from_secs(1))).await;
    loop {
        let opened = async {
            let _turn = opening.acquire().await;
            let client = host.client().await?;
            let samples = client.watch_metrics(interval, false).await?;
            Ok::<_, super::Error>((client, samples))
        }
        .await;
        let since = std::time::Instant::now();
        let failure = match opened {
            // The client is kept while its stream runs (a leased host's
            // connection lives as long as both).
            Ok((_client, mut samples)) => {
                let mut first = true;
                loop {
                    match samples.next().await {
                        Some(Ok(sample)) => {
                            if first {
                                // Answering means online, for every view.
                                host.observe::<()>(&Ok(()));
                                first = false;
                            }
                            if tx.send((index, Feed::Sample(sample))).await.is_err() {
                                return;
                            }
                            if one_each {
                                break None;
                            }
                        }
                        Some(Err(e)) => break Some(e),
                        None => {
                            break Some(super::Error::Protocol(
                                "the agent ended the metrics stream".into(),
                            ));
                        }
                    }
                }
            }
            Err(e) => Some(e),
        };
        let Some(failure) = failure else {
            // A leased host's turn is over: the connection goes back.
            tokio::time::sleep(super::fleet::jitter(interval)).await;
            continue;
        };
        if since.elapsed() >= RETRY_MAX {
            pause = Duration::from_secs(1);
        }
        let reason = failure.to_string();
        // An agent that answers (even to refuse) is online; one that
        // cannot be reached is offline, for every view of the host.
        host.observe::<()>(&Err(failure));
        if tx.send((index, Feed::Lost(reason))).await.is_err() {
            return;
        }
        tokio::time::sleep(super::fleet::jitter(pause)).await;
        pause = (pause * 2).min(RETRY_MAX);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::types::{DiskUsage, LoadAverage, Memory};

    fn sample(cpu: f32, used: u64, load: f64, disk_free: u64) -> MetricsSample {
        sample_on(cpu, used, load, disk_free, "/var")
    }

    /// A sample of a host with 100 bytes of memory and a disk of 100
    /// bytes mounted at `mount` (the views' tests use it too).
    pub(crate) fn sample_on(
        cpu: f32,
        used: u64,
        load: f64,
        disk_free: u64,
        mount: &str,
    ) -> MetricsSample {
        MetricsSample {
            timestamp_ms: 0,
            cpu_usage_percent: cpu,
            cpu_usage_per_core: Vec::new(),
            memory: Memory {
                total_bytes: 100,
                used_bytes: used,
                ..Memory::default()
            },
            load_average: Some(LoadAverage {
                one: load,
                five: 0.0,
                fifteen: 0.0,
            }),
            fullest_disk: Some(DiskUsage {
                mount_point: mount.into(),
                total_bytes: 100,
                available_bytes: disk_free,
            }),
        }
    }

    fn board() -> Board {
        let mut board = Board::new(
            ["web1", "web2", "db1", "db2"]
                .iter()
                .enumerate()
                .map(|(i, n)| (i, n.to_string())),
            Thresholds::default(),
        );
        board.update(0, Feed::Sample(sample(10.0, 50, 0.5, 50)));
        board.update(1, Feed::Sample(sample(95.0, 20, 9.0, 80)));
        board.update(2, Feed::Sample(sample(40.0, 93, 1.0, 5)));
        board
    }

    fn names(board: &mut Board) -> Vec<String> {
        board.shown().iter().map(|r| r.name.clone()).collect()
    }

    #[test]
    fn rows_sort_by_each_metric_highest_first_and_hosts_without_figures_last() {
        let mut b = board();
        assert_eq!(names(&mut b), ["web2", "db1", "web1", "db2"]);
        b.sort_by(SortKey::By(Metric::Memory));
        assert_eq!(names(&mut b), ["db1", "web1", "web2", "db2"]);
        b.sort_by(SortKey::By(Metric::Disk));
        assert_eq!(names(&mut b), ["db1", "web1", "web2", "db2"]);
        b.sort_by(SortKey::By(Metric::Disk));
        assert_eq!(b.sort(), (SortKey::By(Metric::Disk), true));
        assert_eq!(
            names(&mut b),
            ["web2", "web1", "db1", "db2"],
            "reversed, the host without figures still last"
        );
        b.sort_by(SortKey::Name);
        assert_eq!(names(&mut b), ["db1", "db2", "web1", "web2"]);
    }

    #[test]
    fn hosts_at_a_threshold_are_hot_and_a_lost_stream_keeps_its_last_figures() {
        let mut b = board();
        let hot: Vec<Vec<Metric>> = b.rows().iter().map(|r| b.hot(r)).collect();
        assert_eq!(hot[0], []);
        assert_eq!(hot[1], [Metric::Cpu, Metric::Load]);
        assert_eq!(hot[2], [Metric::Memory, Metric::Disk]);
        b.update(1, Feed::Lost("connection refused".into()));
        assert!(
            matches!(&b.rows()[1].live, Live::Lost(why, Some(r)) if why.contains("refused") && r.cpu == 95.0)
        );
        assert_eq!(
            b.counts(),
            Counts {
                waiting: 1,
                live: 2,
                lost: 1,
                hot: 2
            }
        );
        b.set_thresholds(Thresholds::parse("cpu=100, disk=96").unwrap());
        assert_eq!(b.hot(&b.rows()[1].clone()), [Metric::Load]);
        assert_eq!(b.hot(&b.rows()[2].clone()), [Metric::Memory]);
    }

    #[test]
    fn the_filter_and_the_selection_work_on_the_rows_shown() {
        let mut b = board();
        b.set_filter("DB");
        assert_eq!(names(&mut b), ["db1", "db2"]);
        b.toggle_shown();
        assert_eq!(b.selection(), [2, 3]);
        b.set_filter("");
        b.toggle(0);
        assert_eq!(b.selection(), [0, 2, 3]);
        b.set_filter("db");
        b.toggle_shown();
        assert_eq!(b.selection(), [0], "all shown were selected: cleared");
    }

    #[test]
    fn thresholds_are_read_with_clear_errors() {
        let t = Thresholds::parse("load=4,mem=80").unwrap();
        assert_eq!((t.load, t.memory, t.cpu), (4.0, 80.0, 90.0));
        assert!(Thresholds::parse("cpu").unwrap_err().contains("NAME=VALUE"));
        assert!(
            Thresholds::parse("cpu=-1")
                .unwrap_err()
                .contains("0 or more")
        );
        assert!(
            Thresholds::parse("swap=3")
                .unwrap_err()
                .contains("not a metric")
        );
    }

    #[test]
    fn thresholds_print_as_they_are_read() {
        let t = Thresholds::parse("cpu=75.5,load=3").unwrap();
        assert_eq!(t.to_string(), "cpu=75.5,memory=90,load=3,disk=90");
        assert_eq!(Thresholds::parse(&t.to_string()).unwrap(), t);
    }

    #[test]
    fn a_new_board_takes_over_the_news_order_and_filter_of_the_old() {
        let mut old = board();
        old.sort_by(SortKey::Name);
        old.sort_by(SortKey::Name);
        old.set_filter("WEB");
        let mut new = Board::new(
            [(1, "web2".into()), (7, "web8".into())],
            Thresholds::default(),
        );
        new.take_over(&old);
        assert!(matches!(&new.rows()[0].live, Live::Reading(r) if r.cpu == 95.0));
        assert_eq!(new.rows()[1].live, Live::Waiting);
        assert_eq!((new.sort(), new.filter()), ((SortKey::Name, true), "web"));
    }

    #[test]
    fn a_board_keeps_a_bounded_mount_point_and_reason_whatever_the_agent_sends() {
        let mut long = sample(1.0, 1, 1.0, 1);
        long.fullest_disk.as_mut().unwrap().mount_point = "é".repeat(100_000);
        let (_, mount) = Reading::of(&long).disk.unwrap();
        assert_eq!(mount.chars().count(), TEXT_MAX + 1);
        assert!(mount.ends_with('…'));
        let News::Lost(reason) = News::from(Feed::Lost("x".repeat(1 << 20))) else {
            panic!("a loss stays a loss");
        };
        assert_eq!(reason.chars().count(), TEXT_MAX + 1);
    }
}
