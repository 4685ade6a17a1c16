//! Detached jobs: the cost of a detached `true` against a plain one on the
//! same warm channel (taking turns in blocks), and the replay of a 1 GiB
//! job log (memory, then spill files) against streaming the same bytes
//! live, on one agent, in the same run.

use std::time::Instant;

use futures::StreamExt;
use vigie::{
    client::{AgentClient, ConnectionSettings},
    command::{Event, ExecRequest},
};

use crate::{
    Run,
    agents::{Agent, status_kib},
    report::{Figure, Samples, ms},
};

pub fn run(run: &mut Run) {
    let bytes: u64 = if run.options.smoke { 16 << 20 } else { 1 << 30 };
    let dir = tempfile::tempdir().expect("a temporary directory");
    // A log that keeps all of the job's output, so that the replay reads
    // every byte back (most of it from spill files), and room for the logs
    // of every run, which the agent keeps after the jobs end.
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\njob_log_bytes = {}\njobs_spill_bytes = {}\n",
            dir.path().join("state"),
            bytes + (16 << 20),
            4 * bytes + (64 << 20),
        ),
    )
    .expect("a config");
    let agent = Agent::start(&["--config", config.to_str().expect("a UTF-8 path")]);
    let client = run.runtime.block_on(async {
        AgentClient::connect_with(&agent.address(), &ConnectionSettings::default())
            .await
            .expect("connects")
    });

    let n = run.options.count(1000);
    let (plain, detached) = run.runtime.block_on(async {
        for _ in 0..run.options.count(50) {
            one(&client, false).await;
            one(&client, true).await;
        }
        let block = (n / 10).max(1);
        let (mut plain, mut detached) = (Vec::new(), Vec::new());
        while plain.len() < n {
            for _ in 0..block.min(n - plain.len()) {
                plain.push(one(&client, false).await);
            }
            for _ in 0..block.min(n - detached.len()) {
                detached.push(one(&client, true).await);
            }
        }
        (Samples(plain), Samples(detached))
    });
    let plain_ms = ms(plain.median());
    run.report.add(Figure::latency(
        "job_plain_true",
        "vigie `true`, warm channel (the jobs group's baseline)",
        &plain,
    ));
    run.report.add(
        Figure::latency(
            "job_detached_true",
            "vigie detached `true` to its exit, warm channel",
            &detached,
        )
        .ratio("plain `true`", Some(plain_ms))
        .note("start a job and follow it to its exit on the same call"),
    );

    let runs = if run.options.smoke { 1 } else { 3 };
    // A plain command streaming the same bytes takes turns with the job.
    let (mut plain, mut live, mut replay) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        plain.push(crate::stream::through_agent(run, &client, bytes));
        let (live_rate, replay_rate) = run.runtime.block_on(live_and_replay(&client, bytes));
        live.push(live_rate);
        replay.push(replay_rate);
    }
    let plain = crate::report::median_f64(&mut plain);
    let live = crate::report::median_f64(&mut live);
    let replay = crate::report::median_f64(&mut replay);
    let peak = status_kib(agent.pid(), "VmHWM:");
    let label = crate::stream::size(bytes);
    run.report.add(
        Figure::new(
            "job_plain_stream",
            format!("vigie plain stream {label} (the jobs group's baseline)"),
            "MB/s",
            plain,
        )
        .note(format!("baseline; runs={runs}")),
    );
    run.report.add(
        Figure::new(
            "job_live",
            format!("vigie job {label} followed live"),
            "MB/s",
            live,
        )
        .ratio("plain stream", Some(plain))
        .note(format!(
            "runs={runs}; the command writes through its log and spill files"
        )),
    );
    run.report.add(
        Figure::new(
            "job_replay",
            format!("vigie job log {label} replayed from offset 0"),
            "MB/s",
            replay,
        )
        .ratio("plain stream", Some(plain))
        .ratio("followed live", Some(live))
        .note(format!(
            "runs={runs}; the log in spill files; agent peak RSS {peak} KiB"
        )),
    );
}

/// One `true`, plain or detached, to its exit; its round trip.
async fn one(client: &AgentClient, detach: bool) -> std::time::Duration {
    let t = Instant::now();
    let done = client
        .run(ExecRequest {
            detach,
            ..ExecRequest::new("true")
        })
        .await
        .expect("runs");
    let elapsed = t.elapsed();
    assert!(done.exit.is_some_and(|e| e.success()));
    elapsed
}

/// A detached job writing `bytes`, followed live on the call that started
/// it, then its whole log replayed; MB/s of each.
async fn live_and_replay(client: &AgentClient, bytes: u64) -> (f64, f64) {
    let t = Instant::now();
    let mut events = client
        .execute(ExecRequest {
            detach: true,
            ..ExecRequest::new(format!("head -c {bytes} /dev/zero"))
        })
        .await
        .expect("starts");
    let mut job = None;
    let mut total = 0;
    while let Some(event) = events.next().await {
        match event.expect("an event") {
            Event::Started { job_id, .. } => job = job_id,
            Event::Output { data, .. } => total += data.len() as u64,
            Event::Gap { .. } => panic!("the log keeps everything here"),
            Event::Exited(exit) => assert!(exit.success()),
        }
    }
    assert_eq!(total, bytes);
    let live = crate::stream::rate(bytes, t);
    let job = job.expect("a job id");
    let t = Instant::now();
    let replayed = replay_all(client, &job).await;
    assert_eq!(replayed, bytes);
    (live, crate::stream::rate(bytes, t))
}

/// Reads a job's whole log from offset 0; the bytes read.
async fn replay_all(client: &AgentClient, job: &str) -> u64 {
    let mut events = client.attach_job(job, 0).await.expect("attaches");
    let mut total = 0;
    while let Some(event) = events.next().await {
        if let Event::Output { data, .. } = event.expect("an event") {
            total += data.len() as u64;
        }
    }
    total
}
