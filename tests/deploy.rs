//! From zero to a secured fleet, end to end: three test hosts made as
//! network namespaces, each with its own sshd and its own /etc, /usr/local
//! and /var/log; on this side a fleet CA made by `vigie pki init`. Then
//! `vigie deploy`, commands over mutual TLS on every host, an operator
//! with a limited role, revocation pushed to every host, renewal, a second
//! deploy that changes nothing, and the invariants checked on every
//! host's files: no CA key, no other host's key, no plain token.

mod support;

use std::{path::Path, time::Instant};

use support::{
    cli::{Scratch, json_lines, run, stderr, stdout},
    ssh_host::{self, SshFleet},
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const NAMES: [&str; 3] = ["web1", "web2", "db1"];

#[test]
fn deploy_three_hosts_from_zero_then_roles_revocation_and_renewal() -> TestResult {
    if !ssh_host::available("deploy_three_hosts_from_zero") {
        return Ok(());
    }
    let started = Instant::now();
    let fleet = SshFleet::start(&NAMES);
    let hosts_ready = started.elapsed();
    let scratch = Scratch::new();
    let hosts_file = scratch.path("hosts.txt");
    let lines: String = fleet
        .hosts()
        .iter()
        .map(|h| format!("{}={}:{}\n", h.name(), h.ip(), support::netns::PORT))
        .collect();
    std::fs::write(&hosts_file, lines)?;
    let vigie = |args: &[&str]| {
        let mut command = scratch.vigie();
        command.arg("--hosts").arg(&hosts_file).args(args);
        command
    };

    // A fourth host that cannot be reached (ssh to a closed port on
    // loopback): it fails at its first step, and the others go on.
    let with_ghost = scratch.path("hosts-and-ghost.txt");
    std::fs::write(
        &with_ghost,
        format!(
            "{}ghost=127.0.0.1:1\n",
            std::fs::read_to_string(&hosts_file)?
        ),
    )?;
    let ssh_with_ghost = scratch.path("ssh-and-ghost.config");
    std::fs::write(
        &ssh_with_ghost,
        format!(
            "Host ghost\n    HostName 127.0.0.1\n    Port 1\n\n{}",
            std::fs::read_to_string(fleet.config())?
        ),
    )?;

    let deploy_started = Instant::now();
    let init = run(scratch.vigie().args(["pki", "init", "--name", "alice"]));
    assert!(init.status.success(), "{}", stderr(&init));
    let deploy = run(scratch
        .vigie()
        .arg("--hosts")
        .arg(&with_ghost)
        .args([
            "--json",
            "deploy",
            "--agent",
            env!("CARGO_BIN_EXE_vigie-agent"),
            "--ssh-config",
        ])
        .arg(&ssh_with_ghost));
    let deploy_took = deploy_started.elapsed();
    assert_eq!(deploy.status.code(), Some(1), "{}", stderr(&deploy));
    let results = json_lines(&deploy);
    assert_eq!(results.len(), 4, "{results:?}");
    let ghost = results
        .iter()
        .find(|l| l["host"] == "ghost")
        .ok_or("ghost's line")?;
    assert_eq!(
        (&ghost["status"], &ghost["step"]),
        (&"failed".into(), &"look".into()),
        "{ghost}"
    );
    for line in results.iter().filter(|l| l["host"] != "ghost") {
        assert_eq!(line["status"], "deployed", "{line}");
    }
    let per_host: Vec<u64> = results
        .iter()
        .filter_map(|l| l["took_ms"].as_u64())
        .collect();
    eprintln!(
        "test hosts ready in {:.1} s; pki init + deploy of 3 hosts (and a fourth that fails) in {:.1} s (per host {per_host:?} ms)",
        hosts_ready.as_secs_f64(),
        deploy_took.as_secs_f64()
    );

    let config = fleet.config();
    let deploy_all = || {
        run(vigie(&[
            "--json",
            "deploy",
            "--agent",
            env!("CARGO_BIN_EXE_vigie-agent"),
            "--ssh-config",
        ])
        .arg(&config))
    };
    // Every host answers over mutual TLS, as itself.
    let ran = run(&mut vigie(&["--json", "exec", "--", "hostname"]));
    assert!(ran.status.success(), "{}", stderr(&ran));
    let mut names: Vec<String> = json_lines(&ran)
        .iter()
        .filter(|l| l["type"] == "output")
        .filter_map(|l| l["text"].as_str().map(|d| d.trim().to_owned()))
        .collect();
    names.sort();
    let mut expected: Vec<String> = NAMES.iter().map(|n| n.to_string()).collect();
    expected.sort();
    assert_eq!(names, expected, "{}", stdout(&ran));

    // An operator with the viewer role reads but does not run.
    let added = run(scratch
        .vigie()
        .args(["pki", "add-operator", "bob", "--role", "viewer"]));
    assert!(added.status.success(), "{}", stderr(&added));
    let bob = scratch.path(".config/vigie/pki/operators/bob.toml");
    let as_bob = |args: &[&str]| {
        let mut command = vigie(&[]);
        command.arg("--config").arg(&bob).args(args);
        run(&mut command)
    };
    let info = as_bob(&["info"]);
    assert!(info.status.success(), "{}", stderr(&info));
    let refused = as_bob(&["exec", "--", "id"]);
    assert!(!refused.status.success());
    assert_eq!(
        stderr(&refused).matches("needs the operator role").count(),
        3,
        "{}",
        stderr(&refused)
    );

    // Revoked and pushed: refused on every host.
    let revoke = run(scratch.vigie().args(["pki", "revoke", "bob"]));
    assert!(revoke.status.success(), "{}", stderr(&revoke));
    let push = run(&mut vigie(&["pki", "push"]));
    assert!(push.status.success(), "{}", stderr(&push));
    assert_eq!(
        stdout(&push).matches("1 revoked").count(),
        3,
        "{}",
        stdout(&push)
    );
    let refused = as_bob(&["info"]);
    assert!(!refused.status.success());
    assert_eq!(
        stderr(&refused).matches("revoked").count(),
        3,
        "{}",
        stderr(&refused)
    );

    // One host's certificate renewed; the others are not due.
    let renew = run(&mut vigie(&[
        "-H", "web2", "pki", "renew", "--all", "--valid", "30d",
    ]));
    assert!(renew.status.success(), "{}", stderr(&renew));
    assert!(stdout(&renew).contains("renewed"), "{}", stdout(&renew));
    let check = run(&mut vigie(&["--json", "hosts", "check"]));
    assert!(check.status.success(), "{}", stderr(&check));
    for line in json_lines(&check) {
        assert_eq!(line["state"], "online", "{line}");
        assert!(line["certificate_not_after_ms"].is_i64(), "{line}");
    }

    // A second deploy leaves every enrolled host alone.
    let again = deploy_all();
    assert!(again.status.success(), "{}", stderr(&again));
    for line in json_lines(&again) {
        assert_eq!(line["status"], "unchanged", "{line}");
    }

    // The invariants, on every host's own files.
    for host in fleet.hosts() {
        let etc = host.private_path("/etc/vigie");
        assert_host_files(&etc, host.name());
        let mode = std::fs::metadata(&etc)?.permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o700, "{}", host.name());
        let listed = fleet.run(host.name(), "ls /etc/vigie");
        assert!(
            listed.contains("agent.pem") && !listed.contains("join.toml"),
            "{listed}"
        );
    }
    let keys: Vec<Vec<u8>> = fleet
        .hosts()
        .iter()
        .map(|h| std::fs::read(h.private_path("/etc/vigie/agent-key.pem")).unwrap_or_default())
        .collect();
    assert!(
        keys[0] != keys[1] && keys[1] != keys[2] && keys[0] != keys[2],
        "each host has its own key"
    );
    Ok(())
}

/// A managed host holds its own key (0600) and nothing that could mint
/// certificates or stand for another identity.
fn assert_host_files(dir: &Path, host: &str) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{host}: {e}")) {
        let path = entry.expect("an entry").path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let text = String::from_utf8_lossy(&std::fs::read(&path).expect("readable")).into_owned();
        if name != "agent-key.pem" {
            assert!(!text.contains("PRIVATE KEY"), "{host}: {name} holds a key");
        }
        assert!(
            !text.contains(vigie::pki::TOKEN_PREFIX),
            "{host}: {name} holds a token"
        );
        assert!(
            !text.contains(vigie::pki::JOIN_PREFIX),
            "{host}: {name} holds a join code"
        );
    }
}
