//! `vigie hosts`: show, edit and check the hosts file.

use std::{
    path::Path,
    process::ExitCode,
    time::{Duration, Instant},
};

use serde::Serialize;

use super::{
    CliError, Context, Global, load_config,
    output::{Cell, Printer, table},
};
use crate::client::{
    hosts::{self, Column, Format, HostEntry, HostsFile},
    text::visible,
};

/// What to do with the hosts file.
#[derive(Debug, clap::Subcommand)]
pub enum HostsAction {
    /// Show the hosts of the file, and the lines that could not be read.
    List,
    /// Add a host to the file (created if missing).
    Add {
        /// The host's name (unique in the file).
        name: String,
        /// Its address, host[:port] or [v6]:port [default: the name].
        address: Option<String>,
        /// Its port, when the address has none [default: 7421].
        #[arg(long)]
        port: Option<u16>,
        /// Tags, comma-separated (CSV files only).
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
    },
    /// Remove hosts from the file.
    Remove {
        /// Names of the hosts to remove.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Contact every selected host and show its state and OS.
    Check,
}

pub(super) async fn run(
    global: &Global,
    action: HostsAction,
    printer: &Printer,
) -> Result<ExitCode, CliError> {
    if let HostsAction::Check = action {
        let context = Context::new(global, printer).await?;
        return check(&context, printer).await;
    }
    let config = load_config(global)?;
    let path = global.hosts.clone().or(config.hosts).ok_or_else(|| {
        CliError::Usage("no hosts file: give --hosts FILE (or `hosts` in the client config)".into())
    })?;
    match action {
        HostsAction::List => list(&path, printer),
        HostsAction::Add {
            name,
            address,
            port,
            tags,
        } => {
            let target = address.unwrap_or_else(|| name.clone());
            let (address, parsed_port) =
                hosts::split_host_port(&target).map_err(CliError::Usage)?;
            let explicit_port =
                target.contains(':') && target.parse::<std::net::Ipv6Addr>().is_err();
            let mut entry = HostEntry::new(
                name,
                address,
                if explicit_port {
                    parsed_port
                } else {
                    port.unwrap_or(parsed_port)
                },
            );
            entry.tags = tags;
            let mut file = open_or_create(&path)?;
            file.add(std::slice::from_ref(&entry))?;
            if printer.json {
                printer.json_line(&HostLine::from(&entry));
            } else {
                printer.line(&visible(&format!(
                    "added {} ({}) to {}",
                    entry.name,
                    entry.endpoint(),
                    path.display()
                )));
            }
            Ok(ExitCode::SUCCESS)
        }
        HostsAction::Remove { names } => {
            let mut file = HostsFile::load(&path)?;
            file.remove(&names)?;
            if !printer.json {
                printer.line(&visible(&format!(
                    "removed {} from {}",
                    names.join(", "),
                    path.display()
                )));
            }
            Ok(ExitCode::SUCCESS)
        }
        HostsAction::Check => unreachable!("handled above"),
    }
}

/// A hosts file to add to: loaded, or a new empty one whose format follows
/// the extension (CSV for `.csv`, text otherwise).
fn open_or_create(path: &Path) -> Result<HostsFile, CliError> {
    if path.exists() {
        return Ok(HostsFile::load(path)?);
    }
    let csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let mut file = HostsFile::empty(if csv {
        Format::Csv(vec![
            Column::Name,
            Column::Address,
            Column::Port,
            Column::Tags,
        ])
    } else {
        Format::Text
    });
    file.save_as(path)?;
    Ok(file)
}

#[derive(Serialize)]
struct HostLine<'a> {
    name: &'a str,
    address: &'a str,
    port: u16,
    tags: &'a [String],
    line: usize,
}

impl<'a> From<&'a HostEntry> for HostLine<'a> {
    fn from(h: &'a HostEntry) -> Self {
        Self {
            name: &h.name,
            address: &h.address,
            port: h.port,
            tags: &h.tags,
            line: h.line,
        }
    }
}

fn list(path: &Path, printer: &Printer) -> Result<ExitCode, CliError> {
    let file = HostsFile::load(path)?;
    if printer.json {
        for host in &file.hosts {
            printer.json_line(&HostLine::from(host));
        }
        for error in &file.errors {
            printer.json_line(
                &serde_json::json!({"type": "error", "line": error.line, "reason": error.reason}),
            );
        }
    } else {
        let rows: Vec<Vec<Cell>> = file
            .hosts
            .iter()
            .map(|h| {
                vec![
                    Cell::host(&h.name),
                    h.address.clone().into(),
                    h.port.to_string().into(),
                    h.tags.join(",").into(),
                ]
            })
            .collect();
        table(printer, &["NAME", "ADDRESS", "PORT", "TAGS"], &rows);
        for error in &file.errors {
            printer.note(&printer.status(false, &format!("{}: {error}", path.display())));
        }
    }
    Ok(if file.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[derive(Serialize)]
struct CheckLine<'a> {
    host: &'a str,
    address: String,
    state: &'static str,
    os: Option<crate::command::OsFamily>,
    os_name: Option<String>,
    hostname: Option<String>,
    latency_ms: Option<f64>,
    /// When the agent's TLS certificate expires, ms since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate_not_after_ms: Option<i64>,
    /// True when it expires within [`RENEW_WARNING`].
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    certificate_expires_soon: bool,
    error: Option<String>,
}

/// A certificate that expires within this is flagged for renewal.
const RENEW_WARNING: Duration = Duration::from_secs(21 * 86_400);

/// "2027-03-01 (89 d)", or "expired".
fn expiry_text(not_after_ms: i64) -> String {
    let left_ms = not_after_ms - crate::clock::now_ms();
    if left_ms <= 0 {
        return "expired".into();
    }
    let date = crate::clock::utc(not_after_ms);
    format!("{} ({} d)", &date[..10], left_ms / 86_400_000)
}

async fn check(context: &Context, printer: &Printer) -> Result<ExitCode, CliError> {
    let progress = printer.progress(context.selection.len(), "checking");
    let started = Instant::now();
    let mut answers = context.fleet.check(
        &context.selection,
        context.concurrency,
        Duration::from_secs(5),
    );
    let mut lines = Vec::new();
    while let Some((index, result)) = answers.recv().await {
        progress.inc(1);
        let host = &context.fleet.hosts()[index];
        let latency = started.elapsed();
        let not_after = host.certificate().map(|c| c.not_after_ms);
        let line = match result {
            Ok(info) => CheckLine {
                host: host.name(),
                address: host.entry.endpoint(),
                state: "online",
                os: info.os_family,
                os_name: Some(info.os_long_name.clone()),
                hostname: Some(info.hostname.clone()),
                latency_ms: Some(latency.as_secs_f64() * 1e3),
                certificate_not_after_ms: not_after,
                certificate_expires_soon: not_after.is_some_and(|ms| {
                    ms - crate::clock::now_ms() < RENEW_WARNING.as_millis() as i64
                }),
                error: None,
            },
            Err(e) => CheckLine {
                host: host.name(),
                address: host.entry.endpoint(),
                state: "offline",
                os: None,
                os_name: None,
                hostname: None,
                latency_ms: None,
                certificate_not_after_ms: None,
                certificate_expires_soon: false,
                error: Some(e.to_string()),
            },
        };
        lines.push((index, line));
    }
    progress.finish_and_clear();
    lines.sort_by_key(|(index, _)| *index);
    let offline = lines.iter().filter(|(_, l)| l.state == "offline").count();
    if printer.json {
        for (_, line) in &lines {
            printer.json_line(line);
        }
    } else {
        let rows: Vec<Vec<Cell>> = lines
            .iter()
            .map(|(_, l)| {
                vec![
                    Cell::host(l.host),
                    l.address.clone().into(),
                    Cell::status(l.state == "online", l.state),
                    l.os_name.clone().unwrap_or_default().into(),
                    l.hostname.clone().unwrap_or_default().into(),
                    match l.certificate_not_after_ms {
                        Some(ms) => Cell::status(!l.certificate_expires_soon, expiry_text(ms)),
                        None => "".into(),
                    },
                    l.error.clone().unwrap_or_default().into(),
                ]
            })
            .collect();
        table(
            printer,
            &[
                "HOST",
                "ADDRESS",
                "STATE",
                "OS",
                "NAME",
                "CERTIFICATE",
                "REASON",
            ],
            &rows,
        );
        printer.note(&format!(
            "{} online, {} offline",
            printer.status(true, &(lines.len() - offline).to_string()),
            printer.status(offline == 0, &offline.to_string())
        ));
        let soon = lines
            .iter()
            .filter(|(_, l)| l.certificate_expires_soon)
            .count();
        if soon > 0 {
            printer.note(&printer.status(
                false,
                &format!(
                    "{soon} certificate(s) expire within {} days: renew them with `vigie pki renew`",
                    RENEW_WARNING.as_secs() / 86_400
                ),
            ));
        }
    }
    Ok(if offline == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
