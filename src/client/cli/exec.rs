//! `vigie exec`: one command on many hosts, with live output.
//!
//! Each line is printed as it arrives, prefixed by its host (stdout on
//! stdout, stderr on stderr), with control characters shown rather than
//! obeyed; with one host the prefix is left out and the bytes go out
//! exactly as they came, as with ssh. `-b` gathers the output and shows
//! hosts with identical results once, like `clush -b`. Ctrl-C cancels the
//! command on every agent, which kills it, and waits for them to confirm.

use std::{
    collections::HashMap,
    io::Write,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use serde::Serialize;

use super::{CliError, Context, output::Printer};
use crate::{
    client::{
        fleet::{HostOutcome, HostResult, RunEvent, RunOptions, Summary},
        group,
        history::{Entry, HostRecord, OUTPUT_KEPT},
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
}

pub(super) async fn run(
    context: &Context,
    args: ExecArgs,
    printer: &Printer,
) -> Result<ExitCode, CliError> {
    let stdin = match &args.stdin {
        None => Bytes::new(),
        Some(path) if path.as_os_str() == "-" => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                .map_err(|e| CliError::Usage(format!("cannot read stdin: {e}")))?;
            Bytes::from(bytes)
        }
        Some(path) => Bytes::from(
            std::fs::read(path).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?,
        ),
    };
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
    Ok(execute(context, request, args.gather, args.timeout, printer).await)
}

/// What is kept of one host's output: the beginning (all of it up to
/// [`GATHER_KEPT`] with `-b`, else what the history keeps), its size and a
/// hash of all of it, and the unfinished last line of each stream. Memory
/// stays bounded however much a command prints.
struct HostOutput {
    kept: Vec<u8>,
    limit: usize,
    total: u64,
    /// Only with `-b`, where hosts are grouped by it.
    hash: Option<std::collections::hash_map::DefaultHasher>,
    partial: [Vec<u8>; 2],
}

/// With `-b`, the output shown for a group of hosts: the first 16 MiB of
/// each host's output (hosts are grouped by the hash of all of it).
const GATHER_KEPT: usize = 16 << 20;

/// When several hosts print at once, a line longer than this is shown in
/// pieces, each with its host's prefix, so that memory does not grow with
/// output that has no newlines.
const LONGEST_LINE: usize = 64 * 1024;

impl HostOutput {
    fn new(gather: bool) -> Self {
        Self {
            kept: Vec::new(),
            limit: if gather { GATHER_KEPT } else { OUTPUT_KEPT },
            total: 0,
            hash: gather.then(Default::default),
            partial: [Vec::new(), Vec::new()],
        }
    }

    fn record(&mut self, data: &[u8]) {
        use std::hash::Hasher;
        let room = self.limit.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&data[..data.len().min(room)]);
        self.total += data.len() as u64;
        if let Some(hash) = &mut self.hash {
            hash.write(data);
        }
    }

    /// What hosts are grouped by with `-b`: equal outputs have equal keys.
    fn key(&self) -> (u64, u64) {
        use std::hash::Hasher;
        (self.total, self.hash.as_ref().map_or(0, Hasher::finish))
    }
}

/// Runs a request on the selected hosts and prints everything; returns the
/// exit code. Also used to re-run a history entry.
pub(super) async fn execute(
    context: &Context,
    request: ExecRequest,
    gather: bool,
    deadline: Option<Duration>,
    printer: &Printer,
) -> ExitCode {
    let started = Instant::now();
    let started_at = SystemTime::now();
    let single = context.selection.len() == 1;
    let mut run = context.fleet.exec(
        &context.selection,
        request.clone(),
        RunOptions {
            concurrency: context.concurrency,
            deadline,
        },
    );
    let progress = if gather {
        printer.progress(context.selection.len(), "running")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut outputs: HashMap<usize, HostOutput> = HashMap::new();
    let mut results: Vec<(usize, HostResult)> = Vec::new();
    let mut summary = Summary::default();
    let mut interrupted = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    loop {
        let event = tokio::select! {
            event = run.events.recv() => event,
            _ = &mut ctrl_c, if !interrupted => {
                interrupted = true;
                run.cancel();
                progress.suspend(|| printer.note("vigie: cancelling on every host…"));
                continue;
            }
        };
        let Some(event) = event else { break };
        match event {
            RunEvent::Started { .. } => {}
            RunEvent::Output { host, stream, data } => {
                let kept = outputs
                    .entry(host)
                    .or_insert_with(|| HostOutput::new(gather));
                kept.record(&data);
                if !gather {
                    print_lines(context, printer, host, stream, &data, kept, single);
                }
            }
            RunEvent::Finished { host, result } => {
                if !gather {
                    let kept = outputs
                        .entry(host)
                        .or_insert_with(|| HostOutput::new(gather));
                    flush_partial(context, printer, host, kept, single);
                    report(context, printer, host, &result, single);
                }
                summary.add(&result.outcome);
                progress.inc(1);
                results.push((host, result));
            }
        }
    }
    progress.finish_and_clear();

    results.sort_by_key(|(host, _)| *host);
    if gather {
        print_groups(context, printer, &results, &outputs);
    }
    let elapsed = started.elapsed();
    if printer.json {
        printer.json_line(&SummaryLine {
            kind: "summary",
            summary,
            duration_ms: elapsed.as_millis() as u64,
        });
    } else if !single || gather {
        printer.note(&format!(
            "{} ok, {} failed, {} skipped, {} unreachable{} in {}",
            printer.status(true, &summary.ok.to_string()),
            printer.status(summary.failed == 0, &summary.failed.to_string()),
            summary.skipped,
            printer.status(summary.unreachable == 0, &summary.unreachable.to_string()),
            if summary.cancelled > 0 {
                format!(", {} cancelled", summary.cancelled)
            } else {
                String::new()
            },
            super::output::duration(elapsed),
        ));
    }
    record_history(context, printer, &request, started_at, &results, &outputs);

    if interrupted {
        return ExitCode::from(130);
    }
    if single {
        // Like ssh: the remote exit status, or 255 when it did not run.
        return match results.first().map(|(_, r)| &r.outcome) {
            Some(HostOutcome::Exited(exit)) => {
                ExitCode::from(u8::try_from(exit.exit_code).unwrap_or(1))
            }
            Some(HostOutcome::Skipped(_)) => ExitCode::SUCCESS,
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
        let (exit_code, signal, timed_out, truncated, error) = match &result.outcome {
            HostOutcome::Exited(exit) => (
                Some(exit.exit_code),
                exit.signal,
                exit.timed_out,
                exit.truncated,
                None,
            ),
            HostOutcome::Failed(e) | HostOutcome::Skipped(e) | HostOutcome::Unreachable(e) => {
                (None, None, false, false, Some(e.clone()))
            }
            HostOutcome::Cancelled => (None, None, false, false, Some("cancelled".into())),
        };
        Self {
            kind: "result",
            host,
            status: result.outcome.kind(),
            exit_code,
            signal,
            timed_out,
            truncated,
            duration_ms: result.duration.as_millis() as u64,
            error,
        }
    }
}

fn stream_index(stream: OutputStream) -> usize {
    match stream {
        OutputStream::Stdout => 0,
        OutputStream::Stderr => 1,
    }
}

/// Prints a chunk. With one host the bytes go out as they come, as with
/// ssh; with several, complete lines go out with their host's prefix and
/// the unfinished end waits for the rest of its line (up to
/// [`LONGEST_LINE`]).
fn print_lines(
    context: &Context,
    printer: &Printer,
    host: usize,
    stream: OutputStream,
    data: &[u8],
    kept: &mut HostOutput,
    single: bool,
) {
    if single && !printer.json {
        emit(context, printer, host, stream, data, single);
        return;
    }
    let partial = &mut kept.partial[stream_index(stream)];
    // Only the new bytes are searched, so a long line costs linear time.
    match data.iter().rposition(|b| *b == b'\n') {
        Some(end) => {
            partial.extend_from_slice(&data[..=end]);
            let complete = std::mem::take(partial);
            emit(context, printer, host, stream, &complete, single);
            partial.extend_from_slice(&data[end + 1..]);
        }
        None => partial.extend_from_slice(data),
    }
    while partial.len() >= LONGEST_LINE {
        let mut piece: Vec<u8> = partial.drain(..LONGEST_LINE).collect();
        piece.push(b'\n');
        emit(context, printer, host, stream, &piece, single);
    }
}

fn flush_partial(
    context: &Context,
    printer: &Printer,
    host: usize,
    kept: &mut HostOutput,
    single: bool,
) {
    for (index, stream) in [(0, OutputStream::Stdout), (1, OutputStream::Stderr)] {
        let mut rest = std::mem::take(&mut kept.partial[index]);
        if !rest.is_empty() {
            rest.push(b'\n');
            emit(context, printer, host, stream, &rest, single);
        }
    }
}

/// Writes whole lines, prefixed by the host unless it is the only one.
fn emit(
    context: &Context,
    printer: &Printer,
    host: usize,
    stream: OutputStream,
    lines: &[u8],
    single: bool,
) {
    let name = context.name(host);
    if printer.json {
        for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            printer.json_line(&OutputLine {
                kind: "output",
                host: name,
                stream,
                text: String::from_utf8_lossy(line).into_owned(),
            });
        }
        return;
    }
    let mut out: Box<dyn Write> = match stream {
        OutputStream::Stdout => Box::new(std::io::stdout().lock()),
        OutputStream::Stderr => Box::new(std::io::stderr().lock()),
    };
    if single {
        // Bytes exactly as the command wrote them, as ssh shows them: with
        // one host vigie adds no framing, escape sequences included reach
        // the terminal as they would through ssh, and `> file` gets the
        // exact bytes. They go straight to the descriptor (the lock held
        // keeps the order): the standard stream's line buffering would
        // scan every byte of a bulk transfer for a newline.
        let _ = out.flush();
        let _ = write_unbuffered(stream, lines);
        return;
    }
    let prefix = format!("{}: ", printer.host(name));
    let _ = write_visible_lines(&mut out, &prefix, lines);
}

/// Bytes written at once by [`write_visible_lines`].
const WRITE_BATCH: usize = 64 * 1024;

/// Writes `data` line by line, each line after `prefix`, with what it
/// holds made visible: these lines are framed by vigie (a host's prefix, a
/// `-b` group), so an escape sequence in them must not be obeyed by the
/// terminal, nor a carriage return overwrite the prefix. A carriage return
/// that ends a line (CRLF) is a line ending, not content, and is dropped.
/// An unfinished last line gets its newline.
fn write_visible_lines(out: &mut dyn Write, prefix: &str, data: &[u8]) -> std::io::Result<()> {
    let mut buffer = Vec::with_capacity(data.len().min(WRITE_BATCH) + 64);
    for line in data.split_inclusive(|b| *b == b'\n') {
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        buffer.extend_from_slice(prefix.as_bytes());
        buffer.extend_from_slice(visible_bytes(content).as_bytes());
        buffer.push(b'\n');
        if buffer.len() >= WRITE_BATCH {
            out.write_all(&buffer)?;
            buffer.clear();
        }
    }
    out.write_all(&buffer)
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
fn report(context: &Context, printer: &Printer, host: usize, result: &HostResult, single: bool) {
    let name = context.name(host);
    if printer.json {
        printer.json_line(&ResultLine::new(name, result));
        return;
    }
    let text = result.outcome.describe();
    let Some(text) = text else { return };
    let prefix = if single {
        "vigie".to_owned()
    } else {
        printer.host(name)
    };
    let ok = matches!(result.outcome, HostOutcome::Skipped(_));
    printer.note(&format!("{prefix}: {}", printer.status(ok, &text)));
}

/// The status part of a group's key: what -b compares besides the output.
fn status_key(outcome: &HostOutcome) -> String {
    outcome.describe().unwrap_or_else(|| "exit 0".into())
}

fn print_groups(
    context: &Context,
    printer: &Printer,
    results: &[(usize, HostResult)],
    outputs: &HashMap<usize, HostOutput>,
) {
    // Hosts are grouped by the size and hash of their whole output; a
    // group shows the beginning kept of its first host's (all the same).
    let by_name: HashMap<&str, &HostOutput> = outputs
        .iter()
        .map(|(host, output)| (context.name(*host), output))
        .collect();
    let groups = group::group_by(results.iter().map(|(host, result)| {
        let key = outputs.get(host).map_or((0, 0), HostOutput::key);
        (
            context.name(*host).to_owned(),
            (key, status_key(&result.outcome)),
        )
    }));
    for group in groups {
        let (_, status) = &group.key;
        let first = group.hosts.first().and_then(|h| by_name.get(h.as_str()));
        let (output, total) = first.map_or((&[][..], 0), |o| (o.kept.as_slice(), o.total));
        let hosts = group::compact(&group.hosts);
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
                status,
                output: String::from_utf8_lossy(output).into_owned(),
            });
            continue;
        }
        let rule = printer.dim(&"-".repeat(visible(&hosts).chars().count().clamp(16, 72)));
        let ok = status == "exit 0";
        printer.line(&rule);
        printer.line(&format!(
            "{} ({}) {}",
            printer.bold(&hosts),
            group.hosts.len(),
            printer.status(ok, status)
        ));
        printer.line(&rule);
        let _ = write_visible_lines(&mut std::io::stdout().lock(), "", output);
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
    request: &ExecRequest,
    started_at: SystemTime,
    results: &[(usize, HostResult)],
    outputs: &HashMap<usize, HostOutput>,
) {
    let Some(history) = &context.history else {
        return;
    };
    let entry = Entry {
        time_ms: crate::clock::ms_since_epoch(started_at),
        command: request.command_line(),
        targets: context
            .selection
            .iter()
            .map(|&i| context.name(i).to_owned())
            .collect(),
        results: results
            .iter()
            .map(|(host, result)| {
                let (head, total) = outputs
                    .get(host)
                    .map_or((&[][..], 0), |o| (o.kept.as_slice(), o.total));
                HostRecord::of_result(context.name(*host), result, head, total)
            })
            .collect(),
    };
    if let Err(e) = history.append(&entry) {
        printer.note(&format!("vigie: not recorded in the history: {e}"));
    }
}
