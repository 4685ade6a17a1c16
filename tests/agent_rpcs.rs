//! The rpcs other than Execute and the lifecycle, against a real agent:
//! system information, metrics, processes, signals, connection
//! information, health checks and reflection.

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use prost::Message as _;
use support::{TestAgent, marker, wait_none_with};
use tonic::Code;
use vigie::{
    client::Error,
    command::{Event, ExecRequest, OsFamily, OutputStream},
    proto,
    types::ProcessSignal,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn channel(agent: &TestAgent) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    tonic::transport::Endpoint::from_shared(agent.url())?
        .connect()
        .await
}

#[tokio::test]
async fn system_info_describes_this_host() -> TestResult {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let info = client.system_info().await?;
    assert_eq!(info.os_family, Some(OsFamily::Linux));
    let expected_hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    assert_eq!(info.hostname, expected_hostname.trim());
    let expected_kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")?;
    assert_eq!(info.kernel_version, expected_kernel.trim());
    assert_eq!(info.architecture, std::env::consts::ARCH);
    assert!(!info.os_name.is_empty() && !info.os_long_name.is_empty());
    let cpus = std::thread::available_parallelism()?.get();
    assert!(info.cpu_count as usize >= cpus, "{} CPUs", info.cpu_count);
    assert_eq!(info.cpu_usage_per_core.len(), info.cpu_count as usize);
    assert!((0.0..=100.0).contains(&info.cpu_usage_percent));
    let mem = info.memory;
    assert!(mem.total_bytes > 0 && mem.used_bytes <= mem.total_bytes);
    assert!(mem.available_bytes <= mem.total_bytes);
    assert!(
        info.interfaces
            .iter()
            .any(|i| i.addresses.iter().any(|a| a.address.is_loopback())),
        "the loopback interface is listed: {:?}",
        info.interfaces
    );
    assert!(
        info.disks.iter().any(|d| d.total_bytes > 0),
        "at least one disk: {:?}",
        info.disks
    );
    assert!(info.uptime_seconds > 0);
    assert!(info.load_average.is_some(), "Linux has a load average");
    assert_eq!(info.agent_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.boot_id.len(), 36, "a UUID");
    Ok(())
}

#[tokio::test]
async fn metrics_stream_at_the_asked_interval_until_cancelled() -> TestResult {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let started = Instant::now();
    let mut samples = client
        .watch_metrics(Duration::from_millis(100), true)
        .await?;
    let mut got = Vec::new();
    while got.len() < 4 {
        let sample = samples.next().await.expect("the stream goes on")?;
        got.push(sample);
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(350),
        "four samples 100 ms apart took {elapsed:?}"
    );
    for sample in &got {
        assert!((0.0..=100.0).contains(&sample.cpu_usage_percent));
        assert!(sample.memory.total_bytes > 0);
        assert!(!sample.cpu_usage_per_core.is_empty());
    }
    assert!(
        got.windows(2)
            .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms)
    );
    // The fullest disk is read on a thread of its own, ready from the
    // first sample or soon after; this machine has a local file system.
    let disk = got
        .iter()
        .find_map(|s| s.fullest_disk.clone())
        .expect("a sample names the fullest disk");
    assert!(disk.mount_point.starts_with('/'), "{disk:?}");
    assert!(
        disk.total_bytes > 0 && disk.available_bytes <= disk.total_bytes,
        "{disk:?}"
    );
    assert!((0.0..=100.0).contains(&disk.used_percent()));
    drop(samples);

    let coarse = client
        .watch_metrics(Duration::from_millis(100), false)
        .await?
        .next()
        .await
        .expect("a sample")?;
    assert!(
        coarse.cpu_usage_per_core.is_empty(),
        "per-core only when asked"
    );
    Ok(())
}

#[tokio::test]
async fn a_metrics_interval_out_of_range_is_invalid() -> TestResult {
    let agent = TestAgent::start();
    let client = agent.client().await;
    for ms in [0, 99, 60_001] {
        let result = client
            .watch_metrics(Duration::from_millis(ms), false)
            .await
            .map(|_| ());
        let Err(Error::Status(status)) = result else {
            panic!("{ms} ms must be refused, got {result:?}");
        };
        assert_eq!(status.code(), Code::InvalidArgument, "{ms} ms");
        assert!(
            status.message().contains("100 and 60000"),
            "{}",
            status.message()
        );
    }
    Ok(())
}

#[tokio::test]
async fn processes_are_listed_and_filtered() -> TestResult {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let mark = marker();
    let mut stream = client
        .execute(ExecRequest::new(format!("sleep {mark} & echo $!; wait")))
        .await?;
    let sleep_pid: i32 = loop {
        match stream.next().await.expect("output")? {
            Event::Output { data, .. } => break std::str::from_utf8(&data)?.trim().parse()?,
            _ => continue,
        }
    };

    let all = client.list_processes("").await?;
    assert!(all.len() > 3, "a real system has several processes");
    assert!(all.windows(2).all(|w| w[0].pid < w[1].pid), "sorted by pid");
    let me = all
        .iter()
        .find(|p| p.pid == std::process::id() as i32)
        .expect("the test process is listed");
    assert!(me.memory_bytes > 0);
    assert!(!me.user.is_empty());

    let filtered = client.list_processes(&mark).await?;
    let sleep = filtered
        .iter()
        .find(|p| p.pid == sleep_pid)
        .expect("the sleep is found by its command line");
    assert_eq!(sleep.name, "sleep");
    assert!(sleep.command_line.contains(&mark));
    assert!(sleep.start_time_ms > 0);
    assert!(
        filtered
            .iter()
            .all(|p| p.command_line.contains(&mark) || p.name.contains(&mark)),
        "the filter keeps only matches: {filtered:?}"
    );
    drop(stream);
    Ok(())
}

#[tokio::test]
async fn signal_process_delivers_and_reports_unknown_pids() -> TestResult {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let mark = marker();
    let mut stream = client
        .execute(ExecRequest::new(format!(
            "sleep {mark} & echo $!; wait $!; echo status $?"
        )))
        .await?;
    let mut sleep_pid = None;
    let mut stdout = String::new();
    while let Some(event) = stream.next().await {
        // The shell may also report "Terminated" on stderr; only stdout counts.
        if let Event::Output {
            stream: OutputStream::Stdout,
            data,
        } = event?
        {
            stdout.push_str(std::str::from_utf8(&data)?);
            if sleep_pid.is_none() {
                let pid: i32 = stdout.trim().parse()?;
                sleep_pid = Some(pid);
                client.signal_process(pid, ProcessSignal::Term).await?;
            }
        }
    }
    assert!(
        stdout.ends_with("status 143\n"),
        "the shell saw its child die of SIGTERM: {stdout:?}"
    );
    assert!(
        wait_none_with(&mark, Duration::from_secs(2))
            .await
            .is_empty()
    );

    let unknown = client.signal_process(4_194_305, ProcessSignal::Term).await;
    assert_eq!(
        unknown.as_ref().map_err(Error::code).err(),
        Some(Some(Code::NotFound)),
        "{unknown:?}"
    );

    let mut raw = proto::remote_agent_client::RemoteAgentClient::connect(agent.url()).await?;
    let status = raw
        .signal_process(proto::SignalProcessRequest {
            pid: sleep_pid.unwrap_or(1),
            signal: proto::Signal::Unspecified.into(),
        })
        .await
        .expect_err("a signal is required");
    assert_eq!(status.code(), Code::InvalidArgument);
    for pid in [0, -1] {
        let status = raw
            .signal_process(proto::SignalProcessRequest {
                pid,
                signal: proto::Signal::Term.into(),
            })
            .await
            .expect_err("groups are not addressable");
        assert_eq!(status.code(), Code::InvalidArgument, "pid {pid}");
    }
    let status = raw
        .signal_process(proto::SignalProcessRequest {
            pid: std::process::id() as i32,
            signal: proto::Signal::Term.into(),
        })
        .await
        .expect_err("the agent does not signal itself");
    assert_eq!(status.code(), Code::FailedPrecondition);
    Ok(())
}

#[tokio::test]
async fn connection_info_shows_what_the_agent_sees() -> TestResult {
    let agent = TestAgent::start();
    let client = agent.client().await;
    let info = client.connection_info().await?;
    assert_eq!(info.session_id, client.session_id());
    assert!(
        info.peer_address.starts_with("127.0.0.1:"),
        "{}",
        info.peer_address
    );
    assert_eq!(info.listen_addresses, vec![agent.addr().to_string()]);
    assert_eq!(info.identity, "anonymous");
    assert_eq!(info.role, "admin");
    assert!(!info.tls);
    assert_eq!(info.agent_pid, std::process::id() as i32);
    assert_eq!(info.boot_id, client.system_info().await?.boot_id);
    assert_eq!(info.session_count, 1);
    assert_eq!(info.running_commands, 0);

    let mark = marker();
    let stream = client
        .execute(ExecRequest::new(format!("sleep {mark}")))
        .await?;
    let other = agent.client().await;
    let seen_by_other = other.connection_info().await?;
    assert_eq!(seen_by_other.session_count, 2);
    assert_eq!(seen_by_other.running_commands, 1);
    assert_eq!(seen_by_other.session_running_commands, 0);
    assert_ne!(seen_by_other.session_id, info.session_id);
    assert_eq!(client.connection_info().await?.session_running_commands, 1);
    drop(stream);
    assert!(
        wait_none_with(&mark, Duration::from_secs(2))
            .await
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn requests_without_a_session_header_get_one_per_connection() -> TestResult {
    let agent = TestAgent::start();
    let mut raw = proto::remote_agent_client::RemoteAgentClient::connect(agent.url()).await?;
    let info = raw
        .get_connection_info(proto::GetConnectionInfoRequest {})
        .await?
        .into_inner();
    assert!(info.session_id.starts_with("conn-"), "{}", info.session_id);
    let again = raw
        .get_connection_info(proto::GetConnectionInfoRequest {})
        .await?
        .into_inner();
    assert_eq!(
        info.session_id, again.session_id,
        "same connection, same session"
    );
    Ok(())
}

#[tokio::test]
async fn health_answers_serving() -> TestResult {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let agent = TestAgent::start();
    let mut health = HealthClient::new(channel(&agent).await?);
    for service in ["", "vigie.v1.RemoteAgent"] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await?
            .into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("unknown services are not found");
    assert_eq!(unknown.code(), Code::NotFound);
    Ok(())
}

#[tokio::test]
async fn reflection_lists_the_services_in_both_versions() -> TestResult {
    let agent = TestAgent::start();
    let expected = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "vigie.v1.RemoteAgent",
    ];

    {
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut client = ServerReflectionClient::new(channel(&agent).await?);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = client
            .server_reflection_info(tokio_stream::once(request))
            .await?
            .into_inner();
        let response = responses.message().await?.expect("a response");
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("unexpected reflection answer");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for name in expected {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
    }
    {
        use tonic_reflection::pb::v1alpha::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut client = ServerReflectionClient::new(channel(&agent).await?);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "vigie.v1.RemoteAgent".into(),
            )),
        };
        let mut responses = client
            .server_reflection_info(tokio_stream::once(request))
            .await?
            .into_inner();
        let response = responses.message().await?.expect("a response");
        let Some(MessageResponse::FileDescriptorResponse(files)) = response.message_response else {
            panic!("unexpected reflection answer");
        };
        let file = prost_types::FileDescriptorProto::decode(
            files
                .file_descriptor_proto
                .first()
                .expect("one file")
                .as_slice(),
        )?;
        assert_eq!(file.package(), "vigie.v1");
        let service = &file.service[0];
        let methods: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
        assert_eq!(
            methods,
            [
                "GetSystemInfo",
                "WatchMetrics",
                "Execute",
                "AttachJob",
                "ListJobs",
                "GetJob",
                "CancelJob",
                "PutFile",
                "GetFile",
                "MakeDirectory",
                "ListProcesses",
                "SignalProcess",
                "GetConnectionInfo",
                "Disconnect",
                "Shutdown",
                "Restart",
                "Enroll",
                "RenewCertificate",
                "PushPolicy"
            ]
        );
    }
    Ok(())
}
