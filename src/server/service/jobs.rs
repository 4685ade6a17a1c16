//! The gRPC adapter of jobs: a detached Execute, AttachJob, ListJobs,
//! GetJob and CancelJob. It checks who calls, audits, converts between the
//! wire and [`jobs`](crate::server::jobs), and maps errors; the jobs
//! themselves live there.

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;
use tokio_stream::{StreamExt, wrappers::ReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::{Response, Status};

use super::{CallContext, EventStream, Service, StreamRoom, with_exit};
use crate::{
    clock::ms_since_epoch,
    command::ExecRequest,
    proto,
    server::{
        audit::Record,
        error::Error,
        exec::{self, Stops},
        jobs::{self, Detach, Job, JobEvent, JobInfo},
    },
};

impl Service {
    /// The job `id`, if the caller may see it; a refusal is audited.
    fn job_for(&self, ctx: &CallContext, rpc: &str, id: &str) -> Result<Arc<Job>, Status> {
        self.state.jobs.get(id, &ctx.identity).map_err(|error| {
            let status = Status::from(Error::Job(error));
            self.state.audit.record(&Record {
                job_id: Some(id.chars().take(64).collect()),
                reason: Some(status.message().to_owned()),
                ..self.call_record(ctx, rpc, "job_refused")
            });
            status
        })
    }

    /// Execute with `detach`: starts the job, then attaches the call to it
    /// from offset 0.
    pub(super) fn execute_detached(
        &self,
        ctx: &CallContext,
        request: &ExecRequest,
    ) -> Result<Response<EventStream>, Status> {
        let state = &self.state;
        let refused = |status: Status| {
            state.audit.record(&Record {
                command: Some(request.command.clone()),
                argv: (!request.argv.is_empty()).then(|| request.argv.clone()),
                reason: Some(status.message().to_owned()),
                ..self.call_record(ctx, "Execute", "exec_refused")
            });
            status
        };
        // Room for the attachment first: a job is never started for a call
        // that could not then say its id.
        let room = self.stream_room(ctx).map_err(refused)?;
        let started = (|| {
            let reservation = state.jobs.reserve(&ctx.identity).map_err(Error::Job)?;
            let scope = state
                .exec_policy
                .scope_for(&ctx.identity, !request.script.is_empty())
                .map_err(Error::PermissionDenied)?;
            let mut spec = exec::plan(request, &state.host, scope)?;
            // A job's log has its own cap, which drops the oldest output;
            // the per-command cap (which drops the newest) does not apply.
            spec.output_limit = u64::MAX;
            let spawned = exec::spawn(spec)?;
            Ok::<_, Error>((reservation, spawned))
        })();
        let (reservation, spawned) = started.map_err(|e| refused(Status::from(e)))?;
        let pid = spawned.pid();
        let group = state.own_groups.register(pid, &ctx.identity.name);
        let spec = spawned.spec();
        let job = state.jobs.insert(
            reservation,
            (spec.command_line.clone(), spec.display_argv(), pid),
            request.output_limit,
        );
        state.audit.record(&Record {
            pid: Some(pid),
            command: Some(job.command.clone()),
            argv: Some(job.argv.clone()),
            job_id: Some(job.id.clone()),
            ..self.call_record(ctx, "Execute", "exec_start")
        });
        tracing::info!(
            pid,
            job = %job.id,
            identity = %ctx.identity.name,
            command = ?job.command,
            "job started"
        );
        // No session stops a job: only its cancel and the agent.
        let stops = Stops {
            session: CancellationToken::new(),
            agent: state.agent_token.clone(),
            cancel: job.cancel.clone(),
        };
        let end_record = Record {
            command: Some(job.command.clone()),
            job_id: Some(job.id.clone()),
            pid: Some(pid),
            ..self.call_record(ctx, "Execute", "exec_end")
        };
        let (tuning, audit, jobs) = (
            state.tuning.clone(),
            state.audit.clone(),
            state.jobs.clone(),
        );
        let running = job.clone();
        state.tracker.spawn(async move {
            let exit = jobs::run(running.clone(), spawned, stops, tuning).await;
            drop(group);
            audit.record(&with_exit(end_record, &exit));
            tracing::info!(
                pid,
                job = %running.id,
                exit_code = exit.exit_code,
                reason = ?exit.reason,
                "job ended"
            );
            running.finish(exit).await;
            jobs.ended();
        });
        Ok(self.attach_stream(ctx, room, job, 0))
    }

    /// Follows `job` from `offset` on a new stream, for as long as the
    /// caller's session lasts.
    fn attach_stream(
        &self,
        ctx: &CallContext,
        room: StreamRoom,
        job: Arc<Job>,
        offset: u64,
    ) -> Response<EventStream> {
        let (tx, rx) = mpsc::channel(self.state.tuning.channel_capacity);
        let detach = Detach {
            session: ctx.session.token.clone(),
            agent: self.state.agent_token.clone(),
        };
        self.state.tracker.spawn(async move {
            let _room = room;
            jobs::follow(job, offset, tx, detach).await;
        });
        let stream = ReceiverStream::new(rx).map(|event| Ok(wire_event(event)));
        Response::new(Box::pin(stream))
    }

    pub(super) fn attach_job(
        &self,
        ctx: &CallContext,
        request: proto::AttachJobRequest,
    ) -> Result<Response<EventStream>, Status> {
        let job = self.job_for(ctx, "AttachJob", &request.job_id)?;
        let end = job.log.bounds().1;
        let refused = |status: Status| {
            self.state.audit.record(&Record {
                job_id: Some(job.id.clone()),
                offset: Some(request.offset),
                reason: Some(status.message().to_owned()),
                ..self.call_record(ctx, "AttachJob", "job_refused")
            });
            status
        };
        if request.offset > end {
            return Err(refused(
                Error::Job(jobs::JobError::PastEnd {
                    job: job.id.clone(),
                    offset: request.offset,
                    end,
                })
                .into(),
            ));
        }
        let room = self.stream_room(ctx).map_err(refused)?;
        self.state.audit.record(&Record {
            job_id: Some(job.id.clone()),
            offset: Some(request.offset),
            ..self.call_record(ctx, "AttachJob", "job_attach")
        });
        Ok(self.attach_stream(ctx, room, job, request.offset))
    }

    pub(super) fn list_jobs(&self, ctx: &CallContext) -> proto::ListJobsResponse {
        let jobs = self.state.jobs.list(&ctx.identity);
        self.state.audit.record(&Record {
            count: Some(jobs.len() as u64),
            ..self.call_record(ctx, "ListJobs", "job_list")
        });
        proto::ListJobsResponse {
            jobs: jobs.into_iter().map(wire_job).collect(),
        }
    }

    pub(super) fn get_job(&self, ctx: &CallContext, id: &str) -> Result<proto::Job, Status> {
        let job = self.job_for(ctx, "GetJob", id)?;
        self.state.audit.record(&Record {
            job_id: Some(job.id.clone()),
            ..self.call_record(ctx, "GetJob", "job_get")
        });
        Ok(wire_job(job.info()))
    }

    /// Cancels a job and waits (a bounded time) for its group to be gone,
    /// so that the answer says how it ended.
    pub(super) async fn cancel_job(
        &self,
        ctx: &CallContext,
        id: &str,
    ) -> Result<proto::Job, Status> {
        let job = self.job_for(ctx, "CancelJob", id)?;
        let was_running = job.running();
        if was_running {
            job.cancel.cancel();
        }
        self.state.audit.record(&Record {
            job_id: Some(job.id.clone()),
            pid: Some(job.pid),
            command: Some(job.command.clone()),
            reason: (!was_running).then(|| "it had ended already".to_owned()),
            ..self.call_record(ctx, "CancelJob", "job_cancel")
        });
        tracing::info!(job = %job.id, identity = %ctx.identity.name, "job cancelled");
        // TERM, then KILL after the grace, then the pipes: a little more
        // than two graces covers it.
        let wait = self.state.tuning.kill_grace * 2 + Duration::from_secs(1);
        let mut ended = job.ended();
        let _ = tokio::time::timeout(wait, ended.wait_for(Option::is_some)).await;
        Ok(wire_job(job.info()))
    }
}

fn wire_event(event: JobEvent) -> proto::ExecuteResponse {
    use proto::execute_response::Event as Wire;
    let event = match event {
        JobEvent::Started {
            job_id,
            pid,
            argv,
            started_at,
        } => Wire::Started(proto::Started {
            pid,
            argv,
            started_at_ms: ms_since_epoch(started_at),
            job_id,
        }),
        JobEvent::Output {
            stream,
            offset,
            data,
        } => Wire::Output(proto::Output {
            stream: proto::OutputStream::from(stream).into(),
            data,
            offset,
        }),
        JobEvent::Gap { offset, length } => Wire::Gap(proto::Gap { offset, length }),
        JobEvent::Exited(exit) => Wire::Exited(exit.into()),
    };
    proto::ExecuteResponse { event: Some(event) }
}

fn wire_job(info: JobInfo) -> proto::Job {
    let (retained_from, output_bytes) = info.log;
    proto::Job {
        job_id: info.id,
        identity: info.owner,
        command: info.command,
        argv: info.argv,
        pid: info.pid,
        started_at_ms: ms_since_epoch(info.started_at),
        state: if info.ended.is_some() {
            proto::JobState::Finished
        } else {
            proto::JobState::Running
        }
        .into(),
        ended_at_ms: info.ended.as_ref().map_or(0, |(_, at)| ms_since_epoch(*at)),
        exited: info.ended.map(|(exit, _)| exit.into()),
        output_bytes,
        retained_from,
        attached: info.attached,
        expires_at_ms: info.expires_at.map_or(0, ms_since_epoch),
    }
}
