//! Drawing `vigie top`'s screen from its state: a status line, the table
//! of hosts (only the rows on screen are built, whatever the fleet's
//! size), the last command's result, and the key line or the prompt. Every
//! text that came from a host goes through `text::visible`.

use ratatui::{
    Frame,
    layout::{Constraint, Layout},
    style::{Modifier, Style, Stylize},
    text::{Line, Span},
    widgets::{Cell, Paragraph, Row, Table},
};

use super::state::{Mode, Top};
use crate::client::{
    dashboard::{Live, Metric, SortKey},
    ranges,
    run::Status,
    text::{visible, visible_bytes},
};

/// Lines kept for the last command's result.
const RESULT_LINES: u16 = 6;

/// Draws the whole screen; returns how many table rows it holds (what
/// the keys that page move by).
pub fn draw(frame: &mut Frame, top: &mut Top) -> usize {
    let result = top.run.is_some();
    let [status, table, outcome, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(2),
        Constraint::Length(if result { RESULT_LINES } else { 0 }),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let rows_on_screen = usize::from(table.height.saturating_sub(1));
    top.clamp(rows_on_screen);

    frame.render_widget(Paragraph::new(status_line(top)), status);
    frame.render_widget(host_table(top, rows_on_screen), table);
    if result {
        frame.render_widget(Paragraph::new(result_lines(top)), outcome);
    }
    frame.render_widget(Paragraph::new(key_line(top)), keys);
    rows_on_screen
}

fn status_line(top: &mut Top) -> Line<'static> {
    let counts = top.board.counts();
    let (key, reversed) = top.board.sort();
    let sort = match key {
        SortKey::Name => "name".to_owned(),
        SortKey::By(metric) => metric.label().to_lowercase(),
    };
    let mut spans = vec![
        Span::from("vigie top ").bold(),
        Span::from(format!(
            "{}: {} live",
            hosts(top.board.rows().len()),
            counts.live
        )),
    ];
    // Only what is there: the line must fit a narrow terminal.
    if counts.waiting > 0 {
        spans.push(Span::from(format!(", {} connecting", counts.waiting)));
    }
    if counts.lost > 0 {
        spans.push(Span::from(format!(", {} lost", counts.lost)).yellow());
    }
    if counts.hot > 0 {
        spans.push(Span::from(format!(", {} hot", counts.hot)).red().bold());
    }
    spans.push(Span::from(format!(
        " · sort {sort}{}",
        if reversed { " (reversed)" } else { "" }
    )));
    if !top.board.filter().is_empty() {
        let shown = top.board.shown_count();
        spans.push(Span::from(format!(
            " · filter {:?} ({shown} shown)",
            visible(top.board.filter())
        )));
    }
    let selected = top.board.selection().len();
    if selected > 0 {
        spans.push(Span::from(format!(" · {selected} selected")));
    }
    Line::from(spans)
}

fn host_table(top: &mut Top, rows_on_screen: usize) -> Table<'static> {
    let header = Row::new(
        ["", "HOST", "CPU%", "MEM%", "LOAD", "DISK%", "ON", "STATE"]
            .into_iter()
            .map(|h| Cell::from(h).bold()),
    );
    let (cursor, scroll) = (top.cursor, top.scroll);
    let mut rows = Vec::with_capacity(rows_on_screen);
    for position in scroll..scroll + rows_on_screen {
        let Some(row) = top.board.shown_at(position).cloned() else {
            break;
        };
        let hot = top.board.hot(&row);
        let reading = row.live.reading();
        let figure = |metric: Metric, digits: usize| -> Cell<'static> {
            let text = reading
                .and_then(|r| r.value(metric))
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"));
            let cell = Cell::from(text);
            if hot.contains(&metric) {
                cell.red().bold()
            } else {
                cell
            }
        };
        let mount = reading
            .and_then(|r| r.disk.as_ref())
            .map(|(_, mount)| visible(mount).into_owned())
            .unwrap_or_default();
        let state = match &row.live {
            Live::Waiting => Cell::from("connecting").dim(),
            Live::Reading(_) => Cell::from("live"),
            Live::Lost(why, _) => Cell::from(format!("lost: {}", visible(why))).yellow(),
        };
        let mark = if top.board.is_selected(row.host) {
            "*"
        } else {
            ""
        };
        let mut line = Row::new(vec![
            Cell::from(mark),
            Cell::from(visible(&row.name).into_owned()),
            figure(Metric::Cpu, 1),
            figure(Metric::Memory, 1),
            figure(Metric::Load, 2),
            figure(Metric::Disk, 1),
            Cell::from(mount),
            state,
        ]);
        if position == cursor {
            line = line.style(Style::default().add_modifier(Modifier::REVERSED));
        }
        rows.push(line);
    }
    Table::new(
        rows,
        [
            Constraint::Length(1),
            Constraint::Min(12),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(12),
            Constraint::Min(10),
        ],
    )
    .header(header)
}

fn result_lines(top: &Top) -> Vec<Line<'static>> {
    let Some(run) = &top.run else {
        return Vec::new();
    };
    let summary = run.summary();
    let mut lines = vec![Line::from(vec![
        Span::from(format!("$ {}", visible(run.command()))).bold(),
        Span::from(format!(
            "  on {}: {} ok, {} failed, {} unreachable{}",
            hosts(run.hosts().len()),
            summary.ok,
            summary.failed,
            summary.unreachable,
            if run.is_done() { "" } else { " (running)" }
        )),
    ])];
    for group in run.groups().into_iter().take(usize::from(RESULT_LINES) - 1) {
        let first_line = group
            .slots
            .first()
            .and_then(|&slot| run.host(slot))
            .map(|host| {
                let head = host.output.head();
                let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
                visible_bytes(line).into_owned()
            })
            .unwrap_or_default();
        let status = Span::from(format!("{:<14}", visible(&group.status)));
        let status = match group.ended {
            Some(Status::Ok) => status.green(),
            Some(_) => status.red(),
            None => status.dim(),
        };
        lines.push(Line::from(vec![
            status,
            Span::from(format!(" {} ", ranges::compact(&group.hosts))).bold(),
            Span::from(first_line),
        ]));
    }
    lines
}

/// "1 host", "2 hosts".
fn hosts(count: usize) -> String {
    if count == 1 {
        "1 host".to_owned()
    } else {
        format!("{count} hosts")
    }
}

fn key_line(top: &mut Top) -> Line<'static> {
    if let Some(message) = &top.message {
        return Line::from(message.clone()).yellow();
    }
    let targets = top.targets().len();
    match &top.mode {
        Mode::Browse => Line::from(
            "c m l d n sort (again: reverse) · / filter · space select · a select shown · \
             ! run a command · q quit",
        )
        .dim(),
        Mode::Filter(text) => Line::from(format!(
            "filter: {}▏  (Enter keeps it, Esc clears)",
            visible(text)
        )),
        Mode::Command(text) => Line::from(format!(
            "run on {}: {}▏  (Enter runs, Esc cancels)",
            hosts(targets),
            visible(text)
        )),
    }
}

#[cfg(test)]
mod tests {
    use ratatui::{Terminal, backend::TestBackend};

    use super::*;
    use crate::{
        client::dashboard::{Board, Feed, Thresholds},
        types::{LoadAverage, Memory, MetricsSample},
    };

    fn screen(top: &mut Top) -> String {
        let mut terminal = Terminal::new(TestBackend::new(100, 12)).unwrap();
        terminal
            .draw(|frame| {
                draw(frame, top);
            })
            .unwrap();
        let buffer = terminal.backend().buffer();
        (0..buffer.area.height)
            .map(|y| {
                (0..buffer.area.width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
                    .trim_end()
                    .to_owned()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_table_shows_figures_marks_hot_cells_and_escapes_host_text() {
        let mut board = Board::new(
            [(0, "web1".to_owned()), (1, "evil\u{1b}[2J".to_owned())],
            Thresholds::default(),
        );
        board.update(
            0,
            Feed::Sample(MetricsSample {
                timestamp_ms: 0,
                cpu_usage_percent: 97.5,
                cpu_usage_per_core: Vec::new(),
                memory: Memory {
                    total_bytes: 4,
                    used_bytes: 1,
                    ..Memory::default()
                },
                load_average: Some(LoadAverage {
                    one: 0.25,
                    five: 0.0,
                    fifteen: 0.0,
                }),
                fullest_disk: None,
            }),
        );
        board.update(1, Feed::Lost("refused\u{7}".into()));
        let mut top = Top::new(board);
        let text = screen(&mut top);
        assert!(text.contains("2 hosts: 1 live, 1 lost, 1 hot"), "{text}");
        let web1 = text.lines().find(|l| l.contains("web1")).expect("web1");
        assert!(
            web1.contains("97.5") && web1.contains("25.0") && web1.contains("0.25"),
            "{web1}"
        );
        assert!(text.contains("evil^[[2J"), "{text}");
        assert!(text.contains("lost: refused^G"), "{text}");
        assert!(!text.contains('\u{1b}'));
        let mut terminal = Terminal::new(TestBackend::new(100, 12)).unwrap();
        terminal
            .draw(|frame| {
                draw(frame, &mut top);
            })
            .unwrap();
        let buffer = terminal.backend().buffer();
        let y = (0..12)
            .find(|&y| {
                (0..20)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
                    .contains("web1")
            })
            .unwrap();
        let x = (0..100)
            .find(|&x| buffer[(x, y)].symbol() == "9")
            .expect("the CPU figure");
        assert_eq!(buffer[(x, y)].fg, ratatui::style::Color::Red, "hot");
    }
}
