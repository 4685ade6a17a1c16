//! Clients that are not ours: a Python client generated from
//! `proto/remote.proto` with grpcio-tools, and grpcurl working only through
//! server reflection. The tools come from `scripts/test-tools.sh`, which
//! `scripts/test.sh` runs first and which exports where they are.

mod support;

use std::{path::PathBuf, process::Command};

use support::TestAgent;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn tool(variable: &str) -> PathBuf {
    match std::env::var_os(variable) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => panic!(
            "{variable} is not set: run the tests with scripts/test.sh, which installs \
             the interoperability tools (or `source scripts/test-tools.sh` first)"
        ),
    }
}

fn run(command: &mut Command) -> Result<String, Box<dyn std::error::Error>> {
    let output = command.output()?;
    if !output.status.success() {
        return Err(format!(
            "{command:?} failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// A Python client generated from `proto/remote.proto` with grpcio-tools,
/// in a temporary directory.
fn python_stubs(python: &std::path::Path) -> Result<tempfile::TempDir, Box<dyn std::error::Error>> {
    let stubs = tempfile::tempdir()?;
    run(Command::new(python)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["-m", "grpc_tools.protoc", "-Iproto"])
        .arg(format!("--python_out={}", stubs.path().display()))
        .arg(format!("--grpc_python_out={}", stubs.path().display()))
        .arg("proto/remote.proto"))?;
    Ok(stubs)
}

#[test]
fn a_python_client_generated_from_the_proto_drives_the_agent() -> TestResult {
    let python = tool("VIGIE_TEST_PYTHON");
    let stubs = python_stubs(&python)?;
    let root = env!("CARGO_MANIFEST_DIR");

    let agent = TestAgent::start();
    let output = run(Command::new(&python)
        .arg(format!("{root}/tests/interop/client.py"))
        .arg(agent.addr().to_string())
        .arg(stubs.path()))?;
    let report: serde_json::Value = serde_json::from_str(&output)?;

    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    assert_eq!(report["hostname"], hostname.trim());
    assert_eq!(report["os_family"], "OS_FAMILY_LINUX");
    assert!(report["memory_total"].as_u64() > Some(0));

    let events = report["events"].as_array().expect("events");
    assert!(events[0]["started"].as_i64() > Some(0), "{events:?}");
    let outputs: Vec<(&str, &str)> = events
        .iter()
        .filter_map(|e| Some((e["output"].as_str()?, e["data"].as_str()?)))
        .collect();
    assert!(outputs.contains(&("STDOUT", "hello\n")), "{outputs:?}");
    assert!(outputs.contains(&("STDERR", "oops\n")), "{outputs:?}");
    let last = events.last().expect("an exit");
    assert_eq!(last["exited"], 3);
    assert_eq!(last["signal"], 0);
    assert_eq!(last["reason"], "END_REASON_EXITED");

    assert_eq!(report["dos"], "FAILED_PRECONDITION");
    assert_eq!(report["metrics"], serde_json::json!([true, true]));
    assert_eq!(
        report["connection_session"], report["session"],
        "the header is honoured"
    );
    assert_eq!(report["boot_id"].as_str().map(str::len), Some(36));
    assert_eq!(report["signal_unknown"], "NOT_FOUND");
    assert_eq!(report["disconnect"], report["session"]);
    Ok(())
}

#[test]
fn grpcurl_works_through_reflection_alone() -> TestResult {
    let grpcurl = tool("VIGIE_TEST_GRPCURL");
    let agent = TestAgent::start();
    let target = agent.addr().to_string();

    let services = run(Command::new(&grpcurl).args(["-plaintext", &target, "list"]))?;
    for service in ["vigie.v1.RemoteAgent", "grpc.health.v1.Health"] {
        assert!(
            services.lines().any(|l| l == service),
            "{service} in {services}"
        );
    }

    let methods = run(Command::new(&grpcurl).args([
        "-plaintext",
        &target,
        "describe",
        "vigie.v1.RemoteAgent",
    ]))?;
    assert!(
        methods.contains(
            "rpc Execute ( .vigie.v1.ExecuteRequest ) returns ( stream .vigie.v1.ExecuteResponse )"
        ),
        "{methods}"
    );

    let executed = run(Command::new(&grpcurl).args([
        "-plaintext",
        "-d",
        r#"{"command": "Linux:echo via grpcurl"}"#,
        &target,
        "vigie.v1.RemoteAgent/Execute",
    ]))?;
    // grpcurl prints one JSON object per message, bytes in base64.
    assert!(executed.contains(r#""started""#), "{executed}");
    assert!(executed.contains(r#""stream": "STDOUT""#), "{executed}");
    assert!(
        executed.contains(r#""data": "dmlhIGdycGN1cmwK""#),
        "base64 of 'via grpcurl\\n': {executed}"
    );
    assert!(
        executed.contains(r#""reason": "END_REASON_EXITED""#),
        "{executed}"
    );

    let refused = Command::new(&grpcurl)
        .args([
            "-plaintext",
            "-d",
            r#"{"command": "DOS:dir"}"#,
            &target,
            "vigie.v1.RemoteAgent/Execute",
        ])
        .output()?;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("FailedPrecondition"), "{stderr}");

    let health =
        run(Command::new(&grpcurl).args(["-plaintext", &target, "grpc.health.v1.Health/Check"]))?;
    assert!(health.contains("SERVING"), "{health}");
    Ok(())
}

/// The agent pings a quiet connection every 500 ms here (ten times its
/// default rate): grpcio, with its default options and with pings of its
/// own every second, keeps the call and the channel. Neither side's ping
/// policing trips.
#[test]
fn grpcio_clients_live_with_the_agents_keepalive() -> TestResult {
    let python = tool("VIGIE_TEST_PYTHON");
    let stubs = python_stubs(&python)?;
    let root = env!("CARGO_MANIFEST_DIR");
    let agent = TestAgent::with_config(|c| {
        c.keepalive_interval_ms = 500;
        c.keepalive_timeout_ms = 1_000;
    });
    for mode in ["defaults", "pinging"] {
        let output = run(Command::new(&python)
            .arg(format!("{root}/tests/interop/quiet_call.py"))
            .arg(agent.addr().to_string())
            .arg(stubs.path())
            .arg(mode))?;
        let report: serde_json::Value = serde_json::from_str(&output)?;
        assert_eq!(report["error"], serde_json::Value::Null, "{mode}: {report}");
        assert_eq!(report["stdout"], "quiet\n", "{mode}: {report}");
        assert_eq!(report["exit"], 0, "{mode}: {report}");
        assert!(
            report["after"].as_str().is_some_and(|h| !h.is_empty()),
            "{mode}: {report}"
        );
    }
    Ok(())
}
