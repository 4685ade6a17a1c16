//! The command history, shared by the CLI and the desktop client: one JSON
//! object per line in `$XDG_DATA_HOME/vigie/history.jsonl`.
//!
//! Entries are only ever appended, each with one `write` under an exclusive
//! lock, so concurrent writers never interleave and earlier entries are
//! never rewritten. A crash mid-write can leave a partial last line: the
//! next writer starts a fresh line first, and readers skip lines that do
//! not parse, so nothing before it is lost.

use std::{
    fs::{File, OpenOptions},
    io::{Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::client::run::{HostResult, OutcomeParts, Status, exit_text};

/// The most output kept per host in an entry.
pub const OUTPUT_KEPT: usize = 4096;

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A command line run on the hosts; it can be run again.
    #[default]
    Command,
    /// A question asked of the hosts (a preset such as OS or RAM).
    Query,
    /// A lifecycle action: disconnect, kill or reset.
    Lifecycle,
}

/// One command run on one or more hosts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// When it started, milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// What it records. Entries written before kinds existed have none,
    /// and are read by [`Entry::normalize`].
    #[serde(default)]
    pub kind: EntryKind,
    /// The command line, or the query or action ("os", "reset").
    pub command: String,
    /// The hosts it was sent to, by name.
    pub targets: Vec<String>,
    /// What happened on each host.
    pub results: Vec<HostRecord>,
    /// The plan of a staged run, and where it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutRecord>,
    /// The fleet job id of a detached run (`exec --detach`), or of the
    /// attachment that saw it end; each host's own job id is in its record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

/// What the history keeps of a rollout: enough to resume it on the hosts
/// it did not reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutRecord {
    /// What was asked (batches, canary, limit, pause, order and seed).
    pub spec: crate::client::run::RolloutSpec,
    /// Why it stopped early, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// The hosts it did not reach, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_run: Vec<String>,
}

impl Entry {
    /// The entry as this version writes it: entries written before kinds
    /// existed recorded a query or an action as its name in parentheses
    /// ("(OS)", "(kill)"), which this reads back into a kind and a name.
    /// The only place that decodes that old form.
    pub fn normalize(mut self) -> Self {
        if self.kind == EntryKind::Command
            && let Some(name) = self
                .command
                .strip_prefix('(')
                .and_then(|c| c.strip_suffix(')'))
        {
            self.kind = if ["disconnect", "kill", "reset"]
                .iter()
                .any(|action| name.eq_ignore_ascii_case(action))
            {
                EntryKind::Lifecycle
            } else {
                EntryKind::Query
            };
            self.command = name.to_owned();
        }
        self
    }

    /// The command as lists show it: a query or an action in parentheses,
    /// so that it cannot be mistaken for a command line.
    pub fn shown_command(&self) -> String {
        match self.kind {
            EntryKind::Command => self.command.clone(),
            EntryKind::Query | EntryKind::Lifecycle => format!("({})", self.command),
        }
    }

    /// "3 ok, 1 skipped": how many hosts ended each way, in order of first
    /// appearance.
    pub fn summary(&self) -> String {
        let mut counts: Vec<(Status, usize)> = Vec::new();
        for r in &self.results {
            match counts.iter_mut().find(|(s, _)| *s == r.status) {
                Some((_, n)) => *n += 1,
                None => counts.push((r.status, 1)),
            }
        }
        counts
            .into_iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What happened on one host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostRecord {
    /// The host's name.
    pub host: String,
    /// How it ended.
    pub status: Status,
    /// Exit code, when the command ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Signal that ended it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// True when its time limit ended it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timed_out: bool,
    /// True when the agent cut its output at its cap.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Why it failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Time it took on that host.
    pub duration_ms: u64,
    /// The first bytes of its output (stdout and stderr as they came),
    /// as text; invalid UTF-8 is replaced.
    #[serde(default)]
    pub output: String,
    /// True when the output was longer than what is kept.
    #[serde(default)]
    pub output_truncated: bool,
    /// The host's job id, for a detached run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
}

impl HostRecord {
    /// The record of one host's result; `head` is the beginning of its
    /// output and `total` how many bytes it printed in all.
    pub fn of_result(name: &str, result: &HostResult, head: &[u8], total: u64) -> Self {
        let OutcomeParts {
            exit_code,
            signal,
            timed_out,
            truncated,
            error,
        } = result.outcome.parts();
        let mut record = Self {
            host: name.to_owned(),
            status: result.outcome.status(),
            exit_code,
            signal,
            timed_out,
            truncated,
            error,
            duration_ms: result.duration.as_millis() as u64,
            output: String::new(),
            output_truncated: false,
            job_id: None,
        };
        record.keep_output(head);
        // Cut when the record holds less than all the host printed.
        record.output_truncated = total > head.len().min(OUTPUT_KEPT) as u64;
        record
    }

    /// The record of a host's answer to a query or an action: `text` is
    /// what it answered, or why it did not.
    pub fn of_answer(name: &str, status: Status, text: &str) -> Self {
        let ok = status == Status::Ok;
        let mut record = Self {
            host: name.to_owned(),
            status,
            exit_code: None,
            signal: None,
            timed_out: false,
            truncated: false,
            error: (!ok).then(|| text.to_owned()),
            duration_ms: 0,
            output: String::new(),
            output_truncated: false,
            job_id: None,
        };
        if ok {
            record.keep_output(text.as_bytes());
        }
        record
    }

    /// The line both history views show: the status, with how the
    /// command ended ("failed (killed by SIGKILL)", "ok (exit 0)") or why
    /// it did not run ("unreachable: …").
    pub fn shown(&self) -> String {
        match self.exit_code {
            Some(_) => format!("{} ({})", self.status, self.describe()),
            None => self.describe(),
        }
    }

    /// How it ended, worded as the live result was: "exit 0",
    /// "killed by SIGKILL", "unreachable: …".
    pub fn describe(&self) -> String {
        match (self.exit_code, &self.error) {
            (Some(code), _) => exit_text(code, self.signal, self.timed_out, self.truncated),
            (None, Some(error)) if self.status == Status::Cancelled && error == "cancelled" => {
                "cancelled".into()
            }
            (None, Some(error)) => format!("{}: {error}", self.status),
            (None, None) => match &self.job_id {
                Some(job) => format!("started as job {job}"),
                None => self.status.as_str().to_owned(),
            },
        }
    }

    /// Keeps the first [`OUTPUT_KEPT`] bytes of `output`.
    pub fn keep_output(&mut self, output: &[u8]) {
        let kept = &output[..output.len().min(OUTPUT_KEPT)];
        self.output = String::from_utf8_lossy(kept).into_owned();
        self.output_truncated = output.len() > OUTPUT_KEPT;
    }
}

/// Why the history cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("history {path}: {source}")]
pub struct HistoryError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

/// The history file.
#[derive(Debug, Clone)]
pub struct History {
    path: PathBuf,
}

/// What reading the history found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The entries, oldest first; entry `n` (1-based) is `entries[n - 1]`.
    pub entries: Vec<Entry>,
    /// Lines that did not parse (a crash mid-write, a hand edit).
    pub skipped_lines: usize,
}

impl History {
    /// The history in `path`.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The default history: `$VIGIE_HISTORY`, else
    /// `$XDG_DATA_HOME/vigie/history.jsonl`, else
    /// `~/.local/share/vigie/history.jsonl`.
    pub fn default_location() -> Option<Self> {
        if let Some(path) = std::env::var_os("VIGIE_HISTORY").filter(|p| !p.is_empty()) {
            return Some(Self::at(path));
        }
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local").join("share"))
            })?;
        Some(Self::at(base.join("vigie").join("history.jsonl")))
    }

    /// Where the history lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, source: std::io::Error) -> HistoryError {
        HistoryError {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends an entry.
    pub fn append(&self, entry: &Entry) -> Result<(), HistoryError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.error(e))?;
        }
        let mut line = serde_json::to_string(entry).map_err(|e| self.error(e.into()))?;
        line.push('\n');
        let mut options = OpenOptions::new();
        options.create(true).append(true).read(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&self.path).map_err(|e| self.error(e))?;
        let _lock = Lock::exclusive(&file).map_err(|e| self.error(e))?;
        if !ends_with_newline(&file).map_err(|e| self.error(e))? {
            // A writer died mid-line: end that line so ours stands alone.
            line.insert(0, '\n');
        }
        // One write of the whole line, under the lock.
        (&file)
            .write_all(line.as_bytes())
            .map_err(|e| self.error(e))?;
        (&file).flush().map_err(|e| self.error(e))
    }

    /// Reads every entry; a missing file is an empty history.
    pub fn load(&self) -> Result<Loaded, HistoryError> {
        let mut text = String::new();
        match File::open(&self.path) {
            Ok(file) => {
                let _lock = Lock::shared(&file).map_err(|e| self.error(e))?;
                let mut bytes = Vec::new();
                (&file).read_to_end(&mut bytes).map_err(|e| self.error(e))?;
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.error(e)),
        }
        let mut loaded = Loaded::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Entry>(line) {
                Ok(entry) => loaded.entries.push(entry.normalize()),
                Err(_) => loaded.skipped_lines += 1,
            }
        }
        Ok(loaded)
    }
}

fn ends_with_newline(mut file: &File) -> std::io::Result<bool> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(true);
    }
    file.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

/// An advisory lock on the history file, released on drop.
struct Lock<'a>(&'a File);

impl<'a> Lock<'a> {
    fn exclusive(file: &'a File) -> std::io::Result<Self> {
        file.lock()?;
        Ok(Self(file))
    }

    fn shared(file: &'a File) -> std::io::Result<Self> {
        file.lock_shared()?;
        Ok(Self(file))
    }
}

impl Drop for Lock<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(command: &str) -> Entry {
        Entry {
            time_ms: 1,
            kind: EntryKind::Command,
            command: command.to_owned(),
            targets: vec!["a".into()],
            results: vec![HostRecord {
                host: "a".into(),
                status: Status::Ok,
                exit_code: Some(0),
                signal: None,
                timed_out: false,
                truncated: false,
                error: None,
                duration_ms: 3,
                output: "hi\n".into(),
                output_truncated: false,
                job_id: None,
            }],
            rollout: None,
            job: None,
        }
    }

    #[test]
    fn entries_round_trip_and_a_torn_line_is_isolated() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::at(dir.path().join("sub").join("history.jsonl"));
        assert!(history.load().unwrap().entries.is_empty());
        history.append(&entry("one")).unwrap();
        // A crash in the middle of a write leaves half a line.
        let mut file = OpenOptions::new()
            .append(true)
            .open(history.path())
            .unwrap();
        file.write_all(b"{\"time_ms\":2,\"comm").unwrap();
        history.append(&entry("two")).unwrap();
        let loaded = history.load().unwrap();
        let commands: Vec<&str> = loaded.entries.iter().map(|e| e.command.as_str()).collect();
        assert_eq!(commands, vec!["one", "two"]);
        assert_eq!(loaded.skipped_lines, 1);
        let mut entry = entry("three");
        entry.results.push(HostRecord {
            status: Status::Skipped,
            ..entry.results[0].clone()
        });
        entry.results.push(entry.results[0].clone());
        assert_eq!(entry.summary(), "2 ok, 1 skipped");
    }

    #[test]
    fn entries_of_older_versions_read_as_kinds() {
        let old = r#"{"time_ms":1,"command":"(kill)","targets":["a"],"results":[{"host":"a","status":"unreachable","error":"refused","duration_ms":0}]}"#;
        let entry = serde_json::from_str::<Entry>(old).unwrap().normalize();
        assert_eq!(
            (entry.kind, entry.command.as_str()),
            (EntryKind::Lifecycle, "kill")
        );
        assert_eq!(entry.shown_command(), "(kill)");
        assert_eq!(entry.results[0].describe(), "unreachable: refused");
        let query = serde_json::from_str::<Entry>(&old.replace("(kill)", "(OS)"))
            .unwrap()
            .normalize();
        assert_eq!(
            (query.kind, query.command.as_str()),
            (EntryKind::Query, "OS")
        );
        let command = entry_fixture_line();
        assert_eq!(
            serde_json::from_str::<Entry>(&command)
                .unwrap()
                .normalize()
                .kind,
            EntryKind::Command
        );
    }

    fn entry_fixture_line() -> String {
        serde_json::to_string(&entry("echo (x)")).unwrap()
    }

    #[test]
    fn records_describe_their_end_as_the_live_result_did() {
        let mut record = entry("x").results.remove(0);
        record.exit_code = Some(137);
        record.signal = Some(9);
        record.status = Status::Failed;
        assert_eq!(record.describe(), "killed by SIGKILL");
        record.timed_out = true;
        assert_eq!(record.describe(), "killed by SIGKILL (timed out)");
        assert_eq!(record.shown(), "failed (killed by SIGKILL (timed out))");
        let answer = HostRecord::of_answer("h", Status::Ok, "Linux");
        assert_eq!(
            (answer.output.as_str(), answer.describe().as_str()),
            ("Linux", "ok")
        );
    }

    #[test]
    fn output_is_kept_up_to_the_limit() {
        let mut record = entry("x").results.remove(0);
        record.keep_output(&vec![b'a'; OUTPUT_KEPT + 10]);
        assert_eq!(record.output.len(), OUTPUT_KEPT);
        assert!(record.output_truncated);
        record.keep_output(b"\xffok");
        assert_eq!(record.output, "\u{fffd}ok");
        assert!(!record.output_truncated);
    }
}
