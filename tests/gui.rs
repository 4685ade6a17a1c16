//! The desktop client's real window, driven through Slint's testing backend
//! (no display needed) against real agents on 127.0.0.1:0: load a hosts
//! file, select hosts, run a preset and a command, see output arrive,
//! cancel, see an offline host skipped, add and remove hosts, push and pull
//! files with each host's progress.

#![cfg(feature = "gui")]

mod support;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use i_slint_backend_testing::ElementHandle;
use slint::{ComponentHandle, Model};
use support::{TestAgent, marker, processes_with};
use vigie::client::{
    gui::controller::settings::Settings,
    gui::{
        ChartAdapter, CommandAdapter, DashboardAdapter, FilesAdapter, HistoryAdapter, HostsAdapter,
        JobsAdapter, OutputAdapter, TransfersAdapter, app::App, app::Options,
    },
    history::History,
};

/// A window with its runtime and scratch files.
struct Window {
    app: App,
    dir: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

impl Window {
    fn open(hosts_file: Option<PathBuf>) -> Self {
        i_slint_backend_testing::init_no_event_loop();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let app = App::new(
            Options {
                hosts_file,
                settings_path: Some(dir.path().join("gui.toml")),
                history: Some(History::at(dir.path().join("history.jsonl"))),
                monitor_interval: Duration::from_secs(1),
                ..Options::default()
            },
            runtime.handle().clone(),
            false,
        )
        .expect("the window opens");
        app.window().show().expect("shown");
        Self {
            app,
            dir,
            _runtime: runtime,
        }
    }

    /// Pumps background results into the window until `done` holds.
    fn wait_until(&self, what: &str, mut done: impl FnMut(&App) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            self.app.pump();
            if done(&self.app) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(20));
            i_slint_backend_testing::mock_elapsed_time(Duration::from_millis(20));
        }
    }

    fn element(&self, label: &str) -> ElementHandle {
        ElementHandle::find_by_accessible_label(self.app.window(), label)
            .next()
            .unwrap_or_else(|| panic!("no element labelled {label:?}"))
    }

    fn click(&self, label: &str) {
        self.element(label).invoke_accessible_default_action();
    }

    /// Toggles a host in the hosts list (the dashboard's lines carry host
    /// names too).
    fn click_host(&self, name: &str) {
        ElementHandle::find_by_accessible_label(self.app.window(), name)
            .find(|e| {
                e.accessible_role() == Some(i_slint_backend_testing::AccessibleRole::Checkbox)
            })
            .unwrap_or_else(|| panic!("no host {name:?} in the list"))
            .invoke_accessible_default_action();
    }

    fn type_into(&self, label: &str, text: &str) {
        self.element(label).set_accessible_value(text);
    }

    fn hosts(&self) -> Vec<(String, String, bool)> {
        let model = self.app.window().global::<HostsAdapter>().get_hosts();
        model
            .iter()
            .map(|h| (h.name.to_string(), h.state.to_string(), h.selected))
            .collect()
    }

    fn tabs(&self) -> Vec<(String, String, String)> {
        let model = self.app.window().global::<OutputAdapter>().get_tabs();
        model
            .iter()
            .map(|t| (t.name.to_string(), t.kind.to_string(), t.status.to_string()))
            .collect()
    }

    fn lines(&self) -> Vec<(String, bool)> {
        let model = self.app.window().global::<OutputAdapter>().get_lines();
        model
            .iter()
            .map(|l| (l.text.to_string(), l.stderr))
            .collect()
    }

    fn running(&self) -> bool {
        self.app.window().global::<CommandAdapter>().get_running()
    }
}

fn hosts_file(dir: &Path, agents: &[(&str, &TestAgent)], offline: bool) -> PathBuf {
    let mut text = String::from("name,address,port,tags\n");
    for (name, agent) in agents {
        text.push_str(&format!("{name},127.0.0.1,{},web\n", agent.addr().port()));
    }
    if offline {
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        text.push_str(&format!("down,127.0.0.1,{free},db\n"));
    }
    let path = dir.join("hosts.csv");
    std::fs::write(&path, text).expect("written");
    path
}

#[test]
fn load_select_run_a_preset_and_a_command_and_see_an_offline_host_skipped() {
    let (a, b) = (TestAgent::start(), TestAgent::start());
    let files = tempfile::tempdir().expect("a directory");
    let path = hosts_file(files.path(), &[("web1", &a), ("web2", &b)], true);
    let window = Window::open(None);

    // Load the file the way a user does: type its path, press Load.
    window.type_into("Hosts file", &path.display().to_string());
    window.click("Load");
    window.wait_until("the hosts are checked", |_| {
        let hosts = window.hosts();
        hosts.len() == 3
            && hosts
                .iter()
                .all(|(_, state, _)| state == "online" || state == "offline")
    });
    assert_eq!(
        window
            .hosts()
            .iter()
            .map(|(n, s, _)| (n.as_str(), s.as_str()))
            .collect::<Vec<_>>(),
        vec![("web1", "online"), ("web2", "online"), ("down", "offline")]
    );

    window.click("Select all");
    assert!(window.hosts().iter().all(|(_, _, selected)| *selected));
    window.click("web2");
    assert_eq!(
        window.hosts().iter().filter(|(_, _, s)| *s).count(),
        2,
        "clicking a row's check toggles it"
    );
    window.click("web2");

    window.click("RAM");
    window.wait_until("the preset answers", |_| !window.running());
    let tabs = window.tabs();
    assert_eq!(tabs.len(), 3);
    assert_eq!((tabs[0].1.as_str(), tabs[1].1.as_str()), ("ok", "ok"));
    assert_eq!(tabs[2].1, "skipped", "{tabs:?}");
    assert!(
        tabs[2].2.contains("offline"),
        "the reason is shown: {tabs:?}"
    );
    assert!(
        window.lines()[0].0.starts_with("total "),
        "web1's memory is shown: {:?}",
        window.lines()
    );

    window.type_into(
        "Command",
        "echo hello; echo oops >&2; printf '\\033[31mred\\033[0m\\n'",
    );
    window.click("Run");
    window.wait_until("the command ends", |_| !window.running());
    let lines = window.lines();
    assert!(lines.contains(&("hello".to_owned(), false)), "{lines:?}");
    assert!(
        lines.contains(&("oops".to_owned(), true)),
        "stderr is marked: {lines:?}"
    );
    assert!(
        lines.contains(&("^[[31mred^[[0m".to_owned(), false)),
        "escape sequences are shown, not obeyed: {lines:?}"
    );
    let groups = window.app.window().global::<OutputAdapter>().get_groups();
    let first = groups.row_data(0).expect("a group");
    assert_eq!((first.hosts.as_str(), first.count), ("web[1-2]", 2));
    let status = window
        .element("Status")
        .accessible_description()
        .unwrap_or_default();
    assert!(
        status.contains("2 ok") && status.contains("1 skipped"),
        "{status}"
    );

    // Both runs are in the shared history.
    window.wait_until("the history is written", |app| {
        app.window()
            .global::<HistoryAdapter>()
            .get_entries()
            .row_count()
            == 2
    });
    let history = History::at(window.dir.path().join("history.jsonl"))
        .load()
        .expect("readable");
    assert_eq!(
        history.entries[1].command,
        "echo hello; echo oops >&2; printf '\\033[31mred\\033[0m\\n'"
    );
    assert_eq!(
        history.entries[1].results[2].status,
        vigie::client::run::Status::Skipped
    );
}

#[test]
fn cancel_stops_the_command_on_every_host() {
    let (a, b) = (TestAgent::start(), TestAgent::start());
    let files = tempfile::tempdir().expect("a directory");
    let path = hosts_file(files.path(), &[("web1", &a), ("web2", &b)], false);
    let window = Window::open(Some(path));
    window.click("Select all");
    let mark = marker();
    window.type_into("Command", &format!("echo started; sleep {mark}"));
    window.click("Run");
    window.wait_until("both commands run", |_| processes_with(&mark).len() >= 2);
    window.click("Cancel");
    window.wait_until("the run is over", |_| !window.running());
    let tabs = window.tabs();
    assert!(
        tabs.iter()
            .all(|(_, kind, status)| kind == "failed" && status == "cancelled"),
        "{tabs:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_with(&mark).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the commands were killed on the agents"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn adding_and_removing_hosts_edits_the_file() {
    let a = TestAgent::start();
    let files = tempfile::tempdir().expect("a directory");
    let path = hosts_file(files.path(), &[("web1", &a)], false);
    let window = Window::open(Some(path.clone()));
    let hosts = window.app.window().global::<HostsAdapter>();

    // Through the dialog, as a user fills it in.
    window.click("Add host…");
    window.type_into("New host name", "web2");
    window.type_into("New host address", "127.0.0.1");
    window.type_into("New host port", "port");
    window.click("Add");
    assert!(
        hosts.get_add_error().contains("bad port"),
        "{}",
        hosts.get_add_error()
    );
    window.type_into("New host port", &a.addr().port().to_string());
    window.click("Add");
    assert_eq!(hosts.get_add_error(), "");
    let text = std::fs::read_to_string(&path).expect("readable");
    assert!(
        text.ends_with(&format!("web2,127.0.0.1,{},\n", a.addr().port())),
        "{text}"
    );
    window.wait_until("the new host is checked", |_| {
        window
            .hosts()
            .iter()
            .any(|(n, s, _)| n == "web2" && s == "online")
    });

    window.click("web1");
    window.click("Remove");
    window.click("Remove them");
    let text = std::fs::read_to_string(&path).expect("readable");
    assert!(!text.contains("web1"), "{text}");
    assert_eq!(window.hosts().len(), 1);
}

#[test]
fn kill_asks_for_confirmation_and_stops_the_agents() {
    let (a, b) = (TestAgent::start(), TestAgent::start());
    let files = tempfile::tempdir().expect("a directory");
    let path = hosts_file(files.path(), &[("web1", &a), ("web2", &b)], false);
    let window = Window::open(Some(path));
    window.click("Select all");
    window.click("Kill");
    assert!(!a.is_finished(), "nothing happens before the confirmation");
    window.click("Stop them");
    window.wait_until("both agents answered", |_| !window.running());
    let tabs = window.tabs();
    assert!(tabs.iter().all(|(_, kind, _)| kind == "ok"), "{tabs:?}");
    assert!(
        window.lines()[0].0.starts_with("stopping (boot "),
        "{:?}",
        window.lines()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(a.is_finished() && b.is_finished()) {
        assert!(Instant::now() < deadline, "both agents stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn without_a_hosts_file_the_window_shows_this_machine() {
    let window = Window::open(None);
    window.wait_until("this machine is online", |_| {
        window
            .hosts()
            .first()
            .is_some_and(|(_, state, selected)| state == "online" && *selected)
    });
    window.type_into("Command", "echo from the window");
    window.click("Run");
    window.wait_until("the command ends", |_| !window.running());
    assert_eq!(window.lines(), vec![("from the window".to_owned(), false)]);
}

/// The run options make a rollout (here: one host at a time, no failure
/// tolerated, so the first host's failure stops it and the others are not
/// run), and the Grouped view's diff shows the other groups against the
/// largest.
#[test]
fn a_rollout_from_the_run_options_stops_and_the_grouped_view_diffs() {
    let (a, b) = (TestAgent::start(), TestAgent::start());
    let files = tempfile::tempdir().expect("a directory");
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let text = format!(
        "name,address,port,tags\nweb1,127.0.0.1,{},\ndown,127.0.0.1,{free},\nweb2,127.0.0.1,{},\n",
        a.addr().port(),
        b.addr().port()
    );
    let path = files.path().join("hosts.csv");
    std::fs::write(&path, text).expect("written");
    let window = Window::open(Some(path));
    window.click("Select all");
    window.type_into("Batch size", "1");
    window.type_into("Failures allowed", "0");
    window.type_into("Command", "false");
    window.click("Run");
    window.wait_until("the rollout ends", |_| !window.running());
    let tabs = window.tabs();
    let web1 = tabs
        .iter()
        .find(|(name, _, _)| name == "web1")
        .expect("web1's tab");
    assert_eq!(web1.2, "exit 1", "{tabs:?}");
    for name in ["down", "web2"] {
        let tab = tabs.iter().find(|(n, _, _)| n == name).expect("a tab");
        assert!(
            tab.2
                .starts_with("not run: rollout stopped after 1 failure"),
            "{tabs:?}"
        );
    }
    let status = window
        .element("Status")
        .accessible_description()
        .unwrap_or_default();
    assert!(status.contains("not run"), "{status}");

    // Back to all hosts at once, with output that differs on one host.
    window.type_into("Batch size", "");
    window.type_into("Failures allowed", "");
    window.type_into("Command", "echo same; echo $VIGIE_UNSET_FOR_TEST");
    window.click("Run");
    window.wait_until("the run ends", |_| !window.running());
    let adapter = window.app.window().global::<OutputAdapter>();
    adapter.set_diff(true);
    adapter.invoke_diff_toggled();
    window.app.pump();
    let groups = adapter.get_groups();
    assert_eq!(
        groups.row_count(),
        2,
        "the two agents, and the unreachable host"
    );
    let other = groups.row_data(1).expect("a second group");
    let lines: Vec<(String, i32)> = other
        .lines
        .iter()
        .map(|l| (l.text.to_string(), l.diff))
        .collect();
    assert!(
        lines
            .iter()
            .any(|(t, d)| t.starts_with("--- web[1-2] (2) exit 0") && *d == 2),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|(t, d)| t == "-same" && *d == -1),
        "{lines:?}"
    );
}

/// Starts `command` detached on the hosts of `hosts` with the `vigie`
/// binary, recording it in the window's history; returns the fleet job id.
fn detach(window: &Window, hosts: &Path, command: &str) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_vigie"))
        .env("HOME", window.dir.path())
        .env("VIGIE_HISTORY", window.dir.path().join("history.jsonl"))
        .arg("--hosts")
        .arg(hosts)
        .args(["--json", "exec", "--detach", "--", command])
        .output()
        .expect("vigie runs");
    assert!(output.status.success(), "{output:?}");
    let last = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON"))
        .expect("a summary line");
    last["job"].as_str().expect("a fleet job id").to_owned()
}

fn job_rows(window: &Window) -> Vec<(String, String)> {
    let model = window.app.window().global::<JobsAdapter>().get_jobs();
    model
        .iter()
        .map(|j| (j.id.to_string(), j.state.to_string()))
        .collect()
}

#[test]
fn the_jobs_view_lists_reattaches_and_cancels_detached_jobs() {
    let (a, b) = (TestAgent::start(), TestAgent::start());
    let files = tempfile::tempdir().expect("a directory");
    let path = hosts_file(files.path(), &[("web1", &a), ("web2", &b)], false);
    let window = Window::open(Some(path.clone()));
    let go = files.path().join("go");
    let mark = marker();
    let job = detach(
        &window,
        &path,
        &format!(
            "echo start; while [ ! -e {} ]; do sleep 0.05; done; echo done # {mark}",
            go.display()
        ),
    );
    window.click("Jobs");
    window.wait_until("the job is listed as running", |_| {
        job_rows(&window) == vec![(job.clone(), "2 running".to_owned())]
    });
    window.click(&format!("job {job}"));
    window.click("Reattach");
    window.wait_until("both hosts replay their output", |_| {
        window.lines().iter().any(|(l, _)| l == "start") && window.tabs().len() == 2
    });
    // Cancel while attached only detaches: the jobs run on.
    window.click("Cancel");
    window.wait_until("the attachment is over", |_| !window.running());
    let status = window
        .app
        .window()
        .global::<vigie::client::gui::StatusAdapter>()
        .get_message();
    assert!(status.contains("detached from job"), "{status}");
    // (A shell forking its `sleep` shows twice for a moment: at least two.)
    assert!(processes_with(&mark).len() >= 2, "both jobs run on");
    window.click("Jobs");
    window.wait_until("the job is listed again", |_| {
        job_rows(&window) == vec![(job.clone(), "2 running".to_owned())]
    });
    window.click(&format!("job {job}"));
    window.click("Reattach");
    window.wait_until("the replay comes again", |_| {
        window.running() && window.lines().iter().any(|(l, _)| l == "start")
    });
    std::fs::write(&go, b"").expect("written");
    window.wait_until("the jobs end", |_| !window.running());
    let tabs = window.tabs();
    assert!(tabs.iter().all(|(_, kind, _)| kind == "ok"), "{tabs:?}");
    let lines: Vec<String> = window.lines().into_iter().map(|(l, _)| l).collect();
    assert_eq!(lines, ["start", "done"]);
    let history = History::at(window.dir.path().join("history.jsonl"))
        .load()
        .expect("the history");
    let last = history.entries.last().expect("an entry");
    assert_eq!(last.job.as_deref(), Some(job.as_str()));

    // A second job, cancelled from the view.
    let other = marker();
    let doomed = detach(&window, &path, &format!("sleep {other}"));
    window.click("Jobs");
    window.wait_until("the new job is listed", |_| {
        job_rows(&window).first().map(|(id, _)| id.clone()) == Some(doomed.clone())
    });
    window.click(&format!("job {doomed}"));
    window.click("Cancel job");
    window.wait_until("the view says it was cancelled", |_| {
        job_rows(&window)
            .first()
            .is_some_and(|(_, state)| state == "2 killed by SIGTERM (cancelled)")
    });
    assert!(processes_with(&other).is_empty());
}

fn transfer_lines(window: &Window) -> Vec<(String, String, String)> {
    let model = window.app.window().global::<TransfersAdapter>().get_hosts();
    model
        .iter()
        .map(|t| (t.name.to_string(), t.kind.to_string(), t.state.to_string()))
        .collect()
}

fn transfer_summary(window: &Window) -> String {
    window
        .app
        .window()
        .global::<TransfersAdapter>()
        .get_summary()
        .to_string()
}

#[test]
fn the_files_view_pushes_a_tree_and_pulls_with_each_hosts_progress_and_cancel_resumes() {
    use support::proxy::{FaultProxy, Faults, Link};
    let dir = tempfile::tempdir().expect("a directory");
    let base = dir.path().canonicalize().expect("canonical");
    // The window pushes one path to every selected host, and both agents
    // run on this machine: they share one root.
    let shared = base.join("shared");
    std::fs::create_dir(&shared).expect("shared");
    let agents: Vec<TestAgent> = (0..2)
        .map(|_| {
            let root = shared.clone();
            TestAgent::with_config(move |c| {
                c.file_roots = [(vigie::server::auth::Role::Admin, vec![root])].into();
            })
        })
        .collect();
    // web2 goes through a proxy that can slow it down.
    let proxy = FaultProxy::start(agents[1].addr());
    let hosts = base.join("hosts.csv");
    std::fs::write(
        &hosts,
        format!(
            "name,address,port,tags\nweb1,127.0.0.1,{},web\nweb2,127.0.0.1,{},web\n",
            agents[0].addr().port(),
            proxy.addr().port()
        ),
    )
    .expect("hosts");
    let window = Window::open(Some(hosts));
    window.wait_until("the hosts are online", |_| {
        window.hosts().iter().all(|(_, state, _)| state == "online")
    });
    window.click("Files");

    // The tree to push, chosen with the file chooser.
    let tree = base.join("site");
    std::fs::create_dir_all(tree.join("css")).expect("tree");
    std::fs::write(tree.join("index.html"), "<h1>hi</h1>").expect("file");
    std::fs::write(tree.join("css/a.css"), "h1 {}").expect("file");
    window.click("Choose what to push");
    let chooser = window.app.window().global::<FilesAdapter>();
    assert_eq!(chooser.get_title(), "Choose a file or directory to push");
    assert!(chooser.get_takes_directory());
    // The chooser is a popup, outside the window's element tree: its
    // callbacks are invoked as its Go and Use this directory buttons do.
    chooser.invoke_choose_path(tree.join("css").display().to_string().into());
    assert_eq!(chooser.get_dir(), tree.join("css").display().to_string());
    chooser.invoke_open("..".into());
    assert_eq!(chooser.get_dir(), tree.display().to_string());
    chooser.invoke_take_directory();
    let adapter = window.app.window().global::<TransfersAdapter>();
    assert_eq!(adapter.get_push_local(), tree.display().to_string());

    // web1 only first: select it, push into shared/one.
    window.click("web1");
    window.type_into("Remote path", &shared.join("one").display().to_string());
    window.click("Push");
    window.wait_until("the push ends", |_| {
        !adapter.get_running() && !transfer_lines(&window).is_empty()
    });
    let lines = transfer_lines(&window);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].1, "ok", "{lines:?}");
    assert!(
        lines[0].2.contains("pushed 2 files, 2 directories (2 new)"),
        "{lines:?}"
    );
    assert!(transfer_summary(&window).contains("pushed to 1 of 1 hosts"));
    assert_eq!(
        std::fs::read_to_string(shared.join("one/css/a.css")).expect("pushed"),
        "h1 {}"
    );

    // web2 alone, slowed to 1 MB/s, an 8 MiB file: its line shows the
    // bytes moving; Cancel cuts it; pushing again resumes and lands.
    window.click("web1");
    window.click("web2");
    let big = base.join("big.bin");
    let data: Vec<u8> = (0..8u32 << 20).map(|i| (i * 7 + i / 4096) as u8).collect();
    std::fs::write(&big, &data).expect("big");
    window.type_into("Local path", &big.display().to_string());
    window.type_into("Remote path", &shared.join("big.bin").display().to_string());
    proxy.set(Faults {
        up: Link {
            bytes_per_second: Some(1 << 20),
            ..Link::default()
        },
        ..Faults::default()
    });
    window.click("Push");
    window.wait_until("web2's bytes move", |_| {
        transfer_lines(&window)
            .first()
            .is_some_and(|(_, kind, state)| kind == "running" && state.contains(" of 8.0 MiB"))
    });
    window.click("Cancel transfer");
    let lines = transfer_lines(&window);
    assert_eq!(lines[0].1, "failed");
    assert!(lines[0].2.contains("resumes"), "{lines:?}");
    assert!(!adapter.get_running());
    assert!(!shared.join("big.bin").exists(), "no partial target");
    proxy.set(Faults::default());
    // The agent keeps what arrived, and lets go of it once it has noticed
    // the cut (the upload holds a lock on its partial file until then).
    window.wait_until("the cut upload is kept for a resume", |_| {
        support::released_partial(&shared).is_some_and(|kept| kept > 0)
    });
    window.click("Push");
    window.wait_until("the second push ends", |_| {
        !adapter.get_running()
            && transfer_lines(&window)
                .first()
                .is_some_and(|(_, kind, _)| kind != "running")
    });
    let lines = transfer_lines(&window);
    assert_eq!(lines[0].1, "ok", "{lines:?}");
    assert_eq!(std::fs::read(shared.join("big.bin")).expect("landed"), data);
    assert!(!shared.join(".vigie-uploads").exists(), "nothing left");

    // Pull from both into DIR/HOST/NAME.
    window.click("web1");
    let into = base.join("pulled");
    window.type_into("Pull path", &shared.join("big.bin").display().to_string());
    window.type_into("Pull into", &into.display().to_string());
    window.click("Pull");
    window.wait_until("the pull ends", |_| {
        !adapter.get_running()
            && transfer_lines(&window).len() == 2
            && transfer_lines(&window)
                .iter()
                .all(|(_, kind, _)| kind != "running")
    });
    let lines = transfer_lines(&window);
    assert!(lines.iter().all(|(_, kind, _)| kind == "ok"), "{lines:?}");
    for host in ["web1", "web2"] {
        assert_eq!(
            std::fs::read(into.join(host).join("big.bin")).expect("pulled"),
            data
        );
    }
    // A pull cut by Cancel leaves nothing behind.
    proxy.set(Faults {
        down: Link {
            bytes_per_second: Some(1 << 20),
            ..Link::default()
        },
        ..Faults::default()
    });
    let into = base.join("pulled-again");
    window.type_into("Pull into", &into.display().to_string());
    window.click("Pull");
    window.wait_until("web2's pull is under way", |_| {
        transfer_lines(&window).iter().any(|(name, kind, state)| {
            name == "web2" && kind == "running" && state.contains(" of ")
        })
    });
    window.click("Cancel transfer");
    proxy.set(Faults::default());
    window.wait_until("the cut pull's temporary file is gone", |_| {
        std::fs::read_dir(into.join("web2")).is_ok_and(|d| d.count() == 0)
    });

    // Nothing selected: said, nothing started.
    window.click("web1");
    window.click("web2");
    window.click("Pull");
    let status = window
        .app
        .window()
        .global::<vigie::client::gui::StatusAdapter>()
        .get_message();
    assert!(status.contains("select the hosts"), "{status}");
}

fn dashboard_rows(window: &Window) -> Vec<(String, String, String, bool)> {
    let model = window.app.window().global::<DashboardAdapter>().get_rows();
    model
        .iter()
        .map(|r| {
            (
                r.name.to_string(),
                r.standing.to_string(),
                r.cpu.to_string(),
                r.cpu_hot,
            )
        })
        .collect()
}

/// Opens a metrics stream to `agent` as any anonymous client would: the
/// agent allows one per identity, so a refusal for that reason says that
/// another client (the window) holds it. Any other failure fails the test.
fn stream_free(window: &Window, agent: &TestAgent) -> bool {
    let result = window._runtime.block_on(async {
        agent
            .client()
            .await
            .watch_metrics(Duration::from_secs(1), false)
            .await
            .map(drop)
    });
    // Seldom: while this probe holds the agent's one stream, the
    // dashboard's own opening would be refused.
    std::thread::sleep(Duration::from_millis(200));
    match result {
        Ok(()) => true,
        Err(e)
            if e.to_string()
                .contains("too many open streams for anonymous") =>
        {
            false
        }
        Err(e) => panic!("the probe failed otherwise: {e}"),
    }
}

#[test]
fn the_dashboard_streams_only_while_open_sorts_filters_marks_hot_hosts_and_opens_a_chart() {
    let a = TestAgent::start();
    // One metrics stream per identity on web2: whether the dashboard holds
    // its stream there can be seen from outside.
    let b = TestAgent::with_config(|c| c.max_streams_per_identity = 1);
    let files = tempfile::tempdir().expect("a directory");
    let path = hosts_file(files.path(), &[("web1", &a), ("web2", &b)], true);
    let window = Window::open(Some(path));
    assert!(
        stream_free(&window, &b),
        "nothing streams before the view opens"
    );

    window.click("Dashboard");
    window.wait_until("both agents stream and the missing host is lost", |_| {
        let rows = dashboard_rows(&window);
        rows.len() == 3
            && rows
                .iter()
                .all(|(name, standing, cpu, _)| match name.as_str() {
                    "down" => standing == "lost",
                    _ => standing == "live" && cpu.ends_with(" %"),
                })
    });
    let dashboard = window.app.window().global::<DashboardAdapter>();
    assert!(
        dashboard
            .get_summary()
            .starts_with("All 3 hosts · 2 live · 1 lost"),
        "nothing selected: every host is watched: {}",
        dashboard.get_summary()
    );
    assert_eq!(dashboard.get_cells().row_count(), 3);
    assert!(
        !stream_free(&window, &b),
        "the open view holds web2's stream"
    );

    // Sorting by name, then the other way; by a figure, highest first or
    // reversed, the host without figures stays last.
    window.click("Sort by Host");
    let names = |window: &Window| -> Vec<String> {
        dashboard_rows(window).into_iter().map(|r| r.0).collect()
    };
    assert_eq!(names(&window), ["down", "web1", "web2"]);
    window.click("Sort by Host");
    assert_eq!(names(&window), ["web2", "web1", "down"]);
    assert!(dashboard.get_reversed());
    window.click("Sort by Memory");
    assert_eq!(
        (dashboard.get_sort_key().as_str(), dashboard.get_reversed()),
        ("memory", false)
    );
    assert_eq!(names(&window)[2], "down");
    window.click("Sort by Memory");
    assert!(dashboard.get_reversed());
    assert_eq!(names(&window)[2], "down");

    // A threshold every live host crosses marks them hot, and is kept for
    // the next window; a wrong one is refused with its reason.
    dashboard.invoke_thresholds_edited("cpu=0".into());
    let rows = dashboard_rows(&window);
    assert!(
        rows.iter()
            .all(|(name, _, _, hot)| *hot == (name != "down")),
        "{rows:?}"
    );
    assert_eq!(dashboard.get_thresholds(), "cpu=0,memory=90,load=8,disk=90");
    assert!(dashboard.get_cells().iter().filter(|c| c.hot).count() == 2);
    let saved = Settings::load(&window.dir.path().join("gui.toml"));
    assert_eq!(saved.thresholds.cpu, 0.0);
    dashboard.invoke_thresholds_edited("cpu=lots".into());
    assert!(
        dashboard
            .get_thresholds_error()
            .contains("must be a number"),
        "{}",
        dashboard.get_thresholds_error()
    );

    window.type_into("Dashboard filter", "WEB1");
    assert_eq!(names(&window), ["web1"]);

    // Choosing a host selects it: the view watches the selection only,
    // keeping what it knew of it.
    window.click_host("web1");
    assert!(
        dashboard
            .get_summary()
            .starts_with("1 selected host · 1 live"),
        "{}",
        dashboard.get_summary()
    );
    window.wait_until("web2's stream is given back", |_| stream_free(&window, &b));
    window.click_host("web1");
    window.wait_until("every host is watched again", |_| {
        dashboard.get_summary().starts_with("All 3 hosts") && !stream_free(&window, &b)
    });

    // Leaving by another view's button ends the streams; coming back opens
    // them again.
    window.click("Output");
    assert_eq!(dashboard.get_rows().row_count(), 0);
    window.wait_until("the left view's streams end", |_| stream_free(&window, &b));
    window.click("Dashboard");
    window.wait_until("the view streams again", |_| {
        dashboard_rows(&window).len() == 1 && !stream_free(&window, &b)
    });

    // Clicking a host's line opens its chart and closes the view: its
    // streams end.
    let line = ElementHandle::find_by_accessible_label(window.app.window(), "web1")
        .find(|e| e.accessible_role() == Some(i_slint_backend_testing::AccessibleRole::ListItem))
        .expect("web1's line in the table");
    line.invoke_accessible_default_action();
    assert_eq!(window.app.window().get_view(), 3);
    assert_eq!(
        window.app.window().global::<ChartAdapter>().get_host(),
        "web1"
    );
    assert_eq!(dashboard.get_rows().row_count(), 0);
    window.wait_until("the closed view's streams end", |_| {
        stream_free(&window, &b)
    });
}
