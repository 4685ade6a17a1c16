//! The `vigie` binary end to end, against real agents on 127.0.0.1:0.

mod support;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use support::{
    TestAgent,
    cli::{Scratch, hosts_arg, json_lines, run, stderr, stdout},
    marker, processes_with, wait_none_with,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[test]
fn exec_prefixes_lines_keeps_stderr_apart_and_fails_when_a_host_fails() {
    let (a, b) = (TestAgent::start(), TestAgent::start());
    let scratch = Scratch::new();
    let hosts = scratch.hosts(&[("web1", &a), ("web2", &b)], "");
    let output =
        run(scratch
            .vigie()
            .args(hosts_arg(&hosts))
            .args(["exec", "--", "echo out; echo err >&2"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    assert_eq!(lines, vec!["web1: out", "web2: out"]);
    let err = stderr(&output);
    assert!(
        err.contains("web1: err") && err.contains("web2: err"),
        "{err}"
    );
    assert!(
        err.contains("2 ok, 0 failed, 0 skipped, 0 unreachable"),
        "{err}"
    );

    let failing = run(scratch
        .vigie()
        .args(hosts_arg(&hosts))
        .args(["exec", "--", "exit 3"]));
    assert_eq!(
        failing.status.code(),
        Some(1),
        "non-zero when a host failed"
    );
    assert!(
        stderr(&failing).contains("web1: exit 3"),
        "{}",
        stderr(&failing)
    );
}

#[test]
fn one_host_behaves_like_ssh() {
    let agent = TestAgent::start();
    let scratch = Scratch::new();
    let output = run(scratch.vigie().args([
        "-H",
        &agent.addr().to_string(),
        "exec",
        "--",
        "printf 'raw\\n'; exit 7",
    ]));
    assert_eq!(output.status.code(), Some(7), "the remote exit status");
    assert_eq!(stdout(&output), "raw\n", "no prefix with one host");
}

#[test]
fn output_without_newlines_is_byte_exact_alone_and_split_with_prefixes_in_a_fleet() {
    // 300,000 bytes with no newline: a single host gets them untouched (as
    // ssh would), several hosts get 64 KiB pieces, each with its prefix,
    // instead of the CLI holding an unbounded line in memory.
    let (a, b) = (TestAgent::start(), TestAgent::start());
    let scratch = Scratch::new();
    let command = "head -c 300000 /dev/zero | tr '\\0' x";
    let alone = run(scratch
        .vigie()
        .args(["-H", &a.addr().to_string(), "exec", "--", command]));
    assert!(alone.status.success(), "{}", stderr(&alone));
    assert_eq!(alone.stdout, vec![b'x'; 300_000], "byte-exact");

    let hosts = scratch.hosts(&[("a", &a), ("b", &b)], "");
    let fleet = run(scratch
        .vigie()
        .args(hosts_arg(&hosts))
        .args(["exec", "--", command]));
    assert!(fleet.status.success(), "{}", stderr(&fleet));
    let text = stdout(&fleet);
    for host in ["a", "b"] {
        let prefix = format!("{host}: ");
        let pieces: Vec<usize> = text
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(|rest| {
                assert!(rest.bytes().all(|c| c == b'x'), "only x after the prefix");
                rest.len()
            })
            .collect();
        assert_eq!(
            pieces,
            vec![65_536, 65_536, 65_536, 65_536, 37_856],
            "{host}'s pieces"
        );
    }
}

#[test]
fn json_output_has_stable_fields() {
    let (a, b) = (TestAgent::start(), TestAgent::start());
    let scratch = Scratch::new();
    let hosts = scratch.hosts(&[("a", &a), ("b", &b)], "down=127.0.0.1:1\n");
    let output = run(scratch
        .vigie()
        .args(hosts_arg(&hosts))
        .args(["--json", "exec", "--", "echo hi"]));
    assert_eq!(output.status.code(), Some(1), "a host is unreachable");
    let lines = json_lines(&output);
    let outputs: Vec<_> = lines.iter().filter(|l| l["type"] == "output").collect();
    assert_eq!(outputs.len(), 2);
    assert!(
        outputs
            .iter()
            .all(|l| l["text"] == "hi" && l["stream"] == "stdout")
    );
    let results: Vec<_> = lines.iter().filter(|l| l["type"] == "result").collect();
    assert_eq!(results.len(), 3);
    let down = results
        .iter()
        .find(|l| l["host"] == "down")
        .expect("down's result");
    assert_eq!(down["status"], "unreachable");
    assert!(
        down["error"]
            .as_str()
            .is_some_and(|e| e.contains("127.0.0.1:1"))
    );
    let summary = lines.last().expect("a summary");
    assert_eq!(summary["type"], "summary");
    assert_eq!(
        (summary["ok"].as_u64(), summary["unreachable"].as_u64()),
        (Some(2), Some(1))
    );

    let info = run(scratch
        .vigie()
        .args(hosts_arg(&hosts))
        .args(["-H", "a", "--json", "info"]));
    let lines = json_lines(&info);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["host"], "a");
    assert_eq!(lines[0]["info"]["os_family"], "linux");
    assert!(lines[0]["info"]["memory"]["total_bytes"].as_u64() > Some(0));

    let check = run(scratch
        .vigie()
        .args(hosts_arg(&hosts))
        .args(["--json", "hosts", "check"]));
    let states: Vec<(String, String)> = json_lines(&check)
        .iter()
        .map(|l| {
            (
                l["host"].as_str().unwrap_or("").to_owned(),
                l["state"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            ("a".to_owned(), "online".to_owned()),
            ("b".to_owned(), "online".to_owned()),
            ("down".to_owned(), "offline".to_owned())
        ]
    );
    assert_eq!(check.status.code(), Some(1));
}

#[test]
fn gathered_output_groups_identical_hosts() {
    let agents: Vec<TestAgent> = (0..4).map(|_| TestAgent::start()).collect();
    let scratch = Scratch::new();
    let named: Vec<(String, &TestAgent)> = agents
        .iter()
        .enumerate()
        .map(|(i, a)| (format!("node{}", i + 1), a))
        .collect();
    let refs: Vec<(&str, &TestAgent)> = named.iter().map(|(n, a)| (n.as_str(), *a)).collect();
    let hosts = scratch.hosts(&refs, "");
    let output = run(scratch.vigie().args(hosts_arg(&hosts)).args([
        "-H",
        "node[1-3]",
        "exec",
        "-b",
        "--",
        "echo same",
    ]));
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("node[1-3] (3) exit 0\n"), "{text}");
    assert_eq!(text.matches("same").count(), 1, "shown once: {text}");
}

#[test]
fn gathered_output_beyond_16_mib_is_grouped_by_all_of_it_and_shown_in_part() {
    // Two hosts print the same 17 MB: one group, its first 16 MiB shown, and
    // a note saying that was not all of it.
    let (a, b) = (TestAgent::start(), TestAgent::start());
    let scratch = Scratch::new();
    let hosts = scratch.hosts(&[("a", &a), ("b", &b)], "");
    let output = run(scratch.vigie().args(hosts_arg(&hosts)).args([
        "exec",
        "-b",
        "--",
        "head -c 17000000 /dev/zero | tr '\\0' x",
    ]));
    assert!(output.status.success(), "{}", stderr(&output));
    let shown: Vec<usize> = output
        .stdout
        .split(|c| *c == b'\n')
        .filter(|line| !line.is_empty() && line.iter().all(|c| *c == b'x'))
        .map(<[u8]>::len)
        .collect();
    assert_eq!(
        shown,
        vec![16 << 20],
        "the first 16 MiB of the group's output"
    );
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        text.matches(" (2) exit 0").count(),
        1,
        "one group of two hosts"
    );
    let err = stderr(&output);
    assert!(
        err.contains("only the first") && err.contains("shown"),
        "{err}"
    );
}

#[test]
fn hosts_add_and_remove_keep_the_file_intact() {
    let agent = TestAgent::start();
    let scratch = Scratch::new();
    let hosts = scratch.hosts(&[("web1", &agent)], "# keep me\nbad:port:x\n");
    let listed = run(scratch
        .vigie()
        .args(hosts_arg(&hosts))
        .args(["hosts", "list"]));
    assert_eq!(listed.status.code(), Some(1), "a bad line makes list fail");
    assert!(stderr(&listed).contains("line 4:"), "{}", stderr(&listed));
    assert!(stdout(&listed).contains("web1"));

    let added =
        run(scratch
            .vigie()
            .args(hosts_arg(&hosts))
            .args(["hosts", "add", "db1", "10.0.0.7:7500"]));
    assert!(added.status.success(), "{}", stderr(&added));
    let removed = run(scratch
        .vigie()
        .args(hosts_arg(&hosts))
        .args(["hosts", "remove", "web1"]));
    assert!(removed.status.success(), "{}", stderr(&removed));
    assert_eq!(
        std::fs::read_to_string(&hosts).expect("readable"),
        "# test fleet\n# keep me\nbad:port:x\ndb1=10.0.0.7:7500\n"
    );
    let missing = run(scratch
        .vigie()
        .args(hosts_arg(&hosts))
        .args(["hosts", "remove", "nope"]));
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr(&missing).contains("no host named \"nope\""));
}

#[test]
fn history_lists_shows_and_reruns() {
    let agent = TestAgent::start();
    let scratch = Scratch::new();
    let hosts = scratch.hosts(&[("h1", &agent)], "");
    let first =
        run(scratch
            .vigie()
            .args(hosts_arg(&hosts))
            .args(["exec", "--", "echo remembered"]));
    assert!(first.status.success());
    let listed = run(scratch.vigie().args(["--json", "history", "list"]));
    let lines = json_lines(&listed);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["id"], 1);
    assert_eq!(lines[0]["entry"]["command"], "echo remembered");
    assert_eq!(lines[0]["entry"]["results"][0]["output"], "remembered\n");
    let shown = run(scratch.vigie().args(["history", "show", "1"]));
    assert!(
        stdout(&shown).contains("    remembered"),
        "{}",
        stdout(&shown)
    );
    let rerun = run(scratch
        .vigie()
        .args(hosts_arg(&hosts))
        .args(["history", "rerun", "1"]));
    assert!(rerun.status.success(), "{}", stderr(&rerun));
    assert_eq!(stdout(&rerun), "remembered\n");
    let listed = run(scratch.vigie().args(["--json", "history"]));
    assert_eq!(json_lines(&listed).len(), 2, "the rerun is recorded too");
    let unknown = run(scratch.vigie().args(["history", "show", "9"]));
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn kill_and_reset_ask_before_touching_several_hosts() {
    let (a, b) = (TestAgent::start(), TestAgent::start());
    let scratch = Scratch::new();
    let hosts = scratch.hosts(&[("a", &a), ("b", &b)], "");
    let refused = run(scratch.vigie().args(hosts_arg(&hosts)).args(["kill"]));
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).contains("--yes"), "{}", stderr(&refused));
    assert!(!a.is_finished() && !b.is_finished(), "nothing was stopped");

    let reset = run(scratch
        .vigie()
        .args(hosts_arg(&hosts))
        .args(["reset", "--yes"]));
    assert!(reset.status.success(), "{}", stderr(&reset));
    assert!(stdout(&reset).contains("a: restarting"));
    let killed = run(scratch
        .vigie()
        .args(hosts_arg(&hosts))
        .args(["-H", "a", "kill"]));
    assert!(
        killed.status.success(),
        "one host needs no confirmation: {}",
        stderr(&killed)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !a.is_finished() {
        assert!(Instant::now() < deadline, "a stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!b.is_finished());
}

#[test]
fn ctrl_c_cancels_every_remote_command() -> TestResult {
    let agents: Vec<TestAgent> = (0..3).map(|_| TestAgent::start()).collect();
    let scratch = Scratch::new();
    let hosts = scratch.hosts(
        &[("a", &agents[0]), ("b", &agents[1]), ("c", &agents[2])],
        "",
    );
    let mark = marker();
    let child = scratch
        .vigie()
        .args(hosts_arg(&hosts))
        .args(["exec", "--", &format!("sleep {mark}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    // Each agent runs `sh -c 'sleep M'` or, with exec, just `sleep M`.
    while processes_with(&mark).len() < 3 {
        assert!(Instant::now() < deadline, "the commands started");
        std::thread::sleep(Duration::from_millis(20));
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()?;
    let output = child.wait_with_output()?;
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("3 cancelled"),
        "{}",
        stderr(&output)
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let left = runtime.block_on(wait_none_with(&mark, Duration::from_secs(5)));
    assert!(left.is_empty(), "left on the agents: {left:?}");
    Ok(())
}

#[test]
fn without_a_hosts_file_an_agent_in_the_process_shows_this_machine() {
    let scratch = Scratch::new();
    let output = run(scratch.vigie().args(["--json", "info", "name"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = json_lines(&output);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("a hostname");
    assert_eq!(lines[0]["host"], "localhost");
    assert_eq!(lines[0]["info"]["hostname"], hostname.trim());
    let text = run(scratch.vigie().args(["exec", "--", "echo local"]));
    assert_eq!(stdout(&text), "local\n");
    assert!(stderr(&text).contains("no hosts file"), "{}", stderr(&text));
}

#[test]
fn the_client_config_from_init_reaches_a_tls_agent() -> TestResult {
    let scratch = Scratch::new();
    let pki = scratch.path("pki");
    vigie::server::init::init(&pki, &[], "127.0.0.1:0")?;
    let dir = pki.clone();
    let agent = TestAgent::with_config(|c| {
        c.tls_cert = Some(dir.join("agent.pem"));
        c.tls_key = Some(dir.join("agent-key.pem"));
        c.client_ca = Some(dir.join("ca.pem"));
        c.access_file = Some(dir.join("access.toml"));
    });
    let config = pki.join("client.toml");
    let output = run(scratch
        .vigie()
        .args(["--config".as_ref(), config.as_os_str()])
        .args(["-H", &agent.addr().to_string(), "--json", "conn"]));
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = json_lines(&output);
    assert_eq!(lines[0]["connection"]["tls"], true);
    assert_eq!(lines[0]["connection"]["identity"], "cert:CN=vigie-admin");

    let no_tls = run(scratch
        .vigie()
        .args(["-H", &agent.addr().to_string(), "info"]));
    assert_eq!(no_tls.status.code(), Some(1));
    assert!(
        stderr(&no_tls).contains(&agent.addr().to_string()),
        "{}",
        stderr(&no_tls)
    );
    Ok(())
}

#[test]
fn completions_and_help_are_there() {
    let scratch = Scratch::new();
    let bash = run(scratch.vigie().args(["completions", "bash"]));
    assert!(bash.status.success());
    assert!(stdout(&bash).contains("_vigie()"));
    let help = run(scratch.vigie().args(["--help"]));
    for word in ["exec", "info", "hosts", "history", "--json", "--hosts"] {
        assert!(stdout(&help).contains(word), "{word} in --help");
    }
}

/// Ten agents behind a hosts file of 300 hosts (30 names each).
fn three_hundred_hosts(scratch: &Scratch) -> (Vec<TestAgent>, std::path::PathBuf) {
    let agents: Vec<TestAgent> = (0..10).map(|_| TestAgent::start()).collect();
    let names: Vec<String> = (1..=300).map(|i| format!("h{i:03}")).collect();
    let hosts: Vec<(&str, std::net::SocketAddr)> = names
        .iter()
        .enumerate()
        .map(|(i, name)| (name.as_str(), agents[i % agents.len()].addr()))
        .collect();
    let file = scratch.hosts_at(&hosts, "");
    (agents, file)
}

/// Runs `vigie --hosts FILE ARGS…` under the shell's `ulimit LIMIT`.
fn under_ulimit(
    scratch: &Scratch,
    limit: &str,
    file: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    let command = scratch.vigie();
    let mut limited = std::process::Command::new("sh");
    limited
        .env_clear()
        .stdin(std::process::Stdio::null())
        .arg("-c")
        .arg(format!("ulimit {limit} && exec \"$0\" \"$@\""))
        .arg(command.get_program())
        .args(hosts_arg(file))
        .args(args);
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => limited.env(key, value),
            None => limited.env_remove(key),
        };
    }
    run(&mut limited)
}

/// With a soft open-file limit of 256 (a hard one above it), a fan-out to
/// 300 hosts used to report some "Too many open files"; the CLI raises
/// its soft limit to the hard one at start, so every host answers and the
/// run is recorded.
#[test]
fn a_low_open_file_limit_fails_no_host() {
    let scratch = Scratch::new();
    let (_agents, file) = three_hundred_hosts(&scratch);
    let output = under_ulimit(
        &scratch,
        "-Sn 256",
        &file,
        &["--json", "--concurrency", "300", "exec", "--", "true"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let summary = json_lines(&output).pop().expect("a summary");
    assert_eq!(summary["ok"], 300, "{summary}");
    let history = std::fs::read_to_string(scratch.path("history.jsonl")).expect("recorded");
    assert_eq!(history.lines().count(), 1);
}

/// When even the hard limit cannot hold a connection to every host, the
/// CLI keeps as many open as it can, closes each host's when it is done
/// and says so once: no host fails, and the history is still written.
#[test]
fn a_hard_limit_below_the_fleet_bounds_connections_instead_of_failing_hosts() {
    let scratch = Scratch::new();
    let (_agents, file) = three_hundred_hosts(&scratch);
    // Hard and soft: the CLI cannot raise it back.
    let limited = |args: &[&str]| under_ulimit(&scratch, "-n 128", &file, args);
    let output = limited(&["--json", "--concurrency", "300", "exec", "--", "echo hi"]);
    let err = stderr(&output);
    assert!(output.status.success(), "{err}");
    let lines = json_lines(&output);
    let said: Vec<&str> = lines
        .iter()
        .filter(|l| l["type"] == "output")
        .filter_map(|l| l["text"].as_str())
        .collect();
    assert_eq!(said.len(), 300, "every host's output");
    assert!(said.iter().all(|text| *text == "hi"));
    let summary = lines.last().expect("a summary");
    assert_eq!(summary["ok"], 300, "{summary}");
    assert_eq!(
        err.matches("open-file limit (128").count(),
        1,
        "said once: {err}"
    );
    assert!(err.contains("at most 32 are kept open at once"), "{err}");
    assert!(!err.contains("Too many open files"), "{err}");
    let history = std::fs::read_to_string(scratch.path("history.jsonl")).expect("recorded");
    assert_eq!(history.lines().count(), 1);

    // Reads go the same way.
    let info = limited(&["--json", "info"]);
    assert!(info.status.success(), "{}", stderr(&info));
    let answers = json_lines(&info)
        .iter()
        .filter(|l| l["status"] == "ok" && l["info"]["os_family"] == "linux")
        .count();
    assert_eq!(answers, 300, "{}", stdout(&info));
}
