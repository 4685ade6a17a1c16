//! `vigie disconnect`, `vigie kill` and `vigie reset`: the lifecycle
//! commands, recorded in the history.

use std::{process::ExitCode, time::SystemTime};

use super::{
    CliError, Context, confirm,
    gather::{exit_code, gather, report_failures},
    output::Printer,
};
use crate::client::{
    fleet::Outcome,
    history::{Entry, EntryKind, HostRecord},
};

/// The lifecycle commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// End this client's session.
    Disconnect,
    /// Stop the agent.
    Kill,
    /// Restart the agent in place.
    Reset,
}

impl Lifecycle {
    fn name(self) -> &'static str {
        match self {
            Self::Disconnect => "disconnect",
            Self::Kill => "kill",
            Self::Reset => "reset",
        }
    }
}

/// The start of a boot id, as `conn` shows it. Cut by characters: the
/// agent chooses the id, and a byte slice could fall inside a character.
fn short_boot(boot: &str) -> String {
    boot.chars().take(8).collect()
}

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
    let results = gather(context, printer, action.name(), move |client| async move {
        match action {
            Lifecycle::Disconnect => client
                .disconnect()
                .await
                .map(|n| format!("session ended, {n} commands cancelled")),
            Lifecycle::Kill => client
                .shutdown("vigie kill")
                .await
                .map(|boot| format!("stopping (boot {})", short_boot(&boot))),
            Lifecycle::Reset => client
                .restart("vigie reset")
                .await
                .map(|boot| format!("restarting (boot {})", short_boot(&boot))),
        }
    })
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
        });
    }
    Ok(exit_code(report_failures(context, printer, &results)))
}
