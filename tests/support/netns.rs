//! Test hosts across a real network: each host is a network namespace with
//! a veth pair and its own address (10.213.0.0/16, this project's own), set
//! up with `vigie-agent init` and served by a real `vigie-agent` with TLS,
//! mutual TLS and a token, exactly as a deployment is today.
//!
//! Faults are made where a real network makes them: a partition is an
//! nftables table that drops everything inside the host's namespace; a
//! frozen host is SIGSTOP; a reboot is SIGKILL of everything in the
//! namespace and a new agent on the same address. (Latency, bandwidth,
//! stalls and resets come from `proxy`: this kernel has no netem.)
//!
//! Nothing is left behind: dropping a host kills its processes and deletes
//! its namespace (which takes the veth pair and the rules with it), panics
//! included. A test process killed outright cannot run its drops, so each
//! host holds a lock on its slot for its life, and whoever takes a slot
//! next first removes what a dead owner left there.

use std::{
    fs::File,
    io::{BufRead, BufReader},
    net::{Ipv4Addr, SocketAddr},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use vigie::client::{ClientConfig, ConnectionSettings, connect::Address, hosts::HostEntry};

/// The port every test agent listens on (each namespace has its own).
pub const PORT: u16 = 7421;

/// Where slot locks live.
const LOCK_DIR: &str = "/run/vigie-test-hosts";
/// Slots available (each a /30 in 10.213.0.0/16).
const SLOTS: u32 = 4096;

/// Why test hosts cannot be made here, or None when they can.
pub fn unavailable() -> Option<String> {
    if unsafe { libc::geteuid() } != 0 {
        return Some("network namespaces need root".into());
    }
    for (tool, args) in [("ip", ["-V"]), ("nft", ["--version"])] {
        let found = Command::new(tool)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!(
                "`{tool}` is missing (install iproute2 and nftables)"
            ));
        }
    }
    None
}

/// True when the network tests can run. When they cannot, says why on
/// stderr and returns false, except under CI (`CI` set to true or 1),
/// where a skipped network test is a failure: they must never silently
/// stop running.
pub fn available(test: &str) -> bool {
    match unavailable() {
        None => true,
        Some(why) => skip(test, &why),
    }
}

/// Says on stderr why `test` cannot run and returns false, or fails under
/// CI (see [`available`]).
pub fn skip(test: &str, why: &str) -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(!ci, "{test} cannot run under CI: {why}");
    eprintln!("skipping {test}: {why}");
    false
}

/// Runs a command, panicking with its stderr when it fails.
pub(super) fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program} {args:?}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs a command whose failure is expected at times (cleaning up).
fn try_run(program: &str, args: &[&str]) {
    let _ = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A slot: a namespace name, a veth name and a /30, held by a lock.
struct Slot {
    index: u32,
    _lock: File,
}

impl Slot {
    /// Takes the first free slot and clears what a dead owner left in it.
    fn take() -> Self {
        std::fs::create_dir_all(LOCK_DIR).expect("the lock directory");
        for index in 0..SLOTS {
            let path = format!("{LOCK_DIR}/slot-{index}.lock");
            let file = File::create(&path).expect("a lock file");
            // SAFETY: flock on a descriptor this function owns.
            let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if locked == 0 {
                let slot = Self { index, _lock: file };
                slot.clear();
                return slot;
            }
        }
        panic!("no free test-host slot in {LOCK_DIR}");
    }

    fn namespace(&self) -> String {
        format!("vigie-test-{}", self.index)
    }

    fn veth(&self, side: char) -> String {
        format!("vgt{}{side}", self.index)
    }

    /// The root side's address and the host's.
    fn addresses(&self) -> (Ipv4Addr, Ipv4Addr) {
        let third = (self.index / 64) as u8;
        let base = ((self.index % 64) * 4) as u8;
        (
            Ipv4Addr::new(10, 213, third, base + 1),
            Ipv4Addr::new(10, 213, third, base + 2),
        )
    }

    /// Kills every process in the namespace, deletes it (its veth end, the
    /// peer and its rules go with it) and the root end if it survived.
    fn clear(&self) {
        let namespace = self.namespace();
        kill_namespace_processes(&namespace);
        try_run("ip", &["netns", "del", &namespace]);
        try_run("ip", &["link", "del", &self.veth('r')]);
    }
}

/// SIGKILLs every process in a namespace and waits until they are gone.
pub fn kill_namespace_processes(namespace: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = namespace_pids(namespace);
        if pids.is_empty() || Instant::now() >= deadline {
            return;
        }
        for pid in pids {
            // SAFETY: a plain kill(2).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pids of the live processes in a namespace.
pub fn namespace_pids(namespace: &str) -> Vec<i32> {
    let Ok(output) = Command::new("ip")
        .args(["netns", "pids", namespace])
        .stderr(Stdio::null())
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|&pid| !super::is_zombie(pid))
        .collect()
}

/// One test host: a namespace with an address, `vigie-agent init`'s files
/// and, while started, an agent.
pub struct NetHost {
    /// Its name in hosts files.
    pub name: String,
    slot: Slot,
    /// Its address (inside its namespace).
    pub ip: Ipv4Addr,
    /// What `vigie-agent init` wrote, and the agent's log.
    pub dir: tempfile::TempDir,
    agent: Option<Child>,
}

impl NetHost {
    /// A new host named `name`, with its namespace, link and address, and
    /// `vigie-agent init` run inside it for its address. No agent yet.
    pub fn create(name: &str) -> Self {
        let host = Self::bare(name);
        let listen = format!("{}:{PORT}", host.ip);
        let init_dir = host.init_dir();
        let output = host
            .command(env!("CARGO_BIN_EXE_vigie-agent"))
            .args(["init", "--dir"])
            .arg(&init_dir)
            .args(["--listen", &listen, "--name", &host.ip.to_string()])
            .stdout(Stdio::null())
            .output()
            .expect("vigie-agent init runs");
        assert!(
            output.status.success(),
            "init: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        host
    }

    /// A new host with its namespace, link, address and directory only:
    /// nothing of vigie's set up on it (see `ssh_host`, where the code under
    /// test installs the agent itself).
    pub fn bare(name: &str) -> Self {
        let slot = Slot::take();
        let namespace = slot.namespace();
        let (root_ip, ip) = slot.addresses();
        let (outside, inside) = (slot.veth('r'), slot.veth('n'));
        run("ip", &["netns", "add", &namespace]);
        run(
            "ip",
            &[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ],
        );
        run("ip", &["link", "set", &inside, "netns", &namespace]);
        run(
            "ip",
            &["addr", "add", &format!("{root_ip}/30"), "dev", &outside],
        );
        run("ip", &["link", "set", &outside, "up"]);
        let in_ns = |args: &[&str]| {
            let mut all = vec!["netns", "exec", namespace.as_str(), "ip"];
            all.extend_from_slice(args);
            run("ip", &all);
        };
        in_ns(&["addr", "add", &format!("{ip}/30"), "dev", &inside]);
        in_ns(&["link", "set", &inside, "up"]);
        in_ns(&["link", "set", "lo", "up"]);

        let dir = tempfile::tempdir().expect("a directory for the host");
        Self {
            name: name.to_owned(),
            slot,
            ip,
            dir,
            agent: None,
        }
    }

    /// A command that runs inside the host's namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.slot.namespace()])
            .arg(program)
            .stdin(Stdio::null());
        command
    }

    /// The namespace's name.
    pub fn namespace(&self) -> String {
        self.slot.namespace()
    }

    /// Where `init` wrote its files.
    pub fn init_dir(&self) -> PathBuf {
        self.dir.path().join("vigie")
    }

    /// The agent's log file.
    pub fn log(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    /// The agent's address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, PORT))
    }

    /// The address as the client library takes it.
    pub fn address(&self) -> Address {
        Address {
            host: self.ip.to_string(),
            port: PORT,
        }
    }

    /// The host's line in a fleet.
    pub fn entry(&self) -> HostEntry {
        HostEntry::new(&self.name, self.ip.to_string(), PORT)
    }

    /// The client settings `init` wrote (CA, client certificate, admin
    /// token), as `vigie --config` would read them.
    pub fn settings(&self) -> ConnectionSettings {
        ClientConfig::load(&self.init_dir().join("client.toml"))
            .expect("init's client config loads")
            .defaults
    }

    /// The client config's path.
    pub fn client_config(&self) -> PathBuf {
        self.init_dir().join("client.toml")
    }

    /// Starts the agent with init's config and these extra flags, and
    /// waits for it to listen.
    pub fn start_agent(&mut self, extra: &[&str]) {
        self.spawn_agent(extra);
        self.wait_listening();
    }

    /// Starts the agent without waiting (see [`NetHost::wait_listening`]),
    /// so that many hosts can come back at the same instant.
    pub fn spawn_agent(&mut self, extra: &[&str]) {
        assert!(self.agent.is_none(), "{}: an agent runs already", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .expect("a log file");
        let config = self.init_dir().join("agent.toml");
        let child = self
            .command(env!("CARGO_BIN_EXE_vigie-agent"))
            .arg("--config")
            .arg(&config)
            .args(["--log-level", "info"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("vigie-agent starts");
        self.agent = Some(child);
    }

    /// Waits for a spawned agent's `listening on` line.
    pub fn wait_listening(&mut self) {
        let child = self.agent.as_mut().expect("an agent was spawned");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped, read once"));
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        assert!(
            line.starts_with("listening on "),
            "{}: the agent did not start ({line:?}); its log:\n{}",
            self.name,
            std::fs::read_to_string(self.log()).unwrap_or_default()
        );
        // Keep reading its stdout so that it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while stdout.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
    }

    /// The agent's pid (the `ip netns exec` process became the agent).
    pub fn agent_pid(&self) -> i32 {
        self.agent.as_ref().expect("an agent runs").id() as i32
    }

    /// Sends a signal to the agent.
    pub fn signal_agent(&self, signal: i32) {
        // SAFETY: a plain kill(2) to our own child.
        unsafe { libc::kill(self.agent_pid(), signal) };
    }

    /// Freezes the agent (SIGSTOP): its kernel still answers TCP, the agent
    /// answers nothing.
    pub fn freeze(&self) {
        self.signal_agent(libc::SIGSTOP);
    }

    /// Thaws a frozen agent.
    pub fn thaw(&self) {
        self.signal_agent(libc::SIGCONT);
    }

    /// A power cut: every process of the host killed at once, the agent
    /// and its commands included.
    pub fn crash(&mut self) {
        kill_namespace_processes(&self.slot.namespace());
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the agent gracefully (SIGTERM) and waits for it.
    pub fn stop_agent(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.agent.take()?;
        // SAFETY: a plain kill(2) to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Cuts the host off: everything in or out of its namespace dropped
    /// silently, as a failed switch or a pulled cable would.
    pub fn partition(&self) {
        let namespace = self.slot.namespace();
        let nft = |args: &[&str]| {
            let mut all = vec!["netns", "exec", namespace.as_str(), "nft"];
            all.extend_from_slice(args);
            run("ip", &all);
        };
        nft(&["add", "table", "inet", "cut"]);
        for (chain, hook) in [("in", "input"), ("out", "output")] {
            nft(&[
                "add",
                "chain",
                "inet",
                "cut",
                chain,
                &format!("{{ type filter hook {hook} priority 0; policy drop; }}"),
            ]);
        }
    }

    /// Ends a partition.
    pub fn heal(&self) {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.slot.namespace(),
                "nft",
                "delete",
                "table",
                "inet",
                "cut",
            ],
        );
    }

    /// The agent's peak resident memory so far, in KiB.
    pub fn agent_peak_rss_kib(&self) -> u64 {
        super::status_field(self.agent_pid() as u32, "VmHWM:")
    }

    /// The audit log's lines.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.init_dir().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for NetHost {
    fn drop(&mut self) {
        // A frozen agent cannot act on SIGTERM: the namespace is killed
        // outright, then removed with its link and rules.
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.slot.clear();
    }
}

/// `count` hosts named `{prefix}1…`, each with its agent started.
pub fn hosts(prefix: &str, count: usize, extra: &[&str]) -> Vec<NetHost> {
    (1..=count)
        .map(|n| {
            let mut host = NetHost::create(&format!("{prefix}{n}"));
            host.start_agent(extra);
            host
        })
        .collect()
}

/// A client config naming each host's own CA, certificate and token (one
/// CA per host, as `init` makes them today), and a hosts file; returns
/// their paths inside `dir`.
pub fn client_files(hosts: &[NetHost], dir: &Path) -> (PathBuf, PathBuf) {
    let mut config = ClientConfig::default();
    let mut lines = String::from("# test hosts in network namespaces\n");
    for host in hosts {
        config.host.insert(host.name.clone(), host.settings());
        lines.push_str(&format!("{}={}\n", host.name, host.addr()));
    }
    let config_path = dir.join("client.toml");
    std::fs::write(&config_path, toml::to_string(&config).expect("toml")).expect("written");
    let hosts_path = dir.join("hosts.txt");
    std::fs::write(&hosts_path, lines).expect("written");
    (config_path, hosts_path)
}
