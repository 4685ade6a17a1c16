//! Disconnect, Shutdown and Restart: they must work at any time, after any
//! number of commands and while others stream, and leave nothing behind.
//! (The program vigie replaces crashed unless they were sent first.)

mod support;

use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use support::{BinaryAgent, TestAgent, marker, processes_with, wait_none_with, zombie_children};
use tonic::Code;
use vigie::{
    client::{AgentClient, Error, EventStream},
    command::{EndReason, Event, ExecRequest, Exit, OutputStream, Shell},
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Runs `count` commands of many kinds, ten at a time, and checks each
/// outcome: successes, failures, signals, refused requests, stdin, timeouts.
async fn run_mixed_commands(client: &AgentClient, count: usize) {
    let outcomes = stream::iter(0..count)
        .map(|i| {
            let client = client.clone();
            async move {
                let (request, expect): (ExecRequest, Expect) = match i % 8 {
                    0 => (ExecRequest::new("true"), Expect::Code(0, "")),
                    1 => (
                        ExecRequest::new(format!("echo {i}")),
                        Expect::Code(0, "echo"),
                    ),
                    2 => (
                        ExecRequest::new("echo oops >&2; exit 3"),
                        Expect::Code(3, ""),
                    ),
                    3 => (ExecRequest::new("kill -KILL $$"), Expect::Signal(9)),
                    4 => (
                        ExecRequest::new("DOS:dir"),
                        Expect::Status(Code::FailedPrecondition),
                    ),
                    5 => (
                        ExecRequest {
                            stdin: bytes::Bytes::from(format!("{i}\n")),
                            ..ExecRequest::new("cat")
                        },
                        Expect::Code(0, "echo"),
                    ),
                    6 => (
                        ExecRequest {
                            timeout: Some(Duration::from_millis(50)),
                            ..ExecRequest::new("sleep 5")
                        },
                        Expect::TimedOut,
                    ),
                    _ => (
                        ExecRequest {
                            shell: Shell::None,
                            argv: vec!["printf".into(), format!("{i}\n")],
                            ..ExecRequest::default()
                        },
                        Expect::Code(0, "echo"),
                    ),
                };
                (i, expect, client.run(request).await)
            }
        })
        .buffer_unordered(10)
        .collect::<Vec<_>>()
        .await;
    assert_eq!(outcomes.len(), count);
    for (i, expect, result) in outcomes {
        match (expect, result) {
            (Expect::Status(code), Err(Error::Status(status))) => {
                assert_eq!(status.code(), code, "command {i}")
            }
            (Expect::Code(code, check), Ok(run)) => {
                let exit = run.exit.expect("an exit");
                assert_eq!(exit.exit_code, code, "command {i}");
                if check == "echo" {
                    assert_eq!(run.stdout, format!("{i}\n").into_bytes(), "command {i}");
                }
            }
            (Expect::Signal(signal), Ok(run)) => {
                assert_eq!(
                    run.exit.expect("an exit").signal,
                    Some(signal),
                    "command {i}"
                )
            }
            (Expect::TimedOut, Ok(run)) => {
                assert!(run.exit.expect("an exit").timed_out, "command {i}")
            }
            (expect, result) => panic!("command {i}: expected {expect:?}, got {result:?}"),
        }
    }
}

#[derive(Debug)]
enum Expect {
    Code(i32, &'static str),
    Signal(i32),
    Status(Code),
    TimedOut,
}

/// Starts `count` commands that print a line every 50 ms until stopped,
/// and waits until each has printed once.
async fn start_streams(client: &AgentClient, mark: &str, count: usize) -> Vec<EventStream> {
    let mut streams = Vec::new();
    for _ in 0..count {
        let mut stream = client
            .execute(ExecRequest::new(format!(
                "while :; do echo {mark}; sleep 0.05; done"
            )))
            .await
            .expect("a stream starts");
        loop {
            match stream.next().await {
                Some(Ok(Event::Output { .. })) => break,
                Some(Ok(_)) => continue,
                other => panic!("the stream ended early: {other:?}"),
            }
        }
        streams.push(stream);
    }
    streams
}

/// Reads each stream to its end and returns how each command ended.
async fn finish_streams(streams: Vec<EventStream>) -> Vec<Result<Exit, String>> {
    let mut ends = Vec::new();
    for mut stream in streams {
        let mut end = Err("no exited event".to_owned());
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Exited(exit)) => end = Ok(exit),
                Ok(_) => {}
                Err(e) => {
                    end = Err(e.to_string());
                    break;
                }
            }
        }
        ends.push(end);
    }
    ends
}

/// Calls GetSystemInfo until it answers (clients reconnect after a
/// restart), and returns the boot id.
async fn boot_id_after_restart(url: &str, old: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(client) = AgentClient::connect(url).await
            && let Ok(info) = client.system_info().await
            && info.boot_id != old
        {
            return info.boot_id;
        }
        assert!(Instant::now() < deadline, "the agent came back within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn disconnect_ends_only_its_own_session() -> TestResult {
    let agent = TestAgent::start();
    let alice = agent.client().await;
    let bob = agent.client().await;
    let (mark_a, mark_b) = (marker(), marker());
    let mut alice_streams = start_streams(&alice, &mark_a, 2).await;
    let mut bob_streams = start_streams(&bob, &mark_b, 1).await;

    assert_eq!(
        alice.disconnect().await?,
        2,
        "both of alice's commands were cancelled"
    );
    for end in finish_streams(std::mem::take(&mut alice_streams)).await {
        let exit = end?;
        assert_eq!(exit.reason, EndReason::SessionEnded);
        assert_eq!(exit.signal, Some(15));
    }
    assert!(
        processes_with(&mark_a).is_empty(),
        "alice's processes are gone"
    );
    assert!(
        !processes_with(&mark_b).is_empty(),
        "bob's command still runs"
    );
    let still = bob_streams[0].next().await.expect("bob's stream goes on")?;
    assert!(matches!(still, Event::Output { .. }));
    assert_eq!(bob.connection_info().await?.session_running_commands, 1);

    // Alice can go on working: the next call opens a new session.
    let run = alice.run(ExecRequest::new("echo again")).await?;
    assert_eq!(run.stdout, b"again\n");
    drop(bob_streams);
    assert!(
        wait_none_with(&mark_b, Duration::from_secs(3))
            .await
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn a_closed_connection_ends_its_session() -> TestResult {
    let agent = TestAgent::start();
    let watcher = agent.client().await;
    let mark = marker();
    {
        let leaving = agent.client().await;
        let _streams = start_streams(&leaving, &mark, 1).await;
        assert_eq!(watcher.connection_info().await?.session_count, 2);
    }
    // The leaving client's channel is dropped: the agent sees the TCP
    // connection close, cancels the session and kills its command.
    assert!(
        wait_none_with(&mark, Duration::from_secs(5))
            .await
            .is_empty()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while watcher.connection_info().await?.session_count != 1 {
        assert!(Instant::now() < deadline, "the session was forgotten");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test]
async fn restart_after_200_commands_with_10_streams_in_flight() -> TestResult {
    let agent = TestAgent::start();
    let client = agent.client().await;
    run_mixed_commands(&client, 200).await;
    let mark = marker();
    let streams = start_streams(&client, &mark, 10).await;
    let old_boot = client.system_info().await?.boot_id;

    let admin = agent.client().await;
    assert_eq!(admin.restart("test").await?, old_boot, "it answers first");

    for end in finish_streams(streams).await {
        assert_eq!(
            end?.reason,
            EndReason::AgentStopping,
            "each stream got its exit"
        );
    }
    assert!(
        processes_with(&mark).is_empty(),
        "no command survived the restart"
    );
    let new_boot = boot_id_after_restart(&agent.url(), &old_boot).await;
    assert_ne!(new_boot, old_boot);

    // The restarted agent works, and can be restarted again.
    let client = AgentClient::connect(&agent.url()).await?;
    run_mixed_commands(&client, 16).await;
    client.restart("again").await?;
    boot_id_after_restart(&agent.url(), &new_boot).await;
    Ok(())
}

#[tokio::test]
async fn shutdown_after_200_commands_with_10_streams_in_flight() -> TestResult {
    let agent = TestAgent::start();
    let client = agent.client().await;
    run_mixed_commands(&client, 200).await;
    let mark = marker();
    let streams = start_streams(&client, &mark, 10).await;
    let boot = client.system_info().await?.boot_id;

    let admin = agent.client().await;
    assert_eq!(admin.shutdown("test").await?, boot);
    for end in finish_streams(streams).await {
        assert_eq!(end?.reason, EndReason::AgentStopping);
    }
    assert!(processes_with(&mark).is_empty());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !agent.is_finished() {
        assert!(Instant::now() < deadline, "the agent stopped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = AgentClient::connect(&agent.url()).await;
    assert!(
        matches!(refused, Err(Error::Connect { .. })),
        "nothing listens any more: {refused:?}"
    );
    Ok(())
}

#[tokio::test]
async fn calls_after_shutdown_was_asked_are_unavailable_or_refused() -> TestResult {
    let agent = TestAgent::start();
    let client = agent.client().await;
    client.shutdown("test").await?;
    // Whatever the timing, a late call fails cleanly: never a hang or crash.
    let late = tokio::time::timeout(
        Duration::from_secs(10),
        client.run(ExecRequest::new("echo late")),
    )
    .await?;
    match late {
        Err(Error::Status(status)) => assert!(
            matches!(status.code(), Code::Unavailable | Code::Cancelled),
            "{status:?}"
        ),
        Err(Error::Connect { .. } | Error::Transport { .. }) => {}
        Ok(run) => panic!("the agent ran a command after shutdown: {run:?}"),
        Err(other) => panic!("unexpected error {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn the_binary_restarts_in_place_and_stops_cleanly() -> TestResult {
    let mut agent = BinaryAgent::start(&[]);
    let pid = agent.pid();
    let url = agent.url();
    let client = AgentClient::connect(&url).await?;
    run_mixed_commands(&client, 200).await;
    let mark = marker();
    let streams = start_streams(&client, &mark, 10).await;
    let old_boot = client.system_info().await?.boot_id;
    assert_eq!(
        client.connection_info().await?.agent_pid,
        i32::try_from(pid)?,
        "the agent reports its own pid"
    );

    client.restart("test").await?;
    for end in finish_streams(streams).await {
        assert_eq!(end?.reason, EndReason::AgentStopping);
    }
    let again = tokio::task::spawn_blocking(move || {
        let line = agent.next_line();
        (agent, line)
    })
    .await?;
    agent = again.0;
    assert_eq!(
        again.1.trim(),
        format!("listening on {}", agent.addr()),
        "the new process announces the same address"
    );
    let new_boot = boot_id_after_restart(&url, &old_boot).await;
    assert_ne!(new_boot, old_boot);
    let client = AgentClient::connect(&url).await?;
    assert_eq!(
        client.connection_info().await?.agent_pid,
        i32::try_from(pid)?,
        "restarted in place: same process, same socket"
    );
    assert!(processes_with(&mark).is_empty(), "no command survived");
    assert!(zombie_children(pid).is_empty(), "no zombie left");

    run_mixed_commands(&client, 40).await;
    assert!(
        zombie_children(pid).is_empty(),
        "no zombie after more commands"
    );
    let mark = marker();
    let streams = start_streams(&client, &mark, 3).await;
    client.shutdown("test").await?;
    for end in finish_streams(streams).await {
        assert_eq!(end?.reason, EndReason::AgentStopping);
    }
    let status = agent
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("the agent exits");
    assert_eq!(status.code(), Some(0), "Shutdown exits with status 0");
    assert!(processes_with(&mark).is_empty());
    Ok(())
}

#[tokio::test]
async fn the_binary_stops_on_sigterm_and_kills_its_commands() -> TestResult {
    let mut agent = BinaryAgent::start(&[]);
    let client = AgentClient::connect(&agent.url()).await?;
    let mark = marker();
    let streams = start_streams(&client, &mark, 2).await;
    agent.terminate();
    for end in finish_streams(streams).await {
        assert_eq!(end?.reason, EndReason::AgentStopping);
    }
    let status = agent
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("it exits");
    assert_eq!(status.code(), Some(0));
    assert!(processes_with(&mark).is_empty());
    Ok(())
}

#[test]
fn the_binary_refuses_plaintext_beyond_loopback() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_vigie-agent"))
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without TLS"),
        "{stderr}"
    );
    assert!(
        output.stdout.is_empty(),
        "it never announced a listening address"
    );
}

#[tokio::test]
async fn a_hundred_megabytes_arrive_intact_with_bounded_agent_memory() -> TestResult {
    let agent = BinaryAgent::start(&[]);
    let client = AgentClient::connect(&agent.url()).await?;
    let idle_rss = agent.rss_kib();
    // `seq` writes 1..=N, one number per line: about 100 MB for N = 14.5 M.
    // Each line is checked as it arrives, so the test holds little memory
    // and any loss, duplication or reordering is caught.
    const N: u64 = 14_500_000;
    let mut stream = client
        .execute(ExecRequest::new(format!("seq 1 {N}")))
        .await?;
    let mut expected_next = 1u64;
    let mut partial = Vec::new();
    let mut received = 0u64;
    let mut exit = None;
    let mut paused = false;
    while let Some(event) = stream.next().await {
        match event? {
            Event::Output {
                stream: OutputStream::Stdout,
                data,
            } => {
                received += data.len() as u64;
                partial.extend_from_slice(&data);
                let complete = partial
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |p| p + 1);
                for line in partial[..complete]
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                {
                    let n: u64 = std::str::from_utf8(line)?.parse()?;
                    assert_eq!(n, expected_next, "lines arrive in order, none lost");
                    expected_next += 1;
                }
                partial.drain(..complete);
                if !paused && received > 10_000_000 {
                    // A slow reader: the agent must hold back the command
                    // rather than buffer its output.
                    paused = true;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            Event::Exited(e) => exit = Some(e),
            other => assert!(matches!(other, Event::Started { .. }), "{other:?}"),
        }
    }
    let exit = exit.expect("an exit");
    assert!(exit.success());
    assert_eq!(expected_next, N + 1, "every line arrived");
    assert_eq!(exit.stdout_bytes, received);
    assert!(received > 100_000_000, "{received} bytes");
    let peak = agent.peak_rss_kib();
    assert!(
        peak < idle_rss + 64 * 1024,
        "the agent's peak RSS ({peak} KiB, idle {idle_rss} KiB) stays bounded"
    );
    Ok(())
}
