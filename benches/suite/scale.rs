//! The CLI at fleet scale over mutual TLS: `hosts check`, `info` and
//! `exec -- true` to 1,000 and 10,000 agents, each a cold `vigie` process
//! (new connections, full handshakes, a client certificate each), with the
//! client's peak memory; beside them, the floor the agents' own work sets
//! on this machine: as many `sh -c true` spawned and reaped, as many at
//! once as the CLI runs. The agents are the farm's (real agents serving
//! the real service, many per process), each with the certificate, client
//! CA and access file `vigie-agent init` makes.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    Run,
    agents::AgentFarm,
    report::{Figure, ms},
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
        let mut figures: Vec<(&str, &str, Vec<Duration>, u64)> = Vec::new();
        for (key, what, args) in [
            ("check", "`hosts check`", &["hosts", "check"][..]),
            ("info", "`info`", &["info"][..]),
            ("exec", "`exec -- true`", &["exec", "--", "true"][..]),
        ] {
            let mut times = Vec::new();
            let mut peak = 0;
            for _ in 0..repeats {
                let (time, rss) = measured(&mut cli(args));
                times.push(time);
                peak = peak.max(rss);
            }
            figures.push((key, what, times, peak));
        }
        let floor: Vec<Duration> = (0..repeats).map(|_| spawn_floor(run, count)).collect();
        let floor = ms(median(floor));
        let farm_note = farm.describe();
        drop(farm);

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
        let mut peak_all = 0;
        for (key, what, times, peak) in figures {
            peak_all = peak_all.max(peak);
            let time = ms(median(times));
            let mut figure = Figure::new(
                format!("scale_{key}_{count}"),
                format!("{what} to {count} agents, mTLS, cold CLI"),
                "ms",
                time,
            )
            .note(format!(
                "`vigie --config client.toml --hosts FILE {}`, start to exit; peak RSS {:.0} MiB; {farm_note}",
                what.trim_matches('`'),
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

/// Runs `command` to its end (its output discarded); how long it took and
/// its peak RSS in KiB, from the kernel's accounting of the child.
// The child is waited for with wait4, for its resource usage, which
// `Child::wait` does not give.
#[allow(clippy::zombie_processes)]
fn measured(command: &mut Command) -> (Duration, u64) {
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
    (elapsed, u64::try_from(usage.ru_maxrss).unwrap_or(0))
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

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}
