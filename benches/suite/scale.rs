//! The CLI at fleet scale over mutual TLS: `hosts check`, `info` and
//! `exec -- true` to 1,000 and 10,000 agents, each a cold `vigie` process
//! (new connections, full handshakes, a client certificate each), with the
//! client's peak memory and the CPU time of the client and of the agents;
//! beside them, the floors this one machine sets: as many `sh -c true`
//! spawned and reaped, and as many mutual-TLS handshakes, as many at once
//! as the CLI runs. The agents are the farm's (real agents serving
//! the real service, many per process), each with the certificate, client
//! CA and access file `vigie-agent init` makes.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    Run,
    agents::AgentFarm,
    report::{Figure, median, ms},
};

/// Agents per farm process here: a hundred processes serve ten thousand
/// agents, each process holding a few hundred descriptors (listeners and
/// connections), as a busy agent does; fewer processes would make every
/// spawn copy a descriptor table no real agent has.
const PER_PROCESS: usize = 100;

pub fn run(run: &mut Run) {
    let sizes: &[usize] = if run.options.smoke {
        &[100]
    } else {
        &[1000, 10_000]
    };
    let repeats = if run.options.smoke { 1 } else { 3 };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pki = dir.path().join("pki");
    vigie::server::init::init(&pki, &[], "127.0.0.1:0").expect("vigie-agent init");
    let config = pki.join("client.toml");
    for &count in sizes {
        let farm = AgentFarm::start_with(count, PER_PROCESS, Some(&pki));
        let hosts = dir.path().join(format!("hosts-{count}.txt"));
        farm.write_hosts(&hosts, "h");
        let cli = |args: &[&str]| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_vigie"));
            command
                .env("HOME", dir.path())
                .env("VIGIE_HISTORY", dir.path().join("history.jsonl"))
                .arg("--config")
                .arg(&config)
                .arg("--hosts")
                .arg(&hosts)
                .args(args);
            command
        };
        let mut figures = Vec::new();
        for (key, what, args) in [
            ("check", "`hosts check`", &["hosts", "check"][..]),
            ("info", "`info`", &["info"][..]),
            ("exec", "`exec -- true`", &["exec", "--", "true"][..]),
        ] {
            let mut times = Vec::new();
            let (mut peak, mut cpu, mut agents_cpu) = (0, Duration::ZERO, Duration::ZERO);
            for _ in 0..repeats {
                let before = farm.cpu();
                let cost = measured(&mut cli(args));
                agents_cpu = agents_cpu.max(farm.cpu().saturating_sub(before));
                times.push(cost.wall);
                peak = peak.max(cost.rss);
                cpu = cpu.max(cost.cpu);
            }
            figures.push((key, what, times, peak, cpu, agents_cpu));
        }
        let farm_note = farm.describe();
        drop(farm);
        let mut floor: Vec<Duration> = (0..repeats).map(|_| spawn_floor(run, count)).collect();
        let floor = ms(median(&mut floor));
        let mut tls: Vec<Duration> = (0..repeats).map(|_| tls_floor(run, &pki, count)).collect();
        let tls = ms(median(&mut tls));

        run.report.add(
            Figure::new(
                format!("scale_spawn_floor_{count}"),
                format!("{count} `sh -c true` spawned and reaped locally"),
                "ms",
                floor,
            )
            .note(format!(
                "baseline: the agents' own work, {} at once, no network",
                vigie::client::fleet::DEFAULT_CONCURRENCY
            )),
        );
        run.report.add(
            Figure::new(
                format!("scale_tls_floor_{count}"),
                format!("{count} mutual-TLS handshakes on loopback"),
                "ms",
                tls,
            )
            .note(format!(
                "baseline: rustls client and server in one process, {} at once, the same \
                 certificates and algorithms, one byte each way, no HTTP/2",
                vigie::client::fleet::DEFAULT_CONCURRENCY
            )),
        );
        let mut peak_all = 0;
        for (key, what, mut times, peak, cpu, agents_cpu) in figures {
            peak_all = peak_all.max(peak);
            let time = ms(median(&mut times));
            let mut figure = Figure::new(
                format!("scale_{key}_{count}"),
                format!("{what} to {count} agents, mTLS, cold CLI"),
                "ms",
                time,
            )
            .ratio("TLS floor", Some(tls))
            .note(format!(
                "`vigie --config client.toml --hosts FILE {}`, start to exit; CPU: client {:.1} s, \
                 agents {:.1} s; peak RSS {:.0} MiB; {farm_note}",
                what.trim_matches('`'),
                cpu.as_secs_f64(),
                agents_cpu.as_secs_f64(),
                peak as f64 / 1024.0
            ));
            if key == "exec" {
                figure = figure.ratio("spawn floor", Some(floor));
                if count == 10_000 {
                    figure = figure.target("<= 1.5x the spawn floor", time <= 1.5 * floor);
                }
            } else if count == 10_000 {
                figure = figure.target("< 5 s", time < 5000.0);
            }
            run.report.add(figure);
        }
        let mib = peak_all as f64 / 1024.0;
        let mut figure = Figure::new(
            format!("scale_client_rss_{count}"),
            format!("client peak RSS at {count} hosts, mTLS"),
            "MiB",
            mib,
        )
        .note("the largest of the three commands' peaks (wait4's ru_maxrss)");
        if count == 10_000 {
            figure = figure.target("< 300 MiB", mib < 300.0);
        }
        run.report.add(figure);
    }
}

/// `count` mutual-TLS handshakes over loopback between a rustls client and
/// server in this process, as many at once as a fan-out runs, with the
/// certificates `vigie-agent init` made and vigie's algorithms: the share
/// of a cold fan-out that TLS itself costs on this machine, both ends.
fn tls_floor(run: &Run, pki: &std::path::Path, count: usize) -> Duration {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let certs = |name: &str| -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_file_iter(pki.join(name))
            .expect("a PEM file")
            .map(|c| c.expect("a certificate"))
            .collect()
    };
    let key = |name: &str| PrivateKeyDer::from_pem_file(pki.join(name)).expect("a key");
    let provider = vigie::tls::crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for ca in certs("ca.pem") {
        roots.add(ca).expect("the CA");
    }
    let roots = std::sync::Arc::new(roots);
    let client_verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .expect("a client verifier");
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(certs("agent.pem"), key("agent-key.pem"))
        .expect("the agent's certificate");
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(certs("client.pem"), key("client-key.pem"))
        .expect("the client's certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server));
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    run.runtime.block_on(async {
        use futures::StreamExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a listener");
        let address = listener.local_addr().expect("its address");
        let serving = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let mut tls = acceptor.accept(tcp).await.expect("a handshake");
                    let mut byte = [0u8; 1];
                    tls.read_exact(&mut byte).await.expect("a byte");
                    tls.write_all(&byte).await.expect("its echo");
                    tls.flush().await.expect("flushed");
                    let _ = tls.shutdown().await;
                });
            }
        });
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("a name");
        let started = Instant::now();
        futures::stream::iter(0..count)
            .map(|_| {
                let (connector, name) = (connector.clone(), name.clone());
                async move {
                    let tcp = tokio::net::TcpStream::connect(address)
                        .await
                        .expect("connected");
                    let mut tls = connector.connect(name, tcp).await.expect("a handshake");
                    tls.write_all(b"x").await.expect("a byte");
                    tls.flush().await.expect("flushed");
                    let mut byte = [0u8; 1];
                    tls.read_exact(&mut byte).await.expect("its echo");
                }
            })
            .buffer_unordered(vigie::client::fleet::DEFAULT_CONCURRENCY)
            .collect::<()>()
            .await;
        let elapsed = started.elapsed();
        serving.abort();
        elapsed
    })
}

/// What one run of the CLI cost.
struct Cost {
    wall: Duration,
    /// Peak RSS, KiB.
    rss: u64,
    /// The client's CPU time, user and system.
    cpu: Duration,
}

/// Runs `command` to its end (its output discarded); how long it took, its
/// peak RSS and CPU time, from the kernel's accounting of the child.
// The child is waited for with wait4, for its resource usage, which
// `Child::wait` does not give.
#[allow(clippy::zombie_processes)]
fn measured(command: &mut Command) -> Cost {
    let started = Instant::now();
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vigie starts");
    let pid = child.id() as libc::pid_t;
    let mut stderr = child.stderr.expect("piped");
    // Read stderr while it runs (a full pipe would stall it).
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    // A command that hangs must not hang the suite: it is killed after
    // two minutes (and then fails the assertion below). Through a pidfd,
    // which names this process even once its pid is reaped and reused.
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid).expect("a pid"),
        rustix::process::PidfdFlags::empty(),
    )
    .expect("pidfd_open");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let finished = done.clone();
    let watchdog = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if finished.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL);
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value, and wait4 writes one.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the child is ours and not yet waited for (std never waits
    // for a `Child` it drops); the pointers are to live locals.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = started.elapsed();
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = watchdog.join();
    let stderr = reader.join().unwrap_or_default();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{command:?} failed ({status}): {stderr}"
    );
    let time = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    Cost {
        wall: elapsed,
        rss: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
    }
}

/// `count` `sh -c true` spawned and reaped, as many at once as a fan-out
/// runs: the agents' share of an `exec -- true` to `count` hosts.
fn spawn_floor(run: &Run, count: usize) -> Duration {
    run.runtime.block_on(async {
        use futures::StreamExt;
        let started = Instant::now();
        futures::stream::iter(0..count)
            .map(|_| async {
                let status = tokio::process::Command::new("sh")
                    .args(["-c", "true"])
                    .stdin(Stdio::null())
                    .status()
                    .await
                    .expect("sh runs");
                assert!(status.success());
            })
            .buffer_unordered(vigie::client::fleet::DEFAULT_CONCURRENCY)
            .collect::<()>()
            .await;
        started.elapsed()
    })
}
