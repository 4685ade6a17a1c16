//! Round trips. Floors: spawning `sh -c true` here, and a loopback TCP
//! round trip. Then `true` through the agent on a warm channel (plaintext
//! and mTLS + token), GetSystemInfo, a new CLI process per call (cold, as
//! ssh is usually used), and OpenSSH cold and multiplexed.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::Command,
};

use vigie::{
    client::{AgentClient, ConnectionSettings},
    command::ExecRequest,
};

use crate::{
    Run,
    agents::Agent,
    report::{Figure, Samples, ms, us},
    ssh,
};

pub fn run(run: &mut Run) {
    let n = run.options.count(2000);
    let plain = Agent::start(&[]);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (tls, settings) = tls_agent(dir.path());
    // The floor and the warm calls alternate in blocks, so that both see
    // the same machine: on a shared machine the load drifts within seconds.
    let (spawn, warm, warm_tls, info) = interleaved(run, &plain, (&tls, &settings), n);
    run.report
        .add(Figure::latency("spawn", "local spawn `sh -c true`", &spawn).note("floor"));
    let spawn = run.report.get("spawn");

    let tcp = tcp_round_trip(run.options.count(20_000));
    let mut figure = Figure::latency("tcp_rtt", "loopback TCP round trip, 64 B", &tcp);
    figure.unit = "us";
    figure.value = us(tcp.median());
    figure.p99 = Some(us(tcp.quantile(0.99)));
    run.report.add(figure.note("floor"));

    // Everything is measured first, then reported, so that each figure can
    // carry its ratio to OpenSSH.

    // A new CLI process per call, with its history in a scratch file.
    let cold_n = run.options.count(200);
    let history = dir.path().join("history.jsonl");
    let config = dir.path().join("client.toml");
    let cli = |tls: bool, port: u16| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_vigie"));
        command.env("VIGIE_HISTORY", &history).env("NO_COLOR", "1");
        if tls {
            command.arg("--config").arg(&config);
        }
        command.args(["-H", &format!("127.0.0.1:{port}"), "exec", "--", "true"]);
        command
    };
    let cold = Samples::time(cold_n, || {
        ssh::run_ok(&mut cli(false, plain.port)).expect("the CLI runs `true`");
    });
    let cold_tls = Samples::time(cold_n, || {
        ssh::run_ok(&mut cli(true, tls.port)).expect("the CLI runs `true` over mTLS");
    });

    let ssh_n = run.options.count(40);
    let ssh_cold = run.sshd("cold `ssh … true`").map(|sshd| {
        Samples::time(ssh_n, || {
            ssh::run_ok(sshd.ssh().arg("true")).expect("ssh runs `true`");
        })
    });
    // Multiplexed calls cost some 10 ms each: a tenth of the warm count.
    let mux_n = (n / 10).max(1);
    let ssh_mux = run.sshd("multiplexed `ssh … true`").map(|sshd| {
        ssh::run_ok(sshd.ssh_multiplexed().expect("a ControlMaster").arg("true"))
            .expect("ssh runs `true`");
        Samples::time(mux_n, || {
            let mut command = sshd.ssh_multiplexed().expect("a ControlMaster");
            ssh::run_ok(command.arg("true")).expect("ssh runs `true`");
        })
    });
    let ssh_cold_ms = ssh_cold.as_ref().map(|s| ms(s.median()));
    let ssh_mux_ms = ssh_mux.as_ref().map(|s| ms(s.median()));

    let warm_ms = ms(warm.median());
    run.report.add(
        Figure::latency("warm_true", "vigie `true`, warm channel", &warm)
            .ratio("local spawn", spawn)
            .ratio("OpenSSH ControlMaster", ssh_mux_ms)
            .target(
                "<= 1.3x local spawn",
                spawn.is_some_and(|s| warm_ms <= 1.3 * s),
            ),
    );
    run.report.add(
        Figure::latency(
            "warm_true_tls",
            "vigie `true`, warm channel, mTLS + token",
            &warm_tls,
        )
        .ratio("plaintext", Some(warm_ms))
        .ratio("OpenSSH ControlMaster", ssh_mux_ms),
    );
    run.report.add(Figure::latency(
        "system_info",
        "vigie GetSystemInfo, warm channel",
        &info,
    ));
    run.report.add(
        Figure::latency("cli_cold", "vigie CLI process `exec true`, cold", &cold)
            .ratio("local spawn", spawn)
            .ratio("OpenSSH cold", ssh_cold_ms)
            .note("plaintext"),
    );
    // The figure held to the target is the encrypted, authenticated one,
    // like ssh's.
    let cold_tls_ms = ms(cold_tls.median());
    let mut figure = Figure::latency(
        "cli_cold_tls",
        "vigie CLI process `exec true`, cold, mTLS",
        &cold_tls,
    )
    .ratio("OpenSSH cold", ssh_cold_ms)
    .note("mTLS + token, as `vigie-agent init` sets them up");
    if let Some(ssh_cold_ms) = ssh_cold_ms {
        figure = figure.target(
            ">= 5x faster than OpenSSH cold",
            cold_tls_ms * 5.0 <= ssh_cold_ms,
        );
    }
    run.report.add(figure);
    if let Some(samples) = &ssh_cold {
        run.report.add(
            Figure::latency("ssh_cold", "OpenSSH `ssh … true`, cold", samples).note("baseline"),
        );
    }
    if let Some(samples) = &ssh_mux {
        run.report.add(
            Figure::latency("ssh_mux", "OpenSSH `ssh … true`, ControlMaster", samples)
                .note("baseline"),
        );
    }
}

/// `true` and GetSystemInfo `n` times each over one warm channel.
fn spawn_true() {
    let status = Command::new("sh")
        .args(["-c", "true"])
        .status()
        .expect("sh runs");
    assert!(status.success());
}

/// `n` local spawns, `n` warm `true` calls in plaintext and `n` over mTLS,
/// in alternating blocks of a tenth each; then GetSystemInfo calls.
fn interleaved(
    run: &Run,
    plain: &Agent,
    (tls, settings): (&Agent, &ConnectionSettings),
    n: usize,
) -> (Samples, Samples, Samples, Samples) {
    let (plain_client, tls_client) = run.runtime.block_on(async {
        let plain_client =
            AgentClient::connect_with(&plain.address(), &ConnectionSettings::default())
                .await
                .expect("connects");
        let tls_client = AgentClient::connect_with(&tls.address(), settings)
            .await
            .expect("connects over mTLS");
        for _ in 0..run.options.count(100) {
            plain_client
                .run(ExecRequest::new("true"))
                .await
                .expect("runs");
            tls_client
                .run(ExecRequest::new("true"))
                .await
                .expect("runs");
        }
        (plain_client, tls_client)
    });
    let warm = |client: &AgentClient, count: usize| -> Vec<std::time::Duration> {
        run.runtime.block_on(async {
            let mut times = Vec::with_capacity(count);
            for _ in 0..count {
                let t = std::time::Instant::now();
                let done = client.run(ExecRequest::new("true")).await.expect("runs");
                times.push(t.elapsed());
                assert!(done.exit.is_some_and(|e| e.success()));
            }
            times
        })
    };
    let block = (n / 10).max(1);
    let (mut spawn, mut warm_plain, mut warm_tls) = (Vec::new(), Vec::new(), Vec::new());
    while spawn.len() < n {
        let count = block.min(n - spawn.len());
        spawn.extend(Samples::time(count, spawn_true).0);
        warm_plain.extend(warm(&plain_client, count));
        warm_tls.extend(warm(&tls_client, count));
    }
    let info = run.runtime.block_on(async {
        let mut info = Vec::new();
        for _ in 0..run.options.count(1000) {
            let t = std::time::Instant::now();
            plain_client.system_info().await.expect("system info");
            info.push(t.elapsed());
        }
        info
    });
    (
        Samples(spawn),
        Samples(warm_plain),
        Samples(warm_tls),
        Samples(info),
    )
}

/// An agent with TLS, client certificates and a token, as `vigie-agent
/// init` sets them up, and the client settings that reach it.
pub fn tls_agent(dir: &std::path::Path) -> (Agent, ConnectionSettings) {
    vigie::server::init::init(dir, &[], "127.0.0.1:0").expect("init");
    let config = dir.join("agent.toml");
    let agent = Agent::start(&["--config", config.to_str().expect("a UTF-8 path")]);
    let settings = vigie::client::ClientConfig::load(&dir.join("client.toml"))
        .expect("the client config")
        .defaults;
    (agent, settings)
}

/// A ping-pong of 64-byte messages over loopback TCP.
fn tcp_round_trip(n: usize) -> Samples {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let echo = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().expect("accept");
        socket.set_nodelay(true).ok();
        let mut buf = [0u8; 64];
        while socket.read_exact(&mut buf).is_ok() {
            if socket.write_all(&buf).is_err() {
                break;
            }
        }
    });
    let mut socket = TcpStream::connect(addr).expect("connect");
    socket.set_nodelay(true).ok();
    let mut buf = [7u8; 64];
    let samples = Samples::time(n, || {
        socket.write_all(&buf).expect("write");
        socket.read_exact(&mut buf).expect("read");
    });
    drop(socket);
    let _ = echo.join();
    samples
}
