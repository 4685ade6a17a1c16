//! The agents a run measures: the release `vigie-agent` binary on
//! 127.0.0.1:0, and a farm of many agents served from one child process.
//! Both are stopped and reaped on drop.

use std::{
    io::{BufRead, Read, Write},
    process::{Command, Stdio},
};

/// The release agent binary, started on 127.0.0.1:0.
pub struct Agent {
    child: std::process::Child,
    pub url: String,
    pub port: u16,
}

impl Agent {
    pub fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigie-agent"))
            .args(["--listen", "127.0.0.1:0", "--log-level", "error"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("vigie-agent starts");
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("a first line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        let port = addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .expect("a port");
        Self {
            url: format!("http://{addr}"),
            port,
            child,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn address(&self) -> vigie::client::Address {
        vigie::client::Address {
            host: "127.0.0.1".into(),
            port: self.port,
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.child.id() as i32).expect("a pid"),
            rustix::process::Signal::TERM,
        );
        let _ = self.child.wait();
    }
}

/// A field of /proc/PID/status in KiB (VmRSS, VmHWM), 0 when unreadable.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system, in clock ticks) and context switches summed
/// over every thread of a process: what it costs while it should sleep.
#[derive(Clone, Copy, Default)]
pub struct Activity {
    pub ticks: u64,
    pub switches: u64,
}

impl Activity {
    pub fn of(pid: u32) -> Self {
        let mut activity = Self::default();
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // Fields after the command name, which is in parentheses.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map_or("", |(_, rest)| rest)
                .split_whitespace()
                .collect();
            // utime and stime are fields 14 and 15, that is 11 and 12 here.
            activity.ticks = [11, 12]
                .iter()
                .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
                .sum();
        }
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                let status =
                    std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
                activity.switches += status
                    .lines()
                    .filter(|l| l.contains("ctxt_switches:"))
                    .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .sum::<u64>();
            }
        }
        activity
    }

    pub fn since(self, earlier: Self) -> Self {
        Self {
            ticks: self.ticks.saturating_sub(earlier.ticks),
            switches: self.switches.saturating_sub(earlier.switches),
        }
    }
}

/// Many agents served by a few child processes (this benchmark binary, run
/// with `--agent-farm N`), [`AGENTS_PER_PROCESS`] agents each, every agent
/// on its own loopback port, so that the client's figures and memory are
/// its own. Stopped on drop.
pub struct AgentFarm {
    pub ports: Vec<u16>,
    children: Vec<std::process::Child>,
}

/// How many agents one farm process serves. Every command an agent spawns
/// copies its process's descriptor table and closes it again at exec, so
/// a process holding the listeners and connections of 1,000 agents (2,000
/// descriptors) would make each spawn cost what no real agent pays: in a
/// profile that was a tenth of all CPU time of a 1,000-host fan-out. With
/// 20 agents a process holds about as many descriptors as a busy agent.
pub const AGENTS_PER_PROCESS: usize = 20;

impl AgentFarm {
    pub fn start(count: usize) -> Self {
        Self::start_with(count, AGENTS_PER_PROCESS, None)
    }

    /// `count` agents, `per_process` in each child; with `tls`, each agent
    /// serves mutual TLS with the files `vigie-agent init` wrote there.
    pub fn start_with(count: usize, per_process: usize, tls: Option<&std::path::Path>) -> Self {
        let mut children = Vec::new();
        let mut ports = Vec::with_capacity(count);
        let mut left = count;
        while left > 0 {
            let here = left.min(per_process);
            left -= here;
            let mut command = Command::new(std::env::current_exe().expect("this program"));
            command.args(["--agent-farm", &here.to_string()]);
            if let Some(dir) = tls {
                command.arg(dir);
            }
            let mut child = command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("the agent farm starts");
            let stdout = child.stdout.take().expect("piped");
            ports.extend(
                std::io::BufReader::new(stdout)
                    .lines()
                    .take(here)
                    .map(|l| l.expect("a line").trim().parse::<u16>().expect("a port")),
            );
            children.push(child);
        }
        Self { ports, children }
    }

    /// Writes a hosts file naming the agents `PREFIX0000`, `PREFIX0001`, …
    pub fn write_hosts(&self, path: &std::path::Path, prefix: &str) {
        let text: String = self
            .ports
            .iter()
            .enumerate()
            .map(|(i, port)| format!("{prefix}{i:04}=127.0.0.1:{port}\n"))
            .collect();
        std::fs::write(path, text).expect("a hosts file");
    }

    /// Lowers the farm's scheduling priority, so that a client measured
    /// beside it on the same cores is served first, as it would be with
    /// its agents on other machines.
    #[cfg_attr(not(feature = "gui"), allow(dead_code))]
    pub fn yield_cpu(&self) {
        for child in &self.children {
            // SAFETY: setpriority reads its arguments only; a failure
            // leaves the priority as it was.
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, child.id(), 19);
            }
        }
    }

    /// The CPU time (user and system) every farm process has used so far.
    pub fn cpu(&self) -> std::time::Duration {
        let ticks: u64 = self
            .children
            .iter()
            .map(|child| Activity::of(child.id()).ticks)
            .sum();
        // Clock ticks are hundredths of a second on Linux.
        std::time::Duration::from_millis(ticks * 10)
    }

    /// Says how the agents are served, for the notes of the figures.
    pub fn describe(&self) -> String {
        let processes = match self.children.len() {
            1 => "1 process".to_owned(),
            n => format!("{n} processes"),
        };
        let per_process = self.ports.len().div_ceil(self.children.len().max(1));
        format!(
            "agents served by {processes} of up to {per_process} on {} loopback ports",
            self.ports.len()
        )
    }

    /// The child side: serves `count` agents until stdin closes; with
    /// `tls`, mutual TLS with the files `vigie-agent init` wrote there.
    pub fn serve(count: usize, tls: Option<std::path::PathBuf>) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let stop = tokio_util::sync::CancellationToken::new();
        runtime.block_on(async {
            let mut tasks = Vec::new();
            let mut out = std::io::stdout().lock();
            for _ in 0..count {
                let mut config = vigie::server::AgentConfig {
                    listen: "127.0.0.1:0".into(),
                    ..vigie::server::AgentConfig::default()
                };
                if let Some(dir) = &tls {
                    config.tls_cert = Some(dir.join("agent.pem"));
                    config.tls_key = Some(dir.join("agent-key.pem"));
                    config.client_ca = Some(dir.join("ca.pem"));
                    config.access_file = Some(dir.join("access.toml"));
                }
                let agent = vigie::server::Agent::bind(config).expect("an agent binds");
                let port = agent
                    .tcp_listener()
                    .and_then(|l| l.local_addr().ok())
                    .expect("a TCP agent")
                    .port();
                writeln!(out, "{port}").expect("stdout");
                let stop = stop.clone();
                tasks.push(tokio::spawn(async move {
                    let _ = agent.serve_restarting_in_process(&stop).await;
                }));
            }
            out.flush().expect("stdout");
            drop(out);
            // The parent closes our stdin when it is done with us.
            let _ = tokio::task::spawn_blocking(|| {
                let mut sink = Vec::new();
                let _ = std::io::stdin().read_to_end(&mut sink);
            })
            .await;
            stop.cancel();
            for task in tasks {
                let _ = task.await;
            }
        });
    }
}

impl Drop for AgentFarm {
    fn drop(&mut self) {
        // Every child sees its stdin close at once, then each is reaped.
        for child in &mut self.children {
            drop(child.stdin.take());
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
    }
}
