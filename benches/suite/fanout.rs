//! Fan-out of `true` to N agents: through the client library (cold: new
//! channels; warm: the same fleet again), through one CLI process with a
//! hosts file (as pssh or clush are used), and, as the baseline, N `ssh`
//! processes at once. The agents are served by a few processes on N
//! loopback ports (see `AgentFarm`), so the client's figures are its own.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use vigie::{
    client::{
        ConnectionSettings,
        fleet::{Fleet, RunEvent, RunOptions, Selector},
        hosts::HostEntry,
    },
    command::ExecRequest,
};

use crate::{
    Run,
    agents::AgentFarm,
    report::{Figure, median, ms},
    ssh,
};

pub fn run(run: &mut Run) {
    let sizes: &[usize] = if run.options.smoke {
        &[10]
    } else {
        &[10, 100, 1000]
    };
    let repeats = if run.options.smoke { 1 } else { 3 };
    let dir = tempfile::tempdir().expect("a temporary directory");
    for &count in sizes {
        let farm = AgentFarm::start(count);
        let entries: Vec<HostEntry> = farm
            .ports
            .iter()
            .enumerate()
            .map(|(i, port)| HostEntry::new(format!("a{i}"), "127.0.0.1", *port))
            .collect();
        let mut cold = Vec::new();
        let mut warm = Vec::new();
        for _ in 0..repeats {
            let fleet = Fleet::new(entries.clone(), |_| ConnectionSettings::default());
            cold.push(exec_all(run, &fleet, count));
            warm.push(exec_all(run, &fleet, count));
        }

        let hosts = dir.path().join(format!("hosts-{count}.txt"));
        farm.write_hosts(&hosts, "a");
        let history = dir.path().join("history.jsonl");
        let mut cli = (0..repeats)
            .map(|_| {
                let t = Instant::now();
                ssh::run_ok(
                    Command::new(env!("CARGO_BIN_EXE_vigie"))
                        .env("VIGIE_HISTORY", &history)
                        .arg("--hosts")
                        .arg(&hosts)
                        .args(["exec", "--", "true"]),
                )
                .expect("the CLI runs `true` everywhere");
                t.elapsed()
            })
            .collect::<Vec<_>>();
        let farm_note = farm.describe();
        drop(farm);

        // OpenSSH: up to 100 sessions (1,000 cold logins would take a
        // minute of both CPUs and say nothing more).
        let by_ssh = if count <= 100 {
            run.sshd(&format!("fan-out to {count}")).map(|sshd| {
                let mut times = (0..repeats)
                    .map(|_| ssh_fan_out(sshd, count))
                    .collect::<Vec<_>>();
                ms(median(&mut times))
            })
        } else {
            None
        };

        let cold = ms(median(&mut cold));
        let mut figure = Figure::new(
            format!("fanout_cold_{count}"),
            format!("fan-out `true` to {count} agents, cold"),
            "ms",
            cold,
        )
        .ratio("OpenSSH", by_ssh)
        .note(format!("client library, new channels; {}", farm_note));
        if count == 1000 {
            figure = figure.target("< 1 s", cold < 1000.0);
        }
        run.report.add(figure);
        run.report.add(
            Figure::new(
                format!("fanout_warm_{count}"),
                format!("fan-out `true` to {count} agents, warm"),
                "ms",
                ms(median(&mut warm)),
            )
            .note("client library, channels already open"),
        );
        run.report.add(
            Figure::new(
                format!("fanout_cli_{count}"),
                format!("fan-out `true` to {count} agents, CLI process"),
                "ms",
                ms(median(&mut cli)),
            )
            .ratio("OpenSSH", by_ssh)
            .note("`vigie --hosts FILE exec -- true`, from start to exit"),
        );
        if let Some(by_ssh) = by_ssh {
            run.report.add(
                Figure::new(
                    format!("ssh_fanout_{count}"),
                    format!("OpenSSH fan-out `true` to {count} sessions"),
                    "ms",
                    by_ssh,
                )
                .note("baseline: that many `ssh … true` processes at once, to one sshd"),
            );
        }
    }
}

/// Runs `true` on every host of the fleet; the time until the last answer.
fn exec_all(run: &Run, fleet: &Fleet, count: usize) -> Duration {
    run.runtime.block_on(async {
        let all = fleet.select(&Selector::All).expect("all");
        let t = Instant::now();
        let mut exec = fleet.exec(&all, ExecRequest::new("true"), RunOptions::default());
        let mut ok = 0;
        while let Some(event) = exec.events.recv().await {
            if let RunEvent::Finished { result, .. } = event {
                assert!(
                    result.outcome.status() == vigie::client::run::Status::Ok,
                    "{:?}",
                    result.outcome
                );
                ok += 1;
            }
        }
        assert_eq!(ok, count);
        t.elapsed()
    })
}

/// `count` cold `ssh … true` at once; the time until the last exits.
fn ssh_fan_out(sshd: &ssh::Sshd, count: usize) -> Duration {
    let t = Instant::now();
    let children: Vec<_> = (0..count)
        .map(|_| {
            sshd.ssh()
                .arg("true")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .expect("ssh starts")
        })
        .collect();
    for mut child in children {
        assert!(child.wait().expect("ssh exits").success(), "ssh failed");
    }
    t.elapsed()
}
