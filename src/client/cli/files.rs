//! `vigie push` and `vigie pull`: one file to or from the selected hosts,
//! checked end to end by SHA-256, with a progress bar (bytes and hosts)
//! and one result line per host.

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
    transfer::{self, LocalFile, Progress},
};

/// Arguments of `vigie push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The local file.
    pub local: PathBuf,
    /// Where it goes on each host: an absolute path under a directory the
    /// agent's `file_roots` gives your role.
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
    error: Option<String>,
}

/// One host's outcome, in both front-ends' words.
struct Row {
    host: String,
    status: Status,
    path: Option<String>,
    size: Option<u64>,
    sha256: Option<String>,
    error: Option<String>,
}

fn row<T>(
    context: &Context,
    index: usize,
    result: Result<T, Error>,
    ok: impl Fn(T) -> (String, u64, String),
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
                error: r.error.clone(),
            });
        }
    } else {
        let cells: Vec<Vec<Cell>> = rows
            .iter()
            .map(|r| match &r.error {
                None => vec![
                    Cell::host(&r.host),
                    Cell::status(true, verb.to_owned()),
                    Cell::from(r.path.clone().unwrap_or_default()),
                    Cell::from(crate::client::format::bytes(r.size.unwrap_or(0))),
                    Cell::from(
                        r.sha256
                            .as_deref()
                            .map(|s| format!("sha256 {}", &s[..s.len().min(16)]))
                            .unwrap_or_default(),
                    ),
                ],
                Some(error) => vec![
                    Cell::host(&r.host),
                    Cell::status(false, format!("{}: {error}", r.status)),
                ],
            })
            .collect();
        table(
            printer,
            &["HOST", "RESULT", "PATH", "SIZE", "SHA-256"],
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
    let file = LocalFile::hash(&args.local)
        .await
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let progress = Arc::new(Progress::default());
    let bar = printer.progress(context.selection.len(), "pushing");
    let ticker = watch(&bar, &progress, file.size * context.selection.len() as u64);
    let results = transfer::push(
        &context.fleet,
        &context.selection,
        &file,
        &args.remote,
        args.replace,
        progress,
    )
    .await;
    ticker.abort();
    bar.finish_and_clear();
    let rows: Vec<Row> = results
        .into_iter()
        .map(|(i, r)| row(context, i, r, |d| (d.path, d.size, d.sha256)))
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
