//! What the fan-out commands other than `exec` share: running one call on
//! every selected host, reporting the hosts that gave no answer, the exit
//! status, and table rows that start with a host's name.

use std::{process::ExitCode, time::Duration};

use super::{
    Context,
    output::{Cell, Printer},
};
use crate::client::{AgentClient, Error, fleet::Outcome};

/// Whether a call only reads (and may be tried again when its connection
/// broke) or changes something (and runs at most once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CallKind {
    /// System info, connection info, process lists.
    Read,
    /// Signals and lifecycle commands.
    Change,
}

/// Runs `action` on the selected hosts and returns every outcome in
/// selection order, with a progress bar on a terminal.
pub(super) async fn gather<T, F, Fut>(
    context: &Context,
    printer: &Printer,
    what: &str,
    kind: CallKind,
    action: F,
) -> Vec<(usize, Outcome<T>)>
where
    T: Send + 'static,
    F: Fn(AgentClient) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<T, Error>> + Send,
{
    let progress = printer.progress(context.selection.len(), what);
    let mut results = Vec::new();
    let deadline = Some(Duration::from_secs(15));
    let mut outcomes = if kind == CallKind::Read {
        context
            .fleet
            .read_each(&context.selection, context.concurrency, deadline, action)
    } else {
        context
            .fleet
            .for_each(&context.selection, context.concurrency, deadline, action)
    };
    while let Some(item) = outcomes.recv().await {
        progress.inc(1);
        results.push(item);
    }
    progress.finish_and_clear();
    results.sort_by_key(|(host, _)| *host);
    results
}

/// Prints the hosts that gave no answer (on stderr, or as JSON) and says
/// whether every host answered.
pub(super) fn report_failures<T>(
    context: &Context,
    printer: &Printer,
    results: &[(usize, Outcome<T>)],
) -> bool {
    let mut all_ok = true;
    for (host, outcome) in results {
        let Some(error) = outcome.error() else {
            continue;
        };
        let status = outcome.status();
        all_ok &= status.is_fine();
        let name = context.name(*host);
        if printer.json {
            printer.json_line(&serde_json::json!({"host": name, "status": status, "error": error}));
        } else {
            printer.note(&format!(
                "{}: {}",
                printer.host(name),
                printer.status(status.is_fine(), &format!("{status}: {error}"))
            ));
        }
    }
    all_ok
}

pub(super) fn exit_code(all_ok: bool) -> ExitCode {
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A table row: a host's name, then plain cells.
pub(super) fn row(name: &str, cells: impl IntoIterator<Item = String>) -> Vec<Cell> {
    std::iter::once(Cell::host(name))
        .chain(cells.into_iter().map(Cell::from))
        .collect()
}
