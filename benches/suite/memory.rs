//! The agent's footprint: resident memory idle, with 100 concurrent
//! streams, and after 10,000 commands (a leak shows as growth between the
//! first thousand and the last), and its CPU time and wake-ups while idle
//! (a polling loop shows there). Baseline: the private sshd's listener.

use std::time::Duration;

use futures::{StreamExt, stream::FuturesUnordered};
use vigie::{
    client::AgentClient,
    command::{Event, ExecRequest},
};

use crate::{
    Run,
    agents::{Activity, Agent, status_kib},
    report::Figure,
};

pub fn run(run: &mut Run) {
    let sshd_rss = run
        .sshd("listener memory")
        .map(|sshd| status_kib(sshd.pid(), "VmRSS:") as f64);

    // Idle: after one request, with no client connected.
    let agent = Agent::start(&[]);
    run.runtime.block_on(async {
        let client = AgentClient::connect(&agent.url).await.expect("connects");
        client.connection_info().await.expect("answers");
    });
    std::thread::sleep(Duration::from_millis(300));
    let idle = status_kib(agent.pid(), "VmRSS:") as f64;
    run.report.add(
        Figure::new("rss_idle", "agent RSS, idle", "KiB", idle)
            .ratio("sshd listener", sshd_rss)
            .target("< 8 MiB", idle < 8.0 * 1024.0)
            .note("after one request, no client connected"),
    );

    let window = if run.options.smoke { 1 } else { 10 };
    let before = Activity::of(agent.pid());
    std::thread::sleep(Duration::from_secs(window));
    let spent = Activity::of(agent.pid()).since(before);
    // SAFETY: sysconf only reads a constant of the system.
    let tick_ms = 1000.0 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    run.report.add(
        Figure::new(
            "cpu_idle",
            "agent CPU time while idle",
            "ms",
            spent.ticks as f64 * tick_ms,
        )
        .target("0 (no polling)", spent.ticks == 0 && spent.switches == 0)
        .note(format!(
            "over {window} s with no client; {} context switches (wake-ups) in all threads",
            spent.switches
        )),
    );

    // 100 commands streaming at once through one client.
    let streams = if run.options.smoke { 10 } else { 100 };
    let each: u64 = if run.options.smoke {
        1 << 20
    } else {
        20_000_000
    };
    run.runtime.block_on(async {
        let client = AgentClient::connect(&agent.url).await.expect("connects");
        let mut all: FuturesUnordered<_> = (0..streams)
            .map(|_| {
                let client = client.clone();
                async move {
                    let mut events = client
                        .execute(ExecRequest::new(format!("head -c {each} /dev/zero")))
                        .await
                        .expect("streams");
                    let mut total = 0u64;
                    while let Some(event) = events.next().await {
                        if let Event::Output { data, .. } = event.expect("an event") {
                            total += data.len() as u64;
                        }
                    }
                    assert_eq!(total, each);
                }
            })
            .collect();
        while all.next().await.is_some() {}
    });
    let peak = status_kib(agent.pid(), "VmHWM:") as f64;
    run.report.add(
        Figure::new(
            "rss_streams",
            format!("agent peak RSS, {streams} concurrent streams"),
            "KiB",
            peak,
        )
        .ratio("idle", Some(idle))
        .target("< 32 MiB", peak < 32.0 * 1024.0)
        .note(format!(
            "{streams} x `head -c {each} /dev/zero` at once, read as fast as they come"
        )),
    );
    drop(agent);

    // 10,000 commands, four at a time, on a fresh agent. The allocator
    // settles during the first few thousand (its arenas and caches grow to
    // their working size, then stay), so a leak is what still grows over
    // the second half: one of even 16 bytes per command would add 80 KiB.
    let total = if run.options.smoke { 200 } else { 10_000 };
    let agent = Agent::start(&[]);
    let (after_tenth, after_half, after_all) = run.runtime.block_on(async {
        let client = AgentClient::connect(&agent.url).await.expect("connects");
        let batch = |n: usize| {
            let client = client.clone();
            async move {
                futures::stream::iter(0..n)
                    .map(|_| {
                        let client = client.clone();
                        async move {
                            let done = client.run(ExecRequest::new("true")).await.expect("runs");
                            assert!(done.exit.is_some_and(|e| e.success()));
                        }
                    })
                    .buffer_unordered(4)
                    .collect::<Vec<_>>()
                    .await;
            }
        };
        batch(total / 10).await;
        let after_tenth = status_kib(agent.pid(), "VmRSS:");
        batch(total / 2 - total / 10).await;
        let after_half = status_kib(agent.pid(), "VmRSS:");
        batch(total - total / 2).await;
        (after_tenth, after_half, status_kib(agent.pid(), "VmRSS:"))
    });
    let growth = after_all as f64 - after_half as f64;
    run.report.add(
        Figure::new(
            "rss_commands",
            format!("agent RSS after {total} commands"),
            "KiB",
            after_all as f64,
        )
        .ratio("idle", Some(idle))
        .target(
            "< 80 KiB growth over the second half",
            growth < 80.0,
        )
        .note(format!(
            "{after_tenth} KiB after {}, {after_half} KiB after {}: {growth:+.0} KiB over the last {}",
            total / 10,
            total / 2,
            total - total / 2
        )),
    );
    if let Some(sshd_rss) = sshd_rss {
        run.report.add(
            Figure::new("sshd_rss", "sshd listener RSS", "KiB", sshd_rss)
                .note("baseline: the private sshd after one login"),
        );
    }
}
