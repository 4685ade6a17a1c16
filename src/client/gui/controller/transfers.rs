//! The Files view's logic: one push or pull at a time over the selected
//! hosts, each host's line (bytes moved of its size, then what happened),
//! and the summary line, from the transfer's shared progress.

use std::{sync::atomic::Ordering, time::Instant};

use crate::client::{
    Error,
    fleet::Outcome,
    format,
    transfer::{Failed, Progress, Pulled, Pushed},
};

/// Which way the files go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// To the hosts.
    Push,
    /// From the hosts.
    Pull,
}

/// One host's line.
#[derive(Debug, Clone, PartialEq)]
pub struct HostLine {
    /// Its fleet index.
    pub index: usize,
    /// Its name.
    pub name: String,
    /// Done so far, 0 to 1 (0 while its size is not known).
    pub fraction: f32,
    /// What to show: bytes moved, or the outcome.
    pub state: String,
    /// None while it runs; then whether it worked.
    pub good: Option<bool>,
}

/// A transfer shown in the view.
#[derive(Debug)]
pub struct Transfer {
    direction: Direction,
    what: String,
    lines: Vec<HostLine>,
    started: Instant,
    ended: Option<String>,
}

impl Transfer {
    /// A transfer of `what` over `hosts` (fleet index, name), starting now.
    pub fn new(direction: Direction, what: String, hosts: Vec<(usize, String)>) -> Self {
        let lines = hosts
            .into_iter()
            .map(|(index, name)| HostLine {
                index,
                name,
                fraction: 0.0,
                state: "waiting".into(),
                good: None,
            })
            .collect();
        Self {
            direction,
            what,
            lines,
            started: Instant::now(),
            ended: None,
        }
    }

    /// Marks host `index` skipped (known offline: nothing is sent to it,
    /// as for a command).
    pub fn skip(&mut self, index: usize, why: &str) {
        if let Some(line) = self.line(index) {
            line.state = format!("skipped: {why}");
            line.good = Some(false);
        }
    }

    /// The hosts' lines.
    pub fn lines(&self) -> &[HostLine] {
        &self.lines
    }

    /// True until its results (or a cancel) arrived.
    pub fn running(&self) -> bool {
        self.ended.is_none()
    }

    /// Reads each running host's bytes from `progress`.
    pub fn tick(&mut self, progress: &Progress) {
        for line in self.lines.iter_mut().filter(|l| l.good.is_none()) {
            let Some(host) = progress.host(line.index) else {
                continue;
            };
            let (bytes, size) = (
                host.bytes.load(Ordering::Relaxed),
                host.size.load(Ordering::Relaxed),
            );
            if bytes == 0 && size == 0 {
                continue;
            }
            line.fraction = if size == 0 {
                0.0
            } else {
                (bytes as f64 / size as f64).min(1.0) as f32
            };
            line.state = if size == 0 {
                format::bytes(bytes)
            } else {
                format!("{} of {}", format::bytes(bytes), format::bytes(size))
            };
        }
    }

    /// Takes a push's results.
    pub fn pushed(&mut self, results: Vec<(usize, Result<Pushed, Failed>)>) {
        for (index, result) in results {
            let Some(line) = self.line(index) else {
                continue;
            };
            match result {
                Ok(pushed) => {
                    let bytes: u64 = pushed.files.iter().map(|d| d.size).sum();
                    let unchanged = pushed.files.iter().filter(|d| d.unchanged).count();
                    line.state = match pushed.files.as_slice() {
                        [one] if pushed.dirs == 0 => format!(
                            "{} {} · sha256 {}",
                            if one.unchanged {
                                "unchanged (the host had it):"
                            } else {
                                "pushed"
                            },
                            format::bytes(one.size),
                            &one.sha256[..one.sha256.len().min(16)]
                        ),
                        files => format!(
                            "pushed {} files{}, {} directories ({} new) · {}",
                            files.len(),
                            if unchanged > 0 {
                                format!(" ({unchanged} unchanged)")
                            } else {
                                String::new()
                            },
                            pushed.dirs,
                            pushed.dirs_created,
                            format::bytes(bytes)
                        ),
                    };
                    line.fraction = 1.0;
                    line.good = Some(true);
                }
                Err(failed) => {
                    let remote = failed.remote;
                    fail(line, failed.error, Some(&remote));
                }
            }
        }
        self.end("pushed to");
    }

    /// Takes a pull's results.
    pub fn pulled(&mut self, results: Vec<(usize, Result<Pulled, Error>)>) {
        for (index, result) in results {
            let Some(line) = self.line(index) else {
                continue;
            };
            match result {
                Ok(pulled) => {
                    line.state = format!(
                        "pulled {} to {} · sha256 {}",
                        format::bytes(pulled.size),
                        pulled.local.display(),
                        &pulled.sha256[..pulled.sha256.len().min(16)]
                    );
                    line.fraction = 1.0;
                    line.good = Some(true);
                }
                Err(e) => fail(line, e, None),
            }
        }
        self.end("pulled from");
    }

    /// Stops showing the transfer as running: hosts not done are marked.
    pub fn cancelled(&mut self) {
        let resumes = self.direction == Direction::Push;
        for line in self.lines.iter_mut().filter(|l| l.good.is_none()) {
            line.state = if resumes {
                "cancelled: pushing the same file again resumes".into()
            } else {
                "cancelled".into()
            };
            line.good = Some(false);
        }
        self.ended = Some(format!(
            "{} cancelled after {}",
            self.verb(),
            seconds(self.started)
        ));
    }

    /// Ends a transfer that could not start (the local tree could not be
    /// read): every host is marked not run, with why.
    pub fn not_started(&mut self, why: &str) {
        for line in self.lines.iter_mut().filter(|l| l.good.is_none()) {
            line.state = format!("not run: {why}");
            line.good = Some(false);
        }
        self.ended = Some(format!("{} {}: not started: {why}", self.verb(), self.what));
    }

    /// The line under the controls.
    pub fn summary(&self) -> String {
        if let Some(ended) = &self.ended {
            return ended.clone();
        }
        let done = self.lines.iter().filter(|l| l.good.is_some()).count();
        format!(
            "{} {}: {} of {} hosts done, {}",
            self.verb(),
            self.what,
            done,
            self.lines.len(),
            seconds(self.started)
        )
    }

    fn verb(&self) -> &'static str {
        match self.direction {
            Direction::Push => "pushing",
            Direction::Pull => "pulling",
        }
    }

    fn line(&mut self, index: usize) -> Option<&mut HostLine> {
        self.lines.iter_mut().find(|l| l.index == index)
    }

    fn end(&mut self, verb: &str) {
        let good = self.lines.iter().filter(|l| l.good == Some(true)).count();
        // A host the results did not mention never started.
        for line in self.lines.iter_mut().filter(|l| l.good.is_none()) {
            line.state = "not run".into();
            line.good = Some(false);
        }
        self.ended = Some(format!(
            "{} {verb} {good} of {} hosts in {}",
            self.what,
            self.lines.len(),
            seconds(self.started)
        ));
    }
}

fn fail(line: &mut HostLine, error: Error, remote: Option<&str>) {
    let outcome = Outcome::<()>::from_result(Err(error));
    let why = outcome.error().unwrap_or_default();
    line.state = match remote {
        Some(remote) => format!("{}: {remote}: {why}", outcome.status()),
        None => format!("{}: {why}", outcome.status()),
    };
    line.good = Some(false);
}

fn seconds(since: Instant) -> String {
    format!("{:.1} s", since.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::PutDone;

    #[test]
    fn lines_follow_the_progress_then_show_each_outcome() {
        let progress = Progress::for_hosts(&[0, 1, 2]);
        let mut transfer = Transfer::new(
            Direction::Push,
            "app.conf".into(),
            vec![(0, "web1".into()), (1, "web2".into()), (2, "web3".into())],
        );
        assert!(transfer.running());
        assert_eq!(transfer.lines()[0].state, "waiting");
        progress.expect(0, 2048);
        progress.add(0, 1024);
        transfer.tick(&progress);
        assert_eq!(transfer.lines()[0].state, "1.0 KiB of 2.0 KiB");
        assert!((transfer.lines()[0].fraction - 0.5).abs() < 1e-6);
        assert!(
            transfer
                .summary()
                .starts_with("pushing app.conf: 0 of 3 hosts done")
        );

        let done = PutDone {
            path: "/srv/app.conf".into(),
            size: 2048,
            sha256: "ab".repeat(32),
            replaced: false,
            unchanged: false,
        };
        transfer.pushed(vec![
            (
                0,
                Ok(Pushed {
                    files: vec![done],
                    dirs: 0,
                    dirs_created: 0,
                }),
            ),
            (
                1,
                Err(Failed {
                    remote: "/srv/app.conf".into(),
                    error: Error::Protocol("refused".into()),
                }),
            ),
        ]);
        let lines = transfer.lines();
        assert_eq!(lines[0].good, Some(true));
        assert_eq!(lines[0].state, "pushed 2.0 KiB · sha256 abababababababab");
        assert_eq!(lines[1].good, Some(false));
        assert!(
            lines[1].state.contains("/srv/app.conf: "),
            "{}",
            lines[1].state
        );
        assert_eq!(lines[2].state, "not run");
        assert!(!transfer.running());
        assert!(
            transfer
                .summary()
                .starts_with("app.conf pushed to 1 of 3 hosts in")
        );
    }

    #[test]
    fn a_push_that_cannot_start_says_why_on_every_host() {
        let mut transfer = Transfer::new(Direction::Push, "x".into(), vec![(0, "db".into())]);
        transfer.not_started("x: Permission denied");
        assert_eq!(transfer.lines()[0].state, "not run: x: Permission denied");
        assert!(!transfer.running());
        assert_eq!(
            transfer.summary(),
            "pushing x: not started: x: Permission denied"
        );
    }

    #[test]
    fn a_skipped_host_keeps_its_reason_when_the_others_end() {
        let mut transfer = Transfer::new(
            Direction::Pull,
            "x".into(),
            vec![(0, "web".into()), (1, "db".into())],
        );
        transfer.skip(1, "offline: refused");
        transfer.pulled(Vec::new());
        assert_eq!(transfer.lines()[1].state, "skipped: offline: refused");
        assert_eq!(transfer.lines()[0].state, "not run");
    }

    #[test]
    fn a_cancelled_push_says_it_resumes() {
        let mut transfer = Transfer::new(Direction::Push, "x".into(), vec![(4, "db".into())]);
        transfer.cancelled();
        assert_eq!(transfer.lines()[0].good, Some(false));
        assert!(transfer.lines()[0].state.contains("resumes"));
        assert!(transfer.summary().starts_with("pushing cancelled after"));
    }
}
