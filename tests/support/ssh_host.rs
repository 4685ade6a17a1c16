//! Test hosts that look like separate machines reachable over SSH, for
//! tests of tools that log in and install things (`vigie deploy`). Each host
//! is a [`NetHost`] (a network namespace with its own address) running a
//! private `sshd` on port 22 of that address, with its own host key, root
//! login with the test's key only, and its own copies of the places an
//! install writes to. The test reaches every host with the system OpenSSH
//! client through one config file (`ssh -F CONFIG NAME …`, `scp -F CONFIG …`)
//! that names the hosts, pins their keys and never prompts.
//!
//! Network namespaces share this machine's file system, so without more
//! than a namespace two hosts would install over each other and over this
//! machine's own /etc and /usr/local/bin. sshd is therefore started inside
//! a mount namespace (and a UTS namespace, for its hostname) of its own,
//! `ip netns exec NS unshare --mount --uts --propagation private sh -c …`,
//! which mounts the host's places before it `exec`s sshd; everything a
//! login starts inherits them. Reach a host's files through ssh, then:
//! `net().command(…)` starts a new `ip netns exec`, in the host's network
//! namespace but with this machine's files. The places come in two kinds:
//!
//! - /etc, /var/log, /var/lib, /usr/local/bin and /root are overlays: the host sees
//!   what this machine has there (the accounts sshd needs, the shell's
//!   files), and whatever it writes lands in its own upper layer,
//!   `DIR/fs/PATH`. An overlay at the parent is what lets /etc/vigie,
//!   /var/log/vigie and /var/lib/vigie be absent until an install makes them (with the mode it
//!   chooses, 0700 for /etc/vigie): a bind mount needs an existing mount
//!   point, which would mean creating those directories on this machine.
//!   /etc/systemd/system comes with /etc.
//! - /run and /tmp are empty bind mounts of `DIR/fs/run` and `DIR/fs/tmp`,
//!   as after a boot, with only what sshd needs in /run: `/run/sshd`, its
//!   privilege-separation directory, and `/run/vigie-test-sshd`, its config,
//!   host key and the test's authorized_keys. Those live on the host rather
//!   than beside the test's files because the host's /tmp hides the
//!   temporary directory they would be in, and because the host's /etc
//!   layer is then exactly what the code under test wrote.
//!
//! `ip netns exec` can also give a process its own /etc entries, by
//! bind-mounting each `/etc/netns/NAME/ENTRY` over `/etc/ENTRY`; it is not
//! used because it needs files under /etc/netns on this machine and an
//! existing /etc/vigie to mount over, and covers /etc only.
//!
//! The mount namespace is private: nothing mounted on a host is seen
//! outside it, nor the other way round. It starts with a copy of every
//! /run/netns mount of the moment (hidden under its own /run); those do not
//! keep other test hosts' network namespaces alive, since `ip netns del`
//! unlinks the file and the kernel then drops the mounts on it in every
//! mount namespace.
//!
//! What is not private: the process table (so that `ip netns pids` finds,
//! and a test can see, what a host runs), and the rest of the file system
//! (/usr, /var/lib, /home…): a command that writes there writes on this
//! machine. sshd without PAM refuses a locked account (`!` in the password
//! field) even for key logins, so a host whose root is locked gets its own
//! /etc/shadow with root's field `*` in its /etc layer; Debian's
//! default (`*`) is fine.
//!
//! Nothing is left behind: the mounts exist only in the host's mount
//! namespace, which the kernel frees with its last process, and every
//! process a login starts (daemons started with setsid or nohup included)
//! stays in the host's network namespace. Dropping a host (panics included)
//! SIGKILLs everything in that namespace and waits until it is gone, then
//! the [`NetHost`] deletes the namespace and the directory. A test process
//! killed outright leaves its processes to the slot's next owner, which
//! kills them before anything else (see `netns`), and that frees the
//! mounts; only its temporary directories stay, as any test's would.
//!
//! A host takes about half a second to set up on this machine kind (2
//! cores): some 70 ms for its namespace, keys and places, 40 ms until sshd
//! listens, and the rest the first login, which costs 250 to 550 ms as any
//! later one does (some 100 ms of it OpenSSH's default post-quantum key
//! exchange).

use std::{
    collections::BTreeSet,
    fs,
    net::{Ipv4Addr, SocketAddr, TcpStream},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::netns::{self, NetHost};

/// The port sshd listens on, on every host's own address.
pub const SSH_PORT: u16 = 22;

const SSHD: &str = "/usr/sbin/sshd";
/// Places a host sees as this machine has them, its writes kept in its own
/// layer (overlays).
const LAYERED: [&str; 5] = ["/etc", "/var/log", "/var/lib", "/usr/local/bin", "/root"];
/// Places a host starts with empty (bind mounts). /tmp comes last: the
/// host's directory is usually under it, and hidden once it is mounted.
const FRESH: [&str; 2] = ["/run", "/tmp"];
/// sshd's config, host key and authorized keys, on the host.
const SSHD_FILES: &str = "/run/vigie-test-sshd";
/// How long a host may take to accept a login.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// Why ssh test hosts cannot be made here, or None when they can.
pub fn unavailable() -> Option<String> {
    if let Some(why) = netns::unavailable() {
        return Some(why);
    }
    if !Path::new(SSHD).exists() {
        return Some(format!("{SSHD} is missing (install openssh-server)"));
    }
    for tool in ["ssh", "scp", "ssh-keygen"] {
        if !on_path(tool) {
            return Some(format!("`{tool}` is missing (install openssh-client)"));
        }
    }
    for tool in ["unshare", "mount"] {
        if !on_path(tool) {
            return Some(format!("`{tool}` is missing (install util-linux)"));
        }
    }
    None
}

/// True when ssh test hosts can be made; otherwise as
/// [`netns::available`]: says why and returns false, or fails under CI.
pub fn available(test: &str) -> bool {
    match unavailable() {
        None => true,
        Some(why) => netns::skip(test, &why),
    }
}

/// One test host serving ssh: a [`NetHost`] with a private sshd in a mount
/// namespace of its own. Made by [`SshFleet::start`], which holds the
/// test's key and the client config.
pub struct SshHost {
    net: NetHost,
    sshd: Child,
    /// The public host key, `ssh-ed25519 AAAA…`.
    host_key: String,
}

impl SshHost {
    /// Makes the host's namespace and places, and starts its sshd with
    /// `authorized_key` as the only key root may log in with. Does not wait
    /// for it (see [`SshHost::wait_ready`]).
    fn spawn(name: &str, authorized_key: &str) -> Self {
        let net = NetHost::bare(name);
        let dir = net.dir.path();
        for place in LAYERED {
            let upper = dir.join("fs").join(relative(place));
            fs::create_dir_all(&upper).expect("an upper layer");
            // The merged directory takes its mode from the upper layer.
            let mode = fs::metadata(place).map_or(0o755, |m| m.permissions().mode() & 0o7777);
            set_mode(&upper, mode);
            fs::create_dir_all(dir.join("work").join(relative(place))).expect("a work directory");
        }
        unlock_root(&dir.join("fs/etc"));
        let run = dir.join("fs/run");
        for (path, mode) in [
            (dir.join("fs/tmp"), 0o1777),
            (run.clone(), 0o755),
            // sshd refuses a privilege-separation directory that anyone but
            // root may write to.
            (run.join("sshd"), 0o755),
            (dir.join("fs").join(relative(SSHD_FILES)), 0o700),
        ] {
            fs::create_dir_all(&path).expect("a private directory");
            set_mode(&path, mode);
        }

        let files = dir.join("fs").join(relative(SSHD_FILES));
        let key = files.join("ssh_host_ed25519_key");
        keygen(&key, name);
        let host_key = public_key(&key);
        let keys = files.join("authorized_keys");
        fs::write(&keys, format!("{authorized_key}\n")).expect("authorized_keys");
        set_mode(&keys, 0o600);
        fs::write(files.join("sshd_config"), sshd_config(net.ip)).expect("sshd_config");

        let log = fs::File::create(dir.join("sshd.log")).expect("sshd's log");
        let sshd = net
            .command("unshare")
            .args(["--mount", "--uts", "--propagation", "private", "sh", "-c"])
            .arg(setup_script())
            .arg("sh")
            .arg(name)
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("unshare starts");
        Self {
            net,
            sshd,
            host_key,
        }
    }

    /// Waits until `ssh -F config NAME true` succeeds, or panics with what
    /// ssh and sshd said.
    fn wait_ready(&mut self, config: &Path) {
        let deadline = Instant::now() + READY_WITHIN;
        let addr = SocketAddr::from((self.ip(), SSH_PORT));
        let mut last = String::from("nothing listened");
        loop {
            if let Ok(Some(status)) = self.sshd.try_wait() {
                panic!(
                    "{}: sshd exited ({status}) before accepting logins; its stderr:\n{}",
                    self.name(),
                    self.sshd_log()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                let output = ssh(config, self.name())
                    .arg("true")
                    .output()
                    .expect("ssh runs");
                if output.status.success() {
                    return;
                }
                last = format!(
                    "ssh said: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{}: `ssh -F {} {} true` did not succeed within {READY_WITHIN:?} ({last}); \
                 sshd's stderr:\n{}",
                self.name(),
                config.display(),
                self.name(),
                self.sshd_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its name in the ssh config (`Host NAME`), also its hostname.
    pub fn name(&self) -> &str {
        &self.net.name
    }

    /// Its address, where sshd listens on port 22.
    pub fn ip(&self) -> Ipv4Addr {
        self.net.ip
    }

    /// Its network namespace's name.
    pub fn namespace(&self) -> String {
        self.net.namespace()
    }

    /// The network host underneath.
    pub fn net(&self) -> &NetHost {
        &self.net
    }

    /// The host's directory: its layers (`fs/`), sshd's log.
    pub fn dir(&self) -> &Path {
        self.net.dir.path()
    }

    /// Where the host keeps its own copy of `path` (absolute, under one of
    /// its private places), as seen from this machine. For an overlaid
    /// place that is the upper layer: it holds what the host wrote, not
    /// what it sees of this machine.
    pub fn private_path(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        assert!(
            LAYERED.iter().chain(&FRESH).any(|p| path.starts_with(p)),
            "{} is this machine's own on every host",
            path.display()
        );
        self.dir().join("fs").join(relative(path))
    }

    /// sshd's pid (`ip netns exec`, unshare and sh each became the next).
    pub fn sshd_pid(&self) -> i32 {
        self.sshd.id() as i32
    }

    /// What sshd (and the set-up before it) wrote on stderr.
    pub fn sshd_log(&self) -> String {
        fs::read_to_string(self.dir().join("sshd.log")).unwrap_or_default()
    }

    /// Its `Host` block for a client config, with the test's key and the
    /// known_hosts file that pins its key.
    pub fn ssh_config_block(&self, identity: &Path, known_hosts: &Path) -> String {
        format!(
            "Host {name}
  HostName {ip}
  Port {SSH_PORT}
  User root
  IdentityFile \"{identity}\"
  IdentitiesOnly yes
  UserKnownHostsFile \"{known_hosts}\"
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  UpdateHostKeys no
  BatchMode yes
  ConnectTimeout 5
  ControlMaster no
  ControlPath none
  LogLevel ERROR
",
            name = self.name(),
            ip = self.ip(),
            identity = identity.display(),
            known_hosts = known_hosts.display(),
        )
    }

    /// Its known_hosts line.
    pub fn known_hosts_line(&self) -> String {
        format!("{} {}\n", self.ip(), self.host_key)
    }
}

impl Drop for SshHost {
    fn drop(&mut self) {
        // Everything a login started is in the namespace, detached or not;
        // the mount namespace goes with the last of them.
        netns::kill_namespace_processes(&self.namespace());
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
        let left = netns::namespace_pids(&self.namespace());
        if !left.is_empty() {
            eprintln!("{}: processes survived SIGKILL: {left:?}", self.name());
        }
    }
}

/// Ssh test hosts with the test's side of ssh: its key pair, a known_hosts
/// file with every host's key and one client config naming them all.
/// Dropping it drops the hosts (see the module's doc), then those files.
pub struct SshFleet {
    hosts: Vec<SshHost>,
    dir: tempfile::TempDir,
}

impl SshFleet {
    /// One host per name, each accepting logins when this returns. Every
    /// host is made and its sshd started before the first is waited for,
    /// so that the sshds come up meanwhile; the time it all took is said
    /// on stderr.
    pub fn start(names: &[&str]) -> Self {
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("vigie-ssh-fleet")
            .tempdir()
            .expect("a directory for the client's files");
        let identity = dir.path().join("id_ed25519");
        keygen(&identity, "vigie-test-client");
        let authorized = public_key(&identity);
        let mut fleet = Self {
            hosts: Vec::with_capacity(names.len()),
            dir,
        };
        for name in names {
            assert!(
                fleet.hosts.iter().all(|h| h.name() != *name),
                "{name}: two hosts of that name"
            );
            fleet.hosts.push(SshHost::spawn(name, &authorized));
        }
        let known: String = fleet.hosts.iter().map(SshHost::known_hosts_line).collect();
        fs::write(fleet.known_hosts(), known).expect("known_hosts");
        let config: String = fleet
            .hosts
            .iter()
            .map(|h| h.ssh_config_block(&identity, &fleet.known_hosts()))
            .collect();
        fs::write(fleet.config(), config).expect("ssh_config");
        let config = fleet.config();
        for host in &mut fleet.hosts {
            host.wait_ready(&config);
        }
        eprintln!(
            "{} ssh test host(s) up in {:?}",
            names.len(),
            started.elapsed()
        );
        fleet
    }

    /// The client config: `ssh -F CONFIG NAME`, `scp -F CONFIG`.
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("ssh_config")
    }

    /// The test's private key (its public half is `….pub`).
    pub fn identity(&self) -> PathBuf {
        self.dir.path().join("id_ed25519")
    }

    /// The known_hosts file the config pins host keys with.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// The hosts, in the order they were named.
    pub fn hosts(&self) -> &[SshHost] {
        &self.hosts
    }

    /// The host of that name.
    pub fn host(&self, name: &str) -> &SshHost {
        self.hosts
            .iter()
            .find(|h| h.name() == name)
            .unwrap_or_else(|| panic!("no ssh test host named {name}"))
    }

    /// `ssh -F CONFIG NAME`: append the remote command.
    pub fn ssh(&self, name: &str) -> Command {
        ssh(&self.config(), name)
    }

    /// `scp -F CONFIG`: append the sources and target (`NAME:PATH`).
    pub fn scp(&self) -> Command {
        let mut command = Command::new("scp");
        command.arg("-F").arg(self.config()).stdin(Stdio::null());
        command
    }

    /// Runs `script` on the host over ssh and returns its stdout, panicking
    /// with its stderr when it fails.
    pub fn run(&self, name: &str, script: &str) -> String {
        let output = self.ssh(name).arg(script).output().expect("ssh runs");
        assert!(
            output.status.success(),
            "{name}: `{script}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// Lines of any mount table on this machine, whatever the process and its
/// mount namespace, that mention `path`: empty once nothing mounts from it
/// anywhere. (This machine's own `/proc/mounts` never shows a host's
/// mounts, so it alone would prove nothing.)
pub fn mounts_mentioning(path: &Path) -> Vec<String> {
    let needle = path.display().to_string();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = BTreeSet::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(table) = fs::read_to_string(format!("/proc/{pid}/mountinfo")) else {
            continue;
        };
        let namespace = fs::read_link(format!("/proc/{pid}/ns/mnt"))
            .map(|l| l.display().to_string())
            .unwrap_or_default();
        for line in table.lines().filter(|l| l.contains(&needle)) {
            found.insert(format!("{namespace} {line}"));
        }
    }
    found.into_iter().collect()
}

/// The script run in the host's new mount and UTS namespaces, with the
/// hostname as `$1` and the host's directory as `$2`: it sets the name,
/// mounts the places and becomes sshd.
fn setup_script() -> String {
    let mut script = String::from("set -e\nprintf '%s' \"$1\" > /proc/sys/kernel/hostname\n");
    for place in LAYERED {
        script.push_str(&format!(
            "mount -t overlay overlay \
             -o \"lowerdir={place},upperdir=$2/fs{place},workdir=$2/work{place}\" {place}\n"
        ));
    }
    for place in FRESH {
        script.push_str(&format!("mount --bind \"$2/fs{place}\" {place}\n"));
    }
    script.push_str(&format!("exec {SSHD} -D -e -f {SSHD_FILES}/sshd_config\n"));
    script
}

/// sshd's config: root with the test's key only, on the host's address.
fn sshd_config(ip: Ipv4Addr) -> String {
    format!(
        "ListenAddress {ip}
Port {SSH_PORT}
AddressFamily inet
HostKey {SSHD_FILES}/ssh_host_ed25519_key
AuthorizedKeysFile {SSHD_FILES}/authorized_keys
PidFile none
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
# scp speaks SFTP since OpenSSH 9.0.
Subsystem sftp internal-sftp
LogLevel INFO
"
    )
}

fn ssh(config: &Path, name: &str) -> Command {
    let mut command = Command::new("ssh");
    command.arg("-F").arg(config).arg(name).stdin(Stdio::null());
    command
}

/// A new ed25519 key pair without a passphrase at `path` and `path.pub`.
fn keygen(path: &Path, comment: &str) {
    let path = path.display().to_string();
    netns::run(
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", &path],
    );
}

/// The key type and key of `private.pub`, without the comment.
fn public_key(private: &Path) -> String {
    let text = fs::read_to_string(private.with_extension("pub")).expect("a public key");
    text.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// An absolute path without its leading `/`.
fn relative(path: impl AsRef<Path>) -> PathBuf {
    path.as_ref()
        .strip_prefix("/")
        .expect("an absolute path")
        .to_owned()
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(tool).is_file()))
}

/// sshd without PAM refuses key logins to a locked account (a password
/// field starting with `!`), which some images give root. The host's own
/// /etc layer then gets a copy of /etc/shadow with root's field `*` (no
/// password, not locked); this machine's file is never touched.
fn unlock_root(etc_upper: &Path) {
    let Ok(shadow) = fs::read_to_string("/etc/shadow") else {
        return;
    };
    let locked = shadow.lines().any(|l| l.starts_with("root:!"));
    if !locked {
        return;
    }
    let unlocked: String = shadow
        .lines()
        .map(|line| match line.strip_prefix("root:") {
            Some(rest) => {
                let after = rest.split_once(':').map_or("", |(_, after)| after);
                format!("root:*:{after}\n")
            }
            None => format!("{line}\n"),
        })
        .collect();
    let copy = etc_upper.join("shadow");
    fs::write(&copy, unlocked).expect("the host's shadow");
    set_mode(&copy, 0o640);
}
