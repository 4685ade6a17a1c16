//! `vigie watch`: live CPU and memory of the selected hosts, a line per
//! sample (the line output that scripts read).

use std::{process::ExitCode, time::Duration};

use futures::StreamExt;
use serde::Serialize;

use super::{
    CliError, Context,
    gather::exit_code,
    output::{self, Printer},
};
use crate::client::present;

pub(super) async fn watch(
    context: &Context,
    interval: Duration,
    count: Option<u64>,
    printer: &Printer,
) -> Result<ExitCode, CliError> {
    #[derive(Serialize)]
    struct Sample<'a> {
        host: &'a str,
        #[serde(flatten)]
        sample: crate::types::MetricsSample,
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    for &index in &context.selection {
        let host = context.fleet.host(index).cloned();
        let tx = tx.clone();
        tokio::spawn(async move {
            let Some(host) = host else { return };
            let stream = async {
                let client = host.client().await?;
                client.watch_metrics(interval, false).await
            };
            match stream.await {
                Ok(mut samples) => {
                    let mut taken = 0;
                    while let Some(sample) = samples.next().await {
                        let done = count.is_some_and(|c| taken + 1 >= c);
                        if tx
                            .send((index, sample.map_err(|e| e.to_string())))
                            .await
                            .is_err()
                        {
                            return;
                        }
                        taken += 1;
                        if done {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.send((index, Err(e.to_string()))).await;
                }
            }
        });
    }
    drop(tx);
    let mut all_ok = true;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let item = tokio::select! {
            item = rx.recv() => item,
            _ = &mut ctrl_c => break,
        };
        let Some((index, sample)) = item else { break };
        let name = context.name(index);
        match sample {
            Ok(sample) => {
                if printer.json {
                    printer.json_line(&Sample { host: name, sample });
                } else {
                    let m = &sample.memory;
                    printer.line(&format!(
                        "{}  cpu {:>5.1}%  mem {} / {} ({})  load {}",
                        printer.host(name),
                        sample.cpu_usage_percent,
                        output::bytes(m.used_bytes),
                        output::bytes(m.total_bytes),
                        present::percent(m.used_bytes, m.total_bytes),
                        sample
                            .load_average
                            .map_or_else(|| "-".into(), |l| format!("{:.2}", l.one)),
                    ));
                }
            }
            Err(e) => {
                all_ok = false;
                if printer.json {
                    printer.json_line(
                        &serde_json::json!({"host": name, "status": "failed", "error": e}),
                    );
                } else {
                    printer.note(&format!(
                        "{}: {}",
                        printer.host(name),
                        printer.status(false, &e)
                    ));
                }
            }
        }
    }
    Ok(exit_code(all_ok))
}
