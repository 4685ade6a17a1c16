//! The OpenSSH baseline: a private sshd on 127.0.0.1 with its own config,
//! host key and client key in a temporary directory, key authentication
//! only, no PAM, no DNS lookups. Nothing of the machine's own ssh set-up is
//! used or changed, except that, run as root, the suite logs in as a
//! dedicated user (`vigie-bench`, created once with /bin/sh as its shell)
//! rather than as root. Run as another user, sshd serves that user only.
//!
//! Every start can fail for a reason that is the machine's, not ours (no
//! sshd installed, a user that cannot be created): the error says which, and
//! the suite skips the ssh baselines with that message.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The user ssh logs in as when the suite runs as root.
const BENCH_USER: &str = "vigie-bench";

pub struct Sshd {
    child: Child,
    master: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
}

impl Sshd {
    /// Sets up and starts the private sshd, and checks that `ssh … true`
    /// works through it.
    pub fn start() -> Result<Self, String> {
        let sshd = ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or("sshd is not installed (Debian: apt-get install openssh-server)")?;
        for tool in ["ssh", "ssh-keygen"] {
            if !on_path(tool) {
                return Err(format!(
                    "{tool} is not installed (Debian: apt-get install openssh-client)"
                ));
            }
        }
        let user = login_user()?;
        let dir = tempfile::Builder::new()
            .prefix("vigie-bench-ssh")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let d = dir.path();
        // sshd reads the authorized keys as the user who logs in, so the
        // directory is traversable; the private keys stay 0600.
        set_mode(d, 0o755)?;
        for (name, comment) in [
            ("host_ed25519", "vigie-bench-host"),
            ("id_ed25519", "vigie-bench-client"),
        ] {
            run_ok(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                    .arg(d.join(name)),
            )?;
        }
        std::fs::copy(d.join("id_ed25519.pub"), d.join("authorized_keys"))
            .map_err(|e| format!("authorized_keys: {e}"))?;
        set_mode(&d.join("authorized_keys"), 0o644)?;
        let host_key = std::fs::read_to_string(d.join("host_ed25519.pub"))
            .map_err(|e| format!("host key: {e}"))?;
        let host_key: Vec<&str> = host_key.split_whitespace().take(2).collect();

        let port = free_port()?;
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {}\n", host_key.join(" ")),
        )
        .map_err(|e| format!("known_hosts: {e}"))?;
        let path = |name: &str| d.join(name).display().to_string();
        let sshd_config = format!(
            "Port {port}
ListenAddress 127.0.0.1
HostKey {host}
PidFile {pid}
AuthorizedKeysFile {keys}
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowUsers {user}
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
# One address stands for N hosts in the fan-out: lift the throttle on
# unauthenticated connections so that it is not what is measured.
MaxStartups 1000:30:1000
MaxSessions 1000
LogLevel ERROR
{sftp}",
            host = path("host_ed25519"),
            pid = path("sshd.pid"),
            keys = path("authorized_keys"),
            // scp speaks SFTP since OpenSSH 9: the subsystem where the
            // system has it (it is what users' scp reaches).
            sftp = [
                "/usr/lib/openssh/sftp-server",
                "/usr/libexec/openssh/sftp-server",
                "/usr/libexec/sftp-server"
            ]
            .iter()
            .find(|p| std::path::Path::new(p).exists())
            .map(|p| format!("Subsystem sftp {p}\n"))
            .unwrap_or_default(),
        );
        std::fs::write(d.join("sshd_config"), sshd_config)
            .map_err(|e| format!("sshd_config: {e}"))?;
        let ssh_config = format!(
            "Host bench
  HostName 127.0.0.1
  Port {port}
  User {user}
  IdentityFile {id}
  IdentitiesOnly yes
  UserKnownHostsFile {known}
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  GSSAPIAuthentication no
  ControlPath none
  LogLevel ERROR
",
            id = path("id_ed25519"),
            known = path("known_hosts"),
        );
        std::fs::write(d.join("ssh_config"), ssh_config).map_err(|e| format!("ssh_config: {e}"))?;
        if rustix::process::geteuid().is_root() {
            // Debian's sshd insists on its privilege-separation directory.
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        run_ok(
            Command::new(&sshd)
                .arg("-t")
                .arg("-f")
                .arg(d.join("sshd_config")),
        )?;

        let log = std::fs::File::create(d.join("sshd.log")).map_err(|e| format!("log: {e}"))?;
        let child = Command::new(&sshd)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("sshd does not start: {e}"))?;
        let mut sshd = Self {
            child,
            master: None,
            dir,
            port,
        };
        sshd.wait_listening()?;
        let check = sshd
            .ssh()
            .arg("true")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("ssh: {e}"))?;
        if !check.status.success() {
            return Err(format!(
                "`ssh … true` through the private sshd failed: {} {}",
                String::from_utf8_lossy(&check.stderr).trim(),
                std::fs::read_to_string(sshd.dir.path().join("sshd.log")).unwrap_or_default()
            ));
        }
        Ok(sshd)
    }

    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "sshd exited ({status}): {}",
                    std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
                ));
            }
            if Instant::now() > deadline {
                return Err("sshd did not listen within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `ssh -F <private config> bench`: append the remote command. Every
    /// call makes a new connection (no multiplexing).
    pub fn ssh(&self) -> Command {
        let mut command = Command::new("ssh");
        command
            .arg("-F")
            .arg(self.dir.path().join("ssh_config"))
            .arg("bench");
        command
    }

    /// Like [`Sshd::ssh`], through a ControlMaster connection started on
    /// first use and kept until drop.
    pub fn ssh_multiplexed(&mut self) -> Result<Command, String> {
        let socket = self.dir.path().join("cm");
        if self.master.is_none() {
            let master = Command::new("ssh")
                .arg("-F")
                .arg(self.dir.path().join("ssh_config"))
                .args(["-o", "ControlMaster=yes", "-o", "ControlPersist=no", "-N"])
                .arg("-o")
                .arg(format!("ControlPath={}", socket.display()))
                .arg("bench")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .map_err(|e| format!("ssh master: {e}"))?;
            self.master = Some(master);
            let deadline = Instant::now() + Duration::from_secs(10);
            while !socket.exists() {
                if Instant::now() > deadline {
                    return Err("the ControlMaster socket did not appear within 10 s".into());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let mut command = Command::new("ssh");
        command
            .arg("-F")
            .arg(self.dir.path().join("ssh_config"))
            .args(["-o", "ControlMaster=no"])
            .arg("-o")
            .arg(format!("ControlPath={}", socket.display()))
            .arg("bench");
        Ok(command)
    }

    /// sshd's listener process, for its memory.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `scp` with the private configuration: `from` and `to` as scp takes
    /// them, the remote side named `bench:PATH`.
    pub fn scp(&self, from: &str, to: &str) -> Command {
        let mut command = Command::new("scp");
        command
            .arg("-q")
            .arg("-F")
            .arg(self.dir.path().join("ssh_config"))
            .arg(from)
            .arg(to);
        command
    }

    /// Streams `bytes` of zeros from `head` through ssh with this cipher
    /// (None: OpenSSH's default) and returns MB/s.
    pub fn stream(&self, bytes: u64, cipher: Option<&str>) -> Result<f64, String> {
        let mut command = self.ssh();
        if let Some(cipher) = cipher {
            command.args(["-c", cipher]);
        }
        let t = Instant::now();
        let mut child = command
            .arg(format!("head -c {bytes} /dev/zero"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("ssh: {e}"))?;
        let total = drain(child.stdout.take().expect("piped"));
        let status = child.wait().map_err(|e| format!("ssh: {e}"))?;
        if !status.success() || total != bytes {
            return Err(format!("ssh stream: {status}, {total} of {bytes} bytes"));
        }
        Ok(bytes as f64 / t.elapsed().as_secs_f64() / 1e6)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        for child in self
            .master
            .iter_mut()
            .chain(std::iter::once(&mut self.child))
        {
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let _ = child.wait();
        }
    }
}

/// Runs a command to completion and checks it succeeded.
pub fn run_ok(command: &mut Command) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?}: {} {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Reads a pipe to its end, returning the byte count.
pub fn drain(mut pipe: impl Read) -> u64 {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    while let Ok(n) = pipe.read(&mut buf) {
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    total
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(tool).is_file()))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A port nobody listens on right now (the kernel's pick, released).
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// The account ssh logs in as: the dedicated user when running as root
/// (created on first use), else whoever runs the suite.
fn login_user() -> Result<String, String> {
    if !rustix::process::geteuid().is_root() {
        let output = Command::new("id")
            .arg("-un")
            .output()
            .map_err(|e| format!("id -un: {e}"))?;
        return Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned());
    }
    let exists = Command::new("id")
        .arg(BENCH_USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !exists {
        println!("creating user {BENCH_USER} (shell /bin/sh) for the ssh baseline");
        // "*" is no password at all, not a locked account: sshd without PAM
        // refuses locked accounts even for key authentication.
        run_ok(Command::new("useradd").args([
            "--create-home",
            "--shell",
            "/bin/sh",
            "--password",
            "*",
            BENCH_USER,
        ]))
        .map_err(|e| format!("cannot create the user {BENCH_USER}: {e}"))?;
    }
    Ok(BENCH_USER.into())
}
