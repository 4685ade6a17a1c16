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
    /// What happened: "call", "denied", "exec_start", "exec_end",
    /// "exec_refused", "signal", "signal_refused", "shutdown", "restart".
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
    /// concurrent records never interleave.
    pub fn record(&self, record: &Record) {
        let Some(file) = &self.file else {
            return;
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
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
