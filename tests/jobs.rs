//! Detached commands (jobs) against real agents over gRPC: they outlive
//! their client and session, replay byte-exact from any offset, follow live
//! for several clients, cancel group and all, keep their caps, and belong
//! to the identity that started them.

mod support;

use std::{collections::HashMap, path::Path, time::Duration};

use futures::StreamExt;
use tonic::Code;
use vigie::{
    client::{AgentClient, Error, connect},
    command::{EndReason, Event, ExecRequest, OutputStream},
    server::auth::{self, Role},
};

use support::{TestAgent, loopback, marker, wait_none_with, with_token};

fn detached(command: &str) -> ExecRequest {
    ExecRequest {
        detach: true,
        ..ExecRequest::new(command)
    }
}

/// Starts a detached command; returns its job id and pid, leaving the call.
async fn start(client: &AgentClient, command: &str) -> (String, i32) {
    let mut events = client.execute(detached(command)).await.expect("started");
    match events.next().await {
        Some(Ok(Event::Started {
            job_id: Some(id),
            pid,
            ..
        })) => (id, pid),
        other => panic!("expected a started event with a job id, got {other:?}"),
    }
}

/// Everything an attachment sends: (stdout and stderr in order, with
/// offsets checked to follow each other), gaps, and the exit.
async fn attach_all(
    client: &AgentClient,
    id: &str,
    offset: u64,
) -> (Vec<(OutputStream, Vec<u8>)>, u64, vigie::command::Exit) {
    let mut events = client.attach_job(id, offset).await.expect("attached");
    let mut output: Vec<(OutputStream, Vec<u8>)> = Vec::new();
    let mut gaps = 0;
    let mut first = true;
    while let Some(event) = events.next().await {
        match event.expect("an event") {
            Event::Started { job_id, .. } => {
                assert!(first, "started comes first");
                assert_eq!(job_id.as_deref(), Some(id));
            }
            Event::Output { stream, data } => match output.last_mut() {
                Some((s, bytes)) if *s == stream => bytes.extend_from_slice(&data),
                _ => output.push((stream, data.to_vec())),
            },
            Event::Gap { length, .. } => gaps += length,
            Event::Exited(exit) => return (output, gaps, exit),
        }
        first = false;
    }
    panic!("the attachment ended without an exit");
}

/// Waits until `count` processes carry `mark` in their command line.
async fn wait_for_processes(mark: &str, count: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while support::processes_with(mark).len() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{count} processes with {mark}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn joined(output: &[(OutputStream, Vec<u8>)]) -> Vec<u8> {
    output.iter().flat_map(|(_, b)| b.clone()).collect()
}

#[tokio::test]
async fn a_detached_job_outlives_its_client_and_session_and_replays_byte_exact() {
    let agent = TestAgent::start();
    let mark = marker();
    let first = agent.client().await;
    // Output on both streams, in a known order, then a wait that the test
    // ends by touching a file.
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let command = format!(
        "for i in $(seq 1 2000); do echo out $i; done; echo err >&2; \
         while [ ! -e {go} ]; do sleep 0.05; done; echo after; exit 3 # {mark}",
        go = go.display()
    );
    let (id, pid) = start(&first, &command).await;
    // The client disconnects its session and goes away: the job runs on.
    first.disconnect().await.unwrap();
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(support::pid_exists(pid), "the job runs on without a client");

    let second = agent.client().await;
    let jobs = second.list_jobs().await.unwrap();
    let listed = jobs.iter().find(|j| j.job_id == id).expect("listed");
    assert!(listed.running());
    assert!(listed.command.contains(&mark));
    assert_eq!(listed.pid, pid);

    // Two clients attached at once both get everything, live.
    let mut follow = Vec::new();
    for _ in 0..2 {
        let (watcher, id) = (agent.client().await, id.clone());
        follow.push(tokio::spawn(
            async move { attach_all(&watcher, &id, 0).await },
        ));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while second.get_job(&id).await.unwrap().attached < 2 {
        assert!(tokio::time::Instant::now() < deadline, "both attach");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::write(&go, b"").unwrap();
    let mut results = Vec::new();
    for task in follow {
        results.push(task.await.unwrap());
    }

    let mut expected = Vec::new();
    for i in 1..=2000 {
        expected.extend_from_slice(format!("out {i}\n").as_bytes());
    }
    let stdout_len = expected.len();
    expected.extend_from_slice(b"err\nafter\n");
    for (output, gaps, exit) in &results {
        assert_eq!(*gaps, 0);
        assert_eq!(joined(output), expected);
        assert_eq!(output[0].0, OutputStream::Stdout);
        assert_eq!(output[1], (OutputStream::Stderr, b"err\n".to_vec()));
        assert_eq!(exit.exit_code, 3);
        assert_eq!(exit.reason, EndReason::Exited);
    }
    // After the end: replay from 0 and from the middle of a record.
    let (output, _, exit) = attach_all(&second, &id, 0).await;
    assert_eq!(joined(&output), expected);
    assert_eq!(exit.exit_code, 3);
    let middle = (stdout_len / 2 + 3) as u64;
    let (output, _, _) = attach_all(&second, &id, middle).await;
    assert_eq!(joined(&output), expected[middle as usize..]);
    let job = second.get_job(&id).await.unwrap();
    assert_eq!(job.exit.as_ref().map(|e| e.exit_code), Some(3));
    assert_eq!(job.output_bytes, expected.len() as u64);
    assert!(job.expires_at_ms > job.ended_at_ms);

    // Past the end, unknown and malformed ids: their own statuses.
    let past = second
        .attach_job(&id, expected.len() as u64 + 1)
        .await
        .err();
    assert_eq!(code(past), Some(Code::OutOfRange));
    let unknown = second.get_job(&"0".repeat(32)).await.err();
    assert_eq!(code(unknown), Some(Code::NotFound));
    let bad = second.cancel_job("../etc").await.err();
    assert_eq!(code(bad), Some(Code::InvalidArgument));
}

fn code(error: Option<Error>) -> Option<Code> {
    match error {
        Some(Error::Status(status)) => Some(status.code()),
        Some(other) => panic!("expected a status, got {other}"),
        None => None,
    }
}

#[tokio::test]
async fn cancelling_a_job_ends_its_whole_group_and_says_so() {
    let agent = TestAgent::start();
    let mark = marker();
    let client = agent.client().await;
    // A child in the background and a shell that ignores TERM: only the
    // group KILL after the grace ends it all.
    let (id, _) = start(
        &client,
        &format!("trap '' TERM; sleep {mark} & sleep {mark}; wait"),
    )
    .await;
    // The shell and its two sleeps.
    wait_for_processes(&mark, 3).await;
    let job = client.cancel_job(&id).await.unwrap();
    let exit = job.exit.expect("ended by the time the cancel answers");
    assert_eq!(exit.reason, EndReason::Cancelled);
    assert!(
        wait_none_with(&mark, Duration::from_secs(5))
            .await
            .is_empty(),
        "no process of the job is left"
    );
    // A second cancel answers with the job as it ended.
    let again = client.cancel_job(&id).await.unwrap();
    assert_eq!(again.exit.map(|e| e.reason), Some(EndReason::Cancelled));
}

#[tokio::test]
async fn jobs_end_with_the_agent() {
    let agent = TestAgent::start();
    let mark = marker();
    let client = agent.client().await;
    start(&client, &format!("sleep {mark}")).await;
    wait_for_processes(&mark, 1).await;
    drop(client);
    drop(agent);
    assert!(
        wait_none_with(&mark, Duration::from_secs(5))
            .await
            .is_empty()
    );
}

/// An agent whose access file knows two operators and an admin, and its
/// audit log.
fn with_identities() -> (TestAgent, HashMap<&'static str, String>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut file = auth::AccessFile::default();
    let mut tokens = HashMap::new();
    for (name, role) in [
        ("alice", Role::Operator),
        ("bob", Role::Operator),
        ("root", Role::Admin),
        ("eve", Role::Viewer),
    ] {
        let token = auth::generate_token().unwrap();
        file.tokens.push(auth::TokenEntry {
            name: name.into(),
            role,
            sha256: auth::hash_token(&token),
        });
        tokens.insert(name, token);
    }
    let access = dir.path().join("access.toml");
    std::fs::write(&access, toml::to_string(&file).unwrap()).unwrap();
    let audit = dir.path().join("audit.log");
    let agent = TestAgent::with_config(|c| {
        c.access_file = Some(access);
        c.audit_log = Some(audit);
    });
    (agent, tokens, dir)
}

async fn as_identity(agent: &TestAgent, token: &str) -> AgentClient {
    let settings = with_token(token);
    let channel = connect::channel(&loopback(agent.addr()), &settings, false)
        .await
        .unwrap();
    AgentClient::with_channel(
        channel,
        uuid::Uuid::new_v4().to_string(),
        settings.token.as_ref(),
    )
    .unwrap()
}

fn audit_events(path: &Path, event: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["event"] == event)
        .collect()
}

#[tokio::test]
async fn another_identity_can_neither_see_attach_nor_cancel_a_job_unless_admin() {
    let (agent, tokens, dir) = with_identities();
    let mark = marker();
    let alice = as_identity(&agent, &tokens["alice"]).await;
    let bob = as_identity(&agent, &tokens["bob"]).await;
    let eve = as_identity(&agent, &tokens["eve"]).await;
    let root = as_identity(&agent, &tokens["root"]).await;
    let (id, _) = start(&alice, &format!("echo mine; sleep {mark}")).await;
    wait_for_processes(&mark, 1).await;

    assert!(bob.list_jobs().await.unwrap().is_empty());
    assert!(eve.list_jobs().await.unwrap().is_empty());
    for refused in [
        bob.attach_job(&id, 0).await.err(),
        bob.get_job(&id).await.err(),
        bob.cancel_job(&id).await.err(),
        eve.attach_job(&id, 0).await.err(),
    ] {
        assert_eq!(code(refused), Some(Code::PermissionDenied));
    }
    // A viewer cannot start a job nor cancel one (its role stops it at the
    // gate), whoever owns it.
    assert_eq!(
        code(eve.execute(detached("true")).await.err()),
        Some(Code::PermissionDenied)
    );
    assert_eq!(
        code(eve.cancel_job(&id).await.err()),
        Some(Code::PermissionDenied)
    );
    assert!(!support::processes_with(&mark).is_empty(), "still running");

    // The admin sees every identity's jobs, attaches and cancels.
    let all = root.list_jobs().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].identity, "token:alice");
    let mut attached = root.attach_job(&id, 0).await.unwrap();
    assert!(matches!(
        attached.next().await,
        Some(Ok(Event::Started { .. }))
    ));
    let job = root.cancel_job(&id).await.unwrap();
    assert_eq!(job.exit.map(|e| e.reason), Some(EndReason::Cancelled));

    let audit = dir.path().join("audit.log");
    let refused = audit_events(&audit, "job_refused");
    assert_eq!(refused.len(), 4, "{refused:?}");
    assert!(
        refused
            .iter()
            .all(|r| r["identity"] == "token:bob" || r["identity"] == "token:eve")
    );
    let started = audit_events(&audit, "exec_start");
    assert_eq!(started[0]["job_id"], id.as_str());
    let cancelled = audit_events(&audit, "job_cancel");
    assert_eq!(cancelled[0]["identity"], "token:root");
    assert_eq!(audit_events(&audit, "job_attach")[0]["offset"], 0);
    let ended = audit_events(&audit, "exec_end");
    assert_eq!(ended[0]["end_reason"], "cancelled");
}

#[tokio::test]
async fn jobs_are_limited_per_identity_and_finished_ones_are_forgotten_in_time() {
    let agent = TestAgent::with_config(|c| {
        c.max_jobs_per_identity = 2;
        c.job_retention_secs = 1;
    });
    let mark = marker();
    let client = agent.client().await;
    let (a, _) = start(&client, &format!("sleep {mark}")).await;
    start(&client, &format!("sleep {mark}")).await;
    let third = client.execute(detached("true")).await.err();
    assert_eq!(code(third), Some(Code::ResourceExhausted));
    client.cancel_job(&a).await.unwrap();
    // Its room is back, and after its retention it is gone.
    start(&client, "true").await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(code(client.get_job(&a).await.err()), Some(Code::NotFound));
}

#[tokio::test]
async fn a_detached_job_keeps_to_the_exec_allow_list() {
    let agent = TestAgent::with_config(|c| {
        c.exec_allow = [(
            Role::Admin,
            vec![
                vigie::server::policy::AllowRule {
                    detach: true,
                    .."echo *".into()
                },
                "uptime".into(),
            ],
        )]
        .into();
    });
    let client = agent.client().await;
    // An entry allows running detached only when it says so.
    let refused = client.execute(detached("uptime")).await.err();
    assert_eq!(code(refused), Some(Code::PermissionDenied));
    let (id, _) = start(&client, "echo allowed").await;
    let (output, _, exit) = attach_all(&client, &id, 0).await;
    assert_eq!(joined(&output), b"allowed\n");
    assert!(exit.success());
    let refused = client.execute(detached("echo x; id")).await.err();
    assert_eq!(code(refused), Some(Code::PermissionDenied));
}

/// Bytes the files under `dir` hold.
fn du(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => du(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[tokio::test]
async fn a_job_printing_a_gibibyte_keeps_the_agent_within_its_memory_and_spill_caps() {
    const GIB: u64 = 1 << 30;
    const LOG: u64 = 16 << 20;
    const SPILL: u64 = 24 << 20;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {state:?}\njob_log_bytes = {LOG}\njob_memory_bytes = {}\n\
             jobs_memory_bytes = {}\njobs_spill_bytes = {SPILL}\n",
            1 << 20,
            4 << 20
        ),
    )
    .unwrap();
    let agent = support::BinaryAgent::start(&["--config", config.to_str().unwrap()]);
    let client = AgentClient::connect(&agent.url()).await.unwrap();
    let idle = agent.peak_rss_kib();
    let (id, _) = start(&client, &format!("head -c {GIB} /dev/zero")).await;
    // Watch the spill directory while the job runs.
    let mut most_spilled = 0;
    loop {
        most_spilled = most_spilled.max(du(&state));
        if !client.get_job(&id).await.unwrap().running() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let peak = agent.peak_rss_kib();
    assert!(most_spilled > 0, "the log spilled to files");
    assert!(
        most_spilled <= SPILL,
        "spill files held {most_spilled} bytes, over the {SPILL} cap"
    );
    let (output, gap, exit) = attach_all(&client, &id, 0).await;
    let kept: usize = output.iter().map(|(_, b)| b.len()).sum();
    assert!(gap > 0 && kept > 0, "gap {gap}, kept {kept}");
    assert_eq!(
        gap + kept as u64,
        GIB,
        "what is kept follows the gap exactly"
    );
    assert!((kept as u64) <= LOG);
    assert!(output.iter().all(|(_, b)| b.iter().all(|&x| x == 0)));
    assert!(exit.truncated, "the exit says the log dropped output");
    let job = client.get_job(&id).await.unwrap();
    assert_eq!(job.output_bytes, GIB);
    assert_eq!(job.retained_from, gap);
    eprintln!(
        "agent peak RSS: {idle} KiB idle, {peak} KiB after a 1 GiB job; \
         spill at most {most_spilled} bytes"
    );
    assert!(
        peak < idle + 48 * 1024,
        "the agent grew by {} KiB for a 1 GiB job",
        peak - idle
    );
    drop(client);
    agent.stop().await;
    assert_eq!(du(&state.join("jobs")), 0, "spill files go with the agent");
}

mod cli_jobs {
    //! The same through the `vigie` binary: `exec --detach`, `jobs`,
    //! `attach` (which survives its own SIGKILL and detaches on Ctrl-C),
    //! `cancel`.

    use std::{
        io::{BufRead, BufReader},
        process::{Child, Command, Stdio},
        time::{Duration, Instant},
    };

    use super::support::{
        self, TestAgent,
        cli::{Scratch, hosts_arg, json_lines, run, stderr, stdout},
    };

    /// Starts `command` detached on the hosts file's hosts; returns the
    /// fleet job id and each host's job id.
    fn detach(scratch: &Scratch, hosts: &std::path::Path, command: &str) -> (String, Vec<String>) {
        let output = run(scratch
            .vigie()
            .args(hosts_arg(hosts))
            .args(["--json", "exec", "--detach", "--", command]));
        assert!(output.status.success(), "{}", stderr(&output));
        let lines = json_lines(&output);
        let started: Vec<&serde_json::Value> =
            lines.iter().filter(|l| l["type"] == "job").collect();
        assert_eq!(started.len(), 2, "{lines:?}");
        assert!(started.iter().all(|l| l["status"] == "ok"));
        let fleet = lines.last().unwrap()["job"].as_str().unwrap().to_owned();
        let hosts = started
            .iter()
            .map(|l| l["job_id"].as_str().unwrap().to_owned())
            .collect();
        (fleet, hosts)
    }

    fn signal(child: &Child, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Spawns `vigie attach` and waits until it printed `wanted` lines.
    fn attach_until(
        scratch: &Scratch,
        hosts: &std::path::Path,
        job: &str,
        wanted: &[&str],
    ) -> Child {
        let mut child = scratch
            .vigie()
            .args(hosts_arg(hosts))
            .args(["attach", job])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut missing: Vec<&str> = wanted.to_vec();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !missing.is_empty() {
            assert!(Instant::now() < deadline, "still missing {missing:?}");
            let line = lines.next().expect("more output").unwrap();
            missing.retain(|w| *w != line);
        }
        // Keep reading in the background so that the child never blocks.
        std::thread::spawn(move || for _ in lines {});
        child
    }

    #[test]
    fn jobs_started_detached_are_listed_reattached_after_a_sigkill_and_cancelled() {
        let agents = [TestAgent::start(), TestAgent::start()];
        let scratch = Scratch::new();
        let hosts = scratch.hosts(&[("web1", &agents[0]), ("web2", &agents[1])], "");
        let mark = support::marker();
        let go = scratch.path("go");
        let command = format!(
            "echo start; while [ ! -e {} ]; do sleep 0.05; done; echo done # {mark}",
            go.display()
        );
        let (job, host_jobs) = detach(&scratch, &hosts, &command);
        assert_ne!(host_jobs[0], host_jobs[1]);
        let history = std::fs::read_to_string(scratch.path("history.jsonl")).unwrap();
        assert!(history.contains(&job) && history.contains(&host_jobs[0]));

        // An attached client killed outright leaves the jobs running.
        let mut first = attach_until(&scratch, &hosts, &job, &["web1: start", "web2: start"]);
        signal(&first, "KILL");
        first.wait().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !support::processes_with(&mark).is_empty(),
            "the jobs run on"
        );

        // Ctrl-C while attached detaches, says so, and exits 130.
        let mut second = attach_until(&scratch, &hosts, &job[..4], &["web1: start"]);
        let mut err = second.stderr.take().unwrap();
        signal(&second, "INT");
        let status = second.wait().unwrap();
        let mut said = String::new();
        std::io::Read::read_to_string(&mut err, &mut said).unwrap();
        assert_eq!(status.code(), Some(130), "{said}");
        assert!(said.contains(&format!("detached from job {job}")), "{said}");
        assert!(
            !support::processes_with(&mark).is_empty(),
            "the jobs run on"
        );

        let listed = run(scratch.vigie().args(hosts_arg(&hosts)).arg("jobs"));
        let text = stdout(&listed);
        assert!(text.contains(&job) && text.contains("2 running"), "{text}");

        // Let them finish; a new attachment replays everything, then ends
        // with the jobs' status.
        std::fs::write(&go, b"").unwrap();
        let replay = run(scratch
            .vigie()
            .args(hosts_arg(&hosts))
            .args(["attach", &job]));
        assert!(replay.status.success(), "{}", stderr(&replay));
        let text = stdout(&replay);
        for line in ["web1: start", "web1: done", "web2: start", "web2: done"] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
        let states = run(scratch
            .vigie()
            .args(hosts_arg(&hosts))
            .args(["--json", "jobs", &job]));
        let lines = json_lines(&states);
        assert_eq!(lines.len(), 2);
        assert!(
            lines
                .iter()
                .all(|l| l["state"] == "finished" && l["exit_code"] == 0),
            "{lines:?}"
        );

        // Cancel: every host's group is killed and the table says so.
        let other = support::marker();
        let (doomed, _) = detach(&scratch, &hosts, &format!("sleep {other}"));
        let cancelled = run(scratch
            .vigie()
            .args(hosts_arg(&hosts))
            .args(["cancel", &doomed]));
        assert!(cancelled.status.success(), "{}", stderr(&cancelled));
        assert_eq!(stdout(&cancelled).matches("(cancelled)").count(), 2);
        assert!(support::processes_with(&other).is_empty());
        let again = run(scratch
            .vigie()
            .args(hosts_arg(&hosts))
            .args(["cancel", &doomed]));
        assert!(again.status.success());
        assert!(stdout(&again).contains("(cancelled)"));
    }

    #[test]
    fn detach_needs_agents_that_outlive_the_client_and_ids_must_be_known() {
        let scratch = Scratch::new();
        let output = run(scratch.vigie().args(["exec", "--detach", "--", "true"]));
        assert_eq!(output.status.code(), Some(2));
        assert!(stderr(&output).contains("--detach needs agents that outlive"));
        let unknown = run(scratch.vigie().args(["attach", "feedf00d"]));
        assert_eq!(unknown.status.code(), Some(2));
        assert!(stderr(&unknown).contains("no fleet job feedf00d"));
        let staged = run(scratch.vigie().args([
            "-H",
            "127.0.0.1:1",
            "exec",
            "--detach",
            "--batch",
            "2",
            "--",
            "true",
        ]));
        assert_eq!(staged.status.code(), Some(2));
    }
}
