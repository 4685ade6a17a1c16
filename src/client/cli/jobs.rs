//! Jobs across the fleet: `vigie exec --detach` starts one job per host
//! under one fleet job id (kept in the history with each host's job id),
//! `vigie jobs` lists fleet jobs with each host's state, `vigie attach`
//! follows them again (replaying what was missed) and `vigie cancel` ends
//! them. The history is the only place the fleet job lives, so all of it
//! works after the client machine rebooted.

use std::process::ExitCode;

use futures::StreamExt;
use serde::Serialize;

use super::{
    CliError, Context, Global,
    exec::{Launch, View},
    output::{Cell, Printer, table},
};
use crate::{
    client::{
        Error,
        history::{Entry, EntryKind, HostRecord},
        jobs::{self, CALL_DEADLINE, FleetJob, HostJob},
        run::Status,
        text::visible,
    },
    command::{EndReason, Event, ExecRequest},
};

/// Arguments naming a fleet job.
#[derive(Debug, clap::Args)]
pub struct JobArgs {
    /// The fleet job id `exec --detach` printed (a unique prefix will do).
    pub id: String,
}

/// `vigie exec --detach`: starts `request` as a job on every selected host
/// and returns once each has answered.
pub(super) async fn start(
    context: &Context,
    request: ExecRequest,
    printer: &Printer,
) -> Result<ExitCode, CliError> {
    if context.has_local_agent() {
        return Err(CliError::Usage(
            "--detach needs agents that outlive this command, and the agent started in this \
             process stops with it: give --hosts FILE or -H HOST"
                .into(),
        ));
    }
    let fleet_job = jobs::new_id();
    let command = request.command_line();
    let mut answers = context.fleet.for_each(
        &context.selection,
        context.concurrency,
        Some(CALL_DEADLINE),
        move |client| {
            let request = request.clone();
            async move {
                let mut events = client.execute(request).await?;
                // The first event names the job; dropping the stream then
                // detaches, and the job runs on.
                match events.next().await {
                    // The id goes to the history and back to the agent: an
                    // id no agent of ours makes is refused.
                    Some(Ok(Event::Started {
                        job_id: Some(id), ..
                    })) if jobs::is_job_id(&id) => Ok(id),
                    Some(Ok(Event::Started {
                        job_id: Some(_), ..
                    })) => Err(Error::Protocol(
                        "the agent answered with a malformed job id".into(),
                    )),
                    Some(Err(e)) => Err(e),
                    _ => Err(Error::Protocol(
                        "the agent did not start a job: it is older than this client and \
                         does not run detached commands (its command was ended)"
                            .into(),
                    )),
                }
            }
        },
    );
    let mut records = Vec::new();
    while let Some((index, outcome)) = answers.recv().await {
        let name = context.name(index).to_owned();
        let (status, error) = (outcome.status(), outcome.error());
        let job_id = match outcome {
            crate::client::fleet::Outcome::Done(id) => Some(id),
            _ => None,
        };
        let mut record = HostRecord::of_answer(&name, status, error.as_deref().unwrap_or(""));
        record.output.clear();
        record.job_id = job_id;
        records.push(record);
    }
    // In file order, whatever order the answers came in.
    records.sort_by_key(|r| {
        context
            .selection
            .iter()
            .position(|&i| context.name(i) == r.host)
    });
    let started = records.iter().filter(|r| r.job_id.is_some()).count();
    if printer.json {
        for r in &records {
            printer.json_line(&StartLine {
                kind: "job",
                job: &fleet_job,
                host: &r.host,
                status: r.status,
                job_id: r.job_id.as_deref(),
                error: r.error.as_deref(),
            });
        }
        printer.json_line(&serde_json::json!({
            "type": "summary", "job": fleet_job, "started": started, "hosts": records.len(),
        }));
    } else {
        let rows = records
            .iter()
            .map(|r| {
                vec![
                    Cell::host(&r.host),
                    match &r.job_id {
                        Some(id) => Cell::from(format!("job {id}")),
                        None => Cell::status(false, r.describe()),
                    },
                ]
            })
            .collect::<Vec<_>>();
        table(printer, &["HOST", "STARTED"], &rows);
        let line = format!(
            "job {fleet_job} started on {started} of {} hosts: `vigie attach {fleet_job}` to \
             follow it, `vigie jobs {fleet_job}` for its state, `vigie cancel {fleet_job}` to \
             end it",
            records.len()
        );
        printer.note(&printer.status(started == records.len(), &format!("vigie: {line}")));
    }
    if let Some(history) = &context.history {
        let entry = Entry {
            time_ms: crate::clock::ms_since_epoch(std::time::SystemTime::now()),
            kind: EntryKind::Command,
            command,
            targets: records.iter().map(|r| r.host.clone()).collect(),
            results: records,
            rollout: None,
            job: Some(fleet_job.clone()),
        };
        if let Err(e) = history.append(&entry) {
            printer.note(&format!(
                "vigie: job {fleet_job} is not recorded in the history ({e}): `vigie attach` \
                 will not find it; each host's job id is above"
            ));
        }
    }
    Ok(if started == context.selection.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[derive(Serialize)]
struct StartLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    job: &'a str,
    host: &'a str,
    status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// The fleet jobs of the history, oldest first.
fn history_jobs(global: &Global) -> Result<Vec<FleetJob>, CliError> {
    let context = Context::history_only(global)?;
    let history = context
        .history
        .as_ref()
        .ok_or_else(|| CliError::Usage("no history location: set HOME or VIGIE_HISTORY".into()))?;
    let loaded = history.load().map_err(|e| CliError::Usage(e.to_string()))?;
    Ok(jobs::fleet_jobs(&loaded.entries))
}

/// The fleet job `id` names.
fn find(global: &Global, id: &str) -> Result<FleetJob, CliError> {
    jobs::find(&history_jobs(global)?, id).map_err(|e| CliError::Usage(e.to_string()))
}

/// The context of a fleet job's hosts, and each host's (index, job id).
async fn context_of(
    global: &Global,
    job: &FleetJob,
    printer: &Printer,
) -> Result<(Context, Vec<(usize, String)>), CliError> {
    let names: Vec<String> = job.hosts.iter().map(|(h, _)| h.clone()).collect();
    let context = Context::for_hosts(global, &names, printer).await?;
    let hosts = jobs::on_fleet(&context.fleet, job)
        .into_iter()
        .filter(|(i, _)| context.selection.contains(i))
        .collect();
    Ok((context, hosts))
}

/// `vigie attach ID`: follows every host's job again, from the start of
/// what its log keeps.
pub(super) async fn attach(
    global: &Global,
    args: &JobArgs,
    view: View,
    printer: &Printer,
) -> Result<ExitCode, CliError> {
    let job = find(global, &args.id)?;
    let (context, hosts) = context_of(global, &job, printer).await?;
    let launch = Launch::Attach {
        job: job.id.clone(),
        command: job.command.clone(),
        hosts,
    };
    Ok(super::exec::execute(&context, launch, view, printer).await)
}

/// `vigie jobs [ID]`: the fleet jobs of the history with each host's
/// state, or one fleet job host by host.
pub(super) async fn list(
    global: &Global,
    id: Option<&str>,
    count: usize,
    printer: &Printer,
) -> Result<ExitCode, CliError> {
    let jobs = match id {
        Some(id) => vec![find(global, id)?],
        None => {
            let all = history_jobs(global)?;
            let skip = all.len().saturating_sub(count);
            all.into_iter().skip(skip).collect()
        }
    };
    if jobs.is_empty() {
        if !printer.json {
            printer.note("vigie: no fleet jobs in the history (start one with `exec --detach`)");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = Vec::new();
    for job in &jobs {
        let (context, hosts) = context_of(global, job, printer).await?;
        let answers = jobs::ask(&context.fleet, &hosts, false, context.concurrency).await;
        if printer.json {
            for (index, host_job, answer) in &answers {
                json_line(printer, job, context.name(*index), host_job, answer);
            }
            continue;
        }
        if id.is_some() {
            printer.line(&format!(
                "job {}  {}  {}",
                job.id,
                crate::clock::utc(job.time_ms),
                visible(&job.command)
            ));
            let host_rows: Vec<Vec<Cell>> = answers
                .iter()
                .map(|(index, host_job, answer)| {
                    vec![
                        Cell::host(context.name(*index)),
                        Cell::status(answer.good(), answer.text()),
                        Cell::from(
                            answer
                                .output_bytes()
                                .map(crate::client::format::bytes)
                                .unwrap_or_default(),
                        ),
                        Cell::from(host_job.clone()),
                    ]
                })
                .collect();
            table(
                printer,
                &["HOST", "STATE", "OUTPUT", "HOST JOB"],
                &host_rows,
            );
        } else {
            rows.push(vec![
                Cell::from(job.id.clone()),
                Cell::from(crate::clock::utc(job.time_ms)),
                Cell::from(job.hosts.len().to_string()),
                Cell::status(
                    answers.iter().all(|(_, _, a)| a.good()),
                    jobs::summary(answers.iter().map(|(_, _, a)| a)),
                ),
                Cell::from(job.command.clone()),
            ]);
        }
    }
    if !rows.is_empty() {
        table(
            printer,
            &["JOB", "STARTED", "HOSTS", "STATE", "COMMAND"],
            &rows,
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn json_line(printer: &Printer, job: &FleetJob, host: &str, host_job: &str, answer: &HostJob) {
    let mut line = serde_json::json!({
        "type": "job",
        "job": job.id,
        "command": job.command,
        "host": host,
        "job_id": host_job,
        "state": answer.state(),
    });
    match answer {
        HostJob::Known(info) => {
            line["output_bytes"] = info.output_bytes.into();
            if let Some(exit) = &info.exit {
                line["exit_code"] = exit.exit_code.into();
                line["signal"] = exit.signal.into();
                line["reason"] = serde_json::to_value(exit.reason).unwrap_or_default();
            }
        }
        HostJob::Failed(_, reason) => line["error"] = reason.clone().into(),
        HostJob::Forgotten => {}
    }
    printer.json_line(&line);
}

/// `vigie cancel ID`: cancels every host's job; exit 1 when a host could
/// not be asked.
pub(super) async fn cancel(
    global: &Global,
    args: &JobArgs,
    printer: &Printer,
) -> Result<ExitCode, CliError> {
    let job = find(global, &args.id)?;
    let (context, hosts) = context_of(global, &job, printer).await?;
    let answers = jobs::ask(&context.fleet, &hosts, true, context.concurrency).await;
    let all_asked = answers
        .iter()
        .all(|(_, _, a)| matches!(a, HostJob::Known(_)));
    if printer.json {
        for (index, host_job, answer) in &answers {
            json_line(printer, &job, context.name(*index), host_job, answer);
        }
    } else {
        let rows: Vec<Vec<Cell>> = answers
            .iter()
            .map(|(index, _, answer)| {
                let text = match answer {
                    HostJob::Known(info) => match &info.exit {
                        Some(exit) if exit.reason == EndReason::Cancelled => answer.text(),
                        Some(_) => format!("had ended: {}", answer.text()),
                        None => "cancelled; still ending".to_owned(),
                    },
                    HostJob::Forgotten | HostJob::Failed(..) => answer.text(),
                };
                vec![
                    Cell::host(context.name(*index)),
                    Cell::status(matches!(answer, HostJob::Known(_)), text),
                ]
            })
            .collect();
        table(printer, &["HOST", "CANCEL"], &rows);
    }
    Ok(if all_asked {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
