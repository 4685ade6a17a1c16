//! vigie's benchmark suite: figures of the agent and its clients next to
//! baselines measured in the same run (local process spawn, a local pipe,
//! loopback TCP, OpenSSH on a private sshd), with their ratios and the
//! targets they are held to.
//!
//! `cargo bench --bench suite` runs everything (add `--features gui` for the
//! desktop client's figures); `-- --smoke` runs each figure once with small
//! sizes (CI runs it so the suite cannot rot); `-- --only latency,stream`
//! picks groups; `-- --out DIR` chooses the results folder (default
//! `target/bench-results`), which receives results.json, results.md and
//! chart.png. Every agent and sshd listens on 127.0.0.1 only, and every
//! process the suite starts is stopped before it exits.

mod agents;
mod chart;
mod fanout;
mod files;
#[cfg(feature = "gui")]
mod gui;
mod jobs;
mod latency;
mod memory;
mod report;
mod scale;
mod ssh;
mod stream;

use std::path::PathBuf;

use report::Report;

/// The groups of figures, in the order they run.
const GROUPS: &[&str] = &[
    "latency", "stream", "jobs", "files", "fanout", "scale", "memory", "gui",
];

/// What the run was asked to do.
pub struct Options {
    pub smoke: bool,
    only: Option<Vec<String>>,
    out: PathBuf,
}

impl Options {
    fn parse() -> Result<Self, String> {
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
                    let groups: Vec<String> = args
                        .next()
                        .ok_or("--only needs a list of groups")?
                        .split(',')
                        .map(str::to_owned)
                        .collect();
                    if let Some(unknown) = groups.iter().find(|g| !GROUPS.contains(&g.as_str())) {
                        return Err(format!(
                            "unknown group {unknown:?}; the groups are {}",
                            GROUPS.join(", ")
                        ));
                    }
                    options.only = Some(groups);
                }
                "--out" => options.out = args.next().ok_or("--out needs a folder")?.into(),
                // cargo bench passes --bench to every bench target.
                "--bench" => {}
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(options)
    }

    fn wants(&self, group: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|o| o == group))
    }

    /// `full` in a real run, at most 5 in smoke mode.
    pub fn count(&self, full: usize) -> usize {
        if self.smoke { full.min(5) } else { full }
    }
}

/// What the groups share: the options, a runtime for the client library,
/// the report, and the private sshd (started once, on first use).
pub struct Run {
    pub options: Options,
    pub runtime: tokio::runtime::Runtime,
    pub report: Report,
    sshd: Option<Result<ssh::Sshd, String>>,
}

impl Run {
    /// The private sshd, or `None` after recording that the OpenSSH
    /// baseline `what` is skipped, and why.
    pub fn sshd(&mut self, what: &str) -> Option<&mut ssh::Sshd> {
        let sshd = self.sshd.get_or_insert_with(ssh::Sshd::start);
        match sshd {
            Ok(sshd) => Some(sshd),
            Err(reason) => {
                self.report.skip(format!("OpenSSH: {what}"), reason.clone());
                None
            }
        }
    }
}

fn main() {
    // cargo runs benchmarks with its own library path (the toolchain's and
    // the build's directories). Every process started from here would
    // inherit it, and the dynamic loader of each `sh` would search those
    // directories first: about 95 failed opens per spawn, a tenth of a
    // millisecond added to every floor and every command. No agent runs
    // like that, so neither do the figures.
    // SAFETY: no other thread exists yet.
    unsafe { std::env::remove_var("LD_LIBRARY_PATH") };
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--agent-farm") {
        let count = args.next().and_then(|n| n.parse().ok()).unwrap_or(1);
        agents::AgentFarm::serve(count, args.next().map(PathBuf::from));
        return;
    }
    // As the CLI and vigie-gui do at start, before the client library
    // sizes its connection budget: one connection per host.
    let _ = vigie::rlimit::raise_open_files();
    let options = match Options::parse() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("suite: {message}");
            eprintln!(
                "usage: cargo bench --bench suite -- [--smoke] [--only GROUP,...] [--out DIR]"
            );
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let report = Report::new(options.smoke);
    let mut run = Run {
        options,
        runtime,
        report,
        sshd: None,
    };

    if run.options.wants("latency") {
        latency::run(&mut run);
    }
    if run.options.wants("stream") {
        stream::run(&mut run);
    }
    if run.options.wants("jobs") {
        jobs::run(&mut run);
    }
    if run.options.wants("files") {
        files::run(&mut run);
    }
    if run.options.wants("fanout") {
        fanout::run(&mut run);
    }
    if run.options.wants("scale") {
        scale::run(&mut run);
    }
    if run.options.wants("memory") {
        memory::run(&mut run);
    }
    if run.options.wants("gui") {
        #[cfg(feature = "gui")]
        gui::run(&run.options, &mut run.report);
        #[cfg(not(feature = "gui"))]
        run.report.skip(
            "desktop client",
            "built without the gui feature (--features gui)",
        );
    }
    // The sshd stops before the results are written.
    run.sshd = None;

    run.report.print_targets();
    if let Err(e) = run.report.write(&run.options.out) {
        eprintln!("suite: cannot write the results: {e}");
        std::process::exit(1);
    }
}
