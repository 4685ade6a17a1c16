//! The ssh test hosts themselves (`support::ssh_host`), before any test of
//! deployment leans on them: each host answers ssh on its own address
//! under its own name, keeps what is written on it to itself, takes files
//! by scp, and leaves nothing on this machine once dropped, not even after
//! a panic: no process (detached ones included), no mount, no file.
//!
//! These tests need root, iproute2, nftables, OpenSSH (client and server)
//! and util-linux. Without them they say why and pass, except under CI
//! (`CI=true`), where that is a failure.

mod support;

use std::{
    panic::AssertUnwindSafe,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use support::{
    marker, processes_with,
    ssh_host::{self, SshFleet},
};

/// Starts `sleep MARKER` on the host, detached from the login as a daemon
/// would be, and waits until it runs.
fn start_detached_sleep(fleet: &SshFleet, name: &str, marker: &str) {
    let before = processes_with(marker).len();
    fleet.run(
        name,
        &format!("setsid nohup sleep {marker} </dev/null >/dev/null 2>&1 &"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_with(marker).len() <= before {
        assert!(Instant::now() < deadline, "{name}: the sleep never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// "present" or "absent" for each path, one a line, as the host sees them.
fn presence(fleet: &SshFleet, name: &str, paths: &[String]) -> Vec<String> {
    let script = format!(
        "for p in {}; do if test -e \"$p\"; then echo present; else echo absent; fi; done",
        paths.join(" ")
    );
    fleet
        .run(name, &script)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Asserts that nothing of a dropped host is left on this machine: no
/// process with the marker, no mount from its directory in any mount
/// namespace, not the directory itself.
fn assert_nothing_left(marker: &str, dirs: &[PathBuf]) {
    assert_eq!(processes_with(marker), Vec::<i32>::new(), "processes left");
    let own = std::fs::read_to_string("/proc/mounts").expect("this machine's mounts");
    for dir in dirs {
        assert_eq!(
            ssh_host::mounts_mentioning(dir),
            Vec::<String>::new(),
            "mounts left from {}",
            dir.display()
        );
        assert!(!own.contains(&dir.display().to_string()));
        assert!(!dir.exists(), "{} left", dir.display());
    }
}

#[test]
fn each_host_answers_ssh_with_its_own_address_and_hostname() {
    if !ssh_host::available("each_host_answers_ssh_with_its_own_address_and_hostname") {
        return;
    }
    // Three, as a deployment test uses: one config names them all.
    let fleet = SshFleet::start(&["addr1", "addr2", "addr3"]);
    let config = std::fs::read_to_string(fleet.config()).expect("the config");
    for host in fleet.hosts() {
        assert!(config.contains(&format!("Host {}\n", host.name())));
        let answer = fleet.run(host.name(), "hostname; id -un; ip -4 -o addr show");
        let mut lines = answer.lines();
        assert_eq!(lines.next(), Some(host.name()), "{answer}");
        assert_eq!(lines.next(), Some("root"), "{answer}");
        assert!(
            answer.contains(&format!("inet {}/30", host.ip())),
            "{}: {answer}",
            host.name()
        );
        for other in fleet.hosts().iter().filter(|o| o.name() != host.name()) {
            assert!(
                !answer.contains(&format!("inet {}/", other.ip())),
                "{} sees {}'s address: {answer}",
                host.name(),
                other.name()
            );
        }
    }
}

#[test]
fn what_is_written_on_one_host_stays_on_it() {
    if !ssh_host::available("what_is_written_on_one_host_stays_on_it") {
        return;
    }
    let fleet = SshFleet::start(&["iso1", "iso2"]);
    let m = marker();
    let paths: Vec<String> = [
        "/etc/vigie/probe-",
        "/usr/local/bin/probe-",
        "/var/log/vigie/probe-",
        "/etc/systemd/system/probe-",
        "/run/probe-",
        "/tmp/probe-",
        "/root/probe-",
    ]
    .iter()
    .map(|p| format!("{p}{m}"))
    .collect();

    // An install makes /etc/vigie and /var/log/vigie itself, with its modes.
    for name in ["iso1", "iso2"] {
        assert_eq!(
            presence(
                &fleet,
                name,
                &["/etc/vigie".into(), "/var/log/vigie".into()]
            ),
            ["absent", "absent"],
            "{name}"
        );
    }
    fleet.run(
        "iso1",
        &format!(
            "install -d -m 0700 /etc/vigie && install -d -m 0750 /var/log/vigie && \
             for p in {}; do echo {m} > \"$p\"; done",
            paths.join(" ")
        ),
    );
    assert_eq!(
        fleet.run("iso1", "stat -c %a /etc/vigie /var/log/vigie"),
        "700\n750\n"
    );

    assert_eq!(
        presence(&fleet, "iso1", &paths),
        vec!["present"; paths.len()]
    );
    assert_eq!(
        presence(&fleet, "iso2", &paths),
        vec!["absent"; paths.len()]
    );
    let host = fleet.host("iso1");
    for path in &paths {
        assert!(!Path::new(path).exists(), "{path} on this machine");
        let kept = std::fs::read_to_string(host.private_path(path)).expect("the host's copy");
        assert_eq!(kept.trim(), m, "{path}");
    }
    // This machine's own files still show through the layers.
    assert_eq!(
        fleet.run("iso2", "test -s /etc/passwd && echo seen"),
        "seen\n"
    );
}

#[test]
fn scp_takes_a_file_to_a_host_and_back() {
    if !ssh_host::available("scp_takes_a_file_to_a_host_and_back") {
        return;
    }
    let fleet = SshFleet::start(&["scp1"]);
    let local = tempfile::tempdir().expect("a local directory");
    // 256 KiB that no two runs share, so a stale copy cannot pass.
    let seed = marker();
    let mut state = seed
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31) ^ u64::from(b))
        | 1;
    let payload: Vec<u8> = (0..256 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let sent = local.path().join("payload");
    std::fs::write(&sent, &payload).expect("written");

    let target = "/usr/local/bin/vigie-scp-probe";
    let status = fleet
        .scp()
        .arg(&sent)
        .arg(format!("scp1:{target}"))
        .status()
        .expect("scp runs");
    assert!(status.success(), "scp to the host: {status}");
    assert_eq!(
        fleet.run("scp1", &format!("wc -c < {target}")).trim(),
        payload.len().to_string()
    );
    assert!(!Path::new(target).exists(), "{target} on this machine");

    let back = local.path().join("back");
    let status = fleet
        .scp()
        .arg(format!("scp1:{target}"))
        .arg(&back)
        .status()
        .expect("scp runs");
    assert!(status.success(), "scp from the host: {status}");
    assert!(std::fs::read(&back).expect("read back") == payload);
    assert!(std::fs::read(fleet.host("scp1").private_path(target)).expect("kept") == payload);
}

#[test]
fn dropping_the_hosts_ends_what_ssh_started_and_leaves_no_mount() {
    if !ssh_host::available("dropping_the_hosts_ends_what_ssh_started_and_leaves_no_mount") {
        return;
    }
    let fleet = SshFleet::start(&["drop1", "drop2"]);
    let m = marker();
    for host in fleet.hosts() {
        start_detached_sleep(&fleet, host.name(), &m);
    }
    assert_eq!(processes_with(&m).len(), 2);
    let dirs: Vec<PathBuf> = fleet.hosts().iter().map(|h| h.dir().to_owned()).collect();
    // The check below can see a host's mounts while it lives.
    for dir in &dirs {
        assert!(!ssh_host::mounts_mentioning(dir).is_empty());
    }

    drop(fleet);
    assert_nothing_left(&m, &dirs);
}

#[test]
fn a_test_that_panics_leaves_nothing_behind_either() {
    if !ssh_host::available("a_test_that_panics_leaves_nothing_behind_either") {
        return;
    }
    let m = marker();
    let mut dir = None;
    let failed = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let fleet = SshFleet::start(&["panic1"]);
        start_detached_sleep(&fleet, "panic1", &m);
        dir = Some(fleet.host("panic1").dir().to_owned());
        panic!("a test failing while its host runs (on purpose)");
    }));
    assert!(failed.is_err());
    let dir = dir.expect("the host came up");
    assert_nothing_left(&m, &[dir]);
}
