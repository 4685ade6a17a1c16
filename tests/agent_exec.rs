//! Execute against a real agent on 127.0.0.1:0: output, exit statuses,
//! timeouts, cancellation, prefixes and bad input.

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use support::{TestAgent, marker, processes_with, wait_none_with};
use tonic::Code;
use vigie::{
    client::{AgentClient, Error},
    command::{EndReason, Event, ExecRequest, Exit, OsFamily, OutputStream, Shell},
    proto,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Runs a command and returns every event, checking the stream's shape:
/// one `started` first, one `exited` last, nothing after it.
async fn events_of(client: &AgentClient, request: ExecRequest) -> Result<Vec<Event>, Error> {
    let mut stream = client.execute(request).await?;
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event?);
    }
    assert!(
        matches!(events.first(), Some(Event::Started { pid, .. }) if *pid > 0),
        "the first event is `started`: {events:?}"
    );
    let exits = events
        .iter()
        .filter(|e| matches!(e, Event::Exited(_)))
        .count();
    assert_eq!(exits, 1, "exactly one `exited` event");
    assert!(
        matches!(events.last(), Some(Event::Exited(_))),
        "`exited` is last"
    );
    Ok(events)
}

fn exit_of(events: &[Event]) -> &Exit {
    match events.last() {
        Some(Event::Exited(exit)) => exit,
        other => panic!("no exit: {other:?}"),
    }
}

fn output_of(events: &[Event], which: OutputStream) -> String {
    let bytes: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            Event::Output { stream, data } if *stream == which => Some(data.to_vec()),
            _ => None,
        })
        .flatten()
        .collect();
    String::from_utf8(bytes).expect("test output is UTF-8")
}

fn status_code(result: Result<impl std::fmt::Debug, Error>) -> Code {
    match result {
        Err(Error::Status(status)) => status.code(),
        other => panic!("expected an error status, got {other:?}"),
    }
}

#[tokio::test]
async fn true_exits_zero_with_no_output() -> TestResult {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let events = events_of(&client, ExecRequest::new("true")).await?;
    assert_eq!(events.len(), 2, "{events:?}");
    let exit = exit_of(&events);
    assert!(exit.success());
    assert_eq!(exit.reason, EndReason::Exited);
    assert_eq!((exit.stdout_bytes, exit.stderr_bytes), (0, 0));
    Ok(())
}

#[tokio::test]
async fn stdout_and_stderr_stay_apart_and_in_order() -> TestResult {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let script =
        "echo one; sleep 0.1; echo two >&2; sleep 0.1; echo three; sleep 0.1; echo four >&2";
    let events = events_of(&client, ExecRequest::new(script)).await?;
    assert_eq!(output_of(&events, OutputStream::Stdout), "one\nthree\n");
    assert_eq!(output_of(&events, OutputStream::Stderr), "two\nfour\n");
    let order: Vec<(OutputStream, String)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Output { stream, data } => {
                Some((*stream, String::from_utf8_lossy(data).into_owned()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        vec![
            (OutputStream::Stdout, "one\n".to_owned()),
            (OutputStream::Stderr, "two\n".to_owned()),
            (OutputStream::Stdout, "three\n".to_owned()),
            (OutputStream::Stderr, "four\n".to_owned()),
        ],
        "chunks arrive as they are written, each tagged with its stream"
    );
    let exit = exit_of(&events);
    assert_eq!((exit.stdout_bytes, exit.stderr_bytes), (10, 9));
    Ok(())
}

#[tokio::test]
async fn output_is_streamed_while_the_command_runs() -> TestResult {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let mut stream = client
        .execute(ExecRequest::new("echo first; sleep 2; echo second"))
        .await?;
    let started = Instant::now();
    let mut first_seen = None;
    while let Some(event) = stream.next().await {
        if let Event::Output { data, .. } = event? {
            first_seen.get_or_insert(started.elapsed());
            if data.as_ref() == b"first\n" {
                break;
            }
        }
    }
    let first_seen = first_seen.expect("first line arrives");
    assert!(
        first_seen < Duration::from_millis(1500),
        "the first line came after {first_seen:?}, not before the command ended"
    );
    Ok(())
}

#[tokio::test]
async fn exit_codes_and_signals_are_reported() -> TestResult {
    let agent = TestAgent::start();
    let client = agent.client().await;

    let exit = exit_of(&events_of(&client, ExecRequest::new("exit 42")).await?).clone();
    assert_eq!((exit.exit_code, exit.signal), (42, None));
    assert!(!exit.success());

    let exit = exit_of(&events_of(&client, ExecRequest::new("kill -KILL $$")).await?).clone();
    assert_eq!((exit.exit_code, exit.signal), (137, Some(9)));
    assert_eq!(exit.reason, EndReason::Exited, "it died on its own");

    let exit = exit_of(&events_of(&client, ExecRequest::new("kill -TERM $$")).await?).clone();
    assert_eq!((exit.exit_code, exit.signal), (143, Some(15)));
    Ok(())
}

#[tokio::test]
async fn the_signal_name_travels_on_the_wire() -> TestResult {
    let agent = TestAgent::start();
    let mut raw = proto::remote_agent_client::RemoteAgentClient::connect(agent.url()).await?;
    let mut stream = raw
        .execute(proto::ExecuteRequest {
            command: "kill -KILL $$".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut exited = None;
    while let Some(message) = stream.message().await? {
        if let Some(proto::execute_response::Event::Exited(e)) = message.event {
            exited = Some(e);
        }
    }
    let exited = exited.expect("an exited event");
    assert_eq!((exited.signal, exited.signal_name.as_str()), (9, "SIGKILL"));
    Ok(())
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() -> TestResult {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let mark = marker();
    let request = ExecRequest {
        timeout: Some(Duration::from_millis(300)),
        ..ExecRequest::new(format!("sleep {mark} & sleep {mark}; echo never"))
    };
    let started = Instant::now();
    let events = events_of(&client, request).await?;
    let exit = exit_of(&events);
    assert!(exit.timed_out);
    assert_eq!(exit.reason, EndReason::TimedOut);
    assert_eq!(exit.signal, Some(15), "TERM was enough");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(output_of(&events, OutputStream::Stdout), "");
    assert_eq!(
        processes_with(&mark),
        Vec::<i32>::new(),
        "no process of the group is left once `exited` arrived"
    );
    Ok(())
}

#[tokio::test]
async fn a_group_that_ignores_term_gets_kill_after_the_grace() -> TestResult {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let mark = marker();
    let request = ExecRequest {
        timeout: Some(Duration::from_millis(200)),
        ..ExecRequest::new(format!("trap '' TERM; sleep {mark} & sleep {mark}"))
    };
    let events = events_of(&client, request).await?;
    let exit = exit_of(&events);
    assert!(exit.timed_out);
    assert_eq!(exit.signal, Some(9), "KILL followed the ignored TERM");
    assert_eq!(processes_with(&mark), Vec::<i32>::new());
    Ok(())
}

#[tokio::test]
async fn background_processes_left_behind_are_ended_with_the_command() -> TestResult {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let mark = marker();
    // The background sleep closes its output, so the command's stream ends
    // when sh exits; the sleep must not outlive it.
    let events = events_of(
        &client,
        ExecRequest::new(format!("sleep {mark} >/dev/null 2>&1 & echo done")),
    )
    .await?;
    assert_eq!(output_of(&events, OutputStream::Stdout), "done\n");
    assert!(exit_of(&events).success());
    assert_eq!(processes_with(&mark), Vec::<i32>::new());
    Ok(())
}

#[tokio::test]
async fn output_of_background_writers_is_awaited_like_ssh_does() -> TestResult {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let events = events_of(
        &client,
        ExecRequest::new("(sleep 0.3; echo late) & echo early"),
    )
    .await?;
    assert_eq!(output_of(&events, OutputStream::Stdout), "early\nlate\n");
    Ok(())
}

#[tokio::test]
async fn dropping_the_stream_kills_the_group() -> TestResult {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let mark = marker();
    let mut stream = client
        .execute(ExecRequest::new(format!(
            "sleep {mark} & sleep {mark} & echo ready; wait"
        )))
        .await?;
    // Wait until the command runs and has started its children.
    while let Some(event) = stream.next().await {
        if let Event::Output { data, .. } = event?
            && data.as_ref() == b"ready\n"
        {
            break;
        }
    }
    // The shell's own command line holds the marker too. A process in the
    // middle of exec can briefly show an empty command line, so wait.
    let deadline = Instant::now() + Duration::from_secs(5);
    while processes_with(&mark).len() != 3 {
        assert!(Instant::now() < deadline, "the shell and both sleeps run");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(stream);
    let left = wait_none_with(&mark, Duration::from_secs(5)).await;
    assert_eq!(
        left,
        Vec::<i32>::new(),
        "cancelling the call killed the group"
    );
    Ok(())
}

#[tokio::test]
async fn stdin_environment_and_working_directory_are_applied() -> TestResult {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let dir = tempfile::tempdir()?;
    let request = ExecRequest {
        stdin: bytes::Bytes::from_static(b"from stdin\n"),
        environment: vec![("VIGIE_TEST_VALUE".into(), "from env".into())],
        working_directory: Some(dir.path().to_string_lossy().into_owned()),
        ..ExecRequest::new("cat; echo \"$VIGIE_TEST_VALUE\"; pwd")
    };
    let events = events_of(&client, request).await?;
    let expected = format!(
        "from stdin\nfrom env\n{}\n",
        dir.path().canonicalize()?.display()
    );
    assert_eq!(output_of(&events, OutputStream::Stdout), expected);
    Ok(())
}

#[tokio::test]
async fn a_command_that_never_reads_its_input_still_ends() -> TestResult {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let request = ExecRequest {
        stdin: bytes::Bytes::from(vec![b'x'; 3 << 20]),
        ..ExecRequest::new("echo ignored input")
    };
    let events = events_of(&client, request).await?;
    assert_eq!(output_of(&events, OutputStream::Stdout), "ignored input\n");
    assert!(exit_of(&events).success());
    Ok(())
}

#[tokio::test]
async fn argv_runs_without_a_shell() -> TestResult {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let request = ExecRequest {
        shell: Shell::None,
        argv: vec!["printf".into(), "%s|".into(), "a b".into(), "$HOME".into()],
        ..ExecRequest::default()
    };
    let events = events_of(&client, request).await?;
    assert_eq!(
        output_of(&events, OutputStream::Stdout),
        "a b|$HOME|",
        "no shell expanded or split anything"
    );
    let split = ExecRequest {
        shell: Shell::None,
        ..ExecRequest::new("printf '%s|' 'a b' c")
    };
    let events = events_of(&client, split).await?;
    assert_eq!(output_of(&events, OutputStream::Stdout), "a b|c|");
    Ok(())
}

#[tokio::test]
async fn output_past_the_limit_is_cut_and_flagged() -> TestResult {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let request = ExecRequest {
        output_limit: Some(1000),
        ..ExecRequest::new("head -c 5000 /dev/zero; echo tail >&2")
    };
    let events = events_of(&client, request).await?;
    let received: usize = events
        .iter()
        .map(|e| match e {
            Event::Output { data, .. } => data.len(),
            _ => 0,
        })
        .sum();
    let exit = exit_of(&events);
    assert_eq!(received, 1000);
    assert!(exit.truncated && exit.success());
    assert_eq!((exit.stdout_bytes, exit.stderr_bytes), (5000, 5));
    Ok(())
}

#[tokio::test]
async fn the_agent_cap_applies_when_a_request_asks_for_more() -> TestResult {
    let agent = TestAgent::with_config(|c| c.max_output_bytes = 100);
    let client = agent.client().await;
    let request = ExecRequest {
        output_limit: Some(1 << 30),
        ..ExecRequest::new("head -c 300 /dev/zero")
    };
    let events = events_of(&client, request).await?;
    let exit = exit_of(&events);
    assert!(exit.truncated);
    assert_eq!(exit.stdout_bytes, 300);
    Ok(())
}

#[tokio::test]
async fn os_prefixes_of_the_brief() -> TestResult {
    let agent = TestAgent::start();
    let client = agent.client().await;

    let events = events_of(&client, ExecRequest::new("Linux:echo on linux")).await?;
    assert_eq!(output_of(&events, OutputStream::Stdout), "on linux\n");

    let dos = client
        .execute(ExecRequest::new("DOS:dir"))
        .await
        .map(|_| ());
    let Err(Error::Status(status)) = dos else {
        panic!("DOS: must be refused on Linux, got {dos:?}");
    };
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().starts_with("this host runs Linux")
            && status.message().contains("needs Windows"),
        "the message says what the host is and what was needed: {}",
        status.message()
    );

    let ps = client
        .execute(ExecRequest::new("Powershell:Get-Process"))
        .await
        .map(|_| ());
    if which::which("pwsh").is_err() && which::which("powershell").is_err() {
        let Err(Error::Status(status)) = ps else {
            panic!("PowerShell is not installed here, got {ps:?}");
        };
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(
            status.message().contains("PowerShell"),
            "{}",
            status.message()
        );
    } else {
        assert!(ps.is_ok());
    }
    Ok(())
}

#[tokio::test]
async fn explicit_shell_and_os_requirements_are_checked() -> TestResult {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let cmd = ExecRequest {
        shell: Shell::Cmd,
        ..ExecRequest::new("dir")
    };
    assert_eq!(
        status_code(client.execute(cmd).await.map(|_| ())),
        Code::FailedPrecondition
    );
    let windows_only = ExecRequest {
        required_os: Some(OsFamily::Windows),
        ..ExecRequest::new("echo hi")
    };
    assert_eq!(
        status_code(client.execute(windows_only).await.map(|_| ())),
        Code::FailedPrecondition
    );
    let linux_only = ExecRequest {
        required_os: Some(OsFamily::Linux),
        ..ExecRequest::new("echo hi")
    };
    let events = events_of(&client, linux_only).await?;
    assert_eq!(output_of(&events, OutputStream::Stdout), "hi\n");
    // An explicit shell turns prefix parsing off: "Linux:" is then just text.
    let sh = ExecRequest {
        shell: Shell::Sh,
        ..ExecRequest::new("Linux:true")
    };
    let events = events_of(&client, sh).await?;
    assert_eq!(
        exit_of(&events).exit_code,
        127,
        "sh has no command `Linux:true`"
    );
    Ok(())
}

#[tokio::test]
async fn bad_requests_get_the_right_status() -> TestResult {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let cases: Vec<(ExecRequest, Code, &str)> = vec![
        (ExecRequest::new(""), Code::InvalidArgument, "empty"),
        (ExecRequest::new("   "), Code::InvalidArgument, "blank"),
        (
            ExecRequest::new("Linux:"),
            Code::InvalidArgument,
            "prefix only",
        ),
        (ExecRequest::new("echo \0"), Code::InvalidArgument, "NUL"),
        (
            ExecRequest {
                working_directory: Some("/no/such/directory".into()),
                ..ExecRequest::new("true")
            },
            Code::FailedPrecondition,
            "missing working directory",
        ),
        (
            ExecRequest {
                working_directory: Some("/etc/hostname".into()),
                ..ExecRequest::new("true")
            },
            Code::FailedPrecondition,
            "working directory is a file",
        ),
        (
            ExecRequest {
                environment: vec![("A=B".into(), "x".into())],
                ..ExecRequest::new("true")
            },
            Code::InvalidArgument,
            "bad environment name",
        ),
        (
            ExecRequest {
                shell: Shell::None,
                ..ExecRequest::new("no-such-program-vigie")
            },
            Code::NotFound,
            "unknown program",
        ),
        (
            ExecRequest {
                shell: Shell::None,
                ..ExecRequest::new("echo 'unbalanced")
            },
            Code::InvalidArgument,
            "unbalanced quote",
        ),
    ];
    for (request, code, what) in cases {
        let result = client.execute(request).await.map(|_| ());
        match result {
            Err(Error::Status(status)) => {
                assert_eq!(status.code(), code, "{what}: {}", status.message());
                assert!(!status.message().is_empty(), "{what} has a message");
            }
            other => panic!("{what}: expected {code:?}, got {other:?}"),
        }
    }

    let mut raw = proto::remote_agent_client::RemoteAgentClient::connect(agent.url()).await?;
    for (request, what) in [
        (
            proto::ExecuteRequest {
                command: "true".into(),
                shell: 99,
                ..Default::default()
            },
            "unknown shell",
        ),
        (
            proto::ExecuteRequest {
                command: "true".into(),
                required_os: 42,
                ..Default::default()
            },
            "unknown OS",
        ),
    ] {
        let status = raw.execute(request).await.expect_err(what);
        assert_eq!(status.code(), Code::InvalidArgument, "{what}");
    }
    Ok(())
}

#[tokio::test]
async fn a_bad_session_header_is_refused() -> TestResult {
    let agent = TestAgent::start();
    let mut raw = proto::remote_agent_client::RemoteAgentClient::connect(agent.url()).await?;
    let mut request = tonic::Request::new(proto::GetConnectionInfoRequest {});
    request
        .metadata_mut()
        .insert("x-vigie-session", "has space".parse()?);
    let status = raw.get_connection_info(request).await.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("x-vigie-session"));
    Ok(())
}

#[tokio::test]
async fn too_many_commands_in_a_session_is_resource_exhausted() -> TestResult {
    let agent = TestAgent::with_config(|c| c.max_commands_per_session = 2);
    let client = agent.client().await;
    let first = client.execute(ExecRequest::new("sleep 5")).await?;
    let second = client.execute(ExecRequest::new("sleep 5")).await?;
    let third = client
        .execute(ExecRequest::new("sleep 5"))
        .await
        .map(|_| ());
    let Err(Error::Status(status)) = third else {
        panic!("a third command must be refused, got {third:?}");
    };
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("allows 2"),
        "{}",
        status.message()
    );
    // Another session still has room.
    let other = agent.client().await;
    let events = events_of(&other, ExecRequest::new("echo ok")).await?;
    assert_eq!(output_of(&events, OutputStream::Stdout), "ok\n");
    drop((first, second));
    Ok(())
}
