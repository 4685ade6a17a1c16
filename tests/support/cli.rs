//! Running the `vigie` binary in a scratch home, and reading what it wrote.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use super::TestAgent;

/// A scratch home for the CLI: its own HOME (no user config is read), its
/// own history file, and a hosts file.
pub struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn vigie(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_vigie"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("VIGIE_HISTORY", self.path("history.jsonl"))
            .stdin(Stdio::null());
        command
    }

    /// A hosts file naming these agents, then the lines of `extra`.
    pub fn hosts(&self, agents: &[(&str, &TestAgent)], extra: &str) -> PathBuf {
        let addresses: Vec<(&str, SocketAddr)> = agents
            .iter()
            .map(|(name, agent)| (*name, agent.addr()))
            .collect();
        self.hosts_at(&addresses, extra)
    }

    /// A hosts file naming agents by their addresses, then the lines of
    /// `extra`.
    pub fn hosts_at(&self, agents: &[(&str, SocketAddr)], extra: &str) -> PathBuf {
        let mut text = String::from("# test fleet\n");
        for (name, addr) in agents {
            text.push_str(&format!("{name}={addr}\n"));
        }
        text.push_str(extra);
        let path = self.path("hosts.txt");
        std::fs::write(&path, text).expect("hosts file written");
        path
    }
}

pub fn run(command: &mut Command) -> Output {
    command.output().expect("vigie runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    stdout(output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect()
}

pub fn hosts_arg(path: &Path) -> [&std::ffi::OsStr; 2] {
    ["--hosts".as_ref(), path.as_os_str()]
}
