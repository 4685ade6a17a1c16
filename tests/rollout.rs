//! Staged runs through the `vigie` binary against real agents: batches, a
//! failure threshold that stops the rollout with the right hosts not run,
//! resuming exactly those from the history, a canary that fails, and a
//! random order that its seed repeats.

mod support;

use std::net::SocketAddr;

use support::{
    TestAgent,
    cli::{Scratch, hosts_arg, json_lines, run, stderr},
};

/// Twenty hosts h01..h20 in the file's order; h03, h07 and h08 point at a
/// closed port (they fail as unreachable).
fn twenty(scratch: &Scratch, agents: &[TestAgent]) -> std::path::PathBuf {
    let closed: SocketAddr = "127.0.0.1:1".parse().expect("an address");
    let mut live = agents.iter();
    let names: Vec<String> = (1..=20).map(|i| format!("h{i:02}")).collect();
    let hosts: Vec<(&str, SocketAddr)> = names
        .iter()
        .map(|name| {
            let addr = if ["h03", "h07", "h08"].contains(&name.as_str()) {
                closed
            } else {
                live.next().expect("enough agents").addr()
            };
            (name.as_str(), addr)
        })
        .collect();
    scratch.hosts_at(&hosts, "")
}

fn results(lines: &[serde_json::Value]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = lines
        .iter()
        .filter(|l| l["type"] == "result")
        .map(|l| {
            (
                l["host"].as_str().unwrap_or_default().to_owned(),
                l["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_rollout_stops_at_its_threshold_and_resumes_on_the_hosts_not_run() {
    let agents: Vec<TestAgent> = (0..17).map(|_| TestAgent::start()).collect();
    let scratch = Scratch::new();
    let hosts = twenty(&scratch, &agents);
    let output = run(scratch.vigie().args(hosts_arg(&hosts)).args([
        "--json",
        "exec",
        "--batch",
        "5",
        "--max-fail",
        "2",
        "--",
        "echo done",
    ]));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let lines = json_lines(&output);
    let batches: Vec<&serde_json::Value> = lines.iter().filter(|l| l["type"] == "batch").collect();
    assert_eq!(batches.len(), 2, "two batches ran: {batches:?}");
    assert_eq!(
        batches[1]["hosts"],
        serde_json::json!(["h06", "h07", "h08", "h09", "h10"])
    );
    let stopped = lines
        .iter()
        .find(|l| l["type"] == "stopped")
        .expect("a stop");
    assert_eq!(stopped["reason"], "rollout stopped after 3 failures");
    assert_eq!(stopped["not_run"], 10);
    let first_run = results(&lines);
    for (host, status) in &first_run {
        let n: usize = host[1..].parse().expect("a number");
        let expected = match n {
            3 | 7 | 8 => "unreachable",
            1..=10 => "ok",
            _ => "not run",
        };
        assert_eq!(status, expected, "{host}");
    }
    assert_eq!(first_run.len(), 20);
    let summary = lines.last().expect("a summary");
    assert_eq!(summary["not_run"], 10);

    // The history keeps the plan and where it stopped; running the entry
    // again resumes on exactly the hosts not reached.
    let list = run(scratch.vigie().args(["--json", "history", "list"]));
    let entries = json_lines(&list);
    let entry = &entries.last().expect("an entry")["entry"];
    assert_eq!(
        entry["rollout"]["stopped"],
        "rollout stopped after 3 failures"
    );
    assert_eq!(
        entry["rollout"]["spec"]["batch"],
        serde_json::json!({"count": 5})
    );
    let id = entries.len().to_string();
    let resumed = run(scratch
        .vigie()
        .args(hosts_arg(&hosts))
        .args(["--json", "history", "run", &id]));
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    assert!(
        stderr(&resumed).contains("resuming entry"),
        "{}",
        stderr(&resumed)
    );
    let again = results(&json_lines(&resumed));
    let expected: Vec<(String, String)> = (11..=20)
        .map(|i| (format!("h{i:02}"), "ok".to_owned()))
        .collect();
    assert_eq!(again, expected);
}

#[test]
fn a_failed_canary_stops_everything_else() {
    let agents: Vec<TestAgent> = (0..17).map(|_| TestAgent::start()).collect();
    let scratch = Scratch::new();
    let hosts = twenty(&scratch, &agents);
    let output = run(scratch
        .vigie()
        .args(hosts_arg(&hosts))
        .args(["--json", "exec", "--canary", "3", "--", "true"]));
    assert_eq!(output.status.code(), Some(1));
    let lines = json_lines(&output);
    let stopped = lines
        .iter()
        .find(|l| l["type"] == "stopped")
        .expect("a stop");
    assert_eq!(
        stopped["reason"],
        "rollout stopped: the canary had 1 failure"
    );
    assert_eq!(stopped["not_run"], 17);
    let not_run = results(&lines)
        .iter()
        .filter(|(_, s)| s == "not run")
        .count();
    assert_eq!(not_run, 17);
}

#[test]
fn a_random_order_is_repeated_by_its_seed_and_said() {
    let agents: Vec<TestAgent> = (0..17).map(|_| TestAgent::start()).collect();
    let scratch = Scratch::new();
    let hosts = twenty(&scratch, &agents);
    let batches = |seed: &str| {
        let output = run(scratch.vigie().args(hosts_arg(&hosts)).args([
            "--json", "exec", "--batch", "50%", "--order", "random", "--seed", seed, "--", "true",
        ]));
        let lines = json_lines(&output);
        let plan = lines.iter().find(|l| l["type"] == "plan").expect("a plan")["plan"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(plan.contains(&format!("seed {seed}")), "{plan}");
        lines
            .iter()
            .filter(|l| l["type"] == "batch")
            .map(|l| l["hosts"].clone())
            .collect::<Vec<_>>()
    };
    let first = batches("42");
    assert_eq!(first.len(), 2);
    assert_eq!(first, batches("42"));
    assert_ne!(first, batches("7"));
}

/// `--diff`: the largest group is the reference, the others are diffs
/// against it with their hosts named. Two agents in this process share a
/// parent pid for their commands; an agent process of its own does not.
#[test]
fn diff_shows_each_group_against_the_largest() {
    let (a, b) = (TestAgent::start(), TestAgent::start());
    let c = support::BinaryAgent::start(&[]);
    let scratch = Scratch::new();
    let hosts = scratch.hosts_at(&[("a", a.addr()), ("b", b.addr()), ("c", c.addr())], "");
    let command = "printf 'same\\n'; echo $PPID; printf 'end\\n'";
    let output = run(scratch
        .vigie()
        .args(hosts_arg(&hosts))
        .args(["exec", "--diff", "--", command]));
    assert!(output.status.success(), "{}", stderr(&output));
    let text = support::cli::stdout(&output);
    let ours = std::process::id();
    let theirs = c.pid();
    assert!(text.contains("a,b (2) exit 0"), "{text}");
    assert!(
        text.contains("--- a,b (2) exit 0\n+++ c (1) exit 0\n"),
        "{text}"
    );
    assert!(text.contains(&format!("-{ours}\n+{theirs}\n")), "{text}");
    assert!(
        text.contains(" same\n") && text.contains(" end\n"),
        "context lines: {text}"
    );

    let json = run(scratch
        .vigie()
        .args(hosts_arg(&hosts))
        .args(["--json", "exec", "--diff", "--", command]));
    let lines = json_lines(&json);
    let diffs: Vec<&serde_json::Value> = lines.iter().filter(|l| l["type"] == "diff").collect();
    assert_eq!(diffs.len(), 1);
    assert_eq!(diffs[0]["reference"], serde_json::json!(["a", "b"]));
    assert_eq!(diffs[0]["hosts"], serde_json::json!(["c"]));
    assert!(
        diffs[0]["diff"]
            .as_str()
            .is_some_and(|d| d.contains(&format!("+{theirs}")))
    );
}
