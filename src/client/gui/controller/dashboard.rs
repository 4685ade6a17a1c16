//! The Dashboard view's logic: the dashboard both front-ends share
//! ([`crate::client::dashboard`]) as the rows of the view's table, the
//! cells of its heat map and its summary line.
//!
//! Everything here is made visible: host names come from the hosts file,
//! mount points and the reasons a stream failed from the agents.

use crate::client::{
    dashboard::{Board, Live, Metric, Reading, Row, SortKey},
    text::visible,
};

/// How a host's metrics stream stands, as the view colours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Being opened.
    Waiting,
    /// Delivering samples.
    Live,
    /// Failed; it is opened again after a pause.
    Lost,
}

impl Standing {
    /// The word the view keys its colours on.
    pub fn word(self) -> &'static str {
        match self {
            Standing::Waiting => "waiting",
            Standing::Live => "live",
            Standing::Lost => "lost",
        }
    }

    fn of(live: &Live) -> Self {
        match live {
            Live::Waiting => Standing::Waiting,
            Live::Reading(_) => Standing::Live,
            Live::Lost(..) => Standing::Lost,
        }
    }
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRow {
    /// The host's index in the fleet.
    pub host: usize,
    /// Its name.
    pub name: String,
    /// How its stream stands.
    pub standing: Standing,
    /// CPU, memory, load and disk as shown ("–" without a figure), in the
    /// order of [`Metric::ALL`].
    pub figures: [String; 4],
    /// Which of them are at or above their threshold.
    pub hot: [bool; 4],
    /// Where the fullest disk is mounted, or why the stream failed.
    pub detail: String,
}

/// One cell of the heat map.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// The host's index in the fleet.
    pub host: usize,
    /// How its stream stands.
    pub standing: Standing,
    /// How near the host is to its nearest threshold: 0 idle, 1 at or over
    /// one of them; -1 without figures yet.
    pub heat: f32,
    /// At or over a threshold.
    pub hot: bool,
    /// Its name and figures, for the line under the pointer.
    pub label: String,
}

/// The table's rows, in the board's order and filter.
pub fn table(board: &mut Board) -> Vec<TableRow> {
    let rows: Vec<Row> = board.shown().into_iter().cloned().collect();
    rows.iter()
        .map(|row| {
            let hot = board.hot(row);
            let reading = row.live.reading();
            let figures = Metric::ALL.map(|metric| figure(reading, metric));
            let hot = Metric::ALL.map(|metric| hot.contains(&metric));
            let detail = match &row.live {
                Live::Waiting => "connecting…".to_owned(),
                Live::Lost(why, _) => format!("lost: {}", visible(why)),
                Live::Reading(r) => r
                    .disk
                    .as_ref()
                    .map(|(_, mount)| visible(mount).into_owned())
                    .unwrap_or_default(),
            };
            TableRow {
                host: row.host,
                name: visible(&row.name).into_owned(),
                standing: Standing::of(&row.live),
                figures,
                hot,
                detail,
            }
        })
        .collect()
}

/// The heat map's cells: every watched host in the order of the hosts file,
/// so that a host keeps its place whatever the table's order.
pub fn cells(board: &Board) -> Vec<Cell> {
    let thresholds = board.thresholds();
    board
        .rows()
        .iter()
        .map(|row| {
            let reading = row.live.reading();
            let heat = reading.map_or(-1.0, |r| {
                Metric::ALL
                    .into_iter()
                    .filter_map(|m| r.value(m).map(|v| ratio(v, thresholds.of(m))))
                    .fold(0.0_f64, f64::max)
                    .clamp(0.0, 1.0)
            });
            let name = visible(&row.name);
            let label = match &row.live {
                Live::Waiting => format!("{name}: connecting…"),
                Live::Lost(why, _) => format!("{name}: lost: {}", visible(why)),
                Live::Reading(_) => format!(
                    "{name}: CPU {} · memory {} · load {} · disk {}",
                    figure(reading, Metric::Cpu),
                    figure(reading, Metric::Memory),
                    figure(reading, Metric::Load),
                    figure(reading, Metric::Disk),
                ),
            };
            Cell {
                host: row.host,
                standing: Standing::of(&row.live),
                heat: heat as f32,
                hot: !board.hot(row).is_empty(),
                label,
            }
        })
        .collect()
}

/// "All 1000 hosts · 990 live · 3 lost · 7 hot (CPU ≥ 90 %, …)"; `all`
/// says the board watches every host (none was selected) rather than the
/// selection.
pub fn summary(board: &Board, all: bool) -> String {
    let counts = board.counts();
    let t = board.thresholds();
    let count = board.rows().len();
    let watched = match (all, count) {
        (true, 1) => "The only host".to_owned(),
        (true, _) => format!("All {count} hosts"),
        (false, 1) => "1 selected host".to_owned(),
        (false, _) => format!("{count} selected hosts"),
    };
    let mut text = format!("{watched} · {} live", counts.live);
    if counts.waiting > 0 {
        text.push_str(&format!(" · {} connecting", counts.waiting));
    }
    if counts.lost > 0 {
        text.push_str(&format!(" · {} lost", counts.lost));
    }
    text.push_str(&format!(
        " · {} hot (CPU ≥ {} %, memory ≥ {} %, load ≥ {}, disk ≥ {} %)",
        counts.hot, t.cpu, t.memory, t.load, t.disk
    ));
    text
}

/// The name the view gives a sort key.
pub fn sort_name(key: SortKey) -> &'static str {
    match key {
        SortKey::Name => "name",
        SortKey::By(Metric::Cpu) => "cpu",
        SortKey::By(Metric::Memory) => "memory",
        SortKey::By(Metric::Load) => "load",
        SortKey::By(Metric::Disk) => "disk",
    }
}

/// The sort key the view names.
pub fn sort_key(name: &str) -> Option<SortKey> {
    Some(match name {
        "name" => SortKey::Name,
        "cpu" => SortKey::By(Metric::Cpu),
        "memory" => SortKey::By(Metric::Memory),
        "load" => SortKey::By(Metric::Load),
        "disk" => SortKey::By(Metric::Disk),
        _ => return None,
    })
}

fn figure(reading: Option<&Reading>, metric: Metric) -> String {
    match reading.and_then(|r| r.value(metric)) {
        None => "–".into(),
        Some(v) if metric == Metric::Load => format!("{v:.2}"),
        Some(v) => format!("{v:.1} %"),
    }
}

/// A value over its threshold; a threshold of 0 is crossed by anything.
fn ratio(value: f64, threshold: f64) -> f64 {
    if threshold <= 0.0 {
        1.0
    } else {
        value / threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        client::dashboard::{Feed, Thresholds, tests::sample_on},
        types::MetricsSample,
    };

    fn sample(cpu: f32, used: u64, mount: &str) -> MetricsSample {
        sample_on(cpu, used, 0.5, 60, mount)
    }

    fn board() -> Board {
        let mut board = Board::new(
            [
                (0, "web1".to_owned()),
                (1, "web\u{202e}2".into()),
                (2, "db1".into()),
            ],
            Thresholds::default(),
        );
        board.update(0, Feed::Sample(sample(45.0, 10, "/")));
        board.update(1, Feed::Sample(sample(97.0, 30, "/srv\u{1b}[2J")));
        board.update(2, Feed::Lost("refused\u{1b}]0;owned\u{7}".into()));
        board
    }

    #[test]
    fn the_table_shows_figures_marks_hot_ones_and_escapes_what_hosts_say() {
        let mut b = board();
        let rows = table(&mut b);
        assert_eq!(
            rows.iter().map(|r| r.host).collect::<Vec<_>>(),
            [1, 0, 2],
            "highest CPU first, the host without figures last"
        );
        assert_eq!(rows[0].name, "web<U+202E>2");
        assert_eq!(rows[0].figures, ["97.0 %", "30.0 %", "0.50", "40.0 %"]);
        assert_eq!(rows[0].hot, [true, false, false, false]);
        assert!(!rows[0].detail.contains('\u{1b}'), "{}", rows[0].detail);
        assert_eq!(rows[2].standing, Standing::Lost);
        assert_eq!(rows[2].figures[0], "–");
        assert!(rows[2].detail.starts_with("lost: refused"));
        assert!(!rows[2].detail.contains('\u{1b}') && !rows[2].detail.contains('\u{7}'));
    }

    #[test]
    fn cells_keep_file_order_and_heat_is_the_nearest_threshold() {
        let b = board();
        let cells = cells(&b);
        assert_eq!(cells.iter().map(|c| c.host).collect::<Vec<_>>(), [0, 1, 2]);
        assert!((cells[0].heat - 0.5).abs() < 1e-6, "CPU 45 of 90");
        assert!(!cells[0].hot);
        assert_eq!(cells[1].heat, 1.0);
        assert!(cells[1].hot);
        assert_eq!((cells[2].heat, cells[2].standing), (-1.0, Standing::Lost));
        assert!(
            cells[0].label.starts_with("web1: CPU 45.0 %"),
            "{}",
            cells[0].label
        );
        assert!(!cells[2].label.contains('\u{1b}'));
    }

    #[test]
    fn the_summary_counts_and_says_the_thresholds_and_sort_names_round_trip() {
        let mut b = board();
        b.set_thresholds(Thresholds::parse("cpu=40").unwrap());
        assert_eq!(
            summary(&b, false),
            "3 selected hosts · 2 live · 1 lost · 2 hot (CPU ≥ 40 %, memory ≥ 90 %, load ≥ 8, disk ≥ 90 %)"
        );
        assert!(summary(&b, true).starts_with("All 3 hosts · "));
        for name in ["name", "cpu", "memory", "load", "disk"] {
            assert_eq!(sort_key(name).map(sort_name), Some(name));
        }
        assert_eq!(sort_key("swap"), None);
    }
}
