//! `vigie top` through a pseudo-terminal: what it draws (read back with a
//! terminal emulator), the keys that sort, filter, select and run a
//! command, and the terminal put back as it was on every way out.

mod support;

use std::{
    io::{Read, Write},
    os::fd::{AsFd, OwnedFd},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rustix::{
    fs::{Mode, OFlags},
    pty::OpenptFlags,
    termios::{LocalModes, Winsize},
};
use support::{
    TestAgent,
    cli::{Scratch, hosts_arg},
};

/// `vigie` on the slave side of a new pseudo-terminal of 100x24, its
/// screen kept by a terminal emulator fed from the master side.
struct Terminal {
    master: std::fs::File,
    slave: OwnedFd,
    screen: Arc<Mutex<vt100::Parser>>,
    child: Child,
}

impl Terminal {
    fn start(mut command: Command) -> Self {
        let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
        rustix::pty::grantpt(&master).expect("grantpt");
        rustix::pty::unlockpt(&master).expect("unlockpt");
        let name = rustix::pty::ptsname(&master, Vec::new()).expect("ptsname");
        rustix::termios::tcsetwinsize(
            &master,
            Winsize {
                ws_row: 24,
                ws_col: 100,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        )
        .expect("window size");
        let slave = rustix::fs::open(
            name.as_c_str(),
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .expect("the slave side");
        let as_stdio = || Stdio::from(slave.try_clone().expect("a descriptor"));
        command
            .stdin(as_stdio())
            .stdout(as_stdio())
            .stderr(as_stdio());
        // SAFETY: only async-signal-safe calls between fork and exec: a new
        // session, with the terminal on stdin as its controlling terminal.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                rustix::process::setsid()?;
                rustix::process::ioctl_tiocsctty(std::io::stdin().as_fd())?;
                Ok(())
            });
        }
        let child = command.spawn().expect("vigie starts");
        let master = std::fs::File::from(master);
        let screen = Arc::new(Mutex::new(vt100::Parser::new(
            std::num::NonZeroU16::new(24).expect("rows"),
            std::num::NonZeroU16::new(100).expect("columns"),
            0,
        )));
        let (mut reader, fed) = (master.try_clone().expect("a descriptor"), screen.clone());
        std::thread::spawn(move || {
            let mut buffer = [0u8; 8192];
            // Ends with EIO once the last holder of the slave side is gone.
            while let Ok(n @ 1..) = reader.read(&mut buffer) {
                fed.lock().unwrap().process(&buffer[..n]);
            }
        });
        Self {
            master,
            slave,
            screen,
            child,
        }
    }

    fn contents(&self) -> String {
        self.screen.lock().unwrap().screen().contents()
    }

    /// Waits until the screen shows `text`.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let contents = self.contents();
            if contents.contains(text) {
                return contents;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {text:?}:\n{contents}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn keys(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).expect("keys sent");
        // One key at a time reaches the program as separate events.
        std::thread::sleep(Duration::from_millis(150));
    }

    /// Waits for the program to end; its exit code.
    fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "vigie top did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asserts the terminal is as it was: line editing and echo back, the
    /// main screen, the cursor shown.
    fn assert_restored(&self) {
        let modes = rustix::termios::tcgetattr(&self.slave).expect("tcgetattr");
        assert!(
            modes
                .local_modes
                .contains(LocalModes::ICANON | LocalModes::ECHO | LocalModes::ISIG),
            "raw mode left on: {:?}",
            modes.local_modes
        );
        // The last bytes may still be on their way to the emulator.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (alternate, hidden) = {
                let parser = self.screen.lock().unwrap();
                (
                    parser.screen().alternate_screen(),
                    parser.screen().hide_cursor(),
                )
            };
            if !alternate && !hidden {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "left on the alternate screen ({alternate}) or with the cursor hidden ({hidden})"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn top_of(scratch: &Scratch, hosts: &std::path::Path) -> Command {
    let mut command = scratch.vigie();
    command
        .env("TERM", "xterm-256color")
        .args(hosts_arg(hosts))
        .args(["top", "--interval", "200ms"]);
    command
}

#[test]
fn top_shows_sorts_filters_selects_runs_and_restores_the_terminal_on_q() {
    let agents: Vec<TestAgent> = (0..3).map(|_| TestAgent::start()).collect();
    let scratch = Scratch::new();
    let hosts = scratch.hosts(
        &[
            ("web1", &agents[0]),
            ("web2", &agents[1]),
            ("db1", &agents[2]),
        ],
        "",
    );
    let mut term = Terminal::start(top_of(&scratch, &hosts));
    term.wait_for("3 hosts: 3 live");
    // By name: db1 first.
    term.keys("n");
    let screen = term.wait_for("sort name");
    let order: Vec<&str> = screen
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("web") || w.starts_with("db"))
        })
        .collect();
    assert_eq!(order, ["db1", "web1", "web2"], "{screen}");
    // Filter while typing, keep it with Enter.
    term.keys("/web2\r");
    let screen = term.wait_for("filter \"web2\" (1 shown)");
    assert!(
        !screen.contains("web1") && !screen.contains("db1"),
        "{screen}"
    );
    // Select the host shown and run a command on it.
    term.keys("a");
    term.wait_for("1 selected");
    let marker = support::marker();
    term.keys("!");
    term.keys(&format!("echo {marker}\r"));
    let screen = term.wait_for(&format!("web2 {marker}"));
    assert!(screen.contains("on 1 host: 1 ok"), "{screen}");
    assert!(screen.contains("exit 0"), "{screen}");
    term.keys("q");
    assert_eq!(term.wait_exit(), Some(0));
    term.assert_restored();
    let history = std::fs::read_to_string(scratch.path("history.jsonl")).expect("recorded");
    assert!(history.contains(&format!("echo {marker}")), "{history}");
    assert!(history.contains("\"web2\""), "{history}");
}

#[test]
fn ctrl_c_and_sigterm_leave_the_terminal_as_it_was_and_a_host_going_down_shows_lost() {
    let agent = TestAgent::start();
    let scratch = Scratch::new();
    let hosts = scratch.hosts(&[("up", &agent)], "down=127.0.0.1:1\n");
    let mut term = Terminal::start(top_of(&scratch, &hosts));
    let screen = term.wait_for("2 hosts: 1 live, 1 lost");
    let row = |name: &str| {
        screen
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{screen}"))
            .to_owned()
    };
    assert!(row("down").contains("lost: "), "{screen}");
    assert!(row("up").contains("live"), "{screen}");
    term.keys("\x03");
    assert_eq!(term.wait_exit(), Some(0), "Ctrl-C leaves");
    term.assert_restored();

    let mut term = Terminal::start(top_of(&scratch, &hosts));
    term.wait_for("1 live");
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&term.child),
        rustix::process::Signal::TERM,
    )
    .expect("SIGTERM sent");
    assert_eq!(term.wait_exit(), Some(0), "SIGTERM leaves");
    term.assert_restored();
}

#[test]
fn without_a_terminal_top_says_to_use_watch() {
    let agent = TestAgent::start();
    let scratch = Scratch::new();
    let hosts = scratch.hosts(&[("a", &agent)], "");
    let output = top_of(&scratch, &hosts).output().expect("vigie runs");
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("needs a terminal") && err.contains("vigie watch"),
        "{err}"
    );
}
