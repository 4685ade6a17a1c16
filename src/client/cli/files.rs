//! `vigie push` and `vigie pull`: files and trees to the selected hosts,
//! one file from them, checked end to end by SHA-256, with a progress bar
//! (bytes and hosts) and one result line per host.

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::{Arc, atomic::Ordering},
    time::Instant,
};

use serde::Serialize;

use super::{
    CliError, Context,
    output::{Cell, Printer, table},
};
use crate::client::{
    Error,
    run::Status,
    transfer::{self, Plan, Progress},
};

/// Arguments of `vigie push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The local files and directories (directories are pushed whole,
    /// modes kept; symbolic links inside them are left out).
    #[arg(required = true, num_args = 1..)]
    pub local: Vec<PathBuf>,
    /// Where they go on each host: an absolute path under a directory the
    /// agent's `file_roots` gives your role. With one LOCAL, its new name;
    /// with several, or ending in `/`, a directory they go into by name.
    pub remote: String,
    /// Replace the file on hosts that have one already.
    #[arg(long)]
    pub replace: bool,
}

/// Arguments of `vigie pull`.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// The file on each host (an absolute path).
    pub remote: String,
    /// Where it goes here: DIR/HOST/NAME for each host.
    pub dir: PathBuf,
}

#[derive(Serialize)]
struct ResultLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    host: &'a str,
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    files: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dirs: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dirs_created: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unchanged: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// What a tree's push did on a host.
#[derive(Clone, Copy)]
struct Counts {
    files: usize,
    dirs: usize,
    dirs_created: usize,
    /// Files the host had already.
    unchanged: usize,
}

/// One host's outcome, in both front-ends' words.
struct Row {
    host: String,
    status: Status,
    path: Option<String>,
    size: Option<u64>,
    sha256: Option<String>,
    counts: Option<Counts>,
    /// A single file the host had already.
    unchanged: bool,
    error: Option<String>,
}

impl Row {
    fn with_counts(self, pushed: &transfer::Pushed) -> Self {
        Self {
            counts: Some(Counts {
                files: pushed.files.len(),
                dirs: pushed.dirs,
                dirs_created: pushed.dirs_created,
                unchanged: pushed.files.iter().filter(|d| d.unchanged).count(),
            }),
            sha256: None,
            ..self
        }
    }
}

fn row<T>(
    context: &Context,
    index: usize,
    result: Result<T, Error>,
    ok: impl FnOnce(T) -> (String, u64, String),
) -> Row {
    let host = context.name(index).to_owned();
    match result {
        Ok(value) => {
            let (path, size, sha256) = ok(value);
            Row {
                host,
                status: Status::Ok,
                path: Some(path),
                size: Some(size),
                sha256: Some(sha256),
                counts: None,
                unchanged: false,
                error: None,
            }
        }
        Err(e) => {
            // Unreachable, or refused: the words of every fan-out.
            let outcome = crate::client::fleet::Outcome::<()>::from_result(Err(e));
            Row {
                host,
                status: outcome.status(),
                path: None,
                size: None,
                sha256: None,
                counts: None,
                unchanged: false,
                error: outcome.error(),
            }
        }
    }
}

fn report(printer: &Printer, rows: &[Row], started: Instant, verb: &str) -> ExitCode {
    if printer.json {
        for r in rows {
            printer.json_line(&ResultLine {
                kind: "result",
                host: &r.host,
                status: r.status,
                path: r.path.clone(),
                size: r.size,
                sha256: r.sha256.clone(),
                files: r.counts.map(|c| c.files),
                dirs: r.counts.map(|c| c.dirs),
                dirs_created: r.counts.map(|c| c.dirs_created),
                unchanged: r.counts.map(|c| c.unchanged).or(r.unchanged.then_some(1)),
                error: r.error.clone(),
            });
        }
    } else {
        let cells: Vec<Vec<Cell>> = rows
            .iter()
            .map(|r| match &r.error {
                None => vec![
                    Cell::host(&r.host),
                    Cell::status(
                        true,
                        if r.unchanged {
                            "unchanged (the host had it)".to_owned()
                        } else {
                            verb.to_owned()
                        },
                    ),
                    Cell::from(r.path.clone().unwrap_or_default()),
                    Cell::from(crate::client::format::bytes(r.size.unwrap_or(0))),
                    Cell::from(match (&r.sha256, r.counts) {
                        (Some(s), _) => format!("sha256 {}", &s[..s.len().min(16)]),
                        (None, Some(c)) => format!(
                            "{} files{}, {} directories ({} new), each checked",
                            c.files,
                            if c.unchanged > 0 {
                                format!(" ({} unchanged)", c.unchanged)
                            } else {
                                String::new()
                            },
                            c.dirs,
                            c.dirs_created
                        ),
                        (None, None) => String::new(),
                    }),
                ],
                Some(error) => vec![
                    Cell::host(&r.host),
                    Cell::status(false, format!("{}: {error}", r.status)),
                ],
            })
            .collect();
        table(
            printer,
            &["HOST", "RESULT", "PATH", "SIZE", "CHECKED"],
            &cells,
        );
        let good = rows.iter().filter(|r| r.error.is_none()).count();
        let line = format!(
            "{good} of {} hosts in {}",
            rows.len(),
            super::output::duration(started.elapsed())
        );
        printer.note(&printer.status(good == rows.len(), &line));
    }
    if rows.iter().all(|r| r.error.is_none()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Shows the bytes moved on the progress bar until the transfer is over.
fn watch(
    bar: &indicatif::ProgressBar,
    progress: &Arc<Progress>,
    total: u64,
) -> tokio::task::JoinHandle<()> {
    let (bar, progress) = (bar.clone(), progress.clone());
    tokio::spawn(async move {
        loop {
            let bytes = progress.bytes.load(Ordering::Relaxed);
            bar.set_position(progress.hosts.load(Ordering::Relaxed));
            bar.set_message(format!(
                "{} of {}",
                crate::client::format::bytes(bytes),
                crate::client::format::bytes(total)
            ));
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
}

pub(super) async fn push(
    context: &Context,
    args: PushArgs,
    printer: &Printer,
) -> Result<ExitCode, CliError> {
    let started = Instant::now();
    let remote = args.remote.clone();
    let plan = tokio::task::spawn_blocking(move || Plan::new(&args.local, &remote))
        .await
        .map_err(|e| CliError::Usage(e.to_string()))?
        .map_err(|e| CliError::Usage(e.to_string()))?;
    for skipped in &plan.skipped {
        printer.note(&format!(
            "vigie: left out {}: {}",
            crate::client::text::visible(&skipped.path.display().to_string()),
            skipped.why
        ));
    }
    let progress = Arc::new(Progress::default());
    let bar = printer.progress(context.selection.len(), "pushing");
    let ticker = watch(
        &bar,
        &progress,
        plan.bytes() * context.selection.len() as u64,
    );
    let results = transfer::push_plan(
        &context.fleet,
        &context.selection,
        &plan,
        args.replace,
        progress,
    )
    .await;
    ticker.abort();
    bar.finish_and_clear();
    let single = plan.entries.len() == 1;
    let rows: Vec<Row> = results
        .into_iter()
        .map(|(i, result)| match result {
            Ok(mut pushed) if single && pushed.files.len() == 1 => {
                let done = pushed.files.remove(0);
                let unchanged = done.unchanged;
                Row {
                    unchanged,
                    ..row(context, i, Ok(()), |()| (done.path, done.size, done.sha256))
                }
            }
            Ok(pushed) => row(context, i, Ok(()), |()| {
                (
                    args.remote.clone(),
                    pushed.files.iter().map(|d| d.size).sum(),
                    String::new(),
                )
            })
            .with_counts(&pushed),
            Err(failed) => {
                let mut row = row::<()>(context, i, Err(failed.error), |()| Default::default());
                if !single {
                    row.error = row.error.map(|e| format!("{}: {e}", failed.remote));
                }
                row
            }
        })
        .collect();
    Ok(report(printer, &rows, started, "pushed"))
}

pub(super) async fn pull(
    context: &Context,
    args: PullArgs,
    printer: &Printer,
) -> Result<ExitCode, CliError> {
    let started = Instant::now();
    let progress = Arc::new(Progress::default());
    let bar = printer.progress(context.selection.len(), "pulling");
    let ticker = watch(&bar, &progress, 0);
    let results = transfer::pull(
        &context.fleet,
        &context.selection,
        &args.remote,
        &args.dir,
        progress,
    )
    .await;
    ticker.abort();
    bar.finish_and_clear();
    let rows: Vec<Row> = results
        .into_iter()
        .map(|(i, r)| {
            row(context, i, r, |p| {
                (p.local.display().to_string(), p.size, p.sha256)
            })
        })
        .collect();
    Ok(report(printer, &rows, started, "pulled"))
}
