//! Streaming 1 GiB of stdout. Floor: `head` into a local pipe, read here.
//! Then the same command through the agent (plaintext, then mTLS + token)
//! and through OpenSSH (its default cipher, and AES-GCM, its fastest here).

use std::{process::Command, time::Instant};

use futures::StreamExt;
use vigie::{
    client::{AgentClient, ConnectionSettings},
    command::{Event, ExecRequest},
    server::exec::OUTPUT_PIPE,
};

use crate::{
    Run,
    agents::{Agent, status_kib},
    latency::tls_agent,
    report::{Figure, median_f64},
    ssh,
};

pub fn run(run: &mut Run) {
    let bytes: u64 = if run.options.smoke { 16 << 20 } else { 1 << 30 };
    let runs = if run.options.smoke { 1 } else { 5 };
    let command = format!("head -c {bytes} /dev/zero");
    let label = size(bytes);

    let plain = Agent::start(&[]);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (tls, settings) = tls_agent(dir.path());
    let (plain_client, tls_client) = run.runtime.block_on(async {
        (
            AgentClient::connect_with(&plain.address(), &ConnectionSettings::default())
                .await
                .expect("connects"),
            AgentClient::connect_with(&tls.address(), &settings)
                .await
                .expect("connects over mTLS"),
        )
    });
    // The floor and both transports take turns, run after run, so that all
    // three see the same machine: on a shared machine the load drifts.
    let (mut pipe, mut small_pipe) = (Vec::new(), Vec::new());
    let (mut vigie_plain, mut vigie_tls) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        pipe.push(through_pipe(&command, bytes, Some(OUTPUT_PIPE)));
        small_pipe.push(through_pipe(&command, bytes, None));
        vigie_plain.push(through_agent(run, &plain_client, bytes));
        vigie_tls.push(through_agent(run, &tls_client, bytes));
    }
    let pipe = median_f64(&mut pipe);
    let small_pipe = median_f64(&mut small_pipe);
    let vigie_plain = median_f64(&mut vigie_plain);
    let vigie_tls = median_f64(&mut vigie_tls);
    let plain_peak = status_kib(plain.pid(), "VmHWM:");
    run.report.add(
        Figure::new("pipe", format!("local pipe, {label}"), "MB/s", pipe).note(format!(
            "floor: a 1 MiB pipe, as the agent's; runs={runs}, 1 MB = 10^6 B"
        )),
    );
    run.report.add(
        Figure::new(
            "pipe_default",
            format!("local pipe, {label}, default 64 KiB pipe"),
            "MB/s",
            small_pipe,
        )
        .note(format!("the floor of earlier runs; runs={runs}")),
    );

    let ssh_runs = if run.options.smoke { 1 } else { 3 };
    let mut by_ssh = Vec::new();
    for (name, cipher) in [
        ("default cipher", None),
        ("aes128-gcm", Some("aes128-gcm@openssh.com")),
    ] {
        if let Some(sshd) = run.sshd(&format!("stream, {name}")) {
            let mut rates = (0..ssh_runs)
                .map(|_| sshd.stream(bytes, cipher).expect("ssh streams"))
                .collect::<Vec<_>>();
            by_ssh.push((name, median_f64(&mut rates)));
        }
    }
    // The stronger of OpenSSH's two figures is the one to beat.
    let best_ssh = by_ssh.iter().map(|(_, r)| *r).reduce(f64::max);

    let mut figure = Figure::new(
        "stream",
        format!("vigie stream {label} stdout, plaintext"),
        "MB/s",
        vigie_plain,
    )
    .ratio("local pipe", Some(pipe))
    .ratio("default pipe", Some(small_pipe))
    .ratio("OpenSSH (faster cipher)", best_ssh)
    .note(format!("runs={runs}; agent peak RSS {plain_peak} KiB"));
    let target = ">= 0.95x local pipe and >= 2x OpenSSH";
    figure = figure.target(
        target,
        vigie_plain >= 0.95 * pipe && best_ssh.is_none_or(|s| vigie_plain >= 2.0 * s),
    );
    run.report.add(figure);
    run.report.add(
        Figure::new(
            "stream_tls",
            format!("vigie stream {label} stdout, mTLS + token"),
            "MB/s",
            vigie_tls,
        )
        .ratio("plaintext", Some(vigie_plain))
        .ratio("OpenSSH (faster cipher)", best_ssh)
        .target(">= 0.9x plaintext", vigie_tls >= 0.9 * vigie_plain)
        .note(format!("runs={runs}")),
    );
    for (name, value) in by_ssh {
        let key = if name == "default cipher" {
            "ssh_stream"
        } else {
            "ssh_stream_aes"
        };
        run.report.add(
            Figure::new(
                key,
                format!("OpenSSH stream {label}, {name}"),
                "MB/s",
                value,
            )
            .note(format!("baseline; runs={ssh_runs}")),
        );
    }
}

/// Reads `command`'s stdout through a local pipe of `size` (the default
/// when none); MB/s.
///
/// The floor is a pipe of the agent's size, the best this machine does on
/// the same path: against the default 64 KiB pipe, which needs sixteen
/// times the wake-ups, the agent's larger pipe alone looked faster than
/// the floor.
fn through_pipe(command: &str, bytes: u64, size: Option<usize>) -> f64 {
    let t = Instant::now();
    let (reader, writer) = std::io::pipe().expect("a pipe");
    if let Some(size) = size {
        rustix::pipe::fcntl_setpipe_size(&reader, size).expect("the pipe resized");
    }
    let mut child = Command::new("sh")
        .args(["-c", command])
        .stdout(writer)
        .spawn()
        .expect("head runs");
    let total = ssh::drain(reader);
    assert!(child.wait().expect("reaped").success());
    assert_eq!(total, bytes);
    rate(bytes, t)
}

/// Streams `bytes` of stdout through an agent once; MB/s.
pub fn through_agent(run: &Run, client: &AgentClient, bytes: u64) -> f64 {
    run.runtime.block_on(async {
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
            match event.expect("an event") {
                Event::Output { data, .. } => total += data.len() as u64,
                Event::Exited(exit) => assert!(exit.success() && !exit.truncated),
                Event::Started { .. } => {}
                Event::Gap { .. } => panic!("a plain command's stream has no gaps"),
            }
        }
        assert_eq!(total, bytes);
        rate(bytes, t)
    })
}

pub fn rate(bytes: u64, since: Instant) -> f64 {
    bytes as f64 / since.elapsed().as_secs_f64() / 1e6
}

pub fn size(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}
