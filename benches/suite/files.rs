//! File transfers: `push` of one file to 1 and to 10 agents and `pull`
//! from one, through the client library, beside `scp` to and from the
//! suite's private sshd (1, and 10 at once), in the same run. Every agent
//! has its own root directory, so that ten pushes to one machine are ten
//! files.

use std::{sync::Arc, time::Instant};

use vigie::client::{
    ConnectionSettings,
    fleet::Fleet,
    hosts::HostEntry,
    transfer::{self, Entry, LocalFile, Plan, Progress},
};

use crate::{
    Run,
    agents::Agent,
    report::{Figure, median_f64},
    ssh,
};

pub fn run(run: &mut Run) {
    let bytes: u64 = if run.options.smoke {
        4 << 20
    } else {
        100_000_000
    };
    let runs = if run.options.smoke { 1 } else { 3 };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let local = dir.path().join("payload");
    std::fs::write(&local, pseudo_random(bytes as usize)).expect("the payload");
    let agents: Vec<(Agent, std::path::PathBuf)> = (0..10)
        .map(|i| {
            let root = dir.path().join(format!("root{i}"));
            std::fs::create_dir(&root).expect("a root");
            let config = dir.path().join(format!("agent{i}.toml"));
            std::fs::write(
                &config,
                format!(
                    "[file_roots]\nadmin = [{:?}]\n",
                    root.canonicalize().expect("root")
                ),
            )
            .expect("a config");
            (
                Agent::start(&["--config", config.to_str().expect("UTF-8")]),
                root,
            )
        })
        .collect();
    let entries: Vec<HostEntry> = agents
        .iter()
        .enumerate()
        .map(|(i, (agent, _))| HostEntry::new(format!("h{i}"), "127.0.0.1", agent.address().port))
        .collect();
    let fleet = Fleet::new(entries, |_| ConnectionSettings::default());
    let file = run
        .runtime
        .block_on(LocalFile::hash(&local))
        .expect("hashed");
    // The same name under each agent's root: each host writes its own.
    let remote = |i: usize| agents[i].1.canonicalize().expect("root").join("payload");
    let remote_text: Vec<String> = (0..10).map(|i| remote(i).display().to_string()).collect();

    let singles: Vec<[usize; 1]> = (0..10).map(|i| [i]).collect();
    let plans: Vec<Plan> = remote_text
        .iter()
        .map(|remote| Plan {
            entries: vec![Entry::File {
                remote: remote.clone(),
                file: file.clone(),
            }],
            skipped: Vec::new(),
        })
        .collect();
    let mut push_1 = Vec::new();
    let mut push_10 = Vec::new();
    let mut pull_1 = Vec::new();
    let mut floor_10 = Vec::new();
    let pulled = dir.path().join("pulled");
    for _ in 0..runs {
        for i in 0..10 {
            let _ = std::fs::remove_file(remote(i));
        }
        push_1.push(time(|| {
            let results = run.runtime.block_on(transfer::push_plan(
                &fleet,
                &[0],
                &plans[0],
                true,
                Arc::new(Progress::default()),
            ));
            assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
        }));
        // Ten hosts, one push each to its own root, all at once.
        push_10.push(time(|| {
            let pushes = (0..10).map(|i| {
                transfer::push_plan(
                    &fleet,
                    &singles[i],
                    &plans[i],
                    true,
                    Arc::new(Progress::default()),
                )
            });
            let results = run.runtime.block_on(futures::future::join_all(pushes));
            assert!(results.iter().flatten().all(|(_, r)| r.is_ok()));
        }));
        // The receivers' own floor: the work ten agents do on this one
        // machine, without the network: ten threads each reading the file,
        // hashing it, writing and syncing a copy under its root.
        floor_10.push(time(|| {
            std::thread::scope(|scope| {
                for (_, root) in &agents {
                    let local = &local;
                    scope.spawn(move || local_copy(local, &root.join("floor")));
                }
            });
        }));
        let _ = std::fs::remove_dir_all(&pulled);
        pull_1.push(time(|| {
            let results = run.runtime.block_on(transfer::pull(
                &fleet,
                &[0],
                &remote_text[0],
                &pulled,
                Arc::new(Progress::default()),
            ));
            assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
        }));
    }
    let rate = |seconds: f64| bytes as f64 / seconds / 1e6;
    let push_1 = median_f64(&mut push_1);
    let push_10 = median_f64(&mut push_10);
    let pull_1 = median_f64(&mut pull_1);
    let floor_10 = median_f64(&mut floor_10);

    // scp, the same file, to the private sshd's user (its /tmp) and back.
    let scp = run.sshd("scp").map(|sshd| {
        let remote = |i: usize| format!("bench:/tmp/vigie-bench-payload-{i}");
        let (mut one, mut ten, mut back) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            one.push(time(|| {
                ssh::run_ok(&mut sshd.scp(local.to_str().expect("UTF-8"), &remote(0)))
                    .expect("scp pushes");
            }));
            ten.push(time(|| {
                let mut children: Vec<std::process::Child> = (0..10)
                    .map(|i| {
                        sshd.scp(local.to_str().expect("UTF-8"), &remote(i))
                            .stdin(std::process::Stdio::null())
                            .spawn()
                            .expect("scp starts")
                    })
                    .collect();
                for child in &mut children {
                    assert!(child.wait().expect("scp ends").success());
                }
            }));
            let here = dir.path().join("scp-back");
            back.push(time(|| {
                ssh::run_ok(&mut sshd.scp(&remote(0), here.to_str().expect("UTF-8")))
                    .expect("scp pulls");
            }));
        }
        for i in 0..10 {
            let _ = ssh::run_ok(
                sshd.ssh()
                    .arg(format!("rm -f /tmp/vigie-bench-payload-{i}")),
            );
        }
        (
            median_f64(&mut one),
            median_f64(&mut ten),
            median_f64(&mut back),
        )
    });
    let label = if bytes >= 1_000_000 {
        format!("{} MB", bytes / 1_000_000)
    } else {
        format!("{bytes} B")
    };
    let scp_1 = scp.map(|(one, _, _)| rate(one));
    let mut figure = Figure::new(
        "push_1",
        format!("vigie push {label} to 1 host"),
        "MB/s",
        rate(push_1),
    )
    .ratio("scp", scp_1)
    .note(format!("runs={runs}; hashing the file first included"));
    if let Some(scp_1) = scp_1 {
        figure = figure.target(">= 2x scp", rate(push_1) >= 2.0 * scp_1);
    }
    run.report.add(figure);
    run.report.add(
        Figure::new(
            "push_10",
            format!("vigie push {label} to 10 hosts"),
            "s",
            push_10,
        )
        .ratio("push to 1 host", Some(push_1))
        .ratio("10 local copies at once", Some(floor_10))
        .ratio("10 scp at once", scp.map(|(_, ten, _)| ten))
        .target("<= 1.5x the 1-host time", push_10 <= 1.5 * push_1)
        .note(format!("runs={runs}; each host its own file")),
    );
    run.report.add(
        Figure::new(
            "pull_1",
            format!("vigie pull {label} from 1 host"),
            "MB/s",
            rate(pull_1),
        )
        .ratio("scp", scp.map(|(_, _, back)| rate(back)))
        .note(format!("runs={runs}")),
    );
    run.report.add(
        Figure::new(
            "copy_10",
            format!("10 local copies of {label} at once (read, SHA-256, write, fsync)"),
            "s",
            floor_10,
        )
        .note(format!(
            "baseline: what ten receivers on this machine do, without a network; runs={runs}"
        )),
    );
    if let Some((one, ten, back)) = scp {
        run.report.add(
            Figure::new("scp_1", format!("scp {label} to 1 host"), "MB/s", rate(one))
                .note(format!("baseline; runs={runs}")),
        );
        run.report.add(
            Figure::new("scp_10", format!("10 scp of {label} at once"), "s", ten)
                .note(format!("baseline; runs={runs}")),
        );
        run.report.add(
            Figure::new(
                "scp_pull",
                format!("scp {label} from 1 host"),
                "MB/s",
                rate(back),
            )
            .note(format!("baseline; runs={runs}")),
        );
    }
}

/// What a receiver does with a file, locally: read, hash, write, sync.
fn local_copy(from: &std::path::Path, to: &std::path::Path) {
    use sha2::Digest;
    use std::io::{Read, Write};
    let mut input = std::fs::File::open(from).expect("the payload");
    let mut output = std::fs::File::create(to).expect("a copy");
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0; 256 * 1024];
    loop {
        let n = input.read(&mut buffer).expect("read");
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        output.write_all(&buffer[..n]).expect("written");
    }
    output.sync_all().expect("synced");
    std::hint::black_box(hasher.finalize());
    let _ = std::fs::remove_file(to);
}

/// Seconds `work` takes.
fn time(work: impl FnOnce()) -> f64 {
    let t = Instant::now();
    work();
    t.elapsed().as_secs_f64()
}

/// Bytes that do not compress (scp and TLS could otherwise cheat).
fn pseudo_random(size: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut data = Vec::with_capacity(size + 8);
    while data.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(size);
    data
}
