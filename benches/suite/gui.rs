//! The desktop client under load, without a display (Slint's testing
//! backend): a window of 1,000 hosts, its fleet dashboard live, one host
//! printing 100 MB, and a window of 10,000 hosts filtered and selected.
//! The UI thread is blocked only while it applies background results
//! (`pump`) or runs a callback, so the longest of those is how long input
//! can wait. The agents share the machine's cores, at the lowest priority,
//! as if they were elsewhere; a pump's time is the UI thread's own CPU
//! time.

use std::time::{Duration, Instant};

use slint::{ComponentHandle, Model};
use vigie::client::gui::{
    CommandAdapter, DashboardAdapter, HostsAdapter,
    app::{App, Options},
};

use crate::{
    Options as BenchOptions,
    agents::{Activity, AgentFarm},
    report::{Figure, Report},
};

fn rss_kib() -> u64 {
    crate::agents::status_kib(std::process::id(), "VmRSS:")
}

/// The CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `time` is.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) };
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

/// The longest pump: the UI thread's CPU time, and the wall time.
#[derive(Clone, Copy, Default)]
struct Pumps {
    cpu: Duration,
    wall: Duration,
}

impl std::fmt::Display for Pumps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "longest UI-thread pump {:.1} ms of CPU ({:.1} ms wall)",
            crate::report::ms(self.cpu),
            crate::report::ms(self.wall)
        )
    }
}

/// Pumps until `done`, returning the elapsed time and the longest pump.
/// A pump's time is the UI thread's own CPU time (what it spends applying
/// results): its wall time also counts the moments the agents of the farm,
/// on the same two cores, took the CPU from it.
fn pump_until(app: &App, limit: Duration, mut done: impl FnMut(&App) -> bool) -> (Duration, Pumps) {
    let start = Instant::now();
    let mut longest = Pumps::default();
    while !done(app) {
        let (cpu, wall) = (thread_cpu(), Instant::now());
        app.pump();
        longest.cpu = longest.cpu.max(thread_cpu().saturating_sub(cpu));
        longest.wall = longest.wall.max(wall.elapsed());
        assert!(
            start.elapsed() < limit,
            "the window did not get there in {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(16));
        i_slint_backend_testing::mock_elapsed_time(Duration::from_millis(16));
    }
    (start.elapsed(), longest)
}

/// A window of the hosts in `path`, as `vigie-gui` opens it.
fn open(path: std::path::PathBuf, runtime: &tokio::runtime::Runtime) -> App {
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
    app
}

/// Runs a window callback, returning how long it held the UI thread (its
/// CPU time, as for a pump).
fn timed(call: impl FnOnce()) -> Duration {
    let start = thread_cpu();
    call();
    thread_cpu().saturating_sub(start)
}

/// This process's CPU time (the window's: the agents run in others).
fn own_cpu() -> Duration {
    Duration::from_millis(Activity::of(std::process::id()).ticks * 10)
}

pub fn run(options: &BenchOptions, report: &mut Report) {
    i_slint_backend_testing::init_no_event_loop();
    let count = if options.smoke { 20 } else { 1000 };
    let farm = AgentFarm::start(count);
    farm.yield_cpu();
    let dir = tempfile::tempdir().expect("a directory");
    let path = dir.path().join("hosts.txt");
    farm.write_hosts(&path, "h");
    // The window's own runtime, as vigie-gui makes it.
    let runtime = vigie::client::gui::runtime().expect("a runtime");
    let rss_before = rss_kib();
    let opened = Instant::now();
    let app = open(path, &runtime);
    let shown = opened.elapsed();
    let (online, longest_pump) = pump_until(&app, Duration::from_secs(60), |app| {
        app.window()
            .global::<HostsAdapter>()
            .get_summary()
            .contains(&format!("{count} online"))
    });
    let rss_hosts = rss_kib();
    report.add(
        Figure::new(
            "gui_open",
            format!("GUI: open a file of {count} hosts"),
            "ms",
            crate::report::ms(shown),
        )
        .note("window built, hosts listed"),
    );
    report.add(
        Figure::new(
            "gui_online",
            format!("GUI: all {count} hosts checked online"),
            "ms",
            crate::report::ms(shown + online),
        )
        .note(longest_pump.to_string()),
    );
    report.add(
        Figure::new(
            "gui_memory",
            format!("GUI: memory with {count} hosts"),
            "KiB",
            rss_hosts.saturating_sub(rss_before) as f64,
        )
        .note(format!(
            "window process RSS {rss_hosts} KiB; the agents run in other processes"
        )),
    );

    dashboard(options, report, &app, count);

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
    command.invoke_run(format!("head -c {bytes} /dev/zero | tr '\\0' 'x' | fold -w 100").into());
    let mut peak = before;
    let (took, longest) = pump_until(&app, Duration::from_secs(120), |app| {
        peak = peak.max(rss_kib());
        !app.window().global::<CommandAdapter>().get_running()
    });
    report.add(
        Figure::new(
            "gui_output",
            format!("GUI: a command printing {} MB", bytes / 1_000_000),
            "ms",
            crate::report::ms(took),
        )
        .note(format!(
            "{longest}; RSS grew {} KiB at most",
            peak.saturating_sub(before)
        )),
    );
    drop(app);
    drop(farm);
    ten_thousand(options, report, &runtime);
}

/// The dashboard of every host, live at one sample per host every 2 s:
/// how long the UI thread is held, and the window's CPU.
fn dashboard(options: &BenchOptions, report: &mut Report, app: &App, count: usize) {
    let window = app.window();
    window.global::<HostsAdapter>().invoke_select_none();
    window.set_view(7);
    let dashboard = window.global::<DashboardAdapter>();
    dashboard.invoke_shown(true);
    let all_live = format!("All {count} hosts · {count} live");
    let (live, first_pump) = pump_until(app, Duration::from_secs(60), |_| {
        dashboard.get_summary().starts_with(&all_live)
    });
    // Steady state: every host sends a sample every 2 s.
    let watch = if options.smoke {
        Duration::from_secs(4)
    } else {
        Duration::from_secs(20)
    };
    let cpu_before = own_cpu();
    let rss_before = rss_kib();
    let started = Instant::now();
    let (_, longest) = pump_until(app, watch + Duration::from_secs(5), |_| {
        started.elapsed() >= watch
    });
    let cpu = own_cpu().saturating_sub(cpu_before);
    let rss = rss_kib();
    // Sorting and filtering the table are callbacks on the UI thread.
    let sort = timed(|| dashboard.invoke_sort("memory".into()));
    let filter = timed(|| dashboard.invoke_filter_edited("h0".into()));
    let shown = dashboard.get_rows().row_count();
    dashboard.invoke_filter_edited("".into());
    dashboard.invoke_shown(false);
    window.set_view(0);
    report.add(
        Figure::new(
            "gui_dashboard_live",
            format!("GUI dashboard: all {count} hosts live"),
            "ms",
            crate::report::ms(live),
        )
        .note(format!(
            "one metrics stream per host; {first_pump} while they open"
        )),
    );
    report.add(
        Figure::new(
            "gui_dashboard_pump",
            format!("GUI dashboard: longest UI-thread pump, {count} hosts every 2 s"),
            "ms",
            crate::report::ms(longest.cpu),
        )
        .target("< 50 ms", longest.cpu < Duration::from_millis(50))
        .note(format!(
            "of the UI thread's CPU ({:.1} ms wall) over {} s; window CPU {:.1} % of one core; sort {:.1} ms, filter ({shown} shown) {:.1} ms; RSS {} KiB",
            crate::report::ms(longest.wall),
            watch.as_secs(),
            cpu.as_secs_f64() * 100.0 / started.elapsed().as_secs_f64(),
            crate::report::ms(sort),
            crate::report::ms(filter),
            rss.max(rss_before),
        )),
    );
}

/// A window of 10,000 hosts (plaintext agents: the scale group measures
/// the TLS handshakes): listed at once, every state shown, and filtering
/// and selecting as the user does.
fn ten_thousand(options: &BenchOptions, report: &mut Report, runtime: &tokio::runtime::Runtime) {
    let count = if options.smoke { 100 } else { 10_000 };
    let farm = AgentFarm::start_with(count, 100, None);
    farm.yield_cpu();
    let dir = tempfile::tempdir().expect("a directory");
    let path = dir.path().join("hosts.txt");
    farm.write_hosts(&path, "h");
    // The baseline: how long the agents take to answer every host's
    // check, asked by the CLI the same way.
    let started = Instant::now();
    let checked = std::process::Command::new(env!("CARGO_BIN_EXE_vigie"))
        .env("HOME", dir.path())
        .env("VIGIE_HISTORY", dir.path().join("history.jsonl"))
        .arg("--hosts")
        .arg(&path)
        .args(["hosts", "check"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("vigie runs");
    let cli_check = started.elapsed();
    assert!(checked.success(), "every agent answers the CLI");
    let rss_before = rss_kib();
    let opened = Instant::now();
    let app = open(path, runtime);
    let shown = opened.elapsed();
    let listed = app
        .window()
        .global::<HostsAdapter>()
        .get_hosts()
        .row_count();
    assert_eq!(listed, count, "every host is listed");
    let (online, longest) = pump_until(&app, Duration::from_secs(120), |app| {
        app.window()
            .global::<HostsAdapter>()
            .get_summary()
            .contains(&format!("{count} online"))
    });
    let rss = rss_kib();
    let hosts = app.window().global::<HostsAdapter>();
    let filter = timed(|| hosts.invoke_filter_edited("h00".into()));
    let filtered = hosts.get_hosts().row_count();
    let select = timed(|| hosts.invoke_select_all());
    let unfilter = timed(|| hosts.invoke_filter_edited("".into()));
    let select_all = timed(|| hosts.invoke_select_all());
    let toggle = timed(|| hosts.invoke_toggle(1));
    let none = timed(|| hosts.invoke_select_none());
    let slowest = [select, unfilter, select_all, toggle, none]
        .into_iter()
        .max()
        .unwrap_or_default();
    report.add(
        Figure::new(
            "gui_10k_open",
            format!("GUI: open a file of {count} hosts"),
            "ms",
            crate::report::ms(shown),
        )
        .note(format!("window built, all {listed} hosts listed")),
    );
    report.add(
        Figure::new(
            "gui_10k_online",
            format!("GUI: all {count} hosts checked online"),
            "ms",
            crate::report::ms(shown + online),
        )
        .note(format!("plaintext; {}; {longest}", farm.describe()))
        .note(format!(
            "`vigie hosts check` of the same agents {:.0} ms",
            crate::report::ms(cli_check)
        ))
        .ratio("`vigie hosts check`", Some(crate::report::ms(cli_check)))
        .target("< 5 s", shown + online < Duration::from_secs(5)),
    );
    report.add(
        Figure::new(
            "gui_10k_filter",
            format!("GUI: filter {count} hosts"),
            "ms",
            crate::report::ms(filter),
        )
        .note(format!(
            "{filtered} shown; the slowest of select shown, clear the filter, select all, toggle one, select none {:.1} ms",
            crate::report::ms(slowest)
        )),
    );
    report.add(
        Figure::new(
            "gui_10k_memory",
            format!("GUI: memory with {count} hosts"),
            "KiB",
            rss.saturating_sub(rss_before) as f64,
        )
        .note(format!("window process RSS {rss} KiB")),
    );
    drop(app);
    drop(farm);
}
