//! `vigie info`: the hosts' system information, as a table per query (the
//! fields are `client::present`'s, the desktop client's too).

use std::process::ExitCode;

use super::{
    CliError, Context,
    gather::{CallKind, exit_code, gather, report_failures, row},
    output::{Printer, table},
};
use crate::{
    client::{
        fleet::Outcome,
        present::{self, Query, Table},
        text::visible,
    },
    types::SystemInfo,
};

pub(super) async fn info(
    context: &Context,
    what: Option<Query>,
    printer: &Printer,
) -> Result<ExitCode, CliError> {
    let results = gather(
        context,
        printer,
        "asking",
        CallKind::Read,
        |client| async move { client.system_info().await },
    )
    .await;
    let answered: Vec<(&str, &SystemInfo)> = results
        .iter()
        .filter_map(|(host, outcome)| match outcome {
            Outcome::Done(info) => Some((context.name(*host), info)),
            _ => None,
        })
        .collect();
    if printer.json {
        for (name, info) in &answered {
            printer.json_line(&serde_json::json!({"host": name, "status": "ok", "info": info}));
        }
    } else if !answered.is_empty() {
        print_info(printer, what, &answered);
    }
    Ok(exit_code(report_failures(context, printer, &results)))
}

fn print_info(printer: &Printer, what: Option<Query>, answered: &[(&str, &SystemInfo)]) {
    if what == Some(Query::All) {
        // A block per host: its name, then a labelled line per field.
        for (name, info) in answered {
            printer.line(&printer.host(name));
            for (label, value) in present::system_fields(info) {
                // The label is padded before it is painted, so that
                // colour codes do not count in its width.
                printer.line(&format!(
                    "  {}{}",
                    printer.dim(&format!("{:<7}", label.to_lowercase())),
                    visible(&value)
                ));
            }
        }
        return;
    }
    let answer = |info: &SystemInfo| -> Table {
        match what {
            None => present::summary_table(info),
            Some(query) => query.table(info),
        }
    };
    let mut columns = vec!["HOST"];
    let mut rows = Vec::new();
    for (name, info) in answered {
        let table = answer(info);
        if columns.len() == 1 {
            columns.extend_from_slice(table.columns);
        }
        rows.extend(table.rows.into_iter().map(|cells| row(name, cells)));
    }
    table(printer, &columns, &rows);
}
