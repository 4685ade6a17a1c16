//! `vigie disconnect`, `vigie kill` and `vigie reset`: the lifecycle
//! commands, recorded in the history.

use std::{process::ExitCode, time::SystemTime};

use super::{
    CliError, Context, confirm,
    gather::{CallKind, exit_code, gather, report_failures},
    output::Printer,
};
use crate::client::{
    fleet::Outcome,
    history::{Entry, EntryKind, HostRecord},
};

pub use crate::client::lifecycle::Lifecycle;

pub(super) async fn lifecycle(
    context: &Context,
    action: Lifecycle,
    yes: bool,
    printer: &Printer,
) -> Result<ExitCode, CliError> {
    let count = context.selection.len();
    if action != Lifecycle::Disconnect && count > 1 && !yes {
        let verb = if action == Lifecycle::Kill {
            "Stop"
        } else {
            "Restart"
        };
        if !confirm(&format!("{verb} the agents of {count} hosts?")) {
            return Err(CliError::Usage(format!(
                "not confirmed: {} on {count} hosts needs --yes (or a yes on a terminal)",
                action.name()
            )));
        }
    }
    let started_at = SystemTime::now();
    let results = gather(
        context,
        printer,
        action.name(),
        CallKind::Change,
        move |client| async move { action.perform(&client, "vigie").await },
    )
    .await;
    let mut records = Vec::new();
    for (host, outcome) in &results {
        let name = context.name(*host);
        let status = outcome.status();
        let message = match outcome {
            Outcome::Done(text) => text.clone(),
            _ => outcome.error().unwrap_or_default(),
        };
        if let Outcome::Done(_) = outcome {
            if printer.json {
                printer.json_line(
                    &serde_json::json!({"host": name, "status": "ok", "message": message}),
                );
            } else {
                printer.line(&format!(
                    "{}: {}",
                    printer.host(name),
                    printer.status(true, &message)
                ));
            }
        }
        records.push(HostRecord::of_answer(name, status, &message));
    }
    if let Some(history) = &context.history {
        let _ = history.append(&Entry {
            time_ms: crate::clock::ms_since_epoch(started_at),
            kind: EntryKind::Lifecycle,
            command: action.name().to_owned(),
            targets: context
                .selection
                .iter()
                .map(|&i| context.name(i).to_owned())
                .collect(),
            results: records,
            rollout: None,
            job: None,
        });
    }
    Ok(exit_code(report_failures(context, printer, &results)))
}
