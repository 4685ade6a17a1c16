//! `vigie ps` and `vigie signal`: the hosts' processes.

use std::process::ExitCode;

use super::{
    CliError, Context,
    gather::{CallKind, exit_code, gather, report_failures, row},
    output::{Printer, table},
};
use crate::{
    client::{fleet::Outcome, present},
    types::ProcessSignal,
};

pub(super) async fn ps(
    context: &Context,
    filter: String,
    printer: &Printer,
) -> Result<ExitCode, CliError> {
    let results = gather(context, printer, "listing", CallKind::Read, move |client| {
        let filter = filter.clone();
        async move { client.list_processes(&filter).await }
    })
    .await;
    let mut rows = Vec::new();
    for (host, outcome) in &results {
        let Outcome::Done(processes) = outcome else {
            continue;
        };
        let name = context.name(*host);
        for p in processes {
            if printer.json {
                printer.json_line(&serde_json::json!({"host": name, "process": p}));
                continue;
            }
            rows.push(row(name, present::process_row(p)));
        }
    }
    if !printer.json && !rows.is_empty() {
        let columns: Vec<&str> = std::iter::once("HOST")
            .chain(present::PROCESS_COLUMNS)
            .collect();
        table(printer, &columns, &rows);
    }
    Ok(exit_code(report_failures(context, printer, &results)))
}

pub(super) async fn signal(
    context: &Context,
    pid: i32,
    signal: ProcessSignal,
    printer: &Printer,
) -> Result<ExitCode, CliError> {
    let results = gather(
        context,
        printer,
        "signalling",
        CallKind::Change,
        move |client| async move { client.signal_process(pid, signal).await },
    )
    .await;
    for (host, outcome) in &results {
        if let Outcome::Done(()) = outcome {
            let name = context.name(*host);
            if printer.json {
                printer.json_line(&serde_json::json!({"host": name, "status": "ok", "pid": pid, "signal": signal.name()}));
            } else {
                printer.line(&format!(
                    "{}: sent {} to {pid}",
                    printer.host(name),
                    signal.name()
                ));
            }
        }
    }
    Ok(exit_code(report_failures(context, printer, &results)))
}
