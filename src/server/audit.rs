//! The audit log: one JSON object per line, in its own file, separate from
//! the debug log. It records who called what from where, every command with
//! its outcome, and every denied attempt. Tokens and stdin never appear in
//! it: records are built from explicit fields, never from a request's
//! `Debug` output.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    path::Path,
    sync::Mutex,
};

use serde::Serialize;

/// One audit record. Fields that do not apply are left out of the line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Record {
    /// What happened: "call", "denied", "denied_suppressed",
    /// "exec_start", "exec_end", "exec_refused", "signal",
    /// "signal_refused", "shutdown", "restart", "enrolled",
    /// "enroll_refused", "renewed", "policy_pushed", "job_attach",
    /// "job_list", "job_get", "job_cancel", "job_refused", "file_put",
    /// "file_put_refused", "file_get", "file_get_refused".
    pub event: &'static str,
    /// The rpc, e.g. "Execute".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpc: Option<String>,
    /// Who called ("anonymous" without access control).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The caller's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The caller's session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The command line, for Execute: as planned (what the policy checked)
    /// for a command that started, as asked for one that was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The program and arguments: as executed for a command that started,
    /// as asked for one that was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    /// The signal sent, for SignalProcess.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal_name: Option<String>,
    /// The command's pid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Exit code of a command that ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Signal that ended a command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Why a command ended ("exited", "timed_out", ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    /// Duration of a command in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Why something was denied or refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How many records were left out (for "denied_suppressed"), or how
    /// many certificates a revocation list revokes (for "policy_pushed").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// A certificate the event concerns (enrollment, renewal): its
    /// subject, serial number and expiry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// The job a record concerns (a detached Execute, the job rpcs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The offset an AttachJob replays from, or a transfer resumes from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The file a transfer concerns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A transferred file's size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// A transferred file's SHA-256, in hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Longest text field an audit record keeps whole, in bytes.
const LONGEST_TEXT: usize = 4096;
/// Most arguments a record lists.
const MOST_ARGUMENTS: usize = 64;

impl Record {
    fn is_long(&self) -> bool {
        let long = |text: &Option<String>| text.as_ref().is_some_and(|t| t.len() > LONGEST_TEXT);
        long(&self.command)
            || long(&self.reason)
            || self.argv.as_ref().is_some_and(|argv| {
                argv.len() > MOST_ARGUMENTS || argv.iter().any(|a| a.len() > LONGEST_TEXT)
            })
    }

    fn shortened(&self) -> Self {
        let cut = |text: &String| {
            if text.len() <= LONGEST_TEXT {
                return text.clone();
            }
            let mut end = LONGEST_TEXT;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}… ({} bytes in all)", &text[..end], text.len())
        };
        Self {
            command: self.command.as_ref().map(cut),
            reason: self.reason.as_ref().map(cut),
            path: self.path.as_ref().map(cut),
            argv: self.argv.as_ref().map(|argv| {
                let mut kept: Vec<String> = argv.iter().take(MOST_ARGUMENTS).map(cut).collect();
                if argv.len() > MOST_ARGUMENTS {
                    kept.push(format!("… ({} arguments in all)", argv.len()));
                }
                kept
            }),
            ..self.clone()
        }
    }
}

/// A bound on how often something may be logged: `burst` at once, then
/// `per_second`. What it refuses is counted, so that the next record can
/// say how much was left out.
#[derive(Debug)]
pub struct RateLimit {
    state: Mutex<(f64, std::time::Instant, u64)>,
    burst: f64,
    per_second: f64,
}

impl RateLimit {
    /// `burst` records at once, then `per_second`.
    pub fn new(burst: u32, per_second: u32) -> Self {
        Self {
            state: Mutex::new((f64::from(burst), std::time::Instant::now(), 0)),
            burst: f64::from(burst),
            per_second: f64::from(per_second),
        }
    }

    /// `Some(n)` when a record may be written now, `n` being how many were
    /// refused since the last one; `None` when this one is refused.
    pub fn admit(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last, refused) = &mut *state;
        let now = std::time::Instant::now();
        *tokens =
            (*tokens + now.duration_since(*last).as_secs_f64() * self.per_second).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Some(std::mem::take(refused))
        } else {
            *refused += 1;
            None
        }
    }
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    #[serde(flatten)]
    record: &'a Record,
}

/// Where audit records go; a log without a file records nothing.
#[derive(Debug, Default)]
pub struct AuditLog {
    file: Option<Mutex<File>>,
}

impl AuditLog {
    /// A log that records nothing.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Appends to `path`, creating it with mode 0600 if needed.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        Ok(Self {
            file: Some(Mutex::new(options.open(path)?)),
        })
    }

    /// Writes one record. Each line is written whole in one append, so
    /// concurrent records never interleave. Long texts from callers
    /// (command lines, arguments, reasons that quote them) are cut, with
    /// their length kept, so that a caller cannot fill the disk with a
    /// few large requests.
    pub fn record(&self, record: &Record) {
        let Some(file) = &self.file else {
            return;
        };
        let cut;
        let record = if record.is_long() {
            cut = record.shortened();
            &cut
        } else {
            record
        };
        let line = Line {
            time: crate::clock::now_rfc3339(),
            record,
        };
        let Ok(mut text) = serde_json::to_string(&line) else {
            return;
        };
        text.push('\n');
        let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = file.write_all(text.as_bytes()) {
            tracing::error!(error = %e, "cannot write the audit log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limit_admits_a_burst_then_counts_what_it_refuses() {
        let limit = RateLimit::new(3, 1);
        for _ in 0..3 {
            assert_eq!(limit.admit(), Some(0));
        }
        assert_eq!(limit.admit(), None);
        assert_eq!(limit.admit(), None);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(
            limit.admit(),
            Some(2),
            "the next record says how many were left out"
        );
    }

    #[test]
    fn records_are_json_lines_without_empty_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).unwrap();
        log.record(&Record {
            event: "denied",
            rpc: Some("Execute".into()),
            peer: Some("127.0.0.1:5000".into()),
            reason: Some("missing or invalid credentials".into()),
            ..Record::default()
        });
        log.record(&Record {
            event: "call",
            ..Record::default()
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "denied");
        assert_eq!(lines[0]["rpc"], "Execute");
        assert!(lines[0].get("command").is_none());
        assert!(lines[1]["time"].as_str().unwrap().ends_with('Z'));
        log.record(&Record {
            event: "exec_refused",
            command: Some("x".repeat(5 << 20)),
            argv: Some(vec!["y".into(); 1000]),
            ..Record::default()
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert!(
            text.len() < 16 * 1024,
            "a huge request makes a small record"
        );
        assert!(
            last["command"]
                .as_str()
                .unwrap()
                .ends_with("(5242880 bytes in all)")
        );
        assert_eq!(last["argv"].as_array().unwrap().len(), MOST_ARGUMENTS + 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
