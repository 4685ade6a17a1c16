//! `vigie history`: the commands run before, shared with the desktop client.

use std::{process::ExitCode, time::Duration};

use super::{
    CliError, Context, Global,
    output::{self, Cell, Printer, table},
};
use crate::{
    client::{history::EntryKind, text::visible},
    command::ExecRequest,
};

/// What to do with the history.
#[derive(Debug, clap::Subcommand)]
pub enum HistoryAction {
    /// The latest entries, newest last.
    List {
        /// How many.
        #[arg(short = 'n', long, default_value_t = 20)]
        count: usize,
    },
    /// One entry with every host's status and the start of its output.
    Show {
        /// The entry's number, as `list` shows it.
        id: usize,
    },
    /// Run an entry's command again on the same hosts; a rollout that
    /// stopped resumes on the hosts it did not reach.
    #[command(alias = "run")]
    Rerun {
        /// The entry's number.
        id: usize,
        /// A stopped rollout: run on every host again, not only those it
        /// did not reach.
        #[arg(long)]
        all: bool,
        /// Gather identical output (like exec -b).
        #[arg(short = 'b', long = "gather")]
        gather: bool,
    },
}

pub(super) async fn run(
    global: &Global,
    context: &Context,
    action: Option<HistoryAction>,
    printer: &Printer,
) -> Result<ExitCode, CliError> {
    let history = context
        .history
        .as_ref()
        .ok_or_else(|| CliError::Usage("no history location: set HOME or VIGIE_HISTORY".into()))?;
    let loaded = history.load().map_err(|e| CliError::Usage(e.to_string()))?;
    if loaded.skipped_lines > 0 && !printer.json {
        printer.note(&printer.dim(&format!(
            "vigie: {} unreadable lines in {} were skipped",
            loaded.skipped_lines,
            history.path().display()
        )));
    }
    let entries = loaded.entries;
    let entry = |id: usize| {
        entries.get(id.wrapping_sub(1)).ok_or_else(|| {
            CliError::Usage(format!(
                "no history entry {id} (there are {})",
                entries.len()
            ))
        })
    };
    match action.unwrap_or(HistoryAction::List { count: 20 }) {
        HistoryAction::List { count } => {
            let start = entries.len().saturating_sub(count);
            if printer.json {
                for (i, e) in entries.iter().enumerate().skip(start) {
                    printer.json_line(&serde_json::json!({"id": i + 1, "entry": e}));
                }
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<Cell>> = entries
                .iter()
                .enumerate()
                .skip(start)
                .map(|(i, e)| {
                    vec![
                        (i + 1).to_string().into(),
                        when(e.time_ms).into(),
                        e.summary().into(),
                        crate::client::ranges::compact(&e.targets).into(),
                        e.shown_command().into(),
                    ]
                })
                .collect();
            table(
                printer,
                &["ID", "WHEN", "RESULT", "HOSTS", "COMMAND"],
                &rows,
            );
            Ok(ExitCode::SUCCESS)
        }
        HistoryAction::Show { id } => {
            let e = entry(id)?;
            if printer.json {
                printer.json_line(&serde_json::json!({"id": id, "entry": e}));
                return Ok(ExitCode::SUCCESS);
            }
            printer.line(&format!(
                "{} {}  {}",
                printer.bold(&format!("#{id}")),
                when(e.time_ms),
                visible(&e.shown_command())
            ));
            for r in &e.results {
                printer.line(&format!(
                    "{} {} {}",
                    printer.host(&r.host),
                    printer.status(r.status.is_fine(), &r.shown()),
                    printer.dim(&output::duration(Duration::from_millis(r.duration_ms)))
                ));
                // The output is framed (indented under its host), so it is
                // shown, never obeyed, unlike a single host's live output.
                for line in r.output.lines() {
                    printer.line(&format!("    {}", visible(line)));
                }
                if r.output_truncated {
                    printer.line(&printer.dim("    … (only the start of the output is kept)"));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        HistoryAction::Rerun { id, all, gather } => {
            let e = entry(id)?.clone();
            if e.kind != EntryKind::Command {
                return Err(CliError::Usage(format!(
                    "entry {id} is not a command but {}: run it with its own command",
                    visible(&e.shown_command())
                )));
            }
            let (targets, rollout) = match &e.rollout {
                Some(record) if !all && !record.not_run.is_empty() => {
                    printer.note(&printer.dim(&format!(
                        "vigie: resuming entry {id} on the {} hosts it did not reach (--all for every host)",
                        record.not_run.len()
                    )));
                    (record.not_run.clone(), Some(record.spec.clone()))
                }
                Some(record) => (e.targets.clone(), Some(record.spec.clone())),
                None => (e.targets.clone(), None),
            };
            let context = Context::for_hosts(global, &targets, printer).await?;
            let launch = super::exec::Launch::Run {
                request: Box::new(ExecRequest::new(e.command)),
                deadline: None,
                rollout,
            };
            let view = super::exec::View::of(gather, false);
            Ok(super::exec::execute(&context, launch, view, printer).await)
        }
    }
}

/// A time as "YYYY-MM-DD HH:MM:SS" (UTC).
fn when(time_ms: i64) -> String {
    crate::clock::utc(time_ms)
}
