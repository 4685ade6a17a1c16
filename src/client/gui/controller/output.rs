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
    collections::{HashMap, VecDeque},
    fs::File,
    io::{Read, Seek, SeekFrom, Write},
    path::Path,
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};

use crate::{
    client::{
        fleet::{HostResult, RunEvent, Summary},
        group,
        history::{Entry, HostRecord, OUTPUT_KEPT},
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
    /// Not reachable.
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
        }
    }
}

/// One host's output in the current run.
#[derive(Debug)]
struct HostOutput {
    fleet_index: usize,
    name: String,
    lines: VecDeque<RawLine>,
    partial: [Vec<u8>; 2],
    full: Option<File>,
    bytes: u64,
    head: Vec<u8>,
    /// One digest per stream: two hosts that wrote the same stdout and the
    /// same stderr are identical even if the two interleaved differently.
    digests: [Sha256; 2],
    result: Option<HostResult>,
    version: u64,
}

impl HostOutput {
    fn new(fleet_index: usize, name: String) -> Self {
        Self {
            fleet_index,
            name,
            lines: VecDeque::new(),
            partial: [Vec::new(), Vec::new()],
            // Without a temporary file the run still works; only saving the
            // whole output is lost.
            full: tempfile::tempfile().ok(),
            bytes: 0,
            head: Vec::new(),
            digests: [Sha256::new(), Sha256::new()],
            result: None,
            version: 0,
        }
    }

    fn push(&mut self, stream: OutputStream, data: &bytes::Bytes) {
        self.bytes += data.len() as u64;
        self.digests[usize::from(stream == OutputStream::Stderr)].update(data);
        if self.head.len() < OUTPUT_KEPT {
            let room = OUTPUT_KEPT - self.head.len();
            self.head.extend_from_slice(&data[..data.len().min(room)]);
        }
        if let Some(file) = &mut self.full
            && file.write_all(data).is_err()
        {
            self.full = None;
        }
        let stderr = stream == OutputStream::Stderr;
        let mut rest = data.clone();
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            let line = rest.split_to(end + 1);
            let line = line.slice(..end);
            let partial = &mut self.partial[usize::from(stderr)];
            let bytes = if partial.is_empty() {
                line
            } else {
                partial.extend_from_slice(&line);
                bytes::Bytes::from(std::mem::take(partial))
            };
            self.lines.push_back(RawLine { bytes, stderr });
            if self.lines.len() > TAIL_LINES {
                self.lines.pop_front();
            }
        }
        let partial = &mut self.partial[usize::from(stderr)];
        partial.extend_from_slice(&rest);
        // A line that never ends (a progress bar, binary output) must not
        // grow without bound: show it in pieces.
        if partial.len() > MAX_LINE_CHARS * 4 {
            let bytes = bytes::Bytes::from(std::mem::take(partial));
            self.lines.push_back(RawLine { bytes, stderr });
            if self.lines.len() > TAIL_LINES {
                self.lines.pop_front();
            }
        }
        self.version += 1;
    }

    fn finish(&mut self, result: HostResult) {
        for (index, stderr) in [(0, false), (1, true)] {
            let rest = std::mem::take(&mut self.partial[index]);
            if !rest.is_empty() {
                self.lines.push_back(RawLine {
                    bytes: rest.into(),
                    stderr,
                });
            }
        }
        while self.lines.len() > TAIL_LINES {
            self.lines.pop_front();
        }
        self.result = Some(result);
        self.version += 1;
    }

    fn status(&self) -> (String, TabKind) {
        match &self.result {
            None => (
                format!("running · {}", crate::client::format::bytes(self.bytes)),
                TabKind::Running,
            ),
            Some(result) => {
                let kind = match result.outcome.kind() {
                    "ok" => TabKind::Ok,
                    "skipped" => TabKind::Skipped,
                    "unreachable" => TabKind::Unreachable,
                    _ => TabKind::Failed,
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
    run: Option<Run>,
}

#[derive(Debug)]
struct Run {
    id: u64,
    title: String,
    started: Instant,
    started_at_ms: i64,
    hosts: Vec<HostOutput>,
    slots: HashMap<usize, usize>,
}

impl OutputController {
    /// Starts showing a new run on these hosts (fleet index, name).
    pub fn start(&mut self, id: u64, title: &str, hosts: &[(usize, String)]) {
        self.run = Some(Run {
            id,
            title: title.to_owned(),
            started: Instant::now(),
            started_at_ms: crate::clock::now_ms(),
            hosts: hosts
                .iter()
                .map(|(index, name)| HostOutput::new(*index, name.clone()))
                .collect(),
            slots: hosts
                .iter()
                .enumerate()
                .map(|(slot, (index, _))| (*index, slot))
                .collect(),
        });
    }

    /// Applies an event of run `id`; returns the slot it changed.
    pub fn apply(&mut self, id: u64, event: RunEvent) -> Option<usize> {
        let index = match &event {
            RunEvent::Started { host, .. }
            | RunEvent::Output { host, .. }
            | RunEvent::Finished { host, .. } => *host,
        };
        let run = self.run.as_mut().filter(|r| r.id == id)?;
        let slot = *run.slots.get(&index)?;
        let host = run.hosts.get_mut(slot)?;
        match event {
            RunEvent::Started { .. } => {}
            RunEvent::Output { stream, data, .. } => host.push(stream, &data),
            RunEvent::Finished { result, .. } => host.finish(result),
        }
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
        self.run
            .as_ref()
            .is_some_and(|r| r.hosts.iter().any(|h| h.result.is_none()))
    }

    /// One tab per host.
    pub fn tabs(&self) -> Vec<TabRow> {
        let Some(run) = &self.run else {
            return Vec::new();
        };
        run.hosts
            .iter()
            .enumerate()
            .map(|(slot, h)| {
                let (status, kind) = h.status();
                TabRow {
                    slot,
                    name: visible(&h.name).into_owned(),
                    status: visible(&status).into_owned(),
                    kind,
                }
            })
            .collect()
    }

    /// The slot's tab.
    pub fn tab(&self, slot: usize) -> Option<TabRow> {
        let host = self.run.as_ref()?.hosts.get(slot)?;
        let (status, kind) = host.status();
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
            .and_then(|r| r.hosts.get(slot))
            .map_or(0, |h| h.version)
    }

    /// The slot of the host with this fleet index.
    pub fn slot_of_host(&self, fleet_index: usize) -> Option<usize> {
        self.run.as_ref()?.slots.get(&fleet_index).copied()
    }

    /// The fleet index of the host in this slot.
    pub fn host_of_slot(&self, slot: usize) -> Option<usize> {
        Some(self.run.as_ref()?.hosts.get(slot)?.fleet_index)
    }

    /// The lines kept for a slot.
    pub fn lines(&self, slot: usize) -> Vec<Line> {
        self.run
            .as_ref()
            .and_then(|r| r.hosts.get(slot))
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
            .and_then(|r| r.hosts.get(slot))
            .map_or((0, 0), |h| (h.bytes, h.lines.len()))
    }

    /// Writes a slot's whole output, exactly as received, to `path`.
    pub fn save(&mut self, slot: usize, path: &Path) -> std::io::Result<u64> {
        let host = self
            .run
            .as_mut()
            .and_then(|r| r.hosts.get_mut(slot))
            .ok_or_else(|| std::io::Error::other("no such output"))?;
        let full = host
            .full
            .as_mut()
            .ok_or_else(|| std::io::Error::other("the full output could not be kept"))?;
        full.flush()?;
        full.seek(SeekFrom::Start(0))?;
        let mut contents = Vec::new();
        let result = full.take(host.bytes).read_to_end(&mut contents);
        // Back to the end, where output keeps being appended.
        full.seek(SeekFrom::End(0))?;
        result?;
        crate::atomic_file::replace(path, &contents, 0o600)?;
        Ok(contents.len() as u64)
    }

    /// Hosts grouped by byte-identical output and status, largest first.
    pub fn groups(&self) -> Vec<GroupRow> {
        let Some(run) = &self.run else {
            return Vec::new();
        };
        let keyed = run.hosts.iter().enumerate().map(|(slot, h)| {
            let (status, kind) = h.status();
            let status = match kind {
                TabKind::Ok => "exit 0".to_owned(),
                _ => status,
            };
            let digest: Vec<u8> = h
                .digests
                .iter()
                .flat_map(|d| d.clone().finalize().to_vec())
                .collect();
            (h.name.clone(), (digest, status, slot))
        });
        // The slot is not part of the key; group on (digest, status).
        let groups = group::group_by(keyed.map(|(name, (digest, status, slot))| {
            (
                name,
                GroupKey {
                    digest,
                    status,
                    slot,
                },
            )
        }));
        groups
            .into_iter()
            .map(|g| GroupRow {
                hosts: visible(&group::compact(&g.hosts)).into_owned(),
                count: g.hosts.len(),
                ok: g.key.status == "exit 0",
                status: visible(&g.key.status).into_owned(),
                lines: self.lines(g.key.slot),
            })
            .collect()
    }

    /// The totals of the current run.
    pub fn summary(&self) -> Summary {
        let mut summary = Summary::default();
        if let Some(run) = &self.run {
            for result in run.hosts.iter().filter_map(|h| h.result.as_ref()) {
                summary.add(&result.outcome);
            }
        }
        summary
    }

    /// Time since the run started.
    pub fn elapsed(&self) -> Duration {
        self.run
            .as_ref()
            .map_or(Duration::ZERO, |r| r.started.elapsed())
    }

    /// The history entry of the current run, once every host is done.
    pub fn history_entry(&self) -> Option<Entry> {
        let run = self.run.as_ref()?;
        if run.hosts.iter().any(|h| h.result.is_none()) {
            return None;
        }
        Some(Entry {
            time_ms: run.started_at_ms,
            command: run.title.clone(),
            targets: run.hosts.iter().map(|h| h.name.clone()).collect(),
            results: run
                .hosts
                .iter()
                .map(|h| {
                    let result = h.result.as_ref().expect("checked above");
                    HostRecord::of_result(&h.name, result, &h.head, h.bytes)
                })
                .collect(),
        })
    }
}

/// What grouping compares: the digest of the output and the status. The
/// slot only says which host's lines to show.
#[derive(Debug, Clone)]
struct GroupKey {
    digest: Vec<u8>,
    status: String,
    slot: usize,
}

impl PartialEq for GroupKey {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest && self.status == other.status
    }
}

impl Eq for GroupKey {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        client::fleet::HostOutcome,
        command::{EndReason, Exit},
    };

    fn exit(code: i32) -> HostResult {
        HostResult {
            outcome: HostOutcome::Exited(Exit {
                exit_code: code,
                signal: None,
                core_dumped: false,
                timed_out: false,
                truncated: false,
                duration: Duration::from_millis(5),
                stdout_bytes: 0,
                stderr_bytes: 0,
                reason: EndReason::Exited,
            }),
            duration: Duration::from_millis(5),
        }
    }

    fn output(host: usize, stream: OutputStream, data: &[u8]) -> RunEvent {
        RunEvent::Output {
            host,
            stream,
            data: bytes::Bytes::copy_from_slice(data),
        }
    }

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
        out.start(1, "x", &[(0, "web\u{202e}1".into())]);
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
        out.start(1, "cmd", &[(7, "web1".into())]);
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
                    text: "oops".into(),
                    stderr: true
                },
                Line {
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
        out.start(2, "many", &[(0, "a".into())]);
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
        out.start(1, "cmd", &[(0, "a".into())]);
        let big: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        for chunk in big.chunks(65536) {
            out.apply(1, output(0, OutputStream::Stdout, chunk));
        }
        let path = dir.path().join("a.txt");
        assert_eq!(out.save(0, &path).unwrap(), big.len() as u64);
        assert_eq!(std::fs::read(&path).unwrap(), big);
        assert_eq!(
            out.lines(0).len(),
            TAIL_LINES,
            "the screen keeps only the tail"
        );
        out.apply(1, output(0, OutputStream::Stdout, b"more\n"));
        assert_eq!(
            out.save(0, &path).unwrap(),
            big.len() as u64 + 5,
            "saving twice works"
        );
    }

    #[test]
    fn streams_interleaved_differently_still_group() {
        let mut out = OutputController::default();
        out.start(1, "x", &[(0, "a".into()), (1, "b".into())]);
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
