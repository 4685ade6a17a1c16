//! `vigie-agent install` and `uninstall` end to end: the real binary with
//! every system path under a temporary `--root`, where systemd is absent
//! (or stood in for by a script that records what it was asked), and the
//! packaged unit and configuration checked against what install writes.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use vigie::server::{
    AgentConfig,
    enroll::{FleetDir, join},
    install::{Layout, check_root, config_text, default_listen, paths, unit_text},
};

const AGENT: &str = env!("CARGO_BIN_EXE_vigie-agent");

/// A scratch system to install into.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// A system path under this root.
    fn path(&self, system: &str) -> PathBuf {
        Layout::new(Some(self.dir.path().to_owned())).path(system)
    }

    /// Runs `vigie-agent COMMAND --root ROOT ARGS`, with `stdin` as input.
    fn run(&self, command: &str, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(AGENT)
            .arg(command)
            .arg("--root")
            .arg(self.dir.path())
            .args(args)
            .env_remove("VIGIE_AGENT_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("vigie-agent runs");
        let mut input = child.stdin.take().expect("piped stdin");
        input.write_all(stdin.as_bytes()).expect("stdin written");
        drop(input);
        child.wait_with_output().expect("vigie-agent ends")
    }

    /// Like [`Root::run`], and the command must succeed; returns stdout.
    fn ok(&self, command: &str, args: &[&str], stdin: &str) -> String {
        let output = self.run(command, args, stdin);
        let out = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{command} {args:?} failed:\n{out}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        out
    }

    fn fleet(&self) -> FleetDir {
        FleetDir::new(self.path(paths::FLEET_DIR))
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Lines that hold a join code.
fn codes(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|line| line.starts_with(join::JOIN_PREFIX))
        .collect()
}

#[test]
fn install_without_systemd_writes_everything_with_its_modes_and_shows_a_working_code() {
    let root = Root::new();
    let out = root.ok("install", &["--listen", "127.0.0.1:0"], "");
    assert!(out.contains("systemd is absent"), "{out}");
    assert!(out.contains("run it by hand: setsid "), "{out}");
    for (path, expected) in [
        (paths::FLEET_DIR, 0o700),
        (paths::LOG_DIR, 0o700),
        (paths::STATE_DIR, 0o700),
        ("/etc/vigie/join.toml", 0o600),
        (paths::BINARY, 0o755),
        (paths::CONFIG, 0o644),
        (paths::UNIT, 0o644),
    ] {
        assert_eq!(mode(&root.path(path)), expected, "{path}");
    }
    assert!(
        std::fs::read(root.path(paths::BINARY)).unwrap() == std::fs::read(AGENT).unwrap(),
        "the binary installed is the one that ran"
    );
    for line in [
        format!("installed {} (0755)", root.path(paths::BINARY).display()),
        format!("created {} (0700)", root.path(paths::FLEET_DIR).display()),
        format!("wrote {}", root.path(paths::UNIT).display()),
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} in\n{out}");
    }

    // The code shown once is the one whose hash is stored.
    let shown = codes(&out);
    assert_eq!(shown.len(), 1, "{out}");
    let pending = join::load(&root.fleet()).unwrap().expect("a pending code");
    assert_eq!(pending.key(), Some(join::key_of(shown[0]).unwrap()));
    assert!(out.contains("vigie enroll HOST --join-code-stdin"), "{out}");

    // The files name the paths under the root, so an agent started from
    // them stays inside it.
    let text = std::fs::read_to_string(root.path(paths::CONFIG)).unwrap();
    let config: AgentConfig = toml::from_str(&text).unwrap();
    assert_eq!(config.listen, "127.0.0.1:0");
    assert_eq!(config.fleet_dir, Some(root.path(paths::FLEET_DIR)));
    assert_eq!(config.audit_log, Some(root.path(paths::AUDIT_LOG)));
    assert_eq!(config.state_dir, Some(root.path(paths::STATE_DIR)));
    let unit = std::fs::read_to_string(root.path(paths::UNIT)).unwrap();
    assert_eq!(
        unit,
        unit_text(&root.path(paths::BINARY), &root.path(paths::CONFIG))
    );

    // A second run changes nothing and says so.
    let join_file = std::fs::read(root.path("/etc/vigie/join.toml")).unwrap();
    let again = root.ok("install", &["--listen", "127.0.0.1:0"], "");
    assert!(codes(&again).is_empty(), "no second code:\n{again}");
    assert!(again.contains("a join code is pending"), "{again}");
    assert_eq!(
        again.lines().filter(|l| l.starts_with("left ")).count(),
        6,
        "binary, three directories, config and unit left alone:\n{again}"
    );
    assert!(
        !again.contains("wrote") && !again.contains("installed"),
        "{again}"
    );
    assert_eq!(
        std::fs::read(root.path("/etc/vigie/join.toml")).unwrap(),
        join_file
    );

    // Uninstalling keeps the host's identity, purging removes it.
    let out = root.ok("uninstall", &[], "");
    assert!(!root.path(paths::UNIT).exists() && !root.path(paths::BINARY).exists());
    assert!(root.path("/etc/vigie/join.toml").exists() && root.path(paths::LOG_DIR).is_dir());
    assert!(out.contains("--purge removes it"), "{out}");
    let out = root.ok("uninstall", &["--purge"], "");
    assert!(out.contains("already absent"), "{out}");
    assert!(!root.path(paths::FLEET_DIR).exists() && !root.path(paths::LOG_DIR).exists());
    assert!(!root.path(paths::STATE_DIR).exists());
}

#[test]
fn a_join_code_from_stdin_is_stored_as_a_hash_and_never_printed() {
    let root = Root::new();
    let bad = root.run("install", &["--join-code-stdin"], "not a code\n");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("this is not a join code"),
        "{bad:?}"
    );
    assert!(
        !root.path(paths::BINARY).exists(),
        "a bad code changes nothing"
    );

    let code = join::generate().unwrap();
    let output = root.run("install", &["--join-code-stdin"], &format!("{code}\n"));
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(out.contains("stored the join code from stdin"), "{out}");
    for text in [&output.stdout, &output.stderr] {
        let text = String::from_utf8_lossy(text);
        assert!(
            !text.contains(&code[4..]) && codes(&text).is_empty(),
            "{text}"
        );
    }
    let pending = join::load(&root.fleet()).unwrap().expect("stored");
    assert_eq!(pending.key(), Some(join::key_of(&code).unwrap()));
    let config = std::fs::read_to_string(root.path(paths::CONFIG)).unwrap();
    assert!(config.contains(&format!("listen = \"{}\"", default_listen())));
}

#[test]
fn an_existing_config_is_kept_unless_forced() {
    let root = Root::new();
    root.ok("install", &["--no-start"], "");
    let path = root.path(paths::CONFIG);
    let edited = std::fs::read_to_string(&path).unwrap() + "no_exec = true\n";
    std::fs::write(&path, &edited).unwrap();
    let out = root.ok("install", &["--listen", "127.0.0.1:9"], "");
    assert!(out.contains("(it exists; --force replaces it)"), "{out}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), edited);

    let out = root.ok("install", &["--listen", "127.0.0.1:9", "--force"], "");
    assert!(
        out.contains(&format!("replaced {}", path.display())),
        "{out}"
    );
    let config: AgentConfig = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(!config.no_exec);
    assert_eq!(config.listen, "127.0.0.1:9");
    assert_eq!(mode(&path), 0o644);

    // A kept configuration that the agent would not start with stops
    // install before it touches the service.
    std::fs::write(&path, "listen = 7\n").unwrap();
    let bad = root.run("install", &[], "");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("pass --force to replace it"),
        "{bad:?}"
    );
}

/// A systemctl that records its arguments and keeps the service's state
/// in two files.
fn fake_systemctl(root: &Root) -> (PathBuf, PathBuf) {
    let (script, log, state) = (
        root.path("/fake/systemctl"),
        root.path("/fake/calls"),
        root.path("/fake"),
    );
    std::fs::create_dir_all(&state).unwrap();
    let (log, state) = (log.display(), state.display());
    let text = format!(
        "#!/bin/sh\n\
         echo \"$*\" >> {log}\n\
         case \"$1 $2\" in\n\
         'is-enabled --quiet') test -e {state}/enabled ;;\n\
         'is-active --quiet') test -e {state}/active ;;\n\
         'enable --now') touch {state}/enabled {state}/active ;;\n\
         'disable --now') rm -f {state}/enabled {state}/active ;;\n\
         'restart '*|'start '*) touch {state}/active ;;\n\
         *) true ;;\n\
         esac\n"
    );
    std::fs::write(&script, text).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, root.path("/fake/calls"))
}

/// The calls the fake systemctl got since the last look.
fn calls(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    std::fs::remove_file(log).ok();
    text.lines().map(str::to_owned).collect()
}

#[test]
fn with_systemd_the_service_is_enabled_and_started_and_restarted_only_after_a_change() {
    let root = Root::new();
    std::fs::create_dir_all(root.path(paths::SYSTEMD_RUNNING)).unwrap();
    let (systemctl, log) = fake_systemctl(&root);
    let ctl = systemctl.to_str().unwrap();
    let query = [
        "daemon-reload",
        "is-enabled --quiet vigie-agent",
        "is-active --quiet vigie-agent",
    ];

    let out = root.ok("install", &["--systemctl", ctl], "");
    assert!(!out.contains("systemd is absent"), "{out}");
    assert!(out.contains("enabled and started vigie-agent"), "{out}");
    assert_eq!(
        calls(&log),
        [&query[..], &["enable --now vigie-agent"]].concat()
    );

    let out = root.ok("install", &["--systemctl", ctl], "");
    assert!(out.contains("nothing changed: left it alone"), "{out}");
    assert_eq!(calls(&log), query);

    let out = root.ok(
        "install",
        &["--systemctl", ctl, "--force", "--listen", "127.0.0.1:9"],
        "",
    );
    assert!(out.contains("restarted vigie-agent"), "{out}");
    assert_eq!(calls(&log), [&query[..], &["restart vigie-agent"]].concat());

    let out = root.ok("uninstall", &["--systemctl", ctl], "");
    assert!(out.contains("stopped and disabled vigie-agent"), "{out}");
    assert_eq!(calls(&log), ["disable --now vigie-agent", "daemon-reload"]);
    assert!(!root.path(paths::UNIT).exists());
}

/// Kills, and reaps, the agent an install started, whatever happens to
/// the test.
struct AgentGuard {
    pid_file: PathBuf,
    pid: Option<i32>,
}

impl Drop for AgentGuard {
    fn drop(&mut self) {
        let recorded = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|text| text.trim().parse().ok());
        for pid in self.pid.into_iter().chain(recorded) {
            if std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "vigie-agent")
            {
                // SAFETY: plain system calls on a pid this test started.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, std::ptr::null_mut(), 0);
                }
            }
        }
    }
}

#[test]
fn spawn_starts_a_detached_agent_that_listens_and_uninstall_stops_it() {
    // The agent outlives the install that started it; as the subreaper,
    // this test becomes its parent and can reap it.
    // SAFETY: a process attribute; no memory is involved.
    assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) }, 0);
    let root = Root::new();
    let mut guard = AgentGuard {
        pid_file: root.path(paths::PID_FILE),
        pid: None,
    };
    let out = root.ok("install", &["--listen", "127.0.0.1:0", "--spawn"], "");
    assert!(out.contains("systemd is absent"), "{out}");
    let pid: i32 = std::fs::read_to_string(root.path(paths::PID_FILE))
        .expect("a pid file")
        .trim()
        .parse()
        .unwrap();
    guard.pid = Some(pid);
    assert_eq!(mode(&root.path(paths::PID_FILE)), 0o644);
    let addr = out
        .lines()
        .find_map(|line| line.split("listening on ").nth(1))
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no address in\n{out}"));
    assert!(
        out.contains(&format!("started vigie-agent (pid {pid})")),
        "{out}"
    );
    std::net::TcpStream::connect(addr).expect("the agent listens");
    let log = std::fs::read_to_string(root.path(paths::AGENT_LOG)).unwrap();
    assert!(log.contains(&format!("listening on {addr}")), "{log}");
    // Detached: a session of its own, so the caller's terminal or SSH
    // session ending does not reach it.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    assert_eq!(fields[3], pid.to_string(), "session id of {stat}");

    let again = root.ok("install", &["--listen", "127.0.0.1:0", "--spawn"], "");
    assert!(
        again.contains(&format!("vigie-agent is running (pid {pid}), left alone")),
        "{again}"
    );

    // A new join code (what a second deploy brings) is a change: the
    // agent is replaced by one that knows it.
    let code = join::generate().unwrap();
    let out = root.ok(
        "install",
        &["--listen", "127.0.0.1:0", "--spawn", "--join-code-stdin"],
        &code,
    );
    assert!(
        out.contains(&format!("stopped vigie-agent (pid {pid})")),
        "{out}"
    );
    assert_reaped(pid);
    let new_pid: i32 = std::fs::read_to_string(root.path(paths::PID_FILE))
        .expect("a pid file")
        .trim()
        .parse()
        .unwrap();
    guard.pid = Some(new_pid);
    assert!(
        out.contains(&format!("started vigie-agent (pid {new_pid})")),
        "{out}"
    );

    let out = root.ok("uninstall", &[], "");
    assert!(
        out.contains(&format!("stopped vigie-agent (pid {new_pid})")),
        "{out}"
    );
    assert!(!root.path(paths::PID_FILE).exists());
    assert_reaped(new_pid);
}

/// Reaps an agent this test adopted, which has exited by now, and checks
/// that nothing of it is left.
fn assert_reaped(pid: i32) {
    // SAFETY: waits for a child of this process; no memory is involved.
    let reaped = unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    assert_eq!(reaped, pid, "pid {pid} was this test's to reap");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "no process is left"
    );
}

#[test]
fn install_refuses_to_run_as_another_user_than_root_without_a_root_dir() {
    let error = check_root("install", false, &Layout::new(None)).expect_err("refused");
    let message = error.to_string();
    assert!(message.starts_with("install must run as root"), "{message}");
    assert!(
        message.contains("sudo") && message.contains("--root DIR"),
        "{message}"
    );
    assert!(check_root("install", false, &Layout::new(Some("/tmp/x".into()))).is_ok());
    assert!(check_root("uninstall", true, &Layout::new(None)).is_ok());

    // The binary itself, as a user that is not root (nobody, when the
    // tests run as root: from a copy that user may run).
    let scratch = tempfile::tempdir().unwrap();
    let mut command = if vigie::server::install::running_as_root() {
        use std::os::unix::process::CommandExt;
        std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = scratch.path().join("vigie-agent");
        std::fs::copy(AGENT, &copy).unwrap();
        let mut command = Command::new(copy);
        command.uid(65534).gid(65534);
        command
    } else {
        Command::new(AGENT)
    };
    let output = command
        .arg("install")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("install must run as root"), "{stderr}");
    assert!(output.stdout.is_empty(), "it did nothing");
}

#[test]
fn the_packaged_unit_and_config_are_the_ones_install_writes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging");
    let unit = std::fs::read_to_string(dir.join("vigie-agent.service")).unwrap();
    assert_eq!(
        unit,
        unit_text(Path::new(paths::PACKAGED_BINARY), Path::new(paths::CONFIG)),
        "packaging/vigie-agent.service differs from unit_text"
    );
    let config = std::fs::read_to_string(dir.join("agent.toml")).unwrap();
    assert_eq!(
        config,
        config_text(
            &default_listen(),
            Path::new(paths::FLEET_DIR),
            Path::new(paths::AUDIT_LOG),
            Path::new(paths::STATE_DIR)
        )
        .unwrap()
    );
    let parsed: AgentConfig = toml::from_str(&config).unwrap();
    assert_eq!(parsed.fleet_dir, Some(PathBuf::from("/etc/vigie")));
}
