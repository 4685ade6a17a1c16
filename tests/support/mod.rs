//! Helpers shared by the integration tests: a real agent on 127.0.0.1:0,
//! ways to look for processes a command may have left behind, and the
//! `vigie` binary run in a scratch home (`cli`), test hosts in network
//! namespaces (`netns`), test hosts reachable over ssh (`ssh_host`) and a
//! fault-injecting TCP proxy (`proxy`).

#![allow(dead_code)]

pub mod cli;
pub mod netns;
pub mod proxy;
pub mod ssh_host;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use std::{collections::HashMap, net::SocketAddr};

use vigie::{
    client::{AgentClient, ConnectionSettings, Secret, connect::Address},
    server::{
        AgentConfig, RunningAgent,
        auth::{self, Role},
    },
};

/// An agent serving on loopback with a free port, in its own thread and
/// runtime. Dropping it stops the agent and reaps every command it ran.
pub struct TestAgent {
    agent: RunningAgent,
}

impl TestAgent {
    /// An agent with test-friendly defaults (a short kill grace).
    pub fn start() -> Self {
        Self::with_config(|_| {})
    }

    /// An agent with the defaults changed by `change`.
    pub fn with_config(change: impl FnOnce(&mut AgentConfig)) -> Self {
        let mut config = AgentConfig {
            listen: "127.0.0.1:0".into(),
            kill_grace_ms: 300,
            shutdown_grace_ms: 250,
            ..AgentConfig::default()
        };
        change(&mut config);
        Self {
            agent: RunningAgent::start(config).expect("the test agent starts"),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.agent.url()
    }

    /// The agent's address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.agent.addr()
    }

    /// A new client, in a new session.
    pub async fn client(&self) -> AgentClient {
        AgentClient::connect(&self.url())
            .await
            .expect("the test agent accepts connections")
    }

    /// True once the agent has stopped.
    pub fn is_finished(&self) -> bool {
        self.agent.is_finished()
    }
}

/// A marker that no other test uses, to find a test's processes by their
/// command line. It is a number so that `sleep` accepts it as a duration.
pub fn marker() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}{n:03}.{nanos:09}", 4000 + std::process::id() % 1000)
}

/// Pids of live (non-zombie) processes whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let entry = entry.ok()?;
        let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !cmdline.contains(needle) || is_zombie(pid) {
            return None;
        }
        Some(pid)
    })
    .collect()
}

/// True when the process is a zombie (or gone).
pub fn is_zombie(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised name: "pid (name) S ...".
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

/// True while a process with this pid exists (zombies included).
pub fn pid_exists(pid: i32) -> bool {
    PathBuf::from(format!("/proc/{pid}")).exists()
}

/// Waits until no live process has `needle` in its command line; returns
/// those still there after `limit`. Used after a command was ended, when
/// the kernel may need a moment to finish tearing processes down.
pub async fn wait_none_with(needle: &str, limit: Duration) -> Vec<i32> {
    let deadline = Instant::now() + limit;
    loop {
        let left = processes_with(needle);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `pid` no longer exists, not even as a zombie.
pub async fn wait_pid_gone(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while pid_exists(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Children of `parent` that are zombies: processes it has not reaped.
pub fn zombie_children(parent: u32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (_, rest) = stat.rsplit_once(')')?;
        let mut fields = rest.split_whitespace();
        let state = fields.next()?;
        let ppid: u32 = fields.next()?.parse().ok()?;
        (ppid == parent && state == "Z").then_some(pid)
    })
    .collect()
}

/// The real `vigie-agent` binary, started on 127.0.0.1:0. Dropping it sends
/// SIGTERM (a graceful stop, which kills its commands) and waits for it.
pub struct BinaryAgent {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl BinaryAgent {
    /// Starts the agent on 127.0.0.1:0 with a short kill grace and these
    /// extra arguments, and waits for its `listening on` line.
    pub fn start(args: &[&str]) -> Self {
        let mut all = vec![
            "--listen",
            "127.0.0.1:0",
            "--kill-grace-ms",
            "300",
            "--log-level",
            "warn",
        ];
        all.extend_from_slice(args);
        Self::spawn(&all, std::process::Stdio::inherit())
    }

    /// Starts the agent with exactly these arguments.
    pub fn start_plain(args: &[&str]) -> Self {
        Self::spawn(args, std::process::Stdio::inherit())
    }

    /// Like [`BinaryAgent::start`], with the agent's log (stderr) in `log`.
    pub fn start_logging(args: &[&str], log: &std::path::Path) -> Self {
        let file = std::fs::File::create(log).expect("a log file");
        let mut all = vec!["--listen", "127.0.0.1:0", "--kill-grace-ms", "300"];
        all.extend_from_slice(args);
        Self::spawn(&all, std::process::Stdio::from(file))
    }

    /// Starts the agent with exactly these arguments, its log in `log`.
    pub fn start_plain_logging(args: &[&str], log: &std::path::Path) -> Self {
        let file = std::fs::File::create(log).expect("a log file");
        Self::spawn(args, std::process::Stdio::from(file))
    }

    fn spawn(args: &[&str], stderr: std::process::Stdio) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vigie-agent"))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("vigie-agent starts");
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("a first line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("an address");
        Self {
            child,
            addr,
            stdout,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The agent's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Reads the next line the agent prints on stdout (blocking).
    pub fn next_line(&mut self) -> String {
        use std::io::BufRead;
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("a line");
        line
    }

    /// Waits for the agent to exit, up to `limit`, without blocking the
    /// test's runtime (its clients must keep answering the agent).
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn wait_exit_blocking(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the agent (SIGTERM) and waits for it while the test's runtime
    /// keeps running, so its clients can close their connections.
    pub async fn stop(mut self) -> Option<std::process::ExitStatus> {
        self.terminate();
        self.wait_exit(Duration::from_secs(10)).await
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
    }

    /// The agent's peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        status_field(self.child.id(), "VmHWM:")
    }

    /// The agent's resident memory now (VmRSS), in KiB.
    pub fn rss_kib(&self) -> u64 {
        status_field(self.child.id(), "VmRSS:")
    }
}

/// A numeric field (in KiB) of `/proc/PID/status`, 0 when unreadable.
pub fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

impl Drop for BinaryAgent {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.terminate();
            if self.wait_exit_blocking(Duration::from_secs(10)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// An access file with one token per role, in a temporary directory.
pub struct AccessFixture {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub tokens: HashMap<Role, String>,
}

pub fn access_file() -> AccessFixture {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut file = auth::AccessFile::default();
    let mut tokens = HashMap::new();
    for role in Role::ALL {
        let token = auth::generate_token().expect("random");
        file.tokens.push(auth::TokenEntry {
            name: role.as_str().into(),
            role,
            sha256: auth::hash_token(&token),
        });
        tokens.insert(role, token);
    }
    let path = dir.path().join("access.toml");
    std::fs::write(&path, toml::to_string(&file).expect("toml")).expect("written");
    AccessFixture { dir, path, tokens }
}

pub fn loopback(addr: SocketAddr) -> Address {
    Address {
        host: addr.ip().to_string(),
        port: addr.port(),
    }
}

pub fn with_token(token: &str) -> ConnectionSettings {
    ConnectionSettings {
        token: Some(Secret::new(token)),
        ..ConnectionSettings::default()
    }
}

/// Whether the agent has let go of its partial upload in `dir` (an upload
/// holds a lock on it until it notices its client is gone), and its size.
pub fn released_partial(dir: &std::path::Path) -> Option<u64> {
    let partial = std::fs::read_dir(dir.join(".vigie-uploads"))
        .ok()?
        .next()?
        .ok()?;
    let file = std::fs::File::open(partial.path()).ok()?;
    // SAFETY: flock on a descriptor this function owns (closed on return).
    let free = unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&file),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    } == 0;
    free.then(|| file.metadata().map(|m| m.len()).unwrap_or(0))
}
