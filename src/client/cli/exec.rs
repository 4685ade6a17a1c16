//! `vigie exec`: one command on many hosts, with live output.
//!
//! Each line is printed as it arrives, prefixed by its host (stdout on
//! stdout, stderr on stderr), with control characters shown rather than
//! obeyed; with one host the prefix is left out and the bytes go out
//! exactly as they came, as with ssh. `-b` gathers the output and shows
//! hosts with identical results once, like `clush -b`. Ctrl-C cancels the
//! command on every agent, which kills it, and waits for them to confirm.

use std::{
    io::Write,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use bytes::Bytes;
use serde::Serialize;

use super::{
    CliError, Context,
    output::Printer,
    staged::{self, Source},
};
use crate::{
    client::{
        fleet::{RolloutEvent, RunOptions},
        history::{EntryKind, RolloutRecord},
        ranges,
        run::{
            GATHER_KEPT, HISTORY_KEPT, HostOutcome, HostResult, Plan, RolloutSpec, Run, RunEvent,
            Summary,
        },
        text::{visible, visible_bytes},
    },
    command::{ExecRequest, OutputStream, Shell},
};

/// Arguments of `vigie exec`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Gather output: hosts with identical output and status are shown
    /// once, with their names (like clush -b).
    #[arg(short = 'b', long = "gather")]
    pub gather: bool,

    /// Gather, then show the largest group of identical output as the
    /// reference and every other group as a unified diff against it.
    #[arg(long)]
    pub diff: bool,

    /// Time limit per host (e.g. 30s, 5m); the command is killed after it.
    #[arg(short, long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,

    /// File whose bytes go to the command's standard input ("-": this
    /// program's standard input).
    #[arg(long, value_name = "FILE")]
    pub stdin: Option<PathBuf>,

    /// Run the words directly, without a shell.
    #[arg(long)]
    pub no_shell: bool,

    /// The command; its words are joined with spaces, as ssh does. OS
    /// prefixes work: DOS:dir, Linux:ls -la, Powershell:Get-Process.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,

    /// Start the command as a job on each host and return at once: it runs
    /// on without this client, its output kept by the agent (`vigie
    /// attach`, `vigie jobs`, `vigie cancel`).
    #[arg(short = 'd', long)]
    pub detach: bool,

    /// Staged runs.
    #[command(flatten)]
    pub rollout: super::staged::RolloutArgs,
}

/// What `--stdin` names: nothing, this process's stdin (`-`) or a file's
/// bytes, read whole.
pub(super) fn stdin_of(path: Option<&std::path::Path>) -> Result<Bytes, CliError> {
    match path {
        None => Ok(Bytes::new()),
        Some(path) if path.as_os_str() == "-" => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                .map_err(|e| CliError::Usage(format!("cannot read stdin: {e}")))?;
            Ok(Bytes::from(bytes))
        }
        Some(path) => std::fs::read(path)
            .map(Bytes::from)
            .map_err(|e| CliError::Usage(format!("{}: {e}", path.display()))),
    }
}

pub(super) async fn run(
    context: &Context,
    args: ExecArgs,
    printer: &Printer,
) -> Result<ExitCode, CliError> {
    let stdin = stdin_of(args.stdin.as_deref())?;
    // Without a shell the words travel as argv alone: an agent refuses a
    // request that carries both a command line and an argv.
    let request = ExecRequest {
        command: if args.no_shell {
            String::new()
        } else {
            args.command.join(" ")
        },
        shell: if args.no_shell {
            Shell::None
        } else {
            Shell::Default
        },
        argv: if args.no_shell {
            args.command.clone()
        } else {
            Vec::new()
        },
        stdin,
        ..ExecRequest::default()
    };
    let rollout = args.rollout.spec();
    if args.detach {
        if rollout.is_some() || args.gather || args.diff {
            return Err(CliError::Usage(
                "--detach starts the jobs and returns: it does not combine with staged runs, \
                 -b or --diff (use them with `vigie attach`)"
                    .into(),
            ));
        }
        let request = ExecRequest {
            detach: true,
            timeout: args.timeout,
            ..request
        };
        return super::jobs::start(context, request, printer).await;
    }
    let view = View::of(args.gather, args.diff);
    let launch = Launch::Run {
        request: Box::new(request),
        deadline: args.timeout,
        rollout,
    };
    Ok(execute(context, launch, view, printer).await)
}

/// What a run shows: a command started now, or jobs started before.
pub(super) enum Launch {
    /// Runs this request, as a rollout when there is a spec.
    Run {
        /// The command (boxed: a request is large beside an attachment).
        request: Box<ExecRequest>,
        /// Time limit per host.
        deadline: Option<Duration>,
        /// The rollout, if staged.
        rollout: Option<RolloutSpec>,
    },
    /// Attaches to a fleet job's host jobs.
    Attach {
        /// The fleet job id.
        job: String,
        /// Its command line, as the history recorded it.
        command: String,
        /// (fleet index, the host's job id).
        hosts: Vec<(usize, String)>,
    },
}

/// How a run's output is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum View {
    /// Lines as they come, framed with their host (raw for one host).
    Lines,
    /// Hosts with identical results shown once (`-b`).
    Gather,
    /// Gathered, then each group as a diff against the largest (`--diff`).
    Diff,
}

impl View {
    /// The view the flags ask for.
    pub(super) fn of(gather: bool, diff: bool) -> Self {
        if diff {
            Self::Diff
        } else if gather {
            Self::Gather
        } else {
            Self::Lines
        }
    }
}

/// Runs a request on the selected hosts, or attaches to jobs, and prints
/// everything; returns the exit code. Also used to re-run a history entry.
pub(super) async fn execute(
    context: &Context,
    launch: Launch,
    view: View,
    printer: &Printer,
) -> ExitCode {
    let (command_line, attached_job) = match &launch {
        Launch::Run { request, .. } => (request.command_line(), None),
        Launch::Attach { job, command, .. } => (command.clone(), Some(job.clone())),
    };
    // A script is recorded, not re-run from the history: its file may have
    // changed since.
    let kind = match &launch {
        Launch::Run { request, .. } if !request.script.is_empty() => EntryKind::Query,
        _ => EntryKind::Command,
    };
    let rollout = match &launch {
        Launch::Run { rollout, .. } => rollout.clone(),
        Launch::Attach { .. } => None,
    };
    let gather = view != View::Lines;
    let started = Instant::now();
    let single = context.selection.len() == 1;
    // One host's output goes out as it comes, as with ssh: no lines to
    // split. Otherwise, lines are framed with their host's name (or
    // gathered, with -b).
    let raw = single && !printer.json && !gather;
    let hosts: Vec<(usize, String)> = context
        .selection
        .iter()
        .map(|&i| (i, context.name(i).to_owned()))
        .collect();
    let head = if gather { GATHER_KEPT } else { HISTORY_KEPT };
    let mut model = Run::new(kind, &command_line, &hosts, head, !raw && !gather);
    let options = RunOptions {
        concurrency: context.concurrency,
        deadline: match &launch {
            Launch::Run { deadline, .. } => *deadline,
            Launch::Attach { .. } => None,
        },
    };
    let mut source = match launch {
        Launch::Attach { hosts, .. } => Source::Plain(context.fleet.attach(&hosts, options)),
        Launch::Run {
            request,
            rollout: Some(spec),
            ..
        } => {
            let plan = Plan::new(&context.selection, &spec);
            let text = format!(
                "rollout of {} hosts in {} batches: {}",
                context.selection.len(),
                plan.batches.len(),
                spec.describe()
            );
            if printer.json {
                printer.json_line(&serde_json::json!({"type": "plan", "plan": text}));
            } else {
                printer.note(&printer.dim(&format!("vigie: {text}")));
            }
            Source::Staged(context.fleet.rollout(
                plan,
                *request,
                options,
                spec.pause(),
                spec.confirm,
            ))
        }
        Launch::Run { request, .. } => {
            Source::Plain(context.fleet.exec(&context.selection, *request, options))
        }
    };
    let mut stopped = None;
    let progress = if gather {
        printer.progress(context.selection.len(), "running")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut interrupted = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    loop {
        let event = tokio::select! {
            event = source.next() => event,
            _ = &mut ctrl_c, if !interrupted => {
                interrupted = true;
                source.cancel();
                // Cancelling an attachment only detaches: the jobs run on.
                let note = match &attached_job {
                    Some(job) => format!(
                        "vigie: detached from job {job}; it runs on (`vigie attach {job}` to \
                         follow it again, `vigie cancel {job}` to end it)"
                    ),
                    None => "vigie: cancelling on every host…".to_owned(),
                };
                progress.suspend(|| printer.note(&note));
                continue;
            }
        };
        let Some(event) = event else { break };
        let event = match event {
            RolloutEvent::Run(event) => event,
            RolloutEvent::Confirm(answer) => {
                progress.suspend(|| {
                    let yes =
                        super::confirm("vigie: the canary succeeded: go on with the other hosts?");
                    let _ = answer.send(yes);
                });
                continue;
            }
            other => {
                if let RolloutEvent::Stopped { reason, .. } = &other {
                    stopped = Some(reason.clone());
                }
                progress.suspend(|| staged::tell(printer, &other, |h| context.name(h).to_owned()));
                continue;
            }
        };
        if raw && let RunEvent::Output { stream, data, .. } = &event {
            write_raw(*stream, data);
        }
        let mut lines = Lines::default();
        let Some(slot) = model.apply(&event, |slot, stream, line| {
            lines.add(printer, &hosts[slot].1, stream, &line);
        }) else {
            continue;
        };
        lines.write();
        if let RunEvent::Finished { result, .. } = &event {
            if !gather {
                report(printer, &hosts[slot].1, result, single);
            }
            progress.inc(1);
        }
    }
    progress.finish_and_clear();

    match view {
        View::Lines => {}
        View::Gather => print_groups(printer, &model),
        View::Diff => print_diff(printer, &model),
    }
    let summary = model.summary();
    let elapsed = started.elapsed();
    if printer.json {
        printer.json_line(&SummaryLine {
            kind: "summary",
            summary,
            duration_ms: elapsed.as_millis() as u64,
        });
    } else if !single || gather {
        let line = format!("{} in {}", summary.line(), super::output::duration(elapsed));
        printer.note(&printer.status(summary.all_good(), &line));
    }
    let record = rollout.map(|spec| RolloutRecord {
        spec,
        stopped,
        not_run: model
            .hosts()
            .iter()
            .filter(|h| {
                h.result
                    .as_ref()
                    .is_some_and(|r| matches!(r.outcome, HostOutcome::NotRun(_)))
            })
            .map(|h| h.name.clone())
            .collect(),
    });
    if !(interrupted && attached_job.is_some()) {
        // A detached attachment saw no end: nothing to record.
        record_history(context, printer, &model, record, attached_job);
    }

    if interrupted {
        return ExitCode::from(130);
    }
    if single {
        // Like ssh: the remote exit status, or 255 when it did not run.
        return match model.hosts().first().and_then(|h| h.result.as_ref()) {
            Some(HostResult {
                outcome: HostOutcome::Exited(exit),
                ..
            }) => ExitCode::from(u8::try_from(exit.exit_code).unwrap_or(1)),
            Some(HostResult {
                outcome: HostOutcome::Skipped(_),
                ..
            }) => ExitCode::SUCCESS,
            _ => ExitCode::from(255),
        };
    }
    if summary.all_good() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[derive(Serialize)]
struct SummaryLine {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    summary: Summary,
    duration_ms: u64,
}

#[derive(Serialize)]
struct OutputLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    host: &'a str,
    stream: OutputStream,
    text: String,
}

/// The JSON form of one host's result.
#[derive(Serialize)]
pub(super) struct ResultLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    host: &'a str,
    status: &'static str,
    exit_code: Option<i32>,
    signal: Option<i32>,
    timed_out: bool,
    truncated: bool,
    duration_ms: u64,
    error: Option<String>,
}

impl<'a> ResultLine<'a> {
    pub(super) fn new(host: &'a str, result: &HostResult) -> Self {
        let crate::client::run::OutcomeParts {
            exit_code,
            signal,
            timed_out,
            truncated,
            error,
        } = result.outcome.parts();
        Self {
            kind: "result",
            host,
            status: result.outcome.status().as_str(),
            exit_code,
            signal,
            timed_out,
            truncated,
            duration_ms: result.duration.as_millis() as u64,
            error,
        }
    }
}

/// Bytes written at once by [`Lines`].
const WRITE_BATCH: usize = 64 * 1024;

/// The framed lines an event completed, gathered per stream and written
/// together: each line after its host's prefix, with what it holds made
/// visible (these lines are framed by vigie, so an escape sequence in them
/// must not be obeyed by the terminal, nor a carriage return overwrite the
/// prefix). In JSON mode, one object per line.
#[derive(Default)]
struct Lines {
    text: [Vec<u8>; 2],
}

impl Lines {
    fn add(&mut self, printer: &Printer, host: &str, stream: OutputStream, line: &[u8]) {
        if printer.json {
            if !line.is_empty() {
                printer.json_line(&OutputLine {
                    kind: "output",
                    host,
                    stream,
                    text: String::from_utf8_lossy(line).into_owned(),
                });
            }
            return;
        }
        let buffer = &mut self.text[usize::from(stream == OutputStream::Stderr)];
        buffer.extend_from_slice(printer.host(host).as_bytes());
        buffer.extend_from_slice(b": ");
        buffer.extend_from_slice(visible_bytes(line).as_bytes());
        buffer.push(b'\n');
        if buffer.len() >= WRITE_BATCH {
            let stream = if stream == OutputStream::Stderr {
                OutputStream::Stderr
            } else {
                OutputStream::Stdout
            };
            write_to(stream, buffer);
            buffer.clear();
        }
    }

    fn write(self) {
        let [stdout, stderr] = self.text;
        write_to(OutputStream::Stdout, &stdout);
        write_to(OutputStream::Stderr, &stderr);
    }
}

fn write_to(stream: OutputStream, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let _ = match stream {
        OutputStream::Stdout => std::io::stdout().lock().write_all(bytes),
        OutputStream::Stderr => std::io::stderr().lock().write_all(bytes),
    };
}

/// One host's bytes exactly as the command wrote them, as ssh shows them:
/// with one host vigie adds no framing, escape sequences included reach
/// the terminal as they would through ssh, and `> file` gets the exact
/// bytes. They go straight to the descriptor (the lock held keeps the
/// order): the standard stream's line buffering would scan every byte of a
/// bulk transfer for a newline.
fn write_raw(stream: OutputStream, data: &Bytes) {
    let mut out: Box<dyn Write> = match stream {
        OutputStream::Stdout => Box::new(std::io::stdout().lock()),
        OutputStream::Stderr => Box::new(std::io::stderr().lock()),
    };
    let _ = out.flush();
    let _ = write_unbuffered(stream, data);
}

/// Writes all of `bytes` to the process's stdout or stderr descriptor.
fn write_unbuffered(stream: OutputStream, mut bytes: &[u8]) -> std::io::Result<()> {
    use std::os::fd::AsFd;
    let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
    let fd = match stream {
        OutputStream::Stdout => stdout.as_fd(),
        OutputStream::Stderr => stderr.as_fd(),
    };
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// One line per host that did not simply succeed (or for every host in
/// JSON mode).
fn report(printer: &Printer, name: &str, result: &HostResult, single: bool) {
    if printer.json {
        printer.json_line(&ResultLine::new(name, result));
        return;
    }
    let Some(text) = result.outcome.describe() else {
        return;
    };
    let prefix = if single {
        "vigie".to_owned()
    } else {
        printer.host(name)
    };
    let fine = result.outcome.status().is_fine();
    printer.note(&format!("{prefix}: {}", printer.status(fine, &text)));
}

/// `--diff`: the largest group as the reference, shown whole, then every
/// other group as a unified diff against it, its hosts and status named.
/// Lines come from hosts, so each is shown through `visible`.
fn print_diff(printer: &Printer, model: &Run) {
    let groups = model.groups();
    let diffs = model.diffs(&groups);
    let Some((reference, others)) = groups.split_first() else {
        return;
    };
    if printer.json {
        for (group, diff) in others.iter().zip(&diffs) {
            printer.json_line(&serde_json::json!({
                "type": "diff",
                "reference": reference.hosts,
                "hosts": group.hosts,
                "status": group.status,
                "diff": diff,
            }));
        }
        return;
    }
    print_groups_of(printer, model, std::slice::from_ref(reference));
    if others.is_empty() {
        printer.note(&printer.dim(&format!(
            "vigie: all {} hosts gave the same result",
            reference.hosts.len()
        )));
    }
    for diff in &diffs {
        for line in diff.lines() {
            let shown = visible(line);
            let painted = match line.as_bytes().first() {
                Some(b'-') if !line.starts_with("---") => printer.status(false, &shown),
                Some(b'+') if !line.starts_with("+++") => printer.status(true, &shown),
                Some(b'@') => printer.dim(&shown),
                _ => shown.into_owned(),
            };
            printer.line(&painted);
        }
    }
}

fn print_groups(printer: &Printer, model: &Run) {
    print_groups_of(printer, model, &model.groups());
}

/// With -b: each group of hosts with identical output and status once, its
/// output (the beginning kept of its first host's, all the same) framed.
fn print_groups_of(printer: &Printer, model: &Run, groups: &[crate::client::run::RunGroup]) {
    for group in groups {
        let first = &model.hosts()[group.slots[0]];
        let (output, total) = (first.output.head(), first.output.total());
        let hosts = ranges::compact(&group.hosts);
        if printer.json {
            #[derive(Serialize)]
            struct GroupLine<'a> {
                #[serde(rename = "type")]
                kind: &'static str,
                hosts: &'a [String],
                hosts_compact: &'a str,
                status: &'a str,
                output: String,
            }
            printer.json_line(&GroupLine {
                kind: "group",
                hosts: &group.hosts,
                hosts_compact: &hosts,
                status: &group.status,
                output: String::from_utf8_lossy(output).into_owned(),
            });
            continue;
        }
        let rule = printer.dim(&"-".repeat(visible(&hosts).chars().count().clamp(16, 72)));
        let fine = group
            .ended
            .is_some_and(|s| s == crate::client::run::Status::Ok);
        printer.line(&rule);
        printer.line(&format!(
            "{} ({}) {}",
            printer.bold(&hosts),
            group.hosts.len(),
            printer.status(fine, &group.status)
        ));
        printer.line(&rule);
        // The kept output is bounded (16 MiB), so its lines are shown whole.
        let mut body = Vec::with_capacity(output.len() + 64);
        for line in output.split_inclusive(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            body.extend_from_slice(visible_bytes(line).as_bytes());
            body.push(b'\n');
        }
        write_to(OutputStream::Stdout, &body);
        if total > output.len() as u64 {
            printer.note(&format!(
                "vigie: only the first {} of {} shown",
                crate::client::format::bytes(output.len() as u64),
                crate::client::format::bytes(total)
            ));
        }
    }
}

fn record_history(
    context: &Context,
    printer: &Printer,
    model: &Run,
    rollout: Option<RolloutRecord>,
    job: Option<String>,
) {
    let (Some(history), Some(mut entry)) = (&context.history, model.history_entry()) else {
        return;
    };
    entry.rollout = rollout;
    entry.job = job;
    if let Err(e) = history.append(&entry) {
        printer.note(&format!("vigie: not recorded in the history: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        client::cli::output::ColorChoice,
        command::{EndReason, Exit},
    };

    #[test]
    fn framed_lines_carry_their_host_and_show_what_they_hold() {
        let printer = Printer::new(false, ColorChoice::Never);
        let mut lines = Lines::default();
        lines.add(&printer, "web1", OutputStream::Stdout, b"ok");
        lines.add(&printer, "web1", OutputStream::Stderr, b"\x1b]0;pwned\x07");
        lines.add(&printer, "web\u{202e}2", OutputStream::Stdout, b"");
        assert_eq!(
            String::from_utf8_lossy(&lines.text[0]),
            "web1: ok\nweb<U+202E>2: \n"
        );
        assert_eq!(
            String::from_utf8_lossy(&lines.text[1]),
            "web1: ^[]0;pwned^G\n"
        );
    }

    #[test]
    fn a_result_line_names_the_status_and_how_it_ended() {
        let killed = HostResult {
            outcome: HostOutcome::Exited(Exit {
                exit_code: 137,
                signal: Some(9),
                core_dumped: false,
                timed_out: true,
                truncated: false,
                duration: Duration::from_millis(5),
                stdout_bytes: 0,
                stderr_bytes: 0,
                reason: EndReason::TimedOut,
            }),
            duration: Duration::from_millis(7),
        };
        let line = serde_json::to_value(ResultLine::new("web1", &killed)).unwrap();
        assert_eq!(line["status"], "failed");
        assert_eq!(
            (line["exit_code"].as_i64(), line["signal"].as_i64()),
            (Some(137), Some(9))
        );
        assert_eq!(
            (line["timed_out"].as_bool(), line["duration_ms"].as_u64()),
            (Some(true), Some(7))
        );
        let unreachable = HostResult {
            outcome: HostOutcome::Unreachable("refused".into()),
            duration: Duration::ZERO,
        };
        let line = serde_json::to_value(ResultLine::new("db1", &unreachable)).unwrap();
        assert_eq!(
            (line["status"].as_str(), line["error"].as_str()),
            (Some("unreachable"), Some("refused"))
        );
    }
}
