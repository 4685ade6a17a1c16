//! The output view's logic: per-host output of the current run, kept as a
//! bounded tail of lines for the screen while the full output goes to an
//! unnamed temporary file (to save it whole), with a streaming digest so
//! hosts with byte-identical output can be grouped.
//!
//! Bytes from hosts are shown, never interpreted: escape sequences and
//! other control characters are shown in caret notation (ESC as `^[`),
//! bidi and invisible characters as `<U+202E>`, bytes that are not UTF-8
//! as `\xNN` (`client::text`, shared with the CLI). Host names and
//! statuses (which quote errors from agents) are shown the same way.

use std::{
    collections::VecDeque,
    fs::File,
    io::Write,
    path::Path,
    time::{Duration, Instant},
};

use crate::{
    client::{
        format::bytes,
        history::{Entry, EntryKind},
        ranges,
        run::{HISTORY_KEPT, Run, RunEvent, RunHost, Status, Summary},
        text::{visible, visible_bytes},
    },
    command::OutputStream,
};

/// Lines kept per host for the screen.
pub const TAIL_LINES: usize = 1000;
/// Characters shown of one line; the saved output keeps everything.
pub const MAX_LINE_CHARS: usize = 2000;

/// One line on screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The text, with control characters made visible.
    pub text: String,
    /// True for standard error.
    pub stderr: bool,
    /// In a diff: 1 added, -1 removed, 2 a header or hunk line; else 0.
    pub diff: i8,
}

/// Where a host is in the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TabKind {
    /// Still running.
    Running,
    /// Succeeded.
    Ok,
    /// Failed, was cancelled.
    Failed,
    /// Not sent.
    Skipped,
    /// Not reachable, or the connection was lost.
    Unreachable,
}

/// One host's tab.
#[derive(Debug, Clone, PartialEq)]
pub struct TabRow {
    /// Its slot in the run (the index of [`OutputController::lines`]).
    pub slot: usize,
    /// The host's name.
    pub name: String,
    /// "running", "exit 0 · 12 ms", "skipped: offline: …".
    pub status: String,
    /// What color it gets.
    pub kind: TabKind,
}

/// Hosts with identical output and status.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRow {
    /// Their names, compacted (`web[1-3]`).
    pub hosts: String,
    /// How many.
    pub count: usize,
    /// Their common status.
    pub status: String,
    /// True when they succeeded.
    pub ok: bool,
    /// The output's tail.
    pub lines: Vec<Line>,
}

/// A line as received: a slice of the chunk it came in (no copy), shown
/// only when the screen asks for it.
#[derive(Debug, Clone)]
struct RawLine {
    bytes: bytes::Bytes,
    stderr: bool,
}

impl RawLine {
    fn shown(&self) -> Line {
        Line {
            text: sanitize(&self.bytes),
            stderr: self.stderr,
            diff: 0,
        }
    }
}

/// What the screen keeps of one host's output beyond the run model: the
/// tail of its lines, and all of it in an unnamed temporary file (to save
/// it whole).
#[derive(Debug)]
struct HostView {
    lines: VecDeque<RawLine>,
    full: Option<File>,
    version: u64,
}

impl HostView {
    fn new() -> Self {
        Self {
            lines: VecDeque::new(),
            // Without a temporary file the run still works; only saving the
            // whole output is lost.
            full: tempfile::tempfile().ok(),
            version: 0,
        }
    }

    fn keep(&mut self, data: &[u8]) {
        if let Some(file) = &mut self.full
            && file.write_all(data).is_err()
        {
            self.full = None;
        }
    }

    fn push_line(&mut self, line: RawLine) {
        self.lines.push_back(line);
        if self.lines.len() > TAIL_LINES {
            self.lines.pop_front();
        }
    }
}

/// A host's tab status: "running · 12.0 KiB", "exit 0 · 12 ms", or how it
/// ended as the run model words it.
fn status_of(host: &RunHost) -> (String, TabKind) {
    match &host.result {
        None => (
            format!("running · {}", bytes(host.output.total())),
            TabKind::Running,
        ),
        Some(result) => {
            let kind = match result.outcome.status() {
                Status::Ok => TabKind::Ok,
                Status::Skipped => TabKind::Skipped,
                // A lost connection is shown as the network problem it is.
                Status::Unreachable | Status::Lost => TabKind::Unreachable,
                Status::Failed | Status::Cancelled | Status::NotRun => TabKind::Failed,
            };
            let text = match result.outcome.describe() {
                Some(text) => text,
                None => format!(
                    "exit 0 · {}",
                    crate::client::format::duration(result.duration)
                ),
            };
            (text, kind)
        }
    }
}

/// Makes a line's bytes safe to show: a carriage return at the end of the
/// line is dropped, and everything `client::text::visible_bytes` escapes is
/// shown escaped (ESC as `^[`, BEL as `^G`, DEL as `^?`, a bidi override
/// as `<U+202E>`, a byte that is not UTF-8 as `\xff`), so that escape
/// sequences are seen rather than obeyed; none of it needs a special
/// glyph, so every font shows it. Tabs become four spaces (the list view
/// has no tab stops) and very long lines are cut.
pub fn sanitize(bytes: &[u8]) -> String {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    let text = visible_bytes(bytes);
    let mut shown = String::with_capacity(text.len().min(MAX_LINE_CHARS + 1));
    for (count, c) in text.chars().enumerate() {
        if count == MAX_LINE_CHARS {
            shown.push('…');
            break;
        }
        match c {
            '\t' => shown.push_str("    "),
            c => shown.push(c),
        }
    }
    shown
}

/// The current run as the output view shows it.
#[derive(Debug, Default)]
pub struct OutputController {
    run: Option<RunView>,
}

#[derive(Debug)]
struct RunView {
    id: u64,
    title: String,
    started: Instant,
    model: Run,
    views: Vec<HostView>,
}

/// A host's saved output at one moment: a handle on its temporary file and
/// how many bytes of it were written then. Saving reads through it,
/// without holding the controller.
#[derive(Debug)]
pub struct Snapshot {
    file: File,
    len: u64,
}

impl Snapshot {
    /// Writes the output, exactly as received, to `path` (atomically);
    /// returns how many bytes. Reads by position, so the run can go on
    /// appending meanwhile.
    pub fn save(self, path: &Path) -> std::io::Result<u64> {
        use std::os::unix::fs::FileExt;
        let mut copied = 0;
        // Copied a megabyte at a time: memory stays flat however much the
        // host printed.
        crate::atomic_file::replace_with(path, 0o600, |out| {
            let mut buffer = vec![0u8; 1 << 20];
            while copied < self.len {
                let want = buffer
                    .len()
                    .min(usize::try_from(self.len - copied).unwrap_or(usize::MAX));
                let n = self.file.read_at(&mut buffer[..want], copied)?;
                if n == 0 {
                    break;
                }
                out.write_all(&buffer[..n])?;
                copied += n as u64;
            }
            Ok(())
        })?;
        Ok(copied)
    }
}

impl OutputController {
    /// Starts showing a new run on these hosts (fleet index, name): a
    /// command line, or a preset's query or action.
    pub fn start(&mut self, id: u64, kind: EntryKind, command: &str, hosts: &[(usize, String)]) {
        let model = Run::new(kind, command, hosts, HISTORY_KEPT, true);
        let title = match kind {
            EntryKind::Command => command.to_owned(),
            EntryKind::Query | EntryKind::Lifecycle => format!("({command})"),
        };
        self.run = Some(RunView {
            id,
            title,
            started: Instant::now(),
            views: hosts.iter().map(|_| HostView::new()).collect(),
            model,
        });
    }

    /// Applies an event of run `id`; returns the slot it changed.
    pub fn apply(&mut self, id: u64, event: RunEvent) -> Option<usize> {
        let run = self.run.as_mut().filter(|r| r.id == id)?;
        if let RunEvent::Output { host, data, .. } = &event
            && let Some(slot) = run.model.slot_of(*host)
        {
            run.views[slot].keep(data);
        }
        let views = &mut run.views;
        let slot = run.model.apply(&event, |slot, stream, line| {
            views[slot].push_line(RawLine {
                bytes: line,
                stderr: stream == OutputStream::Stderr,
            });
        })?;
        views[slot].version += 1;
        Some(slot)
    }

    /// Adds text to a host's output (what a preset query answered).
    pub fn add_text(
        &mut self,
        id: u64,
        fleet_index: usize,
        text: &str,
        stderr: bool,
    ) -> Option<usize> {
        let stream = if stderr {
            OutputStream::Stderr
        } else {
            OutputStream::Stdout
        };
        let mut bytes = text.as_bytes().to_vec();
        if !bytes.ends_with(b"\n") {
            bytes.push(b'\n');
        }
        self.apply(
            id,
            RunEvent::Output {
                host: fleet_index,
                stream,
                data: bytes.into(),
            },
        )
    }

    /// The current run's id.
    pub fn run_id(&self) -> Option<u64> {
        self.run.as_ref().map(|r| r.id)
    }

    /// The current run's title (its command).
    pub fn title(&self) -> &str {
        self.run.as_ref().map_or("", |r| r.title.as_str())
    }

    /// True while some host of the current run has no result.
    pub fn running(&self) -> bool {
        self.run.as_ref().is_some_and(|r| !r.model.is_done())
    }

    /// One tab per host.
    pub fn tabs(&self) -> Vec<TabRow> {
        let Some(run) = &self.run else {
            return Vec::new();
        };
        (0..run.views.len())
            .filter_map(|slot| self.tab(slot))
            .collect()
    }

    /// The slot's tab.
    pub fn tab(&self, slot: usize) -> Option<TabRow> {
        let host = self.run.as_ref()?.model.host(slot)?;
        let (status, kind) = status_of(host);
        Some(TabRow {
            slot,
            name: visible(&host.name).into_owned(),
            status: visible(&status).into_owned(),
            kind,
        })
    }

    /// The version of a slot's output; it changes whenever the output does.
    pub fn version(&self, slot: usize) -> u64 {
        self.run
            .as_ref()
            .and_then(|r| r.views.get(slot))
            .map_or(0, |h| h.version)
    }

    /// The slot of the host with this fleet index.
    pub fn slot_of_host(&self, fleet_index: usize) -> Option<usize> {
        self.run.as_ref()?.model.slot_of(fleet_index)
    }

    /// The fleet index of the host in this slot.
    pub fn host_of_slot(&self, slot: usize) -> Option<usize> {
        Some(self.run.as_ref()?.model.host(slot)?.index)
    }

    /// The lines kept for a slot.
    pub fn lines(&self, slot: usize) -> Vec<Line> {
        self.run
            .as_ref()
            .and_then(|r| r.views.get(slot))
            .map_or_else(Vec::new, |h| h.lines.iter().map(RawLine::shown).collect())
    }

    /// A slot's lines as one text, to select and copy.
    pub fn tail_text(&self, slot: usize) -> String {
        self.lines(slot)
            .into_iter()
            .map(|l| l.text)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// How much output a slot has, and how many lines the screen shows of it.
    pub fn sizes(&self, slot: usize) -> (u64, usize) {
        self.run
            .as_ref()
            .and_then(|r| Some((r.model.host(slot)?, r.views.get(slot)?)))
            .map_or((0, 0), |(h, v)| (h.output.total(), v.lines.len()))
    }

    /// A handle on a slot's whole output as it is now, to save it without
    /// holding the controller (see [`Snapshot::save`]).
    pub fn snapshot(&self, slot: usize) -> std::io::Result<Snapshot> {
        let run = self
            .run
            .as_ref()
            .ok_or_else(|| std::io::Error::other("no output to save"))?;
        let (host, view) = run
            .model
            .host(slot)
            .zip(run.views.get(slot))
            .ok_or_else(|| std::io::Error::other("no such output"))?;
        let file = view
            .full
            .as_ref()
            .ok_or_else(|| std::io::Error::other("the full output could not be kept"))?
            .try_clone()?;
        Ok(Snapshot {
            file,
            len: host.output.total(),
        })
    }

    /// Hosts grouped by identical output and status, largest first (the run
    /// model's grouping, the same as `vigie exec -b`).
    pub fn groups(&self) -> Vec<GroupRow> {
        self.grouped(false)
    }

    /// The groups, and with `diff` every group after the largest shown as
    /// a unified diff against it (as `vigie exec --diff`), its lines made
    /// visible and marked added, removed or header.
    pub fn grouped(&self, diff: bool) -> Vec<GroupRow> {
        let mut rows = self.group_rows();
        let Some(run) = &self.run else {
            return rows;
        };
        if !diff || rows.len() < 2 {
            return rows;
        }
        let groups = run.model.groups();
        let diffs = run.model.diffs(&groups);
        for (row, text) in rows.iter_mut().skip(1).zip(diffs) {
            row.lines = text
                .lines()
                .map(|line| Line {
                    text: sanitize(line.as_bytes()),
                    stderr: false,
                    diff: match line.as_bytes().first() {
                        _ if line.starts_with("---") || line.starts_with("+++") => 2,
                        Some(b'@') => 2,
                        Some(b'+') => 1,
                        Some(b'-') => -1,
                        _ => 0,
                    },
                })
                .collect();
        }
        rows
    }

    fn group_rows(&self) -> Vec<GroupRow> {
        let Some(run) = &self.run else {
            return Vec::new();
        };
        run.model
            .groups()
            .into_iter()
            .map(|g| {
                let status = match g.ended {
                    None => format!("running · {}", bytes(g.total)),
                    Some(_) => g.status,
                };
                GroupRow {
                    hosts: visible(&ranges::compact(&g.hosts)).into_owned(),
                    count: g.hosts.len(),
                    ok: g.ended == Some(Status::Ok),
                    status: visible(&status).into_owned(),
                    lines: self.lines(g.slots[0]),
                }
            })
            .collect()
    }

    /// The totals of the current run.
    pub fn summary(&self) -> Summary {
        self.run
            .as_ref()
            .map_or_else(Summary::default, |r| r.model.summary())
    }

    /// Time since the run started.
    pub fn elapsed(&self) -> Duration {
        self.run
            .as_ref()
            .map_or(Duration::ZERO, |r| r.started.elapsed())
    }

    /// The history entry of the current run, once every host is done.
    pub fn history_entry(&self) -> Option<Entry> {
        self.run.as_ref()?.model.history_entry()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::run::{HostOutcome, HostResult};

    fn exit(code: i32) -> HostResult {
        crate::client::run::tests::exit(code, None, false)
    }

    use crate::client::run::tests::output;

    #[test]
    fn escape_sequences_are_shown_not_obeyed() {
        assert_eq!(sanitize(b"\x1b[31mred\x1b[0m"), "^[[31mred^[[0m");
        assert_eq!(sanitize(b"bell\x07 and del\x7f"), "bell^G and del^?");
        assert_eq!(sanitize(b"crlf line\r"), "crlf line");
        assert_eq!(sanitize(b"a\tb"), "a    b");
        assert_eq!(sanitize(b"bad \xff utf8"), "bad \\xff utf8");
        assert_eq!(sanitize(b"c1 \xc2\x9b"), "c1 <U+009B>");
        assert_eq!(
            sanitize("\u{202e}bidi\u{200b}".as_bytes()),
            "<U+202E>bidi<U+200B>"
        );
        assert_eq!(sanitize(b"cr\roverwrites"), "cr^Moverwrites");
        let long = vec![b'x'; MAX_LINE_CHARS + 10];
        assert_eq!(sanitize(&long).chars().count(), MAX_LINE_CHARS + 1);
    }

    #[test]
    fn tabs_and_groups_show_host_names_and_errors_instead_of_obeying_them() {
        let mut out = OutputController::default();
        out.start(1, EntryKind::Command, "x", &[(0, "web\u{202e}1".into())]);
        out.apply(
            1,
            RunEvent::Finished {
                host: 0,
                result: HostResult {
                    outcome: HostOutcome::Failed("\u{1b}]0;pwned\u{7}\r".into()),
                    duration: Duration::from_millis(5),
                },
            },
        );
        let tab = out.tab(0).unwrap();
        assert_eq!(tab.name, "web<U+202E>1");
        assert_eq!(tab.status, "failed: ^[]0;pwned^G^M");
        assert_eq!(out.tabs()[0], tab);
        let group = &out.groups()[0];
        assert_eq!(group.hosts, "web<U+202E>1");
        assert_eq!(group.status, "failed: ^[]0;pwned^G^M");
    }

    #[test]
    fn lines_arrive_split_anywhere_and_the_tail_is_bounded() {
        let mut out = OutputController::default();
        out.start(1, EntryKind::Command, "cmd", &[(7, "web1".into())]);
        assert_eq!(
            out.apply(1, output(7, OutputStream::Stdout, b"hel")),
            Some(0)
        );
        out.apply(1, output(7, OutputStream::Stderr, b"oops\n"));
        out.apply(1, output(7, OutputStream::Stdout, b"lo\nwor"));
        assert_eq!(
            out.lines(0),
            vec![
                Line {
                    diff: 0,
                    text: "oops".into(),
                    stderr: true
                },
                Line {
                    diff: 0,
                    text: "hello".into(),
                    stderr: false
                },
            ]
        );
        out.apply(
            1,
            RunEvent::Finished {
                host: 7,
                result: exit(0),
            },
        );
        assert_eq!(out.lines(0).last().map(|l| l.text.as_str()), Some("wor"));
        assert!(!out.running());
        let many: Vec<u8> = (0..TAIL_LINES + 50)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        out.start(2, EntryKind::Command, "many", &[(0, "a".into())]);
        out.apply(2, output(0, OutputStream::Stdout, &many));
        assert_eq!(out.lines(0).len(), TAIL_LINES);
        assert_eq!(out.lines(0)[0].text, "50");
        assert_eq!(
            out.apply(1, output(7, OutputStream::Stdout, b"late")),
            None,
            "old runs are ignored"
        );
    }

    #[test]
    fn the_whole_output_can_be_saved() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = OutputController::default();
        out.start(1, EntryKind::Command, "cmd", &[(0, "a".into())]);
        let big: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        for chunk in big.chunks(65536) {
            out.apply(1, output(0, OutputStream::Stdout, chunk));
        }
        let path = dir.path().join("a.txt");
        assert_eq!(
            out.snapshot(0).unwrap().save(&path).unwrap(),
            big.len() as u64
        );
        assert_eq!(std::fs::read(&path).unwrap(), big);
        assert_eq!(
            out.lines(0).len(),
            TAIL_LINES,
            "the screen keeps only the tail"
        );
        out.apply(1, output(0, OutputStream::Stdout, b"more\n"));
        let snapshot = out.snapshot(0).unwrap();
        out.apply(1, output(0, OutputStream::Stdout, b"after\n"));
        assert_eq!(
            snapshot.save(&path).unwrap(),
            big.len() as u64 + 5,
            "saving twice works, and a snapshot saves what there was when it was taken"
        );
    }

    #[test]
    fn a_running_group_shows_the_bytes_its_hosts_printed() {
        let mut out = OutputController::default();
        let hosts = [(0, "web1".into()), (1, "web2".into()), (2, "web3".into())];
        out.start(1, EntryKind::Command, "x", &hosts);
        for host in 0..3 {
            out.apply(1, output(host, OutputStream::Stdout, &[b'x'; 2048]));
        }
        let groups = out.groups();
        assert_eq!(groups.len(), 1);
        assert_eq!(
            (groups[0].count, groups[0].status.as_str()),
            (3, "running · 2.0 KiB")
        );
        assert_eq!(out.tabs()[0].status, "running · 2.0 KiB", "as the tabs say");
    }

    #[test]
    fn streams_interleaved_differently_still_group() {
        let mut out = OutputController::default();
        out.start(
            1,
            EntryKind::Command,
            "x",
            &[(0, "a".into()), (1, "b".into())],
        );
        out.apply(1, output(0, OutputStream::Stdout, b"out\n"));
        out.apply(1, output(0, OutputStream::Stderr, b"err\n"));
        out.apply(1, output(1, OutputStream::Stderr, b"err\n"));
        out.apply(1, output(1, OutputStream::Stdout, b"out\n"));
        for host in [0, 1] {
            out.apply(
                1,
                RunEvent::Finished {
                    host,
                    result: exit(0),
                },
            );
        }
        assert_eq!(out.groups().len(), 1);
    }

    #[test]
    fn identical_hosts_are_grouped_and_recorded() {
        let mut out = OutputController::default();
        out.start(
            1,
            EntryKind::Command,
            "echo",
            &[(0, "web1".into()), (1, "web2".into()), (2, "db1".into())],
        );
        for host in [0, 1] {
            out.apply(1, output(host, OutputStream::Stdout, b"same\n"));
            out.apply(
                1,
                RunEvent::Finished {
                    host,
                    result: exit(0),
                },
            );
        }
        assert!(out.history_entry().is_none(), "db1 still runs");
        out.apply(1, output(2, OutputStream::Stdout, b"other\n"));
        out.apply(
            1,
            RunEvent::Finished {
                host: 2,
                result: exit(1),
            },
        );
        let groups = out.groups();
        assert_eq!(groups.len(), 2);
        assert_eq!(
            (groups[0].hosts.as_str(), groups[0].count, groups[0].ok),
            ("web[1-2]", 2, true)
        );
        assert_eq!(groups[0].lines[0].text, "same");
        assert_eq!(
            (groups[1].hosts.as_str(), groups[1].status.as_str()),
            ("db1", "exit 1")
        );
        let entry = out.history_entry().unwrap();
        assert_eq!(entry.results[2].output, "other\n");
        assert_eq!(out.summary().failed, 1);
        assert_eq!(out.tabs()[2].kind, TabKind::Failed);
    }
}
