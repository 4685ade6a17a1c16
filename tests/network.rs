//! Faults across a real network: test hosts in network namespaces (see
//! `support::netns`), agents set up by `vigie-agent init` with TLS and
//! tokens on their own addresses, and the faults a fleet meets: partitions,
//! frozen and rebooted hosts, a client killed mid-run, half-open
//! connections, slow links and resets. Every test states what the operator
//! must see, and by when.
//!
//! The bounds come from the default keepalives: the client pings an agent
//! after 4 s without a frame while a call is open and gives it up 4 s later
//! (8 s); the agent does the same after 5 s and 5 s (10 s), then ends the
//! connection's commands (TERM, and KILL after the 2 s grace). A margin of
//! 4 s covers a loaded machine.
//!
//! These tests need root, iproute2 and nftables. Without them they say why
//! and pass, except under CI (`CI=true`), where that is a failure.

mod support;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};
use support::{
    marker,
    netns::{self, NetHost},
    processes_with,
    proxy::{FaultProxy, Faults},
    wait_none_with,
};
use vigie::{
    client::{
        AgentClient, ConnectionSettings,
        fleet::{Execution, Fleet, HostOutcome, HostState, Outcome, RunEvent, RunOptions},
        hosts::HostEntry,
    },
    command::ExecRequest,
};

/// The client's default detection: 4 s to ping, 4 s for the answer.
const CLIENT_DETECTION: Duration = Duration::from_secs(8);
/// The agent's default detection: 5 s to ping, 5 s for the answer.
const AGENT_DETECTION: Duration = Duration::from_secs(10);
/// The agent's default TERM-to-KILL grace.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// Room for a loaded machine.
const MARGIN: Duration = Duration::from_secs(4);

fn fleet_of(hosts: &[NetHost]) -> Fleet {
    let settings: HashMap<String, ConnectionSettings> = hosts
        .iter()
        .map(|h| (h.name.clone(), h.settings()))
        .collect();
    Fleet::new(hosts.iter().map(NetHost::entry), move |entry| {
        settings[&entry.name].clone()
    })
}

/// A host's settings for a connection through a proxy: the certificate is
/// still checked against the host's own address.
fn settings_through_proxy(host: &NetHost) -> ConnectionSettings {
    let mut settings = host.settings();
    settings.server_name = Some(host.ip.to_string());
    settings
}

/// A fleet of hosts each reached through its proxy.
fn fleet_through(hosts: &[NetHost], proxies: &[FaultProxy]) -> Fleet {
    let settings: HashMap<String, ConnectionSettings> = hosts
        .iter()
        .map(|h| (h.name.clone(), settings_through_proxy(h)))
        .collect();
    let entries = hosts
        .iter()
        .zip(proxies)
        .map(|(h, p)| HostEntry::new(&h.name, "127.0.0.1", p.addr().port()));
    Fleet::new(entries, move |entry| settings[&entry.name].clone())
}

/// Processes of a host other than its agent: the commands it runs.
fn commands_on(host: &NetHost) -> Vec<i32> {
    let agent = host.agent_pid();
    netns::namespace_pids(&host.namespace())
        .into_iter()
        .filter(|&pid| pid != agent)
        .collect()
}

/// Waits until `done` holds, up to `limit`; returns when it held.
async fn when(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return Some(Instant::now());
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a host did in a run.
#[derive(Debug, Default)]
struct Seen {
    output: Vec<u8>,
    outcome: Option<HostOutcome>,
    started: bool,
    finished: Option<Instant>,
}

/// Reads a run to its end; once every host has started and some output
/// has flowed, runs `fault` (once). Returns each host's part and when the
/// fault was made.
async fn follow(run: &mut Execution, hosts: usize, fault: impl FnOnce()) -> (Vec<Seen>, Instant) {
    let (seen, fault_at) = watch_run(run, hosts, Some(fault)).await;
    (seen, fault_at.expect("every host started and wrote"))
}

/// Reads a run to its end.
async fn collect(run: &mut Execution, hosts: usize) -> Vec<Seen> {
    watch_run(run, hosts, None::<fn()>).await.0
}

async fn watch_run(
    run: &mut Execution,
    hosts: usize,
    mut fault: Option<impl FnOnce()>,
) -> (Vec<Seen>, Option<Instant>) {
    let mut seen: Vec<Seen> = (0..hosts).map(|_| Seen::default()).collect();
    let mut fault_at = None;
    while let Some(event) = run.events.recv().await {
        match event {
            RunEvent::Started { host, .. } => seen[host].started = true,
            RunEvent::Output { host, data, .. } => seen[host].output.extend_from_slice(&data),
            RunEvent::Finished { host, result } => {
                assert!(seen[host].outcome.is_none(), "host {host}: two results");
                seen[host].outcome = Some(result.outcome);
                seen[host].finished = Some(Instant::now());
            }
        }
        if fault_at.is_none()
            && seen.iter().all(|s| s.started)
            && seen.iter().all(|s| !s.output.is_empty())
            && let Some(fault) = fault.take()
        {
            fault();
            fault_at = Some(Instant::now());
        }
    }
    for (i, s) in seen.iter().enumerate() {
        assert!(s.outcome.is_some(), "host {i}: no result");
    }
    (seen, fault_at)
}

/// `count` numbered lines, one every 50 ms: a command that streams.
fn ticker(count: u32) -> ExecRequest {
    ExecRequest::new(format!(
        "i=0; while [ $i -lt {count} ]; do echo line $i; i=$((i+1)); sleep 0.05; done"
    ))
}

fn ticker_output(count: u32) -> Vec<u8> {
    (0..count)
        .map(|i| format!("line {i}\n"))
        .collect::<String>()
        .into_bytes()
}

fn assert_complete(seen: &Seen, name: &str, lines: u32) {
    assert!(
        matches!(&seen.outcome, Some(HostOutcome::Exited(e)) if e.success()),
        "{name}: {:?}",
        seen.outcome
    );
    assert_eq!(
        String::from_utf8_lossy(&seen.output),
        String::from_utf8_lossy(&ticker_output(lines)),
        "{name}: complete and in order"
    );
}

fn assert_lost(seen: &Seen, name: &str) {
    match &seen.outcome {
        Some(HostOutcome::Lost(reason)) => {
            eprintln!("{name}: lost: {reason}");
            assert!(reason.contains("connection lost"), "{name}: {reason}")
        }
        other => panic!("{name}: expected lost, got {other:?}"),
    }
}

/// Detection times of one fault, as measured.
#[derive(Debug, Clone, Copy)]
struct Detection {
    /// Fault to the client's "lost" result.
    client: Duration,
    /// Fault to the last of the host's commands gone.
    agent: Duration,
}

/// Partitions one of three hosts mid-stream: the others finish complete
/// and in order, the cut one is reported lost and its agent ends the
/// orphaned command; once healed it answers again, same agent.
async fn partition_mid_stream(hosts: &[NetHost]) -> Detection {
    let fleet = fleet_of(hosts);
    let boot_before = boot_id_of(&hosts[1]).await;
    let lines = 200; // 10 s of output: the partition lands early in it.
    let mut run = fleet.exec(&[0, 1, 2], ticker(lines), RunOptions::default());
    let (seen, cut) = follow(&mut run, 3, || hosts[1].partition()).await;
    assert_complete(&seen[0], "part1", lines);
    assert_complete(&seen[2], "part3", lines);
    assert_lost(&seen[1], "part2");
    let client = seen[1].finished.expect("a result") - cut;

    let gone = when(AGENT_DETECTION + KILL_GRACE + MARGIN, || {
        commands_on(&hosts[1]).is_empty()
    })
    .await
    .unwrap_or_else(|| panic!("the orphan still runs: {:?}", commands_on(&hosts[1])));
    let agent = gone - cut;

    hosts[1].heal();
    fleet.hosts()[1]
        .probe(Duration::from_secs(10))
        .await
        .expect("the host answers again once healed");
    assert!(matches!(
        fleet.hosts()[1].status().state,
        HostState::Online(_)
    ));
    assert_eq!(
        boot_id_of(&hosts[1]).await,
        boot_before,
        "nothing was restarted"
    );
    Detection { client, agent }
}

/// The boot id, asked over a fresh connection.
async fn boot_id_of(host: &NetHost) -> String {
    let client = AgentClient::connect_with(&host.address(), &host.settings()).await;
    match client {
        Ok(client) => client
            .system_info()
            .await
            .map(|i| i.boot_id)
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

fn assert_detected(
    what: &str,
    detection: Detection,
    client_bound: Duration,
    agent_bound: Duration,
) {
    eprintln!(
        "{what}: client {:?}, agent {:?}",
        detection.client, detection.agent
    );
    assert!(
        detection.client <= client_bound,
        "{what}: the client took {:?} to report the host lost (bound {client_bound:?})",
        detection.client
    );
    assert!(
        detection.agent <= agent_bound,
        "{what}: the agent took {:?} to end the command (bound {agent_bound:?})",
        detection.agent
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_host_is_lost_within_8_s_its_command_ended_and_it_comes_back() {
    if !netns::available("partition") {
        return;
    }
    let hosts = netns::hosts("part", 3, &[]);
    let detection = partition_mid_stream(&hosts).await;
    assert_detected(
        "partition",
        detection,
        CLIENT_DETECTION + MARGIN,
        AGENT_DETECTION + KILL_GRACE + MARGIN,
    );
}

/// Freezes an agent (SIGSTOP) mid-stream: reported lost like a partition;
/// once thawed, the agent sees its client gone, ends the command, and
/// serves again (same agent, not restarted).
async fn freeze_mid_stream(hosts: &[NetHost]) -> Detection {
    let fleet = fleet_of(hosts);
    let lines = 200;
    let boot_before = boot_id_of(&hosts[0]).await;
    let mut run = fleet.exec(&[0, 1], ticker(lines), RunOptions::default());
    let (seen, frozen) = follow(&mut run, 2, || hosts[0].freeze()).await;
    assert_lost(&seen[0], "frozen1");
    assert_complete(&seen[1], "frozen2", lines);
    let client = seen[0].finished.expect("a result") - frozen;

    // The command itself is not frozen; the agent cannot end it until it
    // runs again.
    hosts[0].thaw();
    let thawed = Instant::now();
    let gone = when(KILL_GRACE + MARGIN, || commands_on(&hosts[0]).is_empty())
        .await
        .unwrap_or_else(|| panic!("after SIGCONT the command still runs"));
    let agent = gone - thawed;
    fleet.hosts()[0]
        .probe(Duration::from_secs(10))
        .await
        .expect("the thawed agent serves again");
    assert_eq!(boot_id_of(&hosts[0]).await, boot_before, "the same agent");
    Detection { client, agent }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_agent_is_lost_within_8_s_and_cleans_up_once_thawed() {
    if !netns::available("freeze") {
        return;
    }
    let hosts = netns::hosts("frozen", 2, &[]);
    let detection = freeze_mid_stream(&hosts).await;
    // The agent's figure here is from SIGCONT to the command's end.
    assert_detected(
        "freeze",
        detection,
        CLIENT_DETECTION + MARGIN,
        KILL_GRACE + MARGIN,
    );
}

/// The operator's view of a lost host in `vigie exec`: the other host's
/// output complete, a `lost` line naming the cause, the summary counting it,
/// exit status 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_names_a_lost_host_and_exits_1() {
    use std::io::BufRead;
    if !netns::available("cli lost") {
        return;
    }
    let hosts = netns::hosts("clilost", 2, &[]);
    let scratch = tempfile::tempdir().expect("a directory");
    let (config, hosts_file) = netns::client_files(&hosts, scratch.path());
    let lines = 200;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vigie"))
        .arg("--config")
        .arg(&config)
        .arg("--hosts")
        .arg(&hosts_file)
        .args(["--color", "never", "exec", "--"])
        .arg(ticker(lines).command)
        .env("HOME", scratch.path())
        .env("VIGIE_HISTORY", scratch.path().join("history.jsonl"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("vigie starts");
    let stdout = child.stdout.take().expect("piped");
    let (frozen_tx, frozen_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut told = false;
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.expect("a line");
            seen.push(line);
            if !told
                && seen.iter().any(|l| l.starts_with("clilost1"))
                && seen.iter().any(|l| l.starts_with("clilost2"))
            {
                let _ = frozen_tx.send(());
                told = true;
            }
        }
        seen
    });
    tokio::task::spawn_blocking(move || frozen_rx.recv())
        .await
        .expect("joined")
        .expect("both hosts wrote");
    hosts[0].freeze();
    let status = tokio::task::spawn_blocking(move || {
        let status = child.wait().expect("vigie ends");
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().expect("piped"), &mut stderr)
            .expect("read");
        (status, stderr)
    })
    .await
    .expect("joined");
    let (status, stderr) = status;
    let stdout = reader.join().expect("read");
    hosts[0].thaw();
    let second: Vec<&String> = stdout
        .iter()
        .filter(|l| l.starts_with("clilost2"))
        .collect();
    assert_eq!(
        second.len(),
        lines as usize,
        "the healthy host's every line"
    );
    assert!(
        stderr.contains("clilost1: lost: connection lost while the command ran (no answer"),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 ok, 0 failed, 0 skipped, 0 unreachable, 1 lost"),
        "{stderr}"
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebooted_hosts_go_offline_then_online_spread_out_with_new_boot_ids() {
    if !netns::available("reboot") {
        return;
    }
    let count = 20;
    let mut hosts = netns::hosts("boot", count, &[]);
    let fleet = fleet_of(&hosts);
    let stop = tokio_util::sync::CancellationToken::new();
    let interval = Duration::from_secs(4);
    fleet.monitor(interval, stop.clone());
    let online = |fleet: &Fleet| {
        fleet
            .hosts()
            .iter()
            .filter(|h| matches!(h.status().state, HostState::Online(_)))
            .count()
    };
    assert!(
        when(Duration::from_secs(20), || online(&fleet) == count)
            .await
            .is_some(),
        "every host online at first"
    );
    let boots: Vec<String> = fleet.hosts().iter().map(|h| boot(h)).collect();

    for host in &mut hosts {
        host.crash();
    }
    assert!(
        when(interval + MARGIN, || fleet
            .hosts()
            .iter()
            .all(|h| h.is_offline()))
        .await
        .is_some(),
        "every host seen offline within a check interval"
    );
    // Let the retries back off a little, then bring all of them back at
    // the same instant.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Each host's return is noted by its own task, as it happens.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for host in fleet.hosts() {
        let mut watch = host.watch();
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                if matches!(watch.borrow_and_update().state, HostState::Online(_)) {
                    let _ = tx.send(Instant::now());
                    return;
                }
                if watch.changed().await.is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    for host in &mut hosts {
        host.spawn_agent(&[]);
    }
    for host in &mut hosts {
        host.wait_listening();
    }
    let back = Instant::now();
    let mut came_back = Vec::new();
    while came_back.len() < count {
        let seen = tokio::time::timeout(interval + MARGIN, rx.recv())
            .await
            .expect("every host online again within the longest backoff")
            .expect("a time");
        came_back.push(seen.saturating_duration_since(back));
    }
    stop.cancel();
    came_back.sort();
    let spread = came_back[count - 1] - came_back[0];
    eprintln!("back online after {came_back:?} (spread {spread:?})");
    // Jittered backoff: the reconnects are spread over hundreds of
    // milliseconds, not all in the same instant.
    assert!(spread >= Duration::from_millis(250), "{came_back:?}");
    for (host, old) in fleet.hosts().iter().zip(&boots) {
        let new = boot(host);
        assert!(
            !new.is_empty() && &new != old,
            "{}: a new boot id",
            host.name()
        );
    }
}

fn boot(host: &vigie::client::fleet::Host) -> String {
    match host.status().state {
        HostState::Online(info) => info.boot_id.clone(),
        _ => String::new(),
    }
}

/// Kills a `vigie exec` on many hosts with SIGKILL; returns the time until
/// the last remote command is gone.
async fn kill_client_mid_run(hosts: &[NetHost], scratch: &std::path::Path) -> Duration {
    let (config, hosts_file) = netns::client_files(hosts, scratch);
    let tag = marker();
    let mut client = std::process::Command::new(env!("CARGO_BIN_EXE_vigie"))
        .arg("--config")
        .arg(&config)
        .arg("--hosts")
        .arg(&hosts_file)
        .args(["exec", "--", &format!("sleep {tag}")])
        .env("HOME", scratch)
        .env("VIGIE_HISTORY", scratch.join("history.jsonl"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("vigie starts");
    let remote = |client: u32| {
        processes_with(&tag)
            .into_iter()
            .filter(|&pid| pid as u32 != client)
            .count()
    };
    let pid = client.id();
    assert!(
        when(Duration::from_secs(30), || remote(pid) >= hosts.len())
            .await
            .is_some(),
        "every host started the command"
    );
    client.kill().expect("killed");
    let killed = Instant::now();
    client.wait().expect("reaped");
    let left = wait_none_with(&tag, AGENT_DETECTION + KILL_GRACE + MARGIN).await;
    assert!(left.is_empty(), "orphans: {left:?}");
    killed.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_client_mid_run_ends_every_remote_command() {
    if !netns::available("client kill") {
        return;
    }
    let hosts = netns::hosts("kill", 20, &[]);
    let scratch = tempfile::tempdir().expect("a directory");
    let took = kill_client_mid_run(&hosts, scratch.path()).await;
    eprintln!("client SIGKILL: every remote command gone after {took:?}");
    // The client's kernel closes its sockets: the agents hear of it at
    // once, well within their own detection time.
    assert!(took <= KILL_GRACE + MARGIN, "{took:?}");
}

/// A client whose side of the connection vanishes (no FIN, no RST reaches
/// the agent): returns the time until its command is gone.
async fn half_open(host: &NetHost) -> Duration {
    let proxy = FaultProxy::start(host.addr());
    let settings = settings_through_proxy(host);
    let address = support::loopback(proxy.addr());
    let client = AgentClient::connect_with(&address, &settings)
        .await
        .expect("connects through the proxy");
    let tag = marker();
    let mut events = client
        .execute(ExecRequest::new(format!("sleep {tag}")))
        .await
        .expect("started");
    let _started = futures::StreamExt::next(&mut events).await;
    assert!(
        when(Duration::from_secs(10), || !processes_with(&tag).is_empty())
            .await
            .is_some()
    );
    proxy.vanish_clients();
    let vanished = Instant::now();
    let left = wait_none_with(&tag, AGENT_DETECTION + KILL_GRACE + MARGIN).await;
    assert!(
        left.is_empty(),
        "the command of a vanished client still runs: {left:?}"
    );
    let took = vanished.elapsed();
    drop(events);
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_connection_frees_its_session_and_commands() {
    if !netns::available("half-open") {
        return;
    }
    let hosts = netns::hosts("half", 1, &[]);
    let took = half_open(&hosts[0]).await;
    eprintln!("half-open: the command gone after {took:?}");
    assert!(took <= AGENT_DETECTION + KILL_GRACE + MARGIN, "{took:?}");
    // Its session is gone too: an admin sees only its own.
    let client = AgentClient::connect_with(&hosts[0].address(), &hosts[0].settings())
        .await
        .expect("connects");
    // The process is gone; the agent's books follow within moments.
    let mut info = client.connection_info().await.expect("answers");
    for _ in 0..100 {
        if info.running_commands == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        info = client.connection_info().await.expect("answers");
    }
    assert_eq!(info.session_count, 1, "{info:?}");
    assert_eq!(info.running_commands, 0, "{info:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_link_loses_nothing_and_the_agent_stays_small() {
    if !netns::available("slow link") {
        return;
    }
    let hosts = netns::hosts("slow", 1, &[]);
    let proxy = FaultProxy::start(hosts[0].addr());
    // 100 ms round trip, 8 MB/s towards the client.
    let mut faults = Faults::symmetric(Duration::from_millis(100), None);
    faults.down.bytes_per_second = Some(8_000_000);
    proxy.set(faults);
    let fleet = fleet_through(&hosts, std::slice::from_ref(&proxy));
    let command = "seq 1 12500000"; // 101.4 MB
    let expected = std::process::Command::new("sh")
        .args(["-c", command])
        .output()
        .expect("seq runs locally")
        .stdout;
    let started = Instant::now();
    let mut run = fleet.exec(&[0], ExecRequest::new(command), RunOptions::default());
    let mut hash = Sha256::new();
    let mut bytes = 0usize;
    let mut outcome = None;
    while let Some(event) = run.events.recv().await {
        match event {
            RunEvent::Output { data, .. } => {
                bytes += data.len();
                hash.update(&data);
            }
            RunEvent::Finished { result, .. } => outcome = Some(result.outcome),
            RunEvent::Started { .. } => {}
        }
    }
    let took = started.elapsed();
    let rss = hosts[0].agent_peak_rss_kib();
    eprintln!(
        "slow link: {bytes} bytes in {took:?} ({:.1} MB/s), agent peak RSS {rss} KiB",
        bytes as f64 / took.as_secs_f64() / 1e6
    );
    assert!(
        matches!(&outcome, Some(HostOutcome::Exited(e)) if e.success()),
        "{outcome:?}"
    );
    assert_eq!(bytes, expected.len(), "every byte");
    assert_eq!(
        hex::encode(hash.finalize()),
        hex::encode(Sha256::digest(&expected)),
        "the same bytes in the same order"
    );
    // The agent holds at most its output budget, not the 100 MB: bounded
    // by 48 MiB (it idles at about 10).
    assert!(rss < 48 * 1024, "agent peak RSS {rss} KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_over_a_100_ms_link_costs_one_set_up_not_twenty() {
    if !netns::available("long link") {
        return;
    }
    let hosts = netns::hosts("far", 20, &[]);
    let proxies: Vec<FaultProxy> = hosts
        .iter()
        .map(|h| {
            let proxy = FaultProxy::start(h.addr());
            proxy.set(Faults::symmetric(Duration::from_millis(100), None));
            proxy
        })
        .collect();
    // One host alone first: connection set-up plus the command.
    let one = fleet_through(&hosts[..1], &proxies[..1]);
    let started = Instant::now();
    let mut run = one.exec(&[0], ExecRequest::new("true"), RunOptions::default());
    let seen = collect(&mut run, 1).await;
    assert!(matches!(&seen[0].outcome, Some(HostOutcome::Exited(e)) if e.success()));
    let single = started.elapsed();

    let all = fleet_through(&hosts, &proxies);
    let selection: Vec<usize> = (0..hosts.len()).collect();
    let started = Instant::now();
    let mut run = all.exec(&selection, ExecRequest::new("true"), RunOptions::default());
    let mut done = 0;
    while let Some(event) = run.events.recv().await {
        if let RunEvent::Finished { result, .. } = event {
            assert!(
                matches!(&result.outcome, HostOutcome::Exited(e) if e.success()),
                "{:?}",
                result.outcome
            );
            done += 1;
        }
    }
    let twenty = started.elapsed();
    eprintln!("100 ms RTT: one host {single:?}, twenty hosts {twenty:?}");
    assert_eq!(done, 20);
    // In parallel: about one host's time, far from twenty in a row.
    assert!(
        twenty < single * 3 + Duration::from_millis(500),
        "one {single:?}, twenty {twenty:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_is_a_clear_error_reads_are_retried_and_commands_never_rerun() {
    if !netns::available("reset") {
        return;
    }
    let hosts = netns::hosts("reset", 1, &[]);
    let proxy = FaultProxy::start(hosts[0].addr());
    let fleet = fleet_through(&hosts, std::slice::from_ref(&proxy));
    let runs = tempfile::NamedTempFile::new().expect("a file");
    let path = runs.path().display().to_string();

    // A command reset mid-stream: one clear per-host error, and it ran once.
    let request = ExecRequest::new(format!(
        "echo ran >> {path}; while :; do echo tick; sleep 0.05; done"
    ));
    let mut run = fleet.exec(&[0], request, RunOptions::default());
    let (seen, _) = follow(&mut run, 1, || proxy.reset_all()).await;
    match &seen[0].outcome {
        Some(HostOutcome::Lost(reason)) => assert!(
            reason.contains("reset") && reason.contains("not re-run"),
            "{reason}"
        ),
        other => panic!("expected lost: {other:?}"),
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        std::fs::read_to_string(runs.path()).expect("read"),
        "ran\n",
        "the command ran exactly once"
    );
    assert!(
        when(KILL_GRACE + MARGIN, || commands_on(&hosts[0]).is_empty())
            .await
            .is_some(),
        "the agent ended the reset command"
    );

    // A read whose request is reset is tried again on a new connection.
    fleet.hosts()[0]
        .probe(Duration::from_secs(10))
        .await
        .expect("online");
    let before = proxy.accepted();
    proxy.reset_next_request();
    let mut answers = fleet.read_each(&[0], 1, Some(Duration::from_secs(10)), |c| async move {
        c.system_info().await
    });
    let (_, outcome) = answers.recv().await.expect("an answer");
    assert!(matches!(outcome, Outcome::Done(_)), "{:?}", outcome.error());
    assert_eq!(
        proxy.accepted(),
        before + 1,
        "one new connection for the retry"
    );

    // A change is never tried twice: the same reset is the caller's error.
    let before = proxy.accepted();
    proxy.reset_next_request();
    let mut changes = fleet.for_each(&[0], 1, Some(Duration::from_secs(10)), |c| async move {
        c.system_info().await
    });
    let (_, outcome) = changes.recv().await.expect("an answer");
    let error = outcome.error().expect("the reset is reported");
    assert!(error.contains("reset"), "{error}");
    assert_eq!(proxy.accepted(), before, "no second connection, no retry");
}

/// The keepalive of both sides, set short, over a call that sends nothing
/// for a while: no side polices the other's pings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frequent_pings_on_a_quiet_call_trip_no_policing() {
    let agent = support::TestAgent::with_config(|c| {
        c.keepalive_interval_ms = 500;
        c.keepalive_timeout_ms = 500;
    });
    let settings = ConnectionSettings {
        keepalive_interval_ms: Some(500),
        keepalive_timeout_ms: Some(500),
        ..ConnectionSettings::default()
    };
    let client = AgentClient::connect_with(&support::loopback(agent.addr()), &settings)
        .await
        .expect("connects");
    let collected = client
        .run(ExecRequest::new("sleep 4; echo quiet"))
        .await
        .expect("the quiet call survives eight pings each way");
    assert_eq!(collected.stdout, b"quiet\n");

    // Out of range is refused with the setting's name.
    let bad = ConnectionSettings {
        keepalive_interval_ms: Some(10),
        ..ConnectionSettings::default()
    };
    let error = AgentClient::connect_with(&support::loopback(agent.addr()), &bad)
        .await
        .expect_err("refused");
    assert!(
        error.to_string().contains("keepalive_interval_ms"),
        "{error}"
    );
}

/// Measures each fault's detection time, the median of several runs
/// (`VIGIE_DETECTION_RUNS`, 5 by default), and prints the table that
/// docs/BENCHMARKS.md shows. Not part of the default run:
/// `cargo test --release --test network -- --ignored --nocapture detection`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (several minutes), not a check"]
async fn detection_times() {
    if !netns::available("detection times") {
        return;
    }
    let runs: usize = std::env::var("VIGIE_DETECTION_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let mut rows: Vec<(&str, &str, Duration)> = Vec::new();

    let hosts = netns::hosts("mpart", 3, &[]);
    let measured: Vec<Detection> = {
        let mut all = Vec::new();
        for _ in 0..runs {
            all.push(partition_mid_stream(&hosts).await);
        }
        all
    };
    rows.push((
        "partition mid-stream",
        "client reports the host lost",
        median(measured.iter().map(|d| d.client).collect()),
    ));
    rows.push((
        "partition mid-stream",
        "agent has ended the orphaned command",
        median(measured.iter().map(|d| d.agent).collect()),
    ));
    drop(hosts);

    let hosts = netns::hosts("mfreeze", 2, &[]);
    let mut measured = Vec::new();
    for _ in 0..runs {
        measured.push(freeze_mid_stream(&hosts).await);
    }
    rows.push((
        "agent frozen (SIGSTOP)",
        "client reports the host lost",
        median(measured.iter().map(|d| d.client).collect()),
    ));
    rows.push((
        "agent frozen, then SIGCONT",
        "agent has ended the command (from SIGCONT)",
        median(measured.iter().map(|d| d.agent).collect()),
    ));
    drop(hosts);

    let hosts = netns::hosts("mhalf", 1, &[]);
    let mut measured = Vec::new();
    for _ in 0..runs {
        measured.push(half_open(&hosts[0]).await);
    }
    rows.push((
        "client vanishes (half-open)",
        "agent has ended the command",
        median(measured),
    ));
    drop(hosts);

    let hosts = netns::hosts("mkill", 20, &[]);
    let scratch = tempfile::tempdir().expect("a directory");
    let mut measured = Vec::new();
    for _ in 0..runs {
        measured.push(kill_client_mid_run(&hosts, scratch.path()).await);
    }
    rows.push((
        "client SIGKILLed mid-run, 20 hosts",
        "every remote command ended",
        median(measured),
    ));
    drop(hosts);

    let mut hosts = netns::hosts("mcrash", 2, &[]);
    let mut measured = Vec::new();
    for _ in 0..runs {
        let fleet = fleet_of(&hosts);
        let mut run = fleet.exec(&[0, 1], ticker(100), RunOptions::default());
        let (seen, crashed) = follow(&mut run, 2, || hosts[0].crash()).await;
        assert!(
            matches!(seen[0].outcome, Some(HostOutcome::Lost(_))),
            "{:?}",
            seen[0].outcome
        );
        measured.push(seen[0].finished.expect("a result") - crashed);
        hosts[0].start_agent(&[]);
    }
    rows.push((
        "host power cut (every process killed)",
        "client reports the host lost",
        median(measured),
    ));

    let hosts = netns::hosts("mreset", 1, &[]);
    let proxy = FaultProxy::start(hosts[0].addr());
    let mut measured = Vec::new();
    for _ in 0..runs {
        let fleet = fleet_through(&hosts, std::slice::from_ref(&proxy));
        let mut run = fleet.exec(&[0], ticker(100), RunOptions::default());
        let (seen, reset) = follow(&mut run, 1, || proxy.reset_all()).await;
        assert!(
            matches!(seen[0].outcome, Some(HostOutcome::Lost(_))),
            "{:?}",
            seen[0].outcome
        );
        measured.push(seen[0].finished.expect("a result") - reset);
    }
    rows.push((
        "connection reset mid-stream",
        "client reports the host lost",
        median(measured),
    ));

    println!("\n| fault | what is detected | median of {runs} |");
    println!("|---|---|---|");
    for (fault, what, time) in rows {
        if time < Duration::from_secs(1) {
            println!("| {fault} | {what} | {} ms |", time.as_millis().max(1));
        } else {
            println!("| {fault} | {what} | {:.2} s |", time.as_secs_f64());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_cut_by_a_partition_fails_in_bounded_time_leaves_no_target_and_resumes() {
    if !netns::available("push partition") {
        return;
    }
    let mut host = NetHost::create("pushcut1");
    let root = host.dir.path().join("files");
    std::fs::create_dir(&root).expect("a root");
    let root = root.canonicalize().expect("canonical");
    let config = host.init_dir().join("agent.toml");
    let mut text = std::fs::read_to_string(&config).expect("init's config");
    text.push_str(&format!(
        "\n[file_roots]\nadmin = [{:?}]\n",
        root.display().to_string()
    ));
    std::fs::write(&config, text).expect("config");
    host.start_agent(&[]);
    let scratch = tempfile::tempdir().expect("a directory");
    let (client_config, hosts_file) =
        netns::client_files(std::slice::from_ref(&host), scratch.path());
    // 512 MiB: long enough to cut in the middle, over mutual TLS.
    let local = scratch.path().join("payload");
    {
        use std::io::Write;
        let mut file = std::io::BufWriter::new(std::fs::File::create(&local).expect("payload"));
        let block: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
        for n in 0..512u32 {
            let mut this = block.clone();
            this[..4].copy_from_slice(&n.to_le_bytes());
            file.write_all(&this).expect("written");
        }
    }
    let target = root.join("payload");
    let push = || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_vigie"));
        command
            .arg("--config")
            .arg(&client_config)
            .arg("--hosts")
            .arg(&hosts_file)
            .args(["--json", "push"])
            .arg(&local)
            .arg(&target)
            .env("HOME", scratch.path())
            .env("VIGIE_HISTORY", scratch.path().join("history.jsonl"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command
    };
    let child = push().spawn().expect("vigie starts");
    let uploads = root.join(".vigie-uploads");
    let started = when(Duration::from_secs(60), || {
        std::fs::read_dir(&uploads)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .and_then(|e| e.metadata().ok())
            .is_some_and(|m| m.len() >= 16 << 20)
    })
    .await;
    assert!(started.is_some(), "the upload got going");
    host.partition();
    let cut = Instant::now();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().expect("vigie ends"))
        .await
        .expect("joined");
    let took = cut.elapsed();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let line: serde_json::Value = serde_json::from_slice(
        output
            .stdout
            .split(|&b| b == b'\n')
            .next()
            .expect("a result line"),
    )
    .expect("JSON");
    assert_ne!(line["status"], "ok", "{line}");
    assert!(
        line["error"]
            .as_str()
            .is_some_and(|e| e.contains("pushing the same file again resumes")),
        "{line}"
    );
    eprintln!("push cut by a partition: {line} after {took:?}");
    assert!(
        took <= CLIENT_DETECTION + MARGIN,
        "the push took {took:?} to give the host up: {line}"
    );
    assert!(!target.exists(), "no partial target");

    // Healed: once the agent has noticed the cut it keeps what arrived,
    // and the same push resumes from there.
    host.heal();
    let kept = when(AGENT_DETECTION + MARGIN + Duration::from_secs(60), || {
        support::released_partial(&root).is_some()
    })
    .await;
    assert!(kept.is_some(), "the cut upload is kept for a resume");
    let kept = support::released_partial(&root).expect("kept");
    assert!(kept >= 16 << 20, "{kept} bytes kept");
    let mut again = push();
    let output = tokio::task::spawn_blocking(move || again.output().expect("vigie runs"))
        .await
        .expect("joined");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        Sha256::digest(std::fs::read(&target).expect("landed")),
        Sha256::digest(std::fs::read(&local).expect("local"))
    );
    assert!(!uploads.exists(), "nothing left beside the target");
    let resumed: Vec<u64> = host
        .audit()
        .iter()
        .filter(|r| r["event"] == "file_put")
        .filter_map(|r| r["offset"].as_u64())
        .collect();
    assert_eq!(resumed.len(), 1, "{resumed:?}");
    assert!(resumed[0] >= 16 << 20 && resumed[0] <= kept, "{resumed:?}");
}
