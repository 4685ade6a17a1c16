//! Security: TLS on the wire, authentication and roles for every rpc, the
//! exec policy, the audit log, limits, and the newcomer's `init` flow.

mod support;

use std::{
    net::SocketAddr,
    path::Path,
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use prost::Message as _;
use support::{BinaryAgent, TestAgent, access_file, loopback, with_token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Code, transport::Channel};
use vigie::{
    client::{AgentClient, ConnectionSettings, Error, Secret, connect::Address},
    command::ExecRequest,
    server::{
        AgentConfig,
        auth::{self, Access, Role},
        init,
    },
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Calls `path` with an empty message, the way any client could, and
/// returns the status code (Ok when the call was accepted).
async fn call_raw(
    channel: Channel,
    path: &str,
    client_streaming: bool,
    server_streaming: bool,
    token: Option<&str>,
) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel);
    if let Err(e) = grpc.ready().await {
        panic!("channel not ready: {e}");
    }
    let path = http::uri::PathAndQuery::from_str(path).expect("a path");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let mut request = tonic::Request::new(());
    if let Some(token) = token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii"),
        );
    }
    let result = match (client_streaming, server_streaming) {
        (false, false) => grpc.unary(request, path, codec).await.map(|_| ()),
        (false, true) => grpc
            .server_streaming(request, path, codec)
            .await
            .map(|_| ()),
        (true, _) => {
            let (metadata, extensions, ()) = request.into_parts();
            let request = tonic::Request::from_parts(
                metadata,
                extensions,
                tokio_stream::iter(Vec::<()>::new()),
            );
            grpc.streaming(request, path, codec).await.map(|_| ())
        }
    };
    match result {
        Ok(()) => Code::Ok,
        Err(status) => status.code(),
    }
}

/// Every method of every service the agent serves, with its streaming
/// kinds, read from the same descriptor sets that reflection serves.
fn served_methods() -> Vec<(String, bool, bool)> {
    let mut methods = Vec::new();
    for bytes in [
        vigie::proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
    ] {
        let set = prost_types::FileDescriptorSet::decode(bytes).expect("a descriptor set");
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    methods.push((
                        format!("/{}.{}/{}", file.package(), service.name(), method.name()),
                        method.client_streaming(),
                        method.server_streaming(),
                    ));
                }
            }
        }
    }
    for version in ["v1", "v1alpha"] {
        methods.push((
            format!("/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"),
            true,
            true,
        ));
    }
    methods
}

#[test]
fn every_served_method_has_an_access_rule() {
    for (path, _, _) in served_methods() {
        assert!(
            auth::access_for(&path).is_some(),
            "{path} has no line in auth::POLICY: decide who may call it"
        );
    }
    for (path, _) in auth::POLICY {
        assert!(
            served_methods().iter().any(|(p, _, _)| p == path),
            "{path} is in the policy but not served"
        );
    }
}

#[tokio::test]
async fn every_rpc_answers_every_kind_of_caller_with_the_exact_code() -> TestResult {
    let access = access_file();
    let path = access.path.clone();
    // Roles allowed file transfers get a root, so that what answers them is
    // the handler (the request's empty path), not "transfers are off".
    let roots = tempfile::tempdir()?;
    let root = roots.path().to_owned();
    let agent = TestAgent::with_config(|c| {
        c.access_file = Some(path.clone());
        c.file_roots = [
            (Role::Operator, vec![root.clone()]),
            (Role::Admin, vec![root.clone()]),
        ]
        .into();
    });
    let bad_token = auth::generate_token()?;
    let callers: Vec<(&str, Option<&str>, Option<Role>)> = vec![
        ("no credentials", None, None),
        ("a bad token", Some(bad_token.as_str()), None),
        (
            "viewer",
            Some(access.tokens[&Role::Viewer].as_str()),
            Some(Role::Viewer),
        ),
        (
            "operator",
            Some(access.tokens[&Role::Operator].as_str()),
            Some(Role::Operator),
        ),
        (
            "admin",
            Some(access.tokens[&Role::Admin].as_str()),
            Some(Role::Admin),
        ),
    ];
    let mut checked = 0;
    for (path, client_streaming, server_streaming) in served_methods() {
        let rule = auth::access_for(&path).expect("checked by the test above");
        for (who, token, role) in &callers {
            let allowed = match rule {
                Access::Public => true,
                Access::AtLeast(needed) => role.is_some_and(|r| r >= needed),
            };
            // An allowed Shutdown or Restart stops the agent: give it its own.
            let stops = allowed && (path.ends_with("/Shutdown") || path.ends_with("/Restart"));
            let own_agent;
            let target = if stops {
                let path = access.path.clone();
                own_agent = TestAgent::with_config(|c| c.access_file = Some(path));
                &own_agent
            } else {
                &agent
            };
            let channel = tonic::transport::Endpoint::from_shared(target.url())?
                .connect()
                .await?;
            let code = call_raw(channel, &path, client_streaming, server_streaming, *token).await;
            let expected = match (rule, role) {
                (Access::Public, _) => None,
                (Access::AtLeast(_), None) => Some(Code::Unauthenticated),
                (Access::AtLeast(needed), Some(r)) if *r < needed => Some(Code::PermissionDenied),
                _ => None,
            };
            match expected {
                Some(expected) => assert_eq!(code, expected, "{path} called by {who}"),
                None => assert!(
                    !matches!(code, Code::Unauthenticated | Code::PermissionDenied),
                    "{path} called by {who} was refused with {code:?}"
                ),
            }
            if stops {
                assert_eq!(code, Code::Ok, "{path} by {who} is accepted");
            }
            checked += 1;
        }
    }
    assert!(checked >= 13 * 5, "{checked} combinations");
    Ok(())
}

#[tokio::test]
async fn denials_say_nothing_about_which_tokens_exist() -> TestResult {
    let access = access_file();
    let path = access.path.clone();
    let agent = TestAgent::with_config(|c| c.access_file = Some(path));
    let address = loopback(agent.addr());
    let mut messages = Vec::new();
    let valid_but_truncated = &access.tokens[&Role::Admin][..20];
    for token in ["vgt_unknown", valid_but_truncated, ""] {
        let client = AgentClient::connect_with(&address, &with_token(token)).await?;
        let Err(Error::Status(status)) = client.system_info().await else {
            panic!("a wrong token must be refused");
        };
        assert_eq!(status.code(), Code::Unauthenticated);
        messages.push(status.message().to_owned());
    }
    let anonymous = AgentClient::connect_with(&address, &ConnectionSettings::default()).await?;
    let Err(Error::Status(status)) = anonymous.system_info().await else {
        panic!("no token must be refused");
    };
    messages.push(status.message().to_owned());
    assert!(
        messages
            .iter()
            .all(|m| m == "missing or invalid credentials"),
        "{messages:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_token_added_while_the_agent_runs_works_at_once() -> TestResult {
    let access = access_file();
    let path = access.path.clone();
    let agent = TestAgent::with_config(|c| c.access_file = Some(path.clone()));
    let added = init::add_token(&path, "carol", Role::Viewer)?;
    let client =
        AgentClient::connect_with(&loopback(agent.addr()), &with_token(&added.token)).await?;
    let info = client.connection_info().await?;
    assert_eq!(
        (info.identity.as_str(), info.role.as_str()),
        ("token:carol", "viewer")
    );
    let refused = client.run(ExecRequest::new("true")).await;
    assert_eq!(
        refused.err().and_then(|e| e.code()),
        Some(Code::PermissionDenied)
    );
    let text = std::fs::read_to_string(&path)?;
    assert!(!text.contains(&added.token), "only the hash is stored");
    Ok(())
}

/// A TCP relay that records every byte crossing it, like a packet capture.
async fn recording_relay(target: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let record = Arc::new(Mutex::new(Vec::new()));
    let seen = record.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                return;
            };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            for (mut from, mut to, seen) in [
                (
                    Box::new(client_read) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                    Box::new(server_write) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
                    seen.clone(),
                ),
                (
                    Box::new(server_read) as _,
                    Box::new(client_write) as _,
                    seen.clone(),
                ),
            ] {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = from.read(&mut buf).await {
                        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        seen.lock().expect("lock").extend_from_slice(&buf[..n]);
                    }
                });
            }
        }
    });
    (addr, record)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn the_wire_shows_commands_in_plaintext_and_hides_them_with_tls() -> TestResult {
    let secret_command = "echo wire-check-4f1c9a";

    let plain = TestAgent::start();
    let (relay, record) = recording_relay(plain.addr()).await;
    let client =
        AgentClient::connect_with(&loopback(relay), &ConnectionSettings::default()).await?;
    let run = client.run(ExecRequest::new(secret_command)).await?;
    assert_eq!(run.stdout, b"wire-check-4f1c9a\n");
    let bytes = record.lock().expect("lock").clone();
    assert!(
        contains(&bytes, secret_command.as_bytes()),
        "plaintext: the command is readable on the wire"
    );

    let pki = tempfile::tempdir()?;
    init::init(pki.path(), &[], "127.0.0.1:0")?;
    let dir = pki.path().to_owned();
    let secure = TestAgent::with_config(|c| {
        c.tls_cert = Some(dir.join("agent.pem"));
        c.tls_key = Some(dir.join("agent-key.pem"));
    });
    let (relay, record) = recording_relay(secure.addr()).await;
    let settings = ConnectionSettings {
        ca: Some(dir.join("ca.pem")),
        ..ConnectionSettings::default()
    };
    let client = AgentClient::connect_with(&loopback(relay), &settings).await?;
    let run = client.run(ExecRequest::new(secret_command)).await?;
    assert_eq!(
        run.stdout, b"wire-check-4f1c9a\n",
        "the command ran through TLS"
    );
    assert!(client.connection_info().await?.tls);
    let bytes = record.lock().expect("lock").clone();
    assert!(bytes.len() > 500, "the relay saw the TLS traffic");
    assert!(
        !contains(&bytes, secret_command.as_bytes()) && !contains(&bytes, b"wire-check-4f1c9a"),
        "TLS: neither the command nor its output is readable on the wire"
    );
    Ok(())
}

/// An agent serving the certificates `init` made in `dir`, requiring
/// client certificates and tokens from the access file.
fn mtls_agent(dir: &Path) -> TestAgent {
    let dir = dir.to_owned();
    TestAgent::with_config(|c| {
        c.tls_cert = Some(dir.join("agent.pem"));
        c.tls_key = Some(dir.join("agent-key.pem"));
        c.client_ca = Some(dir.join("ca.pem"));
        c.access_file = Some(dir.join("access.toml"));
    })
}

fn client_settings(dir: &Path) -> ConnectionSettings {
    vigie::client::ClientConfig::load(&dir.join("client.toml"))
        .expect("init wrote a client config")
        .defaults
}

async fn failure(address: &Address, settings: &ConnectionSettings) -> String {
    let result = async {
        let client = AgentClient::connect_with(address, settings).await?;
        client.system_info().await
    }
    .await;
    match result {
        Ok(_) => panic!("the connection should have failed"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn tls_failures_say_which_host_and_why() -> TestResult {
    let pki = tempfile::tempdir()?;
    init::init(pki.path(), &[], "127.0.0.1:0")?;
    let other = tempfile::tempdir()?;
    init::init(other.path(), &[], "127.0.0.1:0")?;
    let agent = mtls_agent(pki.path());
    let address = loopback(agent.addr());
    let good = client_settings(pki.path());
    let client = AgentClient::connect_with(&address, &good).await?;
    assert_eq!(
        client.connection_info().await?.identity,
        "cert:CN=vigie-admin"
    );

    let unknown_ca = ConnectionSettings {
        ca: Some(other.path().join("ca.pem")),
        ..good.clone()
    };
    let message = failure(&address, &unknown_ca).await;
    assert!(
        message.contains(&address.to_string()) && message.contains("CA this client does not trust"),
        "{message}"
    );

    let wrong_name = ConnectionSettings {
        server_name: Some("not-this-agent.example".into()),
        ..good.clone()
    };
    let message = failure(&address, &wrong_name).await;
    assert!(message.contains("not valid for"), "{message}");

    let no_client_cert = ConnectionSettings {
        cert: None,
        key: None,
        ..good.clone()
    };
    let message = failure(&address, &no_client_cert).await;
    assert!(
        message.contains("requires a client certificate"),
        "{message}"
    );

    let stranger_cert = ConnectionSettings {
        cert: Some(other.path().join("client.pem")),
        key: Some(other.path().join("client-key.pem")),
        ..good.clone()
    };
    let message = failure(&address, &stranger_cert).await;
    assert!(
        message.contains("rejected this client's certificate"),
        "{message}"
    );

    let plaintext_to_tls = ConnectionSettings::default();
    let message = failure(&address, &plaintext_to_tls).await;
    assert!(message.contains(&address.to_string()), "{message}");
    Ok(())
}

#[tokio::test]
async fn a_pinned_fingerprint_replaces_the_ca() -> TestResult {
    let pki = tempfile::tempdir()?;
    let made = init::init(pki.path(), &[], "127.0.0.1:0")?;
    let dir = pki.path().to_owned();
    let agent = TestAgent::with_config(|c| {
        c.tls_cert = Some(dir.join("agent.pem"));
        c.tls_key = Some(dir.join("agent-key.pem"));
    });
    let address = loopback(agent.addr());
    let pinned = ConnectionSettings {
        fingerprint: Some(made.fingerprint.clone()),
        // A pin trusts that exact certificate, whatever name was dialled.
        server_name: Some("any-name.example".into()),
        ..ConnectionSettings::default()
    };
    let client = AgentClient::connect_with(&address, &pinned).await?;
    assert!(client.connection_info().await?.tls);

    let wrong_pin = ConnectionSettings {
        fingerprint: Some(format!("sha256:{}", "00".repeat(32))),
        ..ConnectionSettings::default()
    };
    let message = failure(&address, &wrong_pin).await;
    assert!(
        message.contains("does not match the pinned fingerprint"),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn an_expired_agent_certificate_is_refused_by_the_agent_and_the_client() -> TestResult {
    use rcgen::{CertificateParams, KeyPair};
    let dir = tempfile::tempdir()?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()])?;
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(30);
    params.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    let cert = params.self_signed(&key)?;
    std::fs::write(dir.path().join("old.pem"), cert.pem())?;
    std::fs::write(dir.path().join("old-key.pem"), key.serialize_pem())?;

    let config = AgentConfig {
        listen: "127.0.0.1:0".into(),
        tls_cert: Some(dir.path().join("old.pem")),
        tls_key: Some(dir.path().join("old-key.pem")),
        ..AgentConfig::default()
    };
    let refused = vigie::server::RunningAgent::start(config).map(|_| ());
    let message = refused
        .expect_err("an expired certificate is refused")
        .to_string();
    assert!(
        message.contains("old.pem") && message.contains("not now"),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn no_exec_and_allow_lists_restrict_commands() -> TestResult {
    let access = access_file();
    let path = access.path.clone();
    let locked = TestAgent::with_config(|c| {
        c.access_file = Some(path.clone());
        c.no_exec = true;
    });
    let admin = with_token(&access.tokens[&Role::Admin]);
    let client = AgentClient::connect_with(&loopback(locked.addr()), &admin).await?;
    let refused = client.run(ExecRequest::new("true")).await;
    let Err(Error::Status(status)) = refused else {
        panic!("Execute must be off: {refused:?}");
    };
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(
        status.message().contains("disabled"),
        "{}",
        status.message()
    );
    assert!(client.system_info().await.is_ok(), "reading still works");

    let path = access.path.clone();
    let listed = TestAgent::with_config(|c| {
        c.access_file = Some(path.clone());
        c.exec_allow
            .insert(Role::Operator, vec!["echo *".into(), "uptime".into()]);
    });
    let operator = AgentClient::connect_with(
        &loopback(listed.addr()),
        &with_token(&access.tokens[&Role::Operator]),
    )
    .await?;
    assert_eq!(
        operator.run(ExecRequest::new("echo allowed")).await?.stdout,
        b"allowed\n"
    );
    for command in ["echo a; id", "echo $(id)", "id", "uptime -p"] {
        let result = operator.run(ExecRequest::new(command)).await;
        assert_eq!(
            result.err().and_then(|e| e.code()),
            Some(Code::PermissionDenied),
            "{command}"
        );
    }
    let admin = AgentClient::connect_with(&loopback(listed.addr()), &admin).await?;
    assert!(
        admin.run(ExecRequest::new("id")).await?.exit.is_some(),
        "admin has no list"
    );
    Ok(())
}

#[tokio::test]
async fn limits_answer_resource_exhausted() -> TestResult {
    let agent = TestAgent::with_config(|c| {
        c.max_request_bytes = 64 * 1024;
        c.max_sessions = 2;
        c.max_commands_total = 1;
    });
    let client = agent.client().await;
    let big = ExecRequest {
        stdin: bytes::Bytes::from(vec![b'x'; 100 * 1024]),
        ..ExecRequest::new("cat")
    };
    let Err(Error::Status(status)) = client.run(big).await else {
        panic!("a request over the limit must be refused");
    };
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("65536 bytes"),
        "{}",
        status.message()
    );

    let running = client.execute(ExecRequest::new("sleep 5")).await?;
    let second = agent.client().await;
    let Err(Error::Status(status)) = second.run(ExecRequest::new("true")).await else {
        panic!("the agent-wide command limit applies");
    };
    assert_eq!(status.code(), Code::ResourceExhausted);
    // An idle session is reclaimed when room is needed; a stream keeps the
    // second one busy, so the third finds no room.
    let _watching = second
        .watch_metrics(Duration::from_millis(1000), false)
        .await?;
    let third = agent.client().await;
    let Err(Error::Status(status)) = third.system_info().await else {
        panic!("a third session is over the limit");
    };
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("too many sessions"),
        "{}",
        status.message()
    );
    drop(running);
    Ok(())
}

#[tokio::test]
async fn the_audit_log_records_calls_commands_and_denials_but_no_secrets() -> TestResult {
    let access = access_file();
    let dir = tempfile::tempdir()?;
    let audit_path = dir.path().join("audit.jsonl");
    let log_path = dir.path().join("agent.log");
    let operator_token = access.tokens[&Role::Operator].clone();
    let mut agent = BinaryAgent::start_logging(
        &[
            "--access-file",
            access.path.to_str().ok_or("path")?,
            "--audit-log",
            audit_path.to_str().ok_or("path")?,
            "--log-level",
            "trace",
        ],
        &log_path,
    );
    let address = loopback(agent.addr());
    let client = AgentClient::connect_with(&address, &with_token(&operator_token)).await?;
    let stdin_secret = "stdin-secret-9d2e";
    let run = client
        .run(ExecRequest {
            stdin: bytes::Bytes::from(stdin_secret),
            environment: vec![("SECRET_VALUE".into(), "env-secret-77a1".into())],
            ..ExecRequest::new("cat >/dev/null; exit 4")
        })
        .await?;
    assert_eq!(run.exit.as_ref().map(|e| e.exit_code), Some(4));
    let pid = run.pid.expect("a pid");
    let intruder = AgentClient::connect_with(&address, &with_token("vgt_guess")).await?;
    assert!(intruder.list_processes("").await.is_err());
    let viewer =
        AgentClient::connect_with(&address, &with_token(&access.tokens[&Role::Viewer])).await?;
    assert!(viewer.shutdown("no").await.is_err());
    agent.terminate();
    agent
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("it stops");

    let audit = std::fs::read_to_string(&audit_path)?;
    let records: Vec<serde_json::Value> = audit
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let find = |event: &str| {
        records
            .iter()
            .find(|r| r["event"] == event)
            .unwrap_or_else(|| panic!("no {event} record in {audit}"))
    };
    let start = find("exec_start");
    assert_eq!(start["identity"], "token:operator");
    assert_eq!(start["command"], "cat >/dev/null; exit 4");
    assert_eq!(start["pid"], pid);
    assert!(
        start["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:"))
    );
    assert_eq!(start["session"], client.session_id());
    let end = find("exec_end");
    assert_eq!(
        (end["exit_code"].as_i64(), end["pid"].as_i64()),
        (Some(4), Some(i64::from(pid)))
    );
    assert!(end["duration_ms"].is_u64());
    let denials: Vec<_> = records.iter().filter(|r| r["event"] == "denied").collect();
    assert!(
        denials
            .iter()
            .any(|r| r["rpc"] == "ListProcesses" && r.get("identity").is_none())
    );
    assert!(
        denials
            .iter()
            .any(|r| r["rpc"] == "Shutdown" && r["identity"] == "token:viewer")
    );
    assert!(records.iter().all(|r| r["time"].as_str().is_some()));

    let debug_log = std::fs::read_to_string(&log_path)?;
    assert!(debug_log.len() > 100, "the debug log was written");
    for secret in [
        operator_token.as_str(),
        "vgt_guess",
        stdin_secret,
        "env-secret-77a1",
    ] {
        assert!(!audit.contains(secret), "the audit log shows {secret}");
        assert!(!debug_log.contains(secret), "the debug log shows {secret}");
    }
    Ok(())
}

#[tokio::test]
async fn a_newcomer_goes_from_init_to_an_authenticated_tls_connection() -> TestResult {
    let dir = tempfile::tempdir()?;
    let pki = dir.path().join("vigie");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_vigie-agent"))
        .args(["init", "--dir"])
        .arg(&pki)
        .args(["--listen", "127.0.0.1:0"])
        .output()?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout)?;
    let token = stdout
        .lines()
        .find_map(|l| l.strip_prefix("admin token: "))
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or("an `admin token: ` line")?
        .to_owned();
    assert!(token.starts_with("vgt_"));
    {
        use std::os::unix::fs::PermissionsExt;
        assert!(
            !pki.join("ca-key.pem").exists(),
            "init keeps no CA key on the host"
        );
        for secret in [
            "agent-key.pem",
            "client-key.pem",
            "access.toml",
            "client.toml",
        ] {
            let mode = std::fs::metadata(pki.join(secret))?.permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{secret}");
        }
    }
    for file in std::fs::read_dir(&pki)? {
        let path = file?.path();
        let text = String::from_utf8_lossy(&std::fs::read(&path)?).into_owned();
        assert!(
            !text.contains(&token),
            "{} holds the plain token",
            path.display()
        );
    }

    let config = pki.join("agent.toml");
    let agent = BinaryAgent::start_plain(&["--config", config.to_str().ok_or("path")?]);
    let settings = client_settings(&pki);
    assert!(settings.token.is_none(), "the client config holds no token");
    let client = AgentClient::connect_with(&loopback(agent.addr()), &settings).await?;
    let info = client.connection_info().await?;
    assert!(info.tls);
    assert_eq!(
        (info.identity.as_str(), info.role.as_str()),
        ("cert:CN=vigie-admin", "admin")
    );
    // The token printed once works too, on top of the certificate.
    let with_token = ConnectionSettings {
        token: Some(Secret::new(token.clone())),
        ..settings.clone()
    };
    let client = AgentClient::connect_with(&loopback(agent.addr()), &with_token).await?;
    assert_eq!(client.connection_info().await?.identity, "token:admin");
    let run = client.run(ExecRequest::new("echo secure")).await?;
    assert_eq!(run.stdout, b"secure\n");

    // One command adds a user with a role (a token; certificates of their
    // own come from a fleet CA).
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_vigie-agent"))
        .args(["--config"])
        .arg(&config)
        .args(["token", "add", "--name", "dave", "--role", "viewer"])
        .output()?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dave_token = String::from_utf8(output.stdout)?
        .lines()
        .find_map(|l| l.strip_prefix("token for dave (viewer): "))
        .ok_or("a token line")?
        .to_owned();
    let dave = ConnectionSettings {
        token: Some(Secret::new(dave_token)),
        ..settings.clone()
    };
    let client = AgentClient::connect_with(&loopback(agent.addr()), &dave).await?;
    let info = client.connection_info().await?;
    assert_eq!(
        (info.identity.as_str(), info.role.as_str()),
        ("token:dave", "viewer")
    );
    let refused = client.run(ExecRequest::new("true")).await;
    assert_eq!(
        refused.err().and_then(|e| e.code()),
        Some(Code::PermissionDenied)
    );

    assert_eq!(agent.stop().await.and_then(|s| s.code()), Some(0));
    Ok(())
}

#[test]
fn the_agent_refuses_exposure_without_tls_or_authentication() {
    let refuse = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_vigie-agent"))
            .args(args)
            .output()
            .expect("runs");
        assert!(!output.status.success(), "{args:?} must be refused");
        assert!(output.stdout.is_empty(), "{args:?} never listened");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let message = refuse(&["--listen", "192.0.2.1:7421"]);
    assert!(
        message.contains("without TLS") && message.contains("--insecure-plaintext"),
        "{message}"
    );
    let message = refuse(&["--listen", "192.0.2.1:7421", "--insecure-plaintext"]);
    assert!(message.contains("without authentication"), "{message}");
}
