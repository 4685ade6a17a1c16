//! `vigie conn`: what each agent sees of this client, and its own state.

use std::process::ExitCode;

use super::{
    CliError, Context,
    gather::{CallKind, exit_code, gather, report_failures, row},
    output::{Printer, table},
};
use crate::client::{fleet::Outcome, present};

pub(super) async fn conn(context: &Context, printer: &Printer) -> Result<ExitCode, CliError> {
    let results = gather(
        context,
        printer,
        "asking",
        CallKind::Read,
        |client| async move { client.connection_info().await },
    )
    .await;
    let mut rows = Vec::new();
    let mut columns = vec!["HOST"];
    for (host, outcome) in &results {
        let Outcome::Done(c) = outcome else { continue };
        let name = context.name(*host);
        if printer.json {
            printer.json_line(&serde_json::json!({"host": name, "status": "ok", "connection": c}));
            continue;
        }
        let fields = present::connection_fields(c);
        if columns.len() == 1 {
            columns.extend(fields.iter().map(|(label, _)| *label));
        }
        rows.push(row(name, fields.into_iter().map(|(_, value)| value)));
    }
    if !printer.json && !rows.is_empty() {
        table(printer, &columns, &rows);
    }
    Ok(exit_code(report_failures(context, printer, &results)))
}
