//! The fan-out commands that are not `exec`: info, ps, signal, watch,
//! conn, and the lifecycle commands disconnect, kill and reset.

use std::{
    process::ExitCode,
    time::{Duration, SystemTime},
};

use futures::StreamExt;
use serde::Serialize;

use super::{
    CliError, Context, confirm,
    output::{self, Cell, Printer, table},
};
use crate::{
    client::{
        AgentClient, Error,
        fleet::Outcome,
        history::{Entry, EntryKind, HostRecord},
        text::visible,
    },
    types::{ProcessSignal, SystemInfo},
};

/// What `vigie info` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InfoWhat {
    /// OS name, version, kernel, architecture.
    Os,
    /// Memory and swap.
    Ram,
    /// CPU usage, model, count, load.
    Cpu,
    /// IP addresses per interface.
    Ip,
    /// Host name.
    Name,
    /// File systems.
    Disks,
    /// Uptime and load.
    Uptime,
    /// Everything, one block per host.
    All,
}

/// Runs `action` on the selected hosts and returns every outcome in
/// selection order, with a progress bar on a terminal.
async fn gather<T, F, Fut>(
    context: &Context,
    printer: &Printer,
    what: &str,
    action: F,
) -> Vec<(usize, Outcome<T>)>
where
    T: Send + 'static,
    F: Fn(AgentClient) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<T, Error>> + Send,
{
    let progress = printer.progress(context.selection.len(), what);
    let mut results = Vec::new();
    let mut outcomes = context.fleet.for_each(
        &context.selection,
        context.concurrency,
        Some(Duration::from_secs(15)),
        action,
    );
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
fn report_failures<T>(
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

fn exit_code(all_ok: bool) -> ExitCode {
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub(super) async fn info(
    context: &Context,
    what: Option<InfoWhat>,
    printer: &Printer,
) -> Result<ExitCode, CliError> {
    let results = gather(context, printer, "asking", |client| async move {
        client.system_info().await
    })
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

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.0}%", part as f64 * 100.0 / whole as f64)
    }
}

fn load(info: &SystemInfo) -> String {
    info.load_average.map_or_else(
        || "-".into(),
        |l| format!("{:.2} {:.2} {:.2}", l.one, l.five, l.fifteen),
    )
}

/// A table row: a host's name, then plain cells.
fn row(name: &str, cells: impl IntoIterator<Item = String>) -> Vec<Cell> {
    std::iter::once(Cell::host(name))
        .chain(cells.into_iter().map(Cell::from))
        .collect()
}

fn print_info(printer: &Printer, what: Option<InfoWhat>, answered: &[(&str, &SystemInfo)]) {
    match what {
        None => table(
            printer,
            &["HOST", "NAME", "OS", "CPU", "RAM", "UPTIME"],
            &answered
                .iter()
                .map(|(name, i)| {
                    row(
                        name,
                        [
                            i.hostname.clone(),
                            i.os_long_name.clone(),
                            format!("{:.0}% of {}", i.cpu_usage_percent, i.cpu_count),
                            format!(
                                "{} / {}",
                                output::bytes(i.memory.used_bytes),
                                output::bytes(i.memory.total_bytes)
                            ),
                            output::duration(Duration::from_secs(i.uptime_seconds)),
                        ],
                    )
                })
                .collect::<Vec<_>>(),
        ),
        Some(InfoWhat::Os) => table(
            printer,
            &["HOST", "OS", "VERSION", "KERNEL", "ARCH"],
            &answered
                .iter()
                .map(|(name, i)| {
                    row(
                        name,
                        [
                            i.os_name.clone(),
                            i.os_version.clone(),
                            i.kernel_version.clone(),
                            i.architecture.clone(),
                        ],
                    )
                })
                .collect::<Vec<_>>(),
        ),
        Some(InfoWhat::Ram) => table(
            printer,
            &["HOST", "TOTAL", "USED", "AVAILABLE", "SWAP"],
            &answered
                .iter()
                .map(|(name, i)| {
                    let m = &i.memory;
                    row(
                        name,
                        [
                            output::bytes(m.total_bytes),
                            format!(
                                "{} ({})",
                                output::bytes(m.used_bytes),
                                percent(m.used_bytes, m.total_bytes)
                            ),
                            output::bytes(m.available_bytes),
                            format!(
                                "{} / {}",
                                output::bytes(m.swap_used_bytes),
                                output::bytes(m.swap_total_bytes)
                            ),
                        ],
                    )
                })
                .collect::<Vec<_>>(),
        ),
        Some(InfoWhat::Cpu) => table(
            printer,
            &["HOST", "USAGE", "CPUS", "LOAD", "MODEL"],
            &answered
                .iter()
                .map(|(name, i)| {
                    row(
                        name,
                        [
                            format!("{:.1}%", i.cpu_usage_percent),
                            i.cpu_count.to_string(),
                            load(i),
                            i.cpu_model.clone(),
                        ],
                    )
                })
                .collect::<Vec<_>>(),
        ),
        Some(InfoWhat::Ip) => {
            let mut rows = Vec::new();
            for (name, i) in answered {
                for interface in &i.interfaces {
                    let addresses: Vec<String> = interface
                        .addresses
                        .iter()
                        .map(|a| format!("{}/{}", a.address, a.prefix_length))
                        .collect();
                    if addresses.is_empty() {
                        continue;
                    }
                    rows.push(row(name, [interface.name.clone(), addresses.join(", ")]));
                }
            }
            table(printer, &["HOST", "INTERFACE", "ADDRESSES"], &rows);
        }
        Some(InfoWhat::Name) => table(
            printer,
            &["HOST", "NAME"],
            &answered
                .iter()
                .map(|(name, i)| row(name, [i.hostname.clone()]))
                .collect::<Vec<_>>(),
        ),
        Some(InfoWhat::Disks) => {
            let mut rows = Vec::new();
            for (name, i) in answered {
                for d in &i.disks {
                    rows.push(row(
                        name,
                        [
                            d.mount_point.clone(),
                            d.file_system.clone(),
                            output::bytes(d.total_bytes),
                            output::bytes(d.available_bytes),
                            percent(
                                d.total_bytes.saturating_sub(d.available_bytes),
                                d.total_bytes,
                            ),
                        ],
                    ));
                }
            }
            table(
                printer,
                &["HOST", "MOUNT", "FS", "SIZE", "AVAILABLE", "USED"],
                &rows,
            );
        }
        Some(InfoWhat::Uptime) => table(
            printer,
            &["HOST", "UPTIME", "LOAD"],
            &answered
                .iter()
                .map(|(name, i)| {
                    row(
                        name,
                        [
                            output::duration(Duration::from_secs(i.uptime_seconds)),
                            load(i),
                        ],
                    )
                })
                .collect::<Vec<_>>(),
        ),
        Some(InfoWhat::All) => {
            for (name, i) in answered {
                let m = &i.memory;
                let addresses: Vec<String> = i.addresses().map(ToString::to_string).collect();
                printer.line(&printer.host(name));
                for (label, value) in [
                    ("name", i.hostname.clone()),
                    (
                        "os",
                        format!(
                            "{} (kernel {}, {})",
                            i.os_long_name, i.kernel_version, i.architecture
                        ),
                    ),
                    (
                        "cpu",
                        format!(
                            "{:.1}% of {} CPUs, {}",
                            i.cpu_usage_percent, i.cpu_count, i.cpu_model
                        ),
                    ),
                    ("load", load(i)),
                    (
                        "ram",
                        format!(
                            "{} used of {} ({} available), swap {} of {}",
                            output::bytes(m.used_bytes),
                            output::bytes(m.total_bytes),
                            output::bytes(m.available_bytes),
                            output::bytes(m.swap_used_bytes),
                            output::bytes(m.swap_total_bytes)
                        ),
                    ),
                    (
                        "ip",
                        if addresses.is_empty() {
                            "-".into()
                        } else {
                            addresses.join(", ")
                        },
                    ),
                    (
                        "disks",
                        i.disks
                            .iter()
                            .map(|d| {
                                format!(
                                    "{} {} free of {}",
                                    d.mount_point,
                                    output::bytes(d.available_bytes),
                                    output::bytes(d.total_bytes)
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("; "),
                    ),
                    (
                        "uptime",
                        output::duration(Duration::from_secs(i.uptime_seconds)),
                    ),
                    ("agent", format!("{} (boot {})", i.agent_version, i.boot_id)),
                ] {
                    // The label is padded before it is painted, so that
                    // colour codes do not count in its width.
                    printer.line(&format!(
                        "  {}{}",
                        printer.dim(&format!("{label:<7}")),
                        visible(&value)
                    ));
                }
            }
        }
    }
}

pub(super) async fn ps(
    context: &Context,
    filter: String,
    printer: &Printer,
) -> Result<ExitCode, CliError> {
    let results = gather(context, printer, "listing", move |client| {
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
            rows.push(row(
                name,
                [
                    p.pid.to_string(),
                    p.user.clone(),
                    format!("{:.1}", p.cpu_usage_percent),
                    output::bytes(p.memory_bytes),
                    p.name.clone(),
                    p.command_line.chars().take(100).collect(),
                ],
            ));
        }
    }
    if !printer.json && !rows.is_empty() {
        table(
            printer,
            &["HOST", "PID", "USER", "CPU%", "MEM", "NAME", "COMMAND"],
            &rows,
        );
    }
    Ok(exit_code(report_failures(context, printer, &results)))
}

pub(super) async fn signal(
    context: &Context,
    pid: i32,
    signal: ProcessSignal,
    printer: &Printer,
) -> Result<ExitCode, CliError> {
    let results = gather(context, printer, "signalling", move |client| async move {
        client.signal_process(pid, signal).await
    })
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

pub(super) async fn conn(context: &Context, printer: &Printer) -> Result<ExitCode, CliError> {
    let results = gather(context, printer, "asking", |client| async move {
        client.connection_info().await
    })
    .await;
    let mut rows = Vec::new();
    for (host, outcome) in &results {
        let Outcome::Done(c) = outcome else { continue };
        let name = context.name(*host);
        if printer.json {
            printer.json_line(&serde_json::json!({"host": name, "status": "ok", "connection": c}));
            continue;
        }
        rows.push(row(
            name,
            [
                c.peer_address.clone(),
                format!("{} ({})", c.identity, c.role),
                if c.tls {
                    "tls".into()
                } else {
                    "plaintext".into()
                },
                c.hostname.clone(),
                c.listen_addresses.join(","),
                c.boot_id.chars().take(8).collect(),
                output::duration(Duration::from_millis(c.agent_uptime_ms)),
                format!(
                    "{} session{}, {} running",
                    c.session_count,
                    if c.session_count == 1 { "" } else { "s" },
                    c.running_commands
                ),
            ],
        ));
    }
    if !printer.json && !rows.is_empty() {
        table(
            printer,
            &[
                "HOST",
                "SEEN FROM",
                "IDENTITY",
                "LINK",
                "AGENT HOST",
                "LISTENS",
                "BOOT",
                "UP",
                "LOAD",
            ],
            &rows,
        );
    }
    Ok(exit_code(report_failures(context, printer, &results)))
}

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
                        percent(m.used_bytes, m.total_bytes),
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
