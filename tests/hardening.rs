//! Regression tests for the findings of the attacker's review: each test
//! names the finding it pins, reproduces the attack through the real gRPC
//! surface (or the real binaries), and checks that it fails now.

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use support::{
    AccessFixture, BinaryAgent, TestAgent, access_file, loopback, marker, wait_none_with,
    with_token,
};
use tokio_stream::StreamExt;
use tonic::Code;
use vigie::{
    client::{AgentClient, ConnectionSettings, Error, connect},
    command::{Event, ExecRequest, OutputStream, Shell},
    server::{AgentConfig, auth::Role, policy::AllowRule},
    types::ProcessSignal,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The status code of a failed call, or `None` when it succeeded.
fn code_of<T>(result: &Result<T, Error>) -> Option<Code> {
    match result {
        Ok(_) => None,
        Err(e) => Some(e.code().unwrap_or(Code::Unknown)),
    }
}

/// A client of `agent` with `role`'s token, in the session `session`.
async fn client_as(
    agent: &TestAgent,
    access: &AccessFixture,
    role: Role,
    session: &str,
) -> AgentClient {
    let settings = with_token(&access.tokens[&role]);
    let channel = connect::channel(&loopback(agent.addr()), &settings, false)
        .await
        .expect("the agent accepts connections");
    AgentClient::with_channel(channel, session.to_owned(), settings.token.as_ref())
        .expect("a valid session id")
}

/// A random session id.
fn session() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Audit records of `path` whose event is `event`.
fn audit_events(path: &Path, event: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["event"] == event)
        .collect()
}

/// An agent with tokens for every role and an audit log, changed by `change`.
fn guarded_agent(change: impl FnOnce(&mut AgentConfig)) -> (TestAgent, AccessFixture, PathBuf) {
    let access = access_file();
    let audit = access.dir.path().join("audit.jsonl");
    let (file, log) = (access.path.clone(), audit.clone());
    let agent = TestAgent::with_config(move |c| {
        c.access_file = Some(file);
        c.audit_log = Some(log);
        change(c);
    });
    (agent, access, audit)
}

// --- Finding 1: exec allow-list bypass through argv ------------------------

#[tokio::test]
async fn finding_1_a_harmless_argv_beside_a_shell_command_is_refused() -> TestResult {
    let (agent, access, audit) = guarded_agent(|c| {
        c.exec_allow
            .insert(Role::Operator, vec![AllowRule::pattern("uptime")]);
    });
    let operator = client_as(&agent, &access, Role::Operator, &session()).await;
    for shell in [Shell::Default, Shell::None] {
        let attack = ExecRequest {
            command: "id; echo PWNED-$(whoami)".into(),
            argv: vec!["uptime".into()],
            shell,
            ..ExecRequest::default()
        };
        let result = operator.run(attack).await;
        assert_eq!(
            code_of(&result),
            Some(Code::InvalidArgument),
            "{shell:?}: {result:?}"
        );
    }
    assert!(
        audit_events(&audit, "exec_start").is_empty(),
        "nothing started"
    );
    let refused = audit_events(&audit, "exec_refused");
    assert_eq!(refused.len(), 2);
    assert_eq!(refused[0]["command"], "id; echo PWNED-$(whoami)");
    assert_eq!(refused[0]["argv"][0], "uptime");

    // The allowed command runs, and its record names what ran: the program
    // the agent's own PATH gives, as the `started` event says too.
    let ran = operator.run(ExecRequest::new("uptime")).await?;
    assert!(ran.exit.is_some_and(|e| e.success()));
    let started = audit_events(&audit, "exec_start");
    assert_eq!(started.len(), 1);
    assert_eq!(started[0]["command"], "uptime");
    let program = started[0]["argv"][0].as_str().unwrap_or_default();
    assert!(
        program.starts_with('/') && program.ends_with("/uptime"),
        "{program}"
    );
    assert_eq!(started[0]["argv"].as_array().map(Vec::len), Some(1));
    Ok(())
}

// --- Finding 7: the allow-list ignored environment, directory and stdin ---

#[tokio::test]
async fn finding_7_an_allowed_name_cannot_be_made_to_run_another_program() -> TestResult {
    let (agent, access, _audit) = guarded_agent(|c| {
        c.exec_allow.insert(
            Role::Operator,
            vec![
                AllowRule::pattern("uptime"),
                AllowRule {
                    env: vec!["LC_ALL".into()],
                    stdin: true,
                    cwd: vec!["/".into()],
                    ..AllowRule::pattern("cat")
                },
            ],
        );
    });
    // An attacker's "uptime" in a directory of its own.
    let evil = tempfile::tempdir()?;
    let fake = evil.path().join("uptime");
    std::fs::write(&fake, "#!/bin/sh\necho EVIL\n")?;
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let dir = evil.path().to_string_lossy().into_owned();
    let operator = client_as(&agent, &access, Role::Operator, &session()).await;
    let attempts = [
        ExecRequest {
            environment: vec![("PATH".into(), dir.clone())],
            ..ExecRequest::new("uptime")
        },
        ExecRequest {
            environment: vec![("PATH".into(), ".".into())],
            working_directory: Some(dir.clone()),
            ..ExecRequest::new("uptime")
        },
        ExecRequest {
            working_directory: Some(dir.clone()),
            ..ExecRequest::new("./uptime")
        },
        ExecRequest {
            environment: vec![("LD_PRELOAD".into(), format!("{dir}/x.so"))],
            ..ExecRequest::new("cat")
        },
        ExecRequest {
            stdin: bytes::Bytes::from_static(b"input"),
            ..ExecRequest::new("uptime")
        },
    ];
    for attempt in attempts {
        let result = operator.run(attempt.clone()).await;
        if let Ok(ran) = &result {
            assert!(
                !String::from_utf8_lossy(&ran.stdout).contains("EVIL"),
                "the attacker's program ran: {attempt:?}"
            );
        }
        assert_eq!(
            code_of(&result),
            Some(Code::PermissionDenied),
            "{attempt:?}: {result:?}"
        );
    }
    // A working directory is refused unless the entry lists it (a Makefile
    // or a config file there could decide what the program does)...
    let elsewhere = operator
        .run(ExecRequest {
            working_directory: Some(dir.clone()),
            ..ExecRequest::new("uptime")
        })
        .await;
    assert_eq!(
        code_of(&elsewhere),
        Some(Code::PermissionDenied),
        "{elsewhere:?}"
    );
    // ...and what the entry permits is permitted.
    let cat = operator
        .run(ExecRequest {
            environment: vec![("LC_ALL".into(), "C".into())],
            stdin: bytes::Bytes::from_static(b"piped"),
            working_directory: Some("/".into()),
            ..ExecRequest::new("cat")
        })
        .await?;
    assert_eq!(cat.stdout, b"piped");
    Ok(())
}

// --- Finding 2: an operator froze or killed the agent by a thread id -------

/// Sends SIGCONT to a process when dropped, so that a test that froze it
/// never leaves it frozen.
struct Thaw(u32);

impl Drop for Thaw {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

/// The thread ids of a process other than its main thread.
fn threads_of(pid: u32) -> Vec<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .filter(|tid| *tid != pid as i32)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn finding_2_no_thread_of_the_agent_can_be_signalled() -> TestResult {
    let agent = BinaryAgent::start(&[]);
    let _thaw = Thaw(agent.pid());
    let client = AgentClient::connect(&agent.url()).await?;
    let threads = threads_of(agent.pid());
    assert!(!threads.is_empty(), "the agent runs several threads");
    for tid in threads {
        for signal in [ProcessSignal::Stop, ProcessSignal::Kill] {
            let result =
                tokio::time::timeout(Duration::from_secs(5), client.signal_process(tid, signal))
                    .await?;
            assert_eq!(
                code_of(&result),
                Some(Code::FailedPrecondition),
                "thread {tid}, {signal:?}: {result:?}"
            );
        }
    }
    // Still alive and not frozen.
    tokio::time::timeout(Duration::from_secs(5), client.system_info()).await??;
    // Nor its parent (this test), which supervises it.
    let parent = client
        .signal_process(std::process::id() as i32, ProcessSignal::Cont)
        .await;
    assert_eq!(code_of(&parent), Some(Code::PermissionDenied), "{parent:?}");
    Ok(())
}

#[tokio::test]
async fn finding_2_a_restricted_operator_signals_only_the_agents_commands() -> TestResult {
    let (agent, access, audit) = guarded_agent(|c| {
        c.exec_allow
            .insert(Role::Operator, vec![AllowRule::pattern("sleep *")]);
    });
    let operator = client_as(&agent, &access, Role::Operator, &session()).await;
    // A process the agent did not start.
    let mut outsider = Command::new("sleep")
        .arg("30")
        .stdout(Stdio::null())
        .spawn()?;
    let refused = operator
        .signal_process(outsider.id() as i32, ProcessSignal::Kill)
        .await;
    assert_eq!(
        code_of(&refused),
        Some(Code::PermissionDenied),
        "{refused:?}"
    );
    assert!(outsider.try_wait()?.is_none(), "it still runs");
    outsider.kill()?;
    outsider.wait()?;

    // One of its own commands.
    let mark = marker();
    let mut stream = operator
        .execute(ExecRequest::new(format!("sleep {mark}")))
        .await?;
    let Some(Ok(Event::Started { pid, .. })) = stream.next().await else {
        panic!("the command starts");
    };
    operator.signal_process(pid, ProcessSignal::Term).await?;
    let mut exit = None;
    while let Some(event) = stream.next().await {
        if let Event::Exited(e) = event? {
            exit = Some(e);
        }
    }
    assert_eq!(exit.and_then(|e| e.signal), Some(15));
    assert!(
        wait_none_with(&mark, Duration::from_secs(2))
            .await
            .is_empty()
    );

    // Nor a command of another identity.
    let admin = client_as(&agent, &access, Role::Admin, &session()).await;
    let theirs = marker();
    let mut their_stream = admin
        .execute(ExecRequest::new(format!("sleep {theirs}")))
        .await?;
    let Some(Ok(Event::Started { pid: their_pid, .. })) = their_stream.next().await else {
        panic!("the admin's command starts");
    };
    let refused = operator
        .signal_process(their_pid, ProcessSignal::Kill)
        .await;
    assert_eq!(
        code_of(&refused),
        Some(Code::PermissionDenied),
        "{refused:?}"
    );
    drop(their_stream);
    assert!(
        wait_none_with(&theirs, Duration::from_secs(2))
            .await
            .is_empty()
    );

    let signals = audit_events(&audit, "signal");
    assert_eq!(signals.len(), 1);
    assert_eq!(signals[0]["pid"], pid);
    assert_eq!(signals[0]["signal_name"], "SIGTERM");
    // Allow-listed commands run without a shell, from the agent's PATH.
    let command = signals[0]["command"].as_str().unwrap_or_default();
    assert!(command.ends_with(&format!("/sleep {mark}")), "{command}");
    assert_eq!(audit_events(&audit, "signal_refused").len(), 2);
    Ok(())
}

// --- Findings 3 and 4: session exhaustion and hijack -----------------------

#[tokio::test]
async fn finding_3_one_viewer_cannot_lock_everyone_out() -> TestResult {
    let (agent, access, _audit) = guarded_agent(|_| {});
    let settings = with_token(&access.tokens[&Role::Viewer]);
    let channel = connect::channel(&loopback(agent.addr()), &settings, false).await?;
    // The attack: every session the agent allows, on one connection.
    for _ in 0..300 {
        let viewer =
            AgentClient::with_channel(channel.clone(), session(), settings.token.as_ref())?;
        let _ = viewer.system_info().await;
    }
    // And streams that keep sessions busy, as many as it can get.
    let mut watches = Vec::new();
    let mut refused = 0;
    for _ in 0..64 {
        let viewer =
            AgentClient::with_channel(channel.clone(), session(), settings.token.as_ref())?;
        match viewer.watch_metrics(Duration::from_secs(60), false).await {
            Ok(stream) => watches.push(stream),
            Err(e) => {
                assert_eq!(e.code(), Some(Code::ResourceExhausted), "{e}");
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "the viewer hit its limits");
    // Others still get in: an operator runs a command, an admin stops it all.
    let operator = client_as(&agent, &access, Role::Operator, &session()).await;
    assert!(operator.run(ExecRequest::new("true")).await?.exit.is_some());
    let admin = client_as(&agent, &access, Role::Admin, &session()).await;
    admin.connection_info().await?;
    admin.shutdown("test").await?;
    Ok(())
}

#[tokio::test]
async fn finding_4_a_session_belongs_to_the_identity_that_opened_it() -> TestResult {
    let (agent, access, _audit) = guarded_agent(|_| {});
    let shared = session();
    let admin = client_as(&agent, &access, Role::Admin, &shared).await;
    let mark = marker();
    let mut running = admin
        .execute(ExecRequest::new(format!("sleep {mark}")))
        .await?;
    assert!(matches!(
        running.next().await,
        Some(Ok(Event::Started { .. }))
    ));

    // A viewer naming the admin's session ends only a session of its own,
    // and sees no count of others' sessions or commands.
    let viewer = client_as(&agent, &access, Role::Viewer, &shared).await;
    let seen = viewer.connection_info().await?;
    assert_eq!((seen.session_count, seen.running_commands), (1, 0));
    assert_eq!(viewer.disconnect().await?, 0);
    assert_eq!(admin.connection_info().await?.session_running_commands, 1);
    assert_eq!(admin.connection_info().await?.running_commands, 1);

    // A call without the header gets an unguessable session of its
    // connection; naming it from elsewhere reaches nothing either.
    let settings = with_token(&access.tokens[&Role::Admin]);
    let mut raw = vigie::proto::remote_agent_client::RemoteAgentClient::new(
        connect::channel(&loopback(agent.addr()), &settings, false).await?,
    );
    let mut request = tonic::Request::new(vigie::proto::GetConnectionInfoRequest {});
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", access.tokens[&Role::Admin]).parse()?,
    );
    let implicit = raw
        .get_connection_info(request)
        .await?
        .into_inner()
        .session_id;
    assert!(
        implicit.starts_with("conn-") && implicit.len() == 5 + 32,
        "{implicit}"
    );
    for guess in [implicit.as_str(), "conn-1", "conn-2", "conn-3"] {
        let viewer = client_as(&agent, &access, Role::Viewer, guess).await;
        assert_eq!(viewer.disconnect().await?, 0);
    }
    assert_eq!(admin.connection_info().await?.session_running_commands, 1);
    drop(running);
    assert!(
        wait_none_with(&mark, Duration::from_secs(2))
            .await
            .is_empty()
    );
    Ok(())
}

// --- Finding 6: Restart served an inherited socket unchecked --------------

#[tokio::test]
async fn finding_6_a_restart_refuses_a_socket_the_new_config_does_not_name() -> TestResult {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nkill_grace_ms = 300\n")?;
    let log = dir.path().join("agent.log");
    let mut agent =
        BinaryAgent::start_plain_logging(&["--config", config.to_str().unwrap_or_default()], &log);
    let client = AgentClient::connect(&agent.url()).await?;
    // The configuration changes under the running agent...
    std::fs::write(&config, "listen = \"127.0.0.3:0\"\n")?;
    client.restart("test").await?;
    // ...and the restarted process must not keep serving the old socket.
    let status = agent
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("the restarted agent stops");
    assert!(!status.success());
    let text = std::fs::read_to_string(&log)?;
    assert!(
        text.contains("handed over by the restart listens on 127.0.0.1:")
            && text.contains("127.0.0.3:0"),
        "{text}"
    );
    assert!(AgentClient::connect(&agent.url()).await.is_err());
    Ok(())
}

// --- Finding 8: unbounded HTTP/2 streams -----------------------------------

#[tokio::test]
async fn finding_8_public_and_metrics_streams_are_bounded() -> TestResult {
    let access = access_file();
    let file = access.path.clone();
    let path = file.to_str().unwrap_or_default().to_owned();
    let agent = BinaryAgent::start(&["--access-file", &path]);
    let channel = tonic::transport::Endpoint::from_shared(agent.url())?
        .connect()
        .await?;
    let rss_before = agent.rss_kib();
    // Health watches need no credentials: 200 on one connection. (Past a
    // few hundred refusals hyper closes the connection, as a flood.)
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..200 {
        let request = tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        };
        match health.watch(request).await {
            Ok(stream) => open.push(stream.into_inner()),
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
                refused += 1;
            }
        }
    }
    assert_eq!(open.len(), AgentConfig::default().max_public_streams);
    assert_eq!(refused, 200 - open.len());

    // Metric streams at the fastest interval: per identity, and in all.
    let settings = with_token(&access.tokens[&Role::Viewer]);
    let viewer_channel = connect::channel(&loopback(agent.addr()), &settings, false).await?;
    let mut metrics = Vec::new();
    for _ in 0..100 {
        let viewer =
            AgentClient::with_channel(viewer_channel.clone(), session(), settings.token.as_ref())?;
        if let Ok(stream) = viewer
            .watch_metrics(Duration::from_millis(100), false)
            .await
        {
            metrics.push(stream);
        }
    }
    assert_eq!(
        metrics.len(),
        AgentConfig::default().max_streams_per_identity
    );
    let cpu_before = cpu_ticks(agent.pid());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = cpu_ticks(agent.pid()) - cpu_before;
    let rss = agent.rss_kib();
    eprintln!(
        "64 health watches and 16 metric streams at 100 ms: agent RSS {rss_before} -> {rss} KiB, \
         {cpu} CPU ticks (1/100 s) over 2 s"
    );
    assert!(rss < 64 * 1024, "RSS stays bounded: {rss} KiB");
    // Streams closed give their places back.
    drop(open);
    drop(metrics);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let request = tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        };
        if health.watch(request).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "places come back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// User and system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15; the state (field 3) is first here.
    fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_8_a_rapid_reset_flood_is_cut_off_and_the_agent_serves_on() -> TestResult {
    let agent = BinaryAgent::start(&[]);
    let tcp = tokio::net::TcpStream::connect(agent.addr()).await?;
    let (client, connection) = h2::client::handshake(tcp).await?;
    let connection = tokio::spawn(connection);
    let cpu_before = cpu_ticks(agent.pid());
    let mut sent = 0;
    let mut client = client;
    for _ in 0..20_000 {
        let Ok(ready) = client.ready().await else {
            break;
        };
        client = ready;
        let request = http::Request::builder()
            .method("POST")
            .uri(format!(
                "http://{}/grpc.health.v1.Health/Check",
                agent.addr()
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())?;
        let Ok((response, mut stream)) = client.send_request(request, false) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
        drop(response);
        sent += 1;
        if sent % 512 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), connection).await;
    let cpu = cpu_ticks(agent.pid()) - cpu_before;
    let rss = agent.peak_rss_kib();
    eprintln!(
        "rapid reset: {sent} streams opened and reset before the connection ended ({ended:?}); \
         agent peak RSS {rss} KiB, {cpu} CPU ticks"
    );
    assert!(
        matches!(ended, Ok(Ok(Err(_)))),
        "the agent closed the connection during the flood: {ended:?}"
    );
    assert!(rss < 64 * 1024, "RSS stays bounded: {rss} KiB");
    let fresh = AgentClient::connect(&agent.url()).await?;
    fresh.system_info().await?;
    Ok(())
}

// --- Finding 9: the embedded agent listened on loopback TCP ----------------

#[tokio::test]
async fn finding_9_the_embedded_agent_has_no_tcp_port() -> TestResult {
    let home = tempfile::tempdir()?;
    let output = Command::new(env!("CARGO_BIN_EXE_vigie"))
        .args(["--json", "conn"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("VIGIE_HISTORY", home.path().join("history.jsonl"))
        .output()?;
    assert!(output.status.success(), "{output:?}");
    let line: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let listens = line["connection"]["listen_addresses"][0]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(listens.starts_with("unix:/"), "{line}");
    assert_eq!(line["connection"]["identity"], "anonymous");

    // The socket lives in a directory only its owner may enter.
    let agent = vigie::server::PrivateAgent::start(AgentConfig::default())?;
    let dir = agent.path().parent().expect("a directory");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir)?.permissions());
    assert_eq!(mode & 0o777, 0o700);
    let address = connect::Address {
        host: agent.path().to_string_lossy().into_owned(),
        port: 0,
    };
    let client = AgentClient::connect_with(&address, &ConnectionSettings::default()).await?;
    assert!(client.connection_info().await?.listen_addresses[0].starts_with("unix:"));
    // Another user cannot connect (as root, try as nobody).
    if rustix::process::geteuid().is_root() {
        use std::os::unix::process::CommandExt;
        let attempt = Command::new("python3")
            .args([
                "-c",
                "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])",
                &address.host,
            ])
            .uid(65534)
            .gid(65534)
            .output()?;
        let stderr = String::from_utf8_lossy(&attempt.stderr);
        assert!(
            !attempt.status.success() && stderr.contains("PermissionError"),
            "nobody cannot reach the socket: {stderr}"
        );
    }
    Ok(())
}

// --- Finding 10: revocation failed open ------------------------------------

#[tokio::test]
async fn finding_10_a_missing_or_broken_access_file_refuses_everyone() -> TestResult {
    let (agent, access, _audit) = guarded_agent(|_| {});
    let operator = client_as(&agent, &access, Role::Operator, &session()).await;
    operator.system_info().await?;
    let valid = std::fs::read(&access.path)?;

    std::fs::remove_file(&access.path)?;
    let result = operator.system_info().await;
    assert_eq!(code_of(&result), Some(Code::Unauthenticated), "{result:?}");

    std::fs::write(&access.path, "[[token]\nbroken")?;
    let result = operator.system_info().await;
    assert_eq!(code_of(&result), Some(Code::Unauthenticated), "{result:?}");

    // The admin's fix works on the next call.
    std::fs::write(&access.path, valid)?;
    operator.system_info().await?;
    Ok(())
}

// --- Finding 11: log injection ---------------------------------------------

#[tokio::test]
async fn finding_11_command_text_cannot_forge_log_lines() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("agent.log");
    let agent = BinaryAgent::start_logging(&["--log-level", "info"], &log);
    let client = AgentClient::connect(&agent.url()).await?;
    let forged = "2026-12-01T00:00:00.000000Z  WARN vigie: forged";
    client
        .run(ExecRequest::new(format!(
            "true\n{forged}\n\u{1b}]0;pwned\u{7}\u{1b}[2J"
        )))
        .await?;
    client.shutdown("bye\nforged reason").await?;
    drop(client);
    let status = agent.stop().await;
    assert!(status.is_some());
    let text = std::fs::read_to_string(&log)?;
    assert!(text.contains("command started"), "{text}");
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with(forged) || l == "forged reason"),
        "{text}"
    );
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{7}'),
        "{text:?}"
    );
    Ok(())
}

// --- Finding 12: token names were not checked ------------------------------

#[test]
fn finding_12_token_names_cannot_inject_toml_or_paths() -> TestResult {
    let dir = tempfile::tempdir()?;
    let init = Command::new(env!("CARGO_BIN_EXE_vigie-agent"))
        .args(["init", "--listen", "127.0.0.1:0", "--dir"])
        .arg(dir.path())
        .output()?;
    assert!(init.status.success(), "{init:?}");
    let access = dir.path().join("access.toml");
    let before = std::fs::read_dir(dir.path())?.count();
    for name in [
        "evil\"\n[defaults]\nhosts = \"/tmp/x\"",
        "../outside",
        "a/b",
        "",
        "-flag",
        &"x".repeat(65),
    ] {
        let added = Command::new(env!("CARGO_BIN_EXE_vigie-agent"))
            .args(["token", "add", "--role", "operator", "--access"])
            .arg(&access)
            .arg(format!("--name={name}"))
            .output()?;
        assert!(!added.status.success(), "{name:?} was accepted");
        let stderr = String::from_utf8_lossy(&added.stderr);
        assert!(stderr.contains("invalid token name"), "{stderr}");
    }
    assert_eq!(std::fs::read_dir(dir.path())?.count(), before);
    assert!(
        !dir.path()
            .parent()
            .is_some_and(|p| p.join("outside.pem").exists())
    );
    let added = Command::new(env!("CARGO_BIN_EXE_vigie-agent"))
        .args([
            "token",
            "add",
            "--role",
            "operator",
            "--name",
            "alice.ops-1",
            "--access",
        ])
        .arg(&access)
        .output()?;
    assert!(added.status.success(), "{added:?}");
    let file = vigie::server::auth::AccessFile::load(&access)?;
    assert!(file.tokens.iter().any(|t| t.name == "alice.ops-1"));
    assert_eq!(
        std::fs::read_dir(dir.path())?.count(),
        before,
        "a token adds no file (no certificate without a CA key)"
    );
    // Run as root, `token add` keeps the access file readable by the user
    // the agent runs as (an unreadable file would lock everyone out).
    if rustix::process::geteuid().is_root() {
        use std::os::unix::fs::MetadataExt;
        std::os::unix::fs::chown(&access, Some(65534), Some(65534))?;
        let added = Command::new(env!("CARGO_BIN_EXE_vigie-agent"))
            .args([
                "token", "add", "--role", "viewer", "--name", "bob", "--access",
            ])
            .arg(&access)
            .output()?;
        assert!(added.status.success(), "{added:?}");
        let meta = std::fs::metadata(&access)?;
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    }
    Ok(())
}

// --- Finding 13: after Restart the process was named `exe` -----------------

#[tokio::test]
async fn finding_13_a_restarted_agent_keeps_its_name() -> TestResult {
    let agent = BinaryAgent::start(&[]);
    let comm = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let cmdline = |pid: u32| std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert_eq!(comm(agent.pid()).trim(), "vigie-agent");
    let argv_before = cmdline(agent.pid());
    let client = AgentClient::connect(&agent.url()).await?;
    let old = client.system_info().await?.boot_id;
    client.restart("test").await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(client) = AgentClient::connect(&agent.url()).await
            && let Ok(info) = client.system_info().await
            && info.boot_id != old
        {
            break;
        }
        assert!(Instant::now() < deadline, "the agent came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(comm(agent.pid()).trim(), "vigie-agent");
    assert_eq!(cmdline(agent.pid()), argv_before);
    Ok(())
}

// --- The hostile-request shapes never reach a shell (a spot check of the
// planner's property, through the wire) --------------------------------------

#[tokio::test]
async fn an_allow_listed_command_is_never_given_to_a_shell() -> TestResult {
    let (agent, access, _audit) = guarded_agent(|c| {
        c.exec_allow.insert(
            Role::Operator,
            vec![AllowRule::pattern("echo ..."), AllowRule::pattern("tar *")],
        );
    });
    let operator = client_as(&agent, &access, Role::Operator, &session()).await;
    // An option that makes a program run another one needs a rule word of
    // its own: `*` and `...` never match one.
    for attack in [
        "tar --checkpoint-action=exec=id",
        "echo -e x",
        "echo ../../etc/passwd",
    ] {
        let result = operator.run(ExecRequest::new(attack)).await;
        assert_eq!(code_of(&result), Some(Code::PermissionDenied), "{attack}");
    }
    // Quotes and globs that a shell would act on are plain arguments.
    let ran = operator.run(ExecRequest::new("echo '*' \"a  b\"")).await?;
    assert_eq!(ran.stdout, b"* a  b\n");
    let mut events = operator.execute(ExecRequest::new("echo x")).await?;
    let Some(Ok(Event::Started { argv, .. })) = events.next().await else {
        panic!("it starts");
    };
    assert!(argv[0].ends_with("/echo") && argv[1] == "x", "{argv:?}");
    while let Some(event) = events.next().await {
        if let Event::Output { stream, data } = event? {
            assert_eq!((stream, &data[..]), (OutputStream::Stdout, &b"x\n"[..]));
        }
    }
    Ok(())
}
