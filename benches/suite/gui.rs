//! The desktop client under load, without a display (Slint's testing
//! backend): a window of 1,000 hosts, and one host printing 100 MB. The UI
//! thread is blocked only while it applies background results (`pump`), so
//! the longest pump is how long input can wait.

use std::time::{Duration, Instant};

use slint::ComponentHandle;
use vigie::client::gui::{
    CommandAdapter, HostsAdapter,
    app::{App, Options},
};

use crate::{
    Options as BenchOptions,
    agents::AgentFarm,
    report::{Figure, Report},
};

fn rss_kib() -> u64 {
    crate::agents::status_kib(std::process::id(), "VmRSS:")
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
    farm.write_hosts(&path, "h");
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
        .note(format!(
            "longest UI-thread pump {:.1} ms",
            crate::report::ms(longest_pump)
        )),
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
            "longest UI-thread pump {:.1} ms; RSS grew {} KiB at most",
            crate::report::ms(longest),
            peak.saturating_sub(before)
        )),
    );
    drop(app);
    drop(farm);
}
