//! The client library driving many real agents on 127.0.0.1:0.

mod support;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use support::{TestAgent, marker, processes_with, wait_none_with};
use vigie::{
    client::{
        ConnectionSettings,
        fleet::{Fleet, HostOutcome, HostState, Outcome, RunEvent, RunOptions, Selector, Summary},
        history::{Entry, EntryKind, History, HostRecord},
        hosts::HostEntry,
    },
    command::ExecRequest,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn entry(name: &str, agent: &TestAgent) -> HostEntry {
    HostEntry::new(name, "127.0.0.1", agent.addr().port())
}

fn fleet_of(entries: Vec<HostEntry>) -> Fleet {
    Fleet::new(entries, |_| ConnectionSettings::default())
}

/// Runs a request and returns each host's outcome and output, by name.
async fn run_all(
    fleet: &Fleet,
    selection: &[usize],
    request: ExecRequest,
    options: RunOptions,
) -> HashMap<String, (HostOutcome, Vec<u8>)> {
    let mut run = fleet.exec(selection, request, options);
    let mut outputs: HashMap<usize, Vec<u8>> = HashMap::new();
    let mut results = HashMap::new();
    while let Some(event) = run.events.recv().await {
        match event {
            RunEvent::Output { host, data, .. } => {
                outputs.entry(host).or_default().extend_from_slice(&data)
            }
            RunEvent::Finished { host, result } => {
                let name = fleet.hosts()[host].name().to_owned();
                results.insert(
                    name,
                    (result.outcome, outputs.remove(&host).unwrap_or_default()),
                );
            }
            RunEvent::Started { .. } => {}
        }
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_to_fifty_agents_with_mixed_outcomes() -> TestResult {
    // 35 ordinary agents, 10 that refuse commands, 5 that will be gone.
    let mut agents = Vec::new();
    for i in 0..50 {
        agents.push(TestAgent::with_config(|c| {
            c.no_exec = (35..45).contains(&i)
        }));
    }
    let mut entries: Vec<HostEntry> = agents
        .iter()
        .enumerate()
        .map(|(i, a)| entry(&format!("n{i:02}"), a))
        .collect();
    // Five more hosts where nothing listens: a check marks them offline.
    for i in 50..55 {
        let free = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        entries.push(HostEntry::new(format!("n{i:02}"), "127.0.0.1", free));
    }
    let fleet = fleet_of(entries);
    let all = fleet.select(&Selector::All)?;
    let mut probes = fleet.check(&all[50..], 16, Duration::from_secs(5));
    while let Some((_, result)) = probes.recv().await {
        assert!(result.is_err());
    }
    // The last five agents stop after the check: they are not known offline.
    for agent in agents.drain(45..) {
        drop(agent);
    }

    let started = Instant::now();
    let results = run_all(
        &fleet,
        &all,
        ExecRequest::new("echo same"),
        RunOptions {
            concurrency: 16,
            deadline: Some(Duration::from_secs(20)),
        },
    )
    .await;
    assert_eq!(results.len(), 55, "every host has exactly one result");
    let mut summary = Summary::default();
    for (name, (outcome, output)) in &results {
        summary.add(outcome);
        let n: usize = name[1..].parse()?;
        match n {
            0..=34 => {
                assert!(
                    matches!(outcome, HostOutcome::Exited(e) if e.success()),
                    "{name}: {outcome:?}"
                );
                assert_eq!(output, b"same\n", "{name}");
            }
            35..=44 => assert!(
                matches!(outcome, HostOutcome::Failed(e) if e.contains("disabled")),
                "{name}: {outcome:?}"
            ),
            45..=49 => assert!(
                matches!(outcome, HostOutcome::Unreachable(_)),
                "{name}: {outcome:?}"
            ),
            _ => assert!(
                matches!(outcome, HostOutcome::Skipped(reason) if reason.starts_with("offline")),
                "{name}: {outcome:?}"
            ),
        }
    }
    assert_eq!(
        summary,
        Summary {
            ok: 35,
            failed: 10,
            skipped: 5,
            unreachable: 5,
            lost: 0,
            cancelled: 0,
            not_run: 0
        }
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    // The unreachable ones are now known offline too.
    assert!(fleet.hosts()[47].is_offline());

    // Grouping, as `vigie exec -b` shows it, in host-name order.
    let mut names: Vec<&String> = results.keys().collect();
    names.sort();
    let groups = vigie::client::run::group_by(names.into_iter().map(|name| {
        let (outcome, output) = &results[name];
        (name.clone(), (output.clone(), outcome.status().as_str()))
    }));
    let sizes: Vec<(usize, &str)> = groups.iter().map(|g| (g.members.len(), g.key.1)).collect();
    assert_eq!(
        sizes,
        vec![
            (35, "ok"),
            (10, "failed"),
            (5, "unreachable"),
            (5, "skipped")
        ],
        "largest group first, then in order of first appearance"
    );
    let mut ok_hosts = groups[0].members.clone();
    ok_hosts.sort();
    assert_eq!(vigie::client::ranges::compact(&ok_hosts), "n[00-34]");
    Ok(())
}

#[tokio::test]
async fn os_prefixed_commands_skip_incompatible_hosts() -> TestResult {
    let agents = [TestAgent::start(), TestAgent::start()];
    let fleet = fleet_of(vec![entry("a", &agents[0]), entry("b", &agents[1])]);
    let all = fleet.select(&Selector::All)?;
    let results = run_all(
        &fleet,
        &all,
        ExecRequest::new("DOS:dir"),
        RunOptions::default(),
    )
    .await;
    for (name, (outcome, _)) in &results {
        assert!(
            matches!(outcome, HostOutcome::Skipped(reason) if reason.contains("needs Windows")),
            "{name}: {outcome:?}"
        );
    }
    assert!(
        matches!(fleet.hosts()[0].status().state, HostState::Online(_)),
        "the OS was learned on the way"
    );
    let results = run_all(
        &fleet,
        &all,
        ExecRequest::new("Linux:echo ok"),
        RunOptions::default(),
    )
    .await;
    assert!(
        results
            .values()
            .all(|(o, out)| o.status() == vigie::client::run::Status::Ok && out == b"ok\n")
    );
    Ok(())
}

#[tokio::test]
async fn cancelling_a_run_kills_every_command() -> TestResult {
    let agents: Vec<TestAgent> = (0..5).map(|_| TestAgent::start()).collect();
    let fleet = fleet_of(
        agents
            .iter()
            .enumerate()
            .map(|(i, a)| entry(&format!("h{i}"), a))
            .collect(),
    );
    let all = fleet.select(&Selector::All)?;
    let mark = marker();
    let mut run = fleet.exec(
        &all,
        ExecRequest::new(format!("sleep {mark}")),
        RunOptions::default(),
    );
    let mut started = 0;
    while started < 5 {
        if let Some(RunEvent::Started { .. }) = run.events.recv().await {
            started += 1;
        }
    }
    // One host first, then the rest.
    run.cancel_host(all[0]);
    let first = loop {
        match run.events.recv().await {
            Some(RunEvent::Finished { host, result }) => break (host, result.outcome),
            Some(_) => continue,
            None => panic!("the run ended early"),
        }
    };
    assert_eq!(first, (all[0], HostOutcome::Cancelled));
    run.cancel();
    let mut cancelled = 1;
    while let Some(event) = run.events.recv().await {
        if let RunEvent::Finished { result, .. } = event {
            assert_eq!(result.outcome, HostOutcome::Cancelled);
            cancelled += 1;
        }
    }
    assert_eq!(cancelled, 5);
    assert!(
        wait_none_with(&mark, Duration::from_secs(5))
            .await
            .is_empty(),
        "no command is left on any agent"
    );
    Ok(())
}

#[tokio::test]
async fn a_per_host_deadline_ends_slow_commands() -> TestResult {
    let agents = [TestAgent::start(), TestAgent::start()];
    let fleet = fleet_of(vec![entry("a", &agents[0]), entry("b", &agents[1])]);
    let all = fleet.select(&Selector::All)?;
    let mark = marker();
    let started = Instant::now();
    let results = run_all(
        &fleet,
        &all,
        ExecRequest::new(format!("echo before; sleep {mark}")),
        RunOptions {
            concurrency: 8,
            deadline: Some(Duration::from_millis(500)),
        },
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    for (name, (outcome, output)) in &results {
        assert!(
            matches!(outcome, HostOutcome::Exited(e) if e.timed_out),
            "{name}: {outcome:?}"
        );
        assert_eq!(output, b"before\n", "the output so far is kept");
    }
    assert!(processes_with(&mark).is_empty());
    Ok(())
}

#[tokio::test]
async fn selections_by_name_range_and_tag() -> TestResult {
    let agent = TestAgent::start();
    let mut tagged = entry("web2", &agent);
    tagged.tags = vec!["web".into()];
    let fleet = fleet_of(vec![entry("web1", &agent), tagged, entry("db1", &agent)]);
    assert_eq!(
        fleet.select(&Selector::Names(vec!["web[1-2]".into()]))?,
        vec![0, 1]
    );
    assert_eq!(fleet.select(&Selector::Tag("web".into()))?, vec![1]);
    assert!(fleet.select(&Selector::Names(vec!["nope".into()])).is_err());
    assert!(fleet.select(&Selector::Tag("nope".into())).is_err());

    // A plain action on a selection.
    let mut answers = fleet.for_each(&[0, 2], 4, None, |client| async move {
        client.system_info().await
    });
    let mut count = 0;
    while let Some((_, outcome)) = answers.recv().await {
        assert!(matches!(outcome, Outcome::Done(_)));
        count += 1;
    }
    assert_eq!(count, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_sees_an_agent_come_and_go() -> TestResult {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let fleet = fleet_of(vec![HostEntry::new("late", "127.0.0.1", port)]);
    let stop = tokio_util::sync::CancellationToken::new();
    fleet.monitor(Duration::from_secs(2), stop.clone());
    let mut status = fleet.hosts()[0].watch();
    let wait_for = |want: fn(&HostState) -> bool| {
        let mut status = status.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(15), status.wait_for(|s| want(&s.state)))
                .await
                .map(|_| ())
        }
    };
    wait_for(|s| matches!(s, HostState::Offline { .. })).await?;
    let agent = TestAgent::with_config(|c| c.listen = format!("127.0.0.1:{port}"));
    wait_for(|s| matches!(s, HostState::Online(_))).await?;
    assert!(fleet.hosts()[0].status().last_seen.is_some());
    drop(agent);
    wait_for(|s| matches!(s, HostState::Offline { .. })).await?;
    stop.cancel();
    let _ = status.borrow_and_update();
    Ok(())
}

#[test]
fn the_history_survives_concurrent_writers() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("history.jsonl");
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let history = History::at(&path);
            std::thread::spawn(move || {
                for i in 0..50 {
                    let mut record = HostRecord {
                        host: format!("w{w}"),
                        status: vigie::client::run::Status::Ok,
                        exit_code: Some(0),
                        signal: None,
                        timed_out: false,
                        truncated: false,
                        error: None,
                        duration_ms: i,
                        output: String::new(),
                        output_truncated: false,
                        job_id: None,
                    };
                    // Large entries, so that interleaved writes would show.
                    record.keep_output(format!("{w}-{i} ").repeat(500).as_bytes());
                    history
                        .append(&Entry {
                            time_ms: i as i64,
                            kind: EntryKind::Command,
                            command: format!("writer {w} entry {i}"),
                            targets: vec![format!("w{w}")],
                            results: vec![record],
                            rollout: None,
                            job: None,
                        })
                        .expect("appended");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().map_err(|_| "a writer panicked")?;
    }
    let loaded = History::at(&path).load()?;
    assert_eq!(loaded.skipped_lines, 0, "no line was torn");
    assert_eq!(loaded.entries.len(), 400);
    for w in 0..8 {
        let mine: Vec<u64> = loaded
            .entries
            .iter()
            .filter(|e| e.targets[0] == format!("w{w}"))
            .map(|e| e.results[0].duration_ms)
            .collect();
        assert_eq!(
            mine,
            (0..50).collect::<Vec<_>>(),
            "writer {w}'s entries, in order"
        );
    }
    Ok(())
}
