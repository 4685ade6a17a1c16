//! vigie's benchmark suite: figures of the agent and clients next to
//! baselines measured in the same run, with their ratios.
//!
//! `cargo bench --bench suite` runs everything; `-- --smoke` runs each
//! figure once with small sizes (CI uses it so the suite cannot rot);
//! `-- --only rtt,stream` picks figures. Agents listen on 127.0.0.1 only.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use futures::StreamExt;
use vigie::{
    client::AgentClient,
    command::{Event, ExecRequest},
};

/// What the run was asked to do.
struct Options {
    smoke: bool,
    only: Option<Vec<String>>,
    out: PathBuf,
}

impl Options {
    fn parse() -> Self {
        let mut options = Options {
            smoke: false,
            only: None,
            out: PathBuf::from("target/bench-results"),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--smoke" => options.smoke = true,
                "--only" => {
                    options.only = args
                        .next()
                        .map(|v| v.split(',').map(str::to_owned).collect())
                }
                "--out" => options.out = args.next().map(PathBuf::from).unwrap_or(options.out),
                // cargo bench passes --bench to every bench target.
                "--bench" => {}
                other => eprintln!("ignoring unknown argument {other}"),
            }
        }
        options
    }

    fn wants(&self, group: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|o| o == group))
    }

    fn count(&self, full: usize) -> usize {
        if self.smoke { full.min(5) } else { full }
    }
}

/// Latency samples and their summary.
struct Samples(Vec<Duration>);

impl Samples {
    fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
        sorted[index]
    }

    fn median(&self) -> Duration {
        self.quantile(0.5)
    }
}

/// One line of the results table.
#[derive(serde::Serialize)]
struct Figure {
    name: String,
    unit: &'static str,
    value: f64,
    p99: Option<f64>,
    baseline: Option<String>,
    ratio: Option<f64>,
    note: String,
}

struct Report {
    figures: Vec<Figure>,
}

impl Report {
    fn add(&mut self, figure: Figure) {
        let ratio = figure
            .ratio
            .map(|r| format!("{r:.2}x {}", figure.baseline.as_deref().unwrap_or("")))
            .unwrap_or_default();
        let p99 = figure
            .p99
            .map(|p| format!(" (p99 {p:.3})"))
            .unwrap_or_default();
        println!(
            "{:<44} {:>12.3} {:<5}{p99} {ratio} {}",
            figure.name, figure.value, figure.unit, figure.note
        );
        self.figures.push(figure);
    }

    fn get(&self, name: &str) -> Option<f64> {
        self.figures
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The release agent binary, started on 127.0.0.1:0.
struct Agent {
    child: std::process::Child,
    url: String,
}

impl Agent {
    fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigie-agent"))
            .args(["--listen", "127.0.0.1:0", "--log-level", "warn"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("vigie-agent starts");
        let mut stdout = child.stdout.take().expect("piped");
        let mut line = Vec::new();
        let mut byte = [0u8];
        while stdout.read(&mut byte).map(|n| n == 1).unwrap_or(false) && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        let line = String::from_utf8_lossy(&line).into_owned();
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Self {
            url: format!("http://{addr}"),
            child,
        }
    }

    fn status_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--agent-farm") {
        let count = args.next().and_then(|n| n.parse().ok()).unwrap_or(1);
        AgentFarm::serve(count);
        return;
    }
    let options = Options::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut report = Report {
        figures: Vec::new(),
    };
    println!(
        "vigie benchmark suite{} on {} CPUs",
        if options.smoke { " (smoke)" } else { "" },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    if options.wants("rtt") {
        rtt(&options, &runtime, &mut report);
    }
    if options.wants("stream") {
        stream(&options, &runtime, &mut report);
    }
    if options.wants("tls") {
        tls(&options, &runtime, &mut report);
    }
    if options.wants("fanout") {
        fanout(&options, &runtime, &mut report);
    }
    if options.wants("rss") {
        rss(&options, &runtime, &mut report);
    }
    #[cfg(feature = "gui")]
    if options.wants("gui") {
        gui::run(&options, &mut report);
    }

    std::fs::create_dir_all(&options.out).expect("results folder");
    let json = serde_json::to_string_pretty(&report.figures).expect("json");
    let path = options.out.join("results.json");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(json.as_bytes()))
        .expect("results written");
    println!("results written to {}", path.display());
}

/// Round trips: local spawn and loopback TCP as the floors, then `true` and
/// GetSystemInfo through the agent on a warm channel.
fn rtt(options: &Options, runtime: &tokio::runtime::Runtime, report: &mut Report) {
    let n = options.count(2000);
    let spawn = Samples(
        (0..n)
            .map(|_| {
                let t = Instant::now();
                let status = Command::new("sh")
                    .args(["-c", "true"])
                    .status()
                    .expect("sh runs");
                assert!(status.success());
                t.elapsed()
            })
            .collect(),
    );
    report.add(Figure {
        name: "local spawn `sh -c true`".into(),
        unit: "ms",
        value: ms(spawn.median()),
        p99: Some(ms(spawn.quantile(0.99))),
        baseline: None,
        ratio: None,
        note: format!("n={n}"),
    });

    let tcp = tcp_round_trip(options.count(20_000));
    report.add(Figure {
        name: "loopback TCP round trip, 64 B".into(),
        unit: "us",
        value: us(tcp.median()),
        p99: Some(us(tcp.quantile(0.99))),
        baseline: None,
        ratio: None,
        note: String::new(),
    });

    let agent = Agent::start(&[]);
    let (true_rtt, info_rtt) = runtime.block_on(async {
        let client = AgentClient::connect(&agent.url).await.expect("connects");
        for _ in 0..options.count(100) {
            client
                .run(ExecRequest::new("true"))
                .await
                .expect("true runs");
        }
        let mut true_rtt = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            let run = client
                .run(ExecRequest::new("true"))
                .await
                .expect("true runs");
            true_rtt.push(t.elapsed());
            assert!(run.exit.is_some_and(|e| e.success()));
        }
        let mut info_rtt = Vec::new();
        for _ in 0..options.count(1000) {
            let t = Instant::now();
            client.system_info().await.expect("system info");
            info_rtt.push(t.elapsed());
        }
        (Samples(true_rtt), Samples(info_rtt))
    });
    report.add(Figure {
        name: "vigie `true`, warm channel".into(),
        unit: "ms",
        value: ms(true_rtt.median()),
        p99: Some(ms(true_rtt.quantile(0.99))),
        baseline: Some("local spawn".into()),
        ratio: Some(true_rtt.median().as_secs_f64() / spawn.median().as_secs_f64()),
        note: format!("n={n}"),
    });
    report.add(Figure {
        name: "vigie GetSystemInfo, warm channel".into(),
        unit: "ms",
        value: ms(info_rtt.median()),
        p99: Some(ms(info_rtt.quantile(0.99))),
        baseline: None,
        ratio: None,
        note: String::new(),
    });
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
    let samples = (0..n)
        .map(|_| {
            let t = Instant::now();
            socket.write_all(&buf).expect("write");
            socket.read_exact(&mut buf).expect("read");
            t.elapsed()
        })
        .collect();
    drop(socket);
    let _ = echo.join();
    Samples(samples)
}

/// Streaming: a local pipe as the floor, then the same bytes through the agent.
fn stream(options: &Options, runtime: &tokio::runtime::Runtime, report: &mut Report) {
    let bytes: u64 = if options.smoke { 16 << 20 } else { 1 << 30 };
    let runs = if options.smoke { 1 } else { 5 };
    let command = format!("head -c {bytes} /dev/zero");

    let mut pipe_rates = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let mut child = Command::new("sh")
            .args(["-c", &command])
            .stdout(Stdio::piped())
            .spawn()
            .expect("head runs");
        let mut out = child.stdout.take().expect("piped");
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = out.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        child.wait().expect("reaped");
        assert_eq!(total, bytes);
        pipe_rates.push(bytes as f64 / t.elapsed().as_secs_f64() / 1e6);
    }
    let pipe = median_f64(&mut pipe_rates);
    report.add(Figure {
        name: format!("local pipe, {}", size(bytes)),
        unit: "MB/s",
        value: pipe,
        p99: None,
        baseline: None,
        ratio: None,
        note: format!("runs={runs}"),
    });

    let agent = Agent::start(&[]);
    let rates = runtime.block_on(async {
        let client = AgentClient::connect(&agent.url).await.expect("connects");
        let mut rates = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            let mut events = client
                .execute(ExecRequest {
                    output_limit: Some(bytes),
                    ..ExecRequest::new(command.clone())
                })
                .await
                .expect("streams");
            let mut total = 0u64;
            while let Some(event) = events.next().await {
                match event.expect("an event") {
                    Event::Output { data, .. } => total += data.len() as u64,
                    Event::Exited(exit) => assert!(exit.success() && !exit.truncated),
                    Event::Started { .. } => {}
                }
            }
            assert_eq!(total, bytes);
            rates.push(bytes as f64 / t.elapsed().as_secs_f64() / 1e6);
        }
        rates
    });
    let mut rates = rates;
    let vigie = median_f64(&mut rates);
    report.add(Figure {
        name: format!("vigie stream {} stdout, plaintext", size(bytes)),
        unit: "MB/s",
        value: vigie,
        p99: None,
        baseline: Some("local pipe".into()),
        ratio: Some(vigie / pipe),
        note: format!(
            "runs={runs}; agent peak RSS {} KiB",
            agent.status_kib("VmHWM:")
        ),
    });
}

/// Agent memory: idle right after start.
fn rss(_options: &Options, runtime: &tokio::runtime::Runtime, report: &mut Report) {
    let agent = Agent::start(&[]);
    runtime.block_on(async {
        let client = AgentClient::connect(&agent.url).await.expect("connects");
        client.connection_info().await.expect("answers");
    });
    std::thread::sleep(Duration::from_millis(200));
    report.add(Figure {
        name: "agent RSS, idle".into(),
        unit: "KiB",
        value: agent.status_kib("VmRSS:") as f64,
        p99: None,
        baseline: None,
        ratio: None,
        note: format!("peak {} KiB", agent.status_kib("VmHWM:")),
    });
    let _ = report.get("agent RSS, idle");
}

/// A TLS agent with the certificates `vigie-agent init` makes, and the
/// client settings that reach it.
fn tls_agent(dir: &std::path::Path) -> (Agent, vigie::client::ConnectionSettings) {
    vigie::server::init::init(dir, &[], "127.0.0.1:0").expect("init");
    let config = dir.join("agent.toml");
    let agent = Agent::start(&["--config", config.to_str().expect("utf-8 path")]);
    let settings = vigie::client::ClientConfig::load(&dir.join("client.toml"))
        .expect("client config")
        .defaults;
    (agent, settings)
}

fn address_of(url: &str) -> vigie::client::Address {
    let (host, port) = url
        .trim_start_matches("http://")
        .rsplit_once(':')
        .expect("host:port");
    vigie::client::Address {
        host: host.to_owned(),
        port: port.parse().expect("a port"),
    }
}

/// The cost of TLS (mutual, with a token, as `init` sets it up): the same
/// `true` round trip and 1 GiB stream as above, side by side with plaintext.
fn tls(options: &Options, runtime: &tokio::runtime::Runtime, report: &mut Report) {
    let n = options.count(2000);
    let bytes: u64 = if options.smoke { 16 << 20 } else { 1 << 30 };
    let runs = if options.smoke { 1 } else { 5 };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (tls_agent, settings) = tls_agent(dir.path());
    let plain_agent = Agent::start(&[]);
    let measure = |url: &str, settings: &vigie::client::ConnectionSettings| {
        runtime.block_on(async {
            let client = AgentClient::connect_with(&address_of(url), settings)
                .await
                .expect("connects");
            for _ in 0..options.count(100) {
                client.run(ExecRequest::new("true")).await.expect("runs");
            }
            let mut rtt = Vec::new();
            for _ in 0..n {
                let t = Instant::now();
                client.run(ExecRequest::new("true")).await.expect("runs");
                rtt.push(t.elapsed());
            }
            let mut rates = Vec::new();
            for _ in 0..runs {
                let t = Instant::now();
                let mut events = client
                    .execute(ExecRequest {
                        output_limit: Some(bytes),
                        ..ExecRequest::new(format!("head -c {bytes} /dev/zero"))
                    })
                    .await
                    .expect("streams");
                let mut total = 0u64;
                while let Some(event) = events.next().await {
                    if let Event::Output { data, .. } = event.expect("an event") {
                        total += data.len() as u64;
                    }
                }
                assert_eq!(total, bytes);
                rates.push(bytes as f64 / t.elapsed().as_secs_f64() / 1e6);
            }
            (Samples(rtt), median_f64(&mut rates))
        })
    };
    // Alternate to spread the machine's noise over both.
    let (plain_rtt, plain_rate) = measure(
        &plain_agent.url,
        &vigie::client::ConnectionSettings::default(),
    );
    let (tls_rtt, tls_rate) = measure(&tls_agent.url, &settings);
    report.add(Figure {
        name: "vigie `true`, warm channel, plaintext".into(),
        unit: "ms",
        value: ms(plain_rtt.median()),
        p99: Some(ms(plain_rtt.quantile(0.99))),
        baseline: None,
        ratio: None,
        note: format!("n={n}"),
    });
    report.add(Figure {
        name: "vigie `true`, warm channel, mTLS + token".into(),
        unit: "ms",
        value: ms(tls_rtt.median()),
        p99: Some(ms(tls_rtt.quantile(0.99))),
        baseline: Some("plaintext".into()),
        ratio: Some(tls_rtt.median().as_secs_f64() / plain_rtt.median().as_secs_f64()),
        note: format!("n={n}"),
    });
    report.add(Figure {
        name: format!("vigie stream {}, plaintext", size(bytes)),
        unit: "MB/s",
        value: plain_rate,
        p99: None,
        baseline: None,
        ratio: None,
        note: format!("runs={runs}"),
    });
    report.add(Figure {
        name: format!("vigie stream {}, mTLS + token", size(bytes)),
        unit: "MB/s",
        value: tls_rate,
        p99: None,
        baseline: Some("plaintext".into()),
        ratio: Some(tls_rate / plain_rate),
        note: format!("runs={runs}"),
    });
}

/// Fan-out of `true` to N agents served from one process on N loopback
/// ports (one runtime for all agents), by the client library, cold (new
/// channels: connect + run) and warm (the same fleet again).
fn fanout(options: &Options, runtime: &tokio::runtime::Runtime, report: &mut Report) {
    use vigie::client::{
        ConnectionSettings,
        fleet::{Fleet, RunEvent, RunOptions, Selector},
        hosts::HostEntry,
    };
    let sizes: &[usize] = if options.smoke {
        &[10]
    } else {
        &[10, 100, 1000]
    };
    for &count in sizes {
        let agents = AgentFarm::start(count);
        let entries: Vec<HostEntry> = agents
            .ports
            .iter()
            .enumerate()
            .map(|(i, port)| HostEntry::new(format!("a{i}"), "127.0.0.1", *port))
            .collect();
        let run_once = |fleet: &Fleet| {
            runtime.block_on(async {
                let all = fleet.select(&Selector::All).expect("all");
                let t = Instant::now();
                let mut run = fleet.exec(&all, ExecRequest::new("true"), RunOptions::default());
                let mut ok = 0;
                while let Some(event) = run.events.recv().await {
                    if let RunEvent::Finished { result, .. } = event {
                        assert_eq!(result.outcome.kind(), "ok", "{:?}", result.outcome);
                        ok += 1;
                    }
                }
                assert_eq!(ok, count);
                t.elapsed()
            })
        };
        let mut cold = Vec::new();
        let mut warm = Vec::new();
        for _ in 0..if options.smoke { 1 } else { 3 } {
            let fleet = Fleet::new(entries.clone(), |_| ConnectionSettings::default());
            cold.push(run_once(&fleet));
            warm.push(run_once(&fleet));
        }
        cold.sort();
        warm.sort();
        report.add(Figure {
            name: format!("fan-out `true` to {count} agents, cold"),
            unit: "ms",
            value: ms(cold[cold.len() / 2]),
            p99: None,
            baseline: None,
            ratio: None,
            note: "new channels; agents in one process on many loopback ports".into(),
        });
        report.add(Figure {
            name: format!("fan-out `true` to {count} agents, warm"),
            unit: "ms",
            value: ms(warm[warm.len() / 2]),
            p99: None,
            baseline: None,
            ratio: None,
            note: "channels already connected".into(),
        });
    }
}

/// Many agents served by one runtime in a child process (this benchmark
/// binary, run with `--agent-farm N`), each on its own loopback port, so
/// that the client's figures and memory are its own. Stopped on drop.
struct AgentFarm {
    ports: Vec<u16>,
    child: std::process::Child,
}

impl AgentFarm {
    fn start(count: usize) -> Self {
        use std::io::BufRead;
        let mut child = Command::new(std::env::current_exe().expect("this program"))
            .args(["--agent-farm", &count.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the agent farm starts");
        let stdout = child.stdout.take().expect("piped");
        let ports = std::io::BufReader::new(stdout)
            .lines()
            .take(count)
            .map(|l| l.expect("a line").trim().parse().expect("a port"))
            .collect();
        Self { ports, child }
    }

    /// The child side: serves `count` agents until stdin closes.
    fn serve(count: usize) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let stop = tokio_util::sync::CancellationToken::new();
        runtime.block_on(async {
            let mut tasks = Vec::new();
            let mut out = std::io::stdout().lock();
            for _ in 0..count {
                let agent = vigie::server::Agent::bind(vigie::server::AgentConfig {
                    listen: "127.0.0.1:0".into(),
                    ..vigie::server::AgentConfig::default()
                })
                .expect("an agent binds");
                writeln!(out, "{}", agent.local_addr().port()).expect("stdout");
                let stop = stop.clone();
                tasks.push(tokio::spawn(async move {
                    let _ = agent.serve_restarting_in_process(&stop).await;
                }));
            }
            out.flush().expect("stdout");
            drop(out);
            // The parent closes our stdin when it is done with us.
            let _ = tokio::task::spawn_blocking(|| {
                let mut sink = Vec::new();
                let _ = std::io::stdin().read_to_end(&mut sink);
            })
            .await;
            stop.cancel();
            for task in tasks {
                let _ = task.await;
            }
        });
    }
}

impl Drop for AgentFarm {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The desktop client under load, without a display (Slint's testing
/// backend): a window of 1,000 hosts, and one host printing 100 MB. The UI
/// thread is blocked only while it applies background results (`pump`), so
/// the longest pump is how long input can wait.
#[cfg(feature = "gui")]
mod gui {
    use std::time::{Duration, Instant};

    use slint::ComponentHandle;
    use vigie::client::gui::{
        CommandAdapter, HostsAdapter,
        app::{App, Options},
    };

    use super::{AgentFarm, Figure, Options as BenchOptions, Report};

    fn rss_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }

    /// Pumps until `done`, returning the elapsed time and the longest pump.
    fn pump_until(
        app: &App,
        limit: Duration,
        mut done: impl FnMut(&App) -> bool,
    ) -> (Duration, Duration) {
        let start = Instant::now();
        let mut longest = Duration::ZERO;
        while !done(app) {
            let t = Instant::now();
            app.pump();
            longest = longest.max(t.elapsed());
            assert!(
                start.elapsed() < limit,
                "the window did not get there in {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(16));
            i_slint_backend_testing::mock_elapsed_time(Duration::from_millis(16));
        }
        (start.elapsed(), longest)
    }

    pub fn run(options: &BenchOptions, report: &mut Report) {
        i_slint_backend_testing::init_no_event_loop();
        let count = if options.smoke { 20 } else { 1000 };
        let farm = AgentFarm::start(count);
        let dir = tempfile::tempdir().expect("a directory");
        let path = dir.path().join("hosts.txt");
        let text: String = farm
            .ports
            .iter()
            .enumerate()
            .map(|(i, port)| format!("h{i:04}=127.0.0.1:{port}\n"))
            .collect();
        std::fs::write(&path, text).expect("hosts file");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let rss_before = rss_kib();
        let opened = Instant::now();
        let app = App::new(
            Options {
                hosts_file: Some(path),
                settings_path: None,
                history: None,
                monitor_interval: Duration::from_secs(10),
                ..Options::default()
            },
            runtime.handle().clone(),
            false,
        )
        .expect("a window");
        app.window().show().expect("shown");
        let shown = opened.elapsed();
        let (online, longest_pump) = pump_until(&app, Duration::from_secs(60), |app| {
            app.window()
                .global::<HostsAdapter>()
                .get_summary()
                .contains(&format!("{count} online"))
        });
        let rss_hosts = rss_kib();
        report.add(Figure {
            name: format!("GUI: open a file of {count} hosts"),
            unit: "ms",
            value: super::ms(shown),
            p99: None,
            baseline: None,
            ratio: None,
            note: "window built, hosts listed".into(),
        });
        report.add(Figure {
            name: format!("GUI: all {count} hosts checked online"),
            unit: "ms",
            value: super::ms(shown + online),
            p99: None,
            baseline: None,
            ratio: None,
            note: format!("longest UI-thread pump {:.1} ms", super::ms(longest_pump)),
        });
        report.add(Figure {
            name: format!("GUI: memory with {count} hosts"),
            unit: "KiB",
            value: rss_hosts.saturating_sub(rss_before) as f64,
            p99: None,
            baseline: None,
            ratio: None,
            note: format!("window process RSS {rss_hosts} KiB; the agents run in another process"),
        });

        // Select one host and run a command that prints 100 MB.
        let hosts = app.window().global::<HostsAdapter>();
        hosts.invoke_select_none();
        hosts.invoke_toggle(0);
        let bytes: u64 = if options.smoke {
            5_000_000
        } else {
            100_000_000
        };
        let before = rss_kib();
        let command = app.window().global::<CommandAdapter>();
        command
            .invoke_run(format!("head -c {bytes} /dev/zero | tr '\\0' 'x' | fold -w 100").into());
        let mut peak = before;
        let (took, longest) = pump_until(&app, Duration::from_secs(120), |app| {
            peak = peak.max(rss_kib());
            !app.window().global::<CommandAdapter>().get_running()
        });
        report.add(Figure {
            name: format!("GUI: a command printing {} MB", bytes / 1_000_000),
            unit: "ms",
            value: super::ms(took),
            p99: None,
            baseline: None,
            ratio: None,
            note: format!(
                "longest UI-thread pump {:.1} ms; RSS grew {} KiB at most",
                super::ms(longest),
                peak.saturating_sub(before)
            ),
        });
        drop(app);
        drop(farm);
    }
}

fn median_f64(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn size(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}
