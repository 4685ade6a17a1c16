//! `vigie deploy`: the hosts of the selection, a few at a time, with a
//! progress bar and one result line per host.

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use futures::StreamExt;

use super::{
    CliError, Context, Global,
    output::{Cell, Printer, table},
    pki::PkiDir,
};
use crate::client::{
    deploy::{self, DeployOptions, Deployed, SshOptions},
    text::visible,
};

/// `vigie deploy`'s options.
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The agent binary to copy [default: the vigie-agent beside vigie, or on PATH].
    #[arg(long, value_name = "FILE")]
    pub agent: Option<PathBuf>,
    /// An ssh configuration file (ssh -F).
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// An ssh option (ssh -o), repeatable, e.g. User=admin.
    #[arg(long = "ssh-option", value_name = "OPTION")]
    pub ssh_options: Vec<String>,
    /// Install through `sudo -n` (the ssh user is not root).
    #[arg(long)]
    pub sudo: bool,
    /// Reach hosts over ssh by their address rather than their name.
    #[arg(long)]
    pub ssh_by_address: bool,
    /// Install again on hosts whose agent is enrolled (it stays enrolled).
    #[arg(long)]
    pub force: bool,
    /// How long the agents' certificates are valid.
    #[arg(long, default_value = "90d", value_parser = humantime::parse_duration)]
    pub valid: Duration,
    /// The fleet CA.
    #[command(flatten)]
    pub pki: PkiDir,
}

#[derive(serde::Serialize)]
struct Line {
    host: String,
    status: &'static str,
    step: Option<&'static str>,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    took_ms: Option<u64>,
}

pub(super) async fn run(
    global: &Global,
    args: DeployArgs,
    printer: &Printer,
) -> Result<ExitCode, CliError> {
    let agent = args
        .agent
        .clone()
        .or_else(deploy::default_agent)
        .ok_or_else(|| {
            CliError::Usage(
                "no vigie-agent binary beside vigie or on PATH: give --agent FILE".into(),
            )
        })?;
    // ssh's control sockets, private to this run.
    let control = tempfile::Builder::new()
        .prefix("vigie-deploy-")
        .tempdir()
        .map_err(|e| CliError::Usage(format!("a temporary directory: {e}")))?;
    let options = Arc::new(DeployOptions {
        agent,
        ssh: SshOptions {
            config: args.ssh_config.clone(),
            options: args.ssh_options.clone(),
            sudo: args.sudo,
            by_address: args.ssh_by_address,
            control_dir: Some(control.path().to_owned()),
        },
        force: args.force,
        validity: args.valid,
    });
    let ca = Arc::new(args.pki.open()?);
    let context = Context::new(global, printer).await?;
    let progress = printer.progress(context.selection.len(), "deploying");
    let fleet = &context.fleet;
    let mut results: Vec<(usize, Line)> = futures::stream::iter(context.selection.iter().copied())
        .map(|index| {
            let (ca, options, progress) = (ca.clone(), options.clone(), progress.clone());
            async move {
                let host = fleet.host(index)?;
                let result = deploy::deploy_host(&ca, host, &options, |step| {
                    progress.set_message(format!("{}: {}", host.name(), step.as_str()));
                })
                .await;
                progress.inc(1);
                let line = match result {
                    Ok(Deployed::Done { certificate, took }) => Line {
                        host: host.name().to_owned(),
                        status: "deployed",
                        step: None,
                        detail: format!(
                            "enrolled, certificate valid until {} UTC",
                            crate::clock::utc(certificate.not_after_ms)
                        ),
                        took_ms: Some(took.as_millis() as u64),
                    },
                    Ok(Deployed::AlreadyEnrolled { not_after_ms }) => Line {
                        host: host.name().to_owned(),
                        status: "unchanged",
                        step: None,
                        detail: match not_after_ms {
                            Some(ms) => format!(
                                "enrolled already, certificate valid until {} UTC",
                                crate::clock::utc(ms)
                            ),
                            None => "enrolled already".into(),
                        },
                        took_ms: None,
                    },
                    Err(failed) => Line {
                        host: host.name().to_owned(),
                        status: "failed",
                        step: Some(failed.step.as_str()),
                        detail: failed.reason,
                        took_ms: None,
                    },
                };
                Some((index, line))
            }
        })
        .buffer_unordered(context.concurrency.min(16))
        .filter_map(|line| async move { line })
        .collect()
        .await;
    progress.finish_and_clear();
    results.sort_by_key(|(index, _)| *index);
    let failed = results.iter().filter(|(_, l)| l.status == "failed").count();
    if printer.json {
        for (_, line) in &results {
            printer.json_line(line);
        }
    } else {
        let rows: Vec<Vec<Cell>> = results
            .iter()
            .map(|(_, l)| {
                vec![
                    Cell::host(&l.host),
                    Cell::status(l.status != "failed", l.status),
                    l.step.unwrap_or("").into(),
                    visible(&l.detail).into_owned().into(),
                ]
            })
            .collect();
        table(printer, &["HOST", "RESULT", "STEP", "DETAIL"], &rows);
        printer.note(&format!(
            "{} deployed or unchanged, {} failed",
            printer.status(true, &(results.len() - failed).to_string()),
            printer.status(failed == 0, &failed.to_string())
        ));
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
