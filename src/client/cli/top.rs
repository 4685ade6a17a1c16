//! `vigie top`: the terminal dashboard (`client::top`) on the selected
//! hosts.

use std::{process::ExitCode, time::Duration};

use super::{CliError, Context};
use crate::client::{dashboard::Thresholds, top};

pub(super) async fn top(
    context: &Context,
    interval: Duration,
    thresholds: Thresholds,
) -> Result<ExitCode, CliError> {
    if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&interval) {
        return Err(CliError::Usage(
            "--interval must be between 100ms and 60s".into(),
        ));
    }
    let notes = top::run(top::Options {
        fleet: &context.fleet,
        selection: &context.selection,
        interval,
        thresholds,
        concurrency: context.concurrency,
        history: context.history.as_ref(),
    })
    .await
    .map_err(|e| CliError::Usage(e.to_string()))?;
    for note in notes {
        eprintln!("vigie: {note}");
    }
    Ok(ExitCode::SUCCESS)
}
