//! The gRPC adapter: the only place that implements the generated
//! `RemoteAgent` trait. Each handler takes the request apart, validates it,
//! calls a core module and maps the error; no logic of its own lives here.

use std::{pin::Pin, sync::Arc, time::Duration};

mod files;
mod jobs;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::{StreamExt, wrappers::ReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::{
    AgentState, Outcome,
    audit::Record,
    auth::{Identity, Role},
    error::Error,
    exec::{self, ExecRequest, Stops},
    net::ConnInfo,
    processes,
    session::{self, SESSION_HEADER, Session},
    system::MetricsSampler,
};
use crate::{
    command::Shell, convert, proto, proto::remote_agent_server::RemoteAgent, types::ConnectionInfo,
};

/// Shortest and longest interval between metric samples.
pub const METRICS_INTERVAL_MS: std::ops::RangeInclusive<u32> = 100..=60_000;

/// The service; one per generation of the agent.
#[derive(Debug, Clone)]
pub struct Service {
    state: Arc<AgentState>,
}

impl Service {
    /// A service over this generation's state.
    pub fn new(state: Arc<AgentState>) -> Self {
        Self { state }
    }

    /// Who calls, from where, in which session.
    fn context<T>(&self, request: &Request<T>) -> Result<CallContext, Status> {
        let (conn, tls) = connection_of(request);
        let identity = identity_of(request)?;
        let session_id = match request.metadata().get(SESSION_HEADER) {
            Some(value) => {
                let id = value
                    .to_str()
                    .map_err(|_| Error::Session(session::SessionError::InvalidId))?;
                session::validate_id(id).map_err(Error::Session)?;
                id.to_owned()
            }
            None => conn.implicit_session.to_string(),
        };
        let session = self
            .state
            .sessions
            .enter(&session_id, conn.id, &identity)
            .map_err(Error::Session)?;
        Ok(CallContext {
            conn,
            tls,
            session,
            identity,
        })
    }

    /// The audit record of a call: who, from where, in which session.
    fn call_record(&self, ctx: &CallContext, rpc: &str, event: &'static str) -> Record {
        Record {
            event,
            rpc: Some(rpc.to_owned()),
            identity: Some(ctx.identity.name.clone()),
            peer: ctx.conn.peer.map(|p| p.to_string()),
            session: Some(ctx.session.id.clone()),
            ..Record::default()
        }
    }

    /// What a long-lived stream (WatchMetrics, a job attachment, a file
    /// transfer) holds while it lasts: one of its identity's streams, so
    /// that streams are limited per identity and in all, and its session
    /// kept busy (not reclaimable).
    fn stream_room(&self, ctx: &CallContext) -> Result<StreamRoom, Status> {
        let permit = self
            .state
            .streams
            .open(&ctx.identity)
            .map_err(Error::Stream)?;
        let hold = self
            .state
            .sessions
            .hold(&ctx.session)
            .map_err(Error::Session)?;
        Ok((permit, hold))
    }

    fn ensure_running(&self) -> Result<(), Status> {
        if self.state.closing.is_cancelled() {
            return Err(Error::Stopping("stopping").into());
        }
        Ok(())
    }
}

/// A long-lived stream's permit and session hold (see `Service::stream_room`).
type StreamRoom = (super::streams::StreamPermit, session::SessionHold);

/// `record` with how a command ended: its exit code, signal, reason and
/// duration.
fn with_exit(record: Record, exit: &crate::command::Exit) -> Record {
    Record {
        exit_code: Some(exit.exit_code),
        signal: exit.signal,
        end_reason: serde_json::to_value(exit.reason)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned)),
        duration_ms: u64::try_from(exit.duration.as_millis()).ok(),
        ..record
    }
}

/// What a handler knows about its caller.
#[derive(Debug)]
struct CallContext {
    conn: ConnInfo,
    tls: bool,
    session: Session,
    identity: Identity,
}

/// The caller of a request, as the gate found it.
///
/// The gate puts an identity on every request it lets through to this
/// service (the anonymous admin only when the agent runs without access
/// control). A request without one never passed the gate, so it is refused
/// rather than given any role.
fn identity_of<T>(request: &Request<T>) -> Result<Identity, Status> {
    request
        .extensions()
        .get::<Identity>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("missing or invalid credentials"))
}

/// The connection a request came on, whether or not TLS wraps it.
fn connection_of<T>(request: &Request<T>) -> (ConnInfo, bool) {
    if let Some(info) = request.extensions().get::<ConnInfo>() {
        return (info.clone(), info.tls);
    }
    // Requests always come through our listener; this only happens to a
    // service driven directly, as in unit tests.
    (
        ConnInfo {
            id: 0,
            peer: None,
            implicit_session: Arc::from("conn-direct"),
            tls: false,
            peer_certificate: None,
        },
        false,
    )
}

type EventStream = Pin<Box<dyn Stream<Item = Result<proto::ExecuteResponse, Status>> + Send>>;
type MetricsStream =
    Pin<Box<dyn Stream<Item = Result<proto::WatchMetricsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RemoteAgent for Service {
    async fn get_system_info(
        &self,
        request: Request<proto::GetSystemInfoRequest>,
    ) -> Result<Response<proto::GetSystemInfoResponse>, Status> {
        self.context(&request)?;
        let probe = self.state.probe.clone();
        let info = tokio::task::spawn_blocking(move || probe.system_info())
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(Response::new(info.into()))
    }

    type WatchMetricsStream = MetricsStream;

    async fn watch_metrics(
        &self,
        request: Request<proto::WatchMetricsRequest>,
    ) -> Result<Response<Self::WatchMetricsStream>, Status> {
        let ctx = self.context(&request)?;
        self.ensure_running()?;
        let request = request.into_inner();
        if !METRICS_INTERVAL_MS.contains(&request.interval_ms) {
            return Err(Error::InvalidArgument(format!(
                "interval_ms must be between {} and {}, got {}",
                METRICS_INTERVAL_MS.start(),
                METRICS_INTERVAL_MS.end(),
                request.interval_ms
            ))
            .into());
        }
        // Each stream samples the host on its own timer: bound how many
        // there are, per identity and in all, and keep the session busy
        // (not reclaimable) while the stream is open.
        let room = self.stream_room(&ctx)?;
        let mut sampler = MetricsSampler::new(request.per_core).map_err(Error::Probe)?;
        let interval = Duration::from_millis(u64::from(request.interval_ms));
        let (tx, rx) = mpsc::channel(1);
        let stops = Stops {
            session: ctx.session.token.clone(),
            agent: self.state.agent_token.clone(),
            cancel: CancellationToken::new(),
        };
        self.state.tracker.spawn(async move {
            let _counted = room;
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stops.session.cancelled() => break,
                    () = stops.agent.cancelled() => break,
                    () = tx.closed() => break,
                    _ = ticks.tick() => {}
                }
                // Waiting for room races the stops too: a client that stops
                // reading must not keep its stream past a Disconnect.
                let room = tokio::select! {
                    () = stops.session.cancelled() => break,
                    () = stops.agent.cancelled() => break,
                    room = tx.reserve() => room,
                };
                match room {
                    Ok(permit) => permit.send(sampler.sample()),
                    Err(_) => break,
                }
            }
        });
        let stream = ReceiverStream::new(rx).map(|sample| Ok(sample.into()));
        Ok(Response::new(Box::pin(stream)))
    }

    type ExecuteStream = EventStream;

    async fn execute(
        &self,
        request: Request<proto::ExecuteRequest>,
    ) -> Result<Response<Self::ExecuteStream>, Status> {
        let ctx = self.context(&request)?;
        self.ensure_running()?;
        let request = exec_request(request.into_inner())?;
        if request.detach {
            return self.execute_detached(&ctx, &request);
        }
        let audit = |event: &'static str| self.call_record(&ctx, "Execute", event);
        let (mut spawned, slot) = match self.start_command(&ctx, &request) {
            Ok(started) => started,
            Err(error) => {
                let status = Status::from(error);
                // Nothing was planned: the record names what was asked.
                self.state.audit.record(&Record {
                    command: Some(request.command.clone()),
                    argv: (!request.argv.is_empty()).then(|| request.argv.clone()),
                    reason: Some(status.message().to_owned()),
                    ..audit("exec_refused")
                });
                return Err(status);
            }
        };
        let pid = spawned.pid();
        let group = self.state.own_groups.register(pid, &ctx.identity.name);
        // The record, the log and the `started` event all read the plan
        // that runs, never the request.
        let spec = spawned.spec();
        let command_line = spec.command_line.clone();
        self.state.audit.record(&Record {
            pid: Some(pid),
            command: Some(command_line.clone()),
            argv: Some(spec.display_argv()),
            ..audit("exec_start")
        });
        tracing::info!(
            pid,
            session = %ctx.session.id,
            identity = %ctx.identity.name,
            command = ?command_line,
            "command started"
        );
        let end_record = Record {
            command: Some(command_line),
            ..audit("exec_end")
        };
        let audit_log = self.state.audit.clone();
        let (tx, rx) = mpsc::channel(self.state.tuning.channel_capacity);
        spawned.announce(&tx);
        let stops = Stops {
            session: ctx.session.token.clone(),
            agent: self.state.agent_token.clone(),
            cancel: CancellationToken::new(),
        };
        let tuning = self.state.tuning.clone();
        self.state.tracker.spawn(async move {
            let exit = exec::drive(spawned, tx, stops, tuning).await;
            drop(group);
            drop(slot);
            audit_log.record(&with_exit(
                Record {
                    pid: Some(pid),
                    ..end_record
                },
                &exit,
            ));
            tracing::info!(
                pid,
                exit_code = exit.exit_code,
                signal = exit.signal,
                reason = ?exit.reason,
                duration_ms = exit.duration.as_millis(),
                "command ended"
            );
        });
        let stream = ReceiverStream::new(rx).map(|event| Ok(event.into()));
        Ok(Response::new(Box::pin(stream)))
    }

    type AttachJobStream = EventStream;

    async fn attach_job(
        &self,
        request: Request<proto::AttachJobRequest>,
    ) -> Result<Response<Self::AttachJobStream>, Status> {
        let ctx = self.context(&request)?;
        self.ensure_running()?;
        self.attach_job(&ctx, request.into_inner())
    }

    async fn list_jobs(
        &self,
        request: Request<proto::ListJobsRequest>,
    ) -> Result<Response<proto::ListJobsResponse>, Status> {
        let ctx = self.context(&request)?;
        Ok(Response::new(self.list_jobs(&ctx)))
    }

    async fn get_job(
        &self,
        request: Request<proto::GetJobRequest>,
    ) -> Result<Response<proto::GetJobResponse>, Status> {
        let ctx = self.context(&request)?;
        let job = self.get_job(&ctx, &request.into_inner().job_id)?;
        Ok(Response::new(proto::GetJobResponse { job: Some(job) }))
    }

    async fn cancel_job(
        &self,
        request: Request<proto::CancelJobRequest>,
    ) -> Result<Response<proto::CancelJobResponse>, Status> {
        let ctx = self.context(&request)?;
        let job = self.cancel_job(&ctx, &request.into_inner().job_id).await?;
        Ok(Response::new(proto::CancelJobResponse { job: Some(job) }))
    }

    type PutFileStream = files::PutStream;

    async fn put_file(
        &self,
        request: Request<tonic::Streaming<proto::PutFileRequest>>,
    ) -> Result<Response<Self::PutFileStream>, Status> {
        let ctx = self.context(&request)?;
        self.ensure_running()?;
        self.put_file(ctx, request.into_inner())
    }

    type GetFileStream = files::GetStream;

    async fn get_file(
        &self,
        request: Request<proto::GetFileRequest>,
    ) -> Result<Response<Self::GetFileStream>, Status> {
        let ctx = self.context(&request)?;
        self.ensure_running()?;
        self.get_file(ctx, request.into_inner()).await
    }

    async fn make_directory(
        &self,
        request: Request<proto::MakeDirectoryRequest>,
    ) -> Result<Response<proto::MakeDirectoryResponse>, Status> {
        let ctx = self.context(&request)?;
        self.ensure_running()?;
        self.make_directory(ctx, request.into_inner()).await
    }

    async fn list_processes(
        &self,
        request: Request<proto::ListProcessesRequest>,
    ) -> Result<Response<proto::ListProcessesResponse>, Status> {
        self.context(&request)?;
        let filter = request.into_inner().name_filter;
        let probe = self.state.probe.clone();
        let processes = tokio::task::spawn_blocking(move || probe.processes(&filter))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(Response::new(proto::ListProcessesResponse {
            processes: processes.into_iter().map(Into::into).collect(),
        }))
    }

    async fn signal_process(
        &self,
        request: Request<proto::SignalProcessRequest>,
    ) -> Result<Response<proto::SignalProcessResponse>, Status> {
        let ctx = self.context(&request)?;
        let request = request.into_inner();
        let audit = |event: &'static str| Record {
            event,
            rpc: Some("SignalProcess".into()),
            identity: Some(ctx.identity.name.clone()),
            peer: ctx.conn.peer.map(|p| p.to_string()),
            session: Some(ctx.session.id.clone()),
            pid: Some(request.pid),
            ..Record::default()
        };
        let signal = convert::process_signal(request.signal).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "signal is required and must be one of the Signal values, got {}",
                request.signal
            ))
        })?;
        let reach = if self
            .state
            .exec_policy
            .signals_own_commands_only(&ctx.identity)
        {
            processes::Reach::OwnCommands(&self.state.own_groups, &ctx.identity.name)
        } else {
            processes::Reach::Any
        };
        let signalled = match processes::send(request.pid, signal, reach) {
            Ok(signalled) => signalled,
            Err(error) => {
                let status = Status::from(Error::Signal(error));
                self.state.audit.record(&Record {
                    signal_name: Some(signal.name().to_owned()),
                    reason: Some(status.message().to_owned()),
                    ..audit("signal_refused")
                });
                return Err(status);
            }
        };
        self.state.audit.record(&Record {
            signal_name: Some(signal.name().to_owned()),
            command: Some(signalled.command_line.clone()),
            ..audit("signal")
        });
        tracing::info!(
            pid = request.pid,
            signal = signal.name(),
            identity = %ctx.identity.name,
            command = ?signalled.command_line,
            "signal sent"
        );
        Ok(Response::new(proto::SignalProcessResponse {
            pid: request.pid,
            signal_name: signal.name().to_owned(),
        }))
    }

    async fn get_connection_info(
        &self,
        request: Request<proto::GetConnectionInfoRequest>,
    ) -> Result<Response<proto::GetConnectionInfoResponse>, Status> {
        let ctx = self.context(&request)?;
        let state = &self.state;
        let info = ConnectionInfo {
            peer_address: ctx.conn.peer.map(|p| p.to_string()).unwrap_or_default(),
            session_id: ctx.session.id.clone(),
            identity: ctx.identity.name.clone(),
            role: ctx.identity.role.as_str().to_owned(),
            tls: ctx.tls,
            hostname: state.hostname.clone(),
            listen_addresses: vec![state.listen_address.to_string()],
            boot_id: state.probe.boot_id().to_owned(),
            agent_uptime_ms: u64::try_from(state.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            // Others' activity is for admins to see; everyone else gets
            // the counts of its own identity.
            session_count: u32::try_from(if ctx.identity.role == Role::Admin {
                state.sessions.count()
            } else {
                state.sessions.count_of(&ctx.identity.name)
            })
            .unwrap_or(u32::MAX),
            running_commands: if ctx.identity.role == Role::Admin {
                state.sessions.running_total()
            } else {
                state.sessions.running_of(&ctx.identity.name)
            },
            session_running_commands: ctx.session.running(),
            agent_pid: i32::try_from(std::process::id()).unwrap_or(0),
            agent_certificate: state
                .tls
                .as_ref()
                .and_then(|tls| crate::pki::CertFacts::parse(tls.certificate().as_ref()).ok())
                .map(|facts| (&facts).into()),
            revocation_list_number: state
                .fleet
                .as_ref()
                .map_or(0, |fleet| fleet.revocation_number()),
        };
        Ok(Response::new(info.into()))
    }

    async fn disconnect(
        &self,
        request: Request<proto::DisconnectRequest>,
    ) -> Result<Response<proto::DisconnectResponse>, Status> {
        let ctx = self.context(&request)?;
        let cancelled = self.state.sessions.end(&ctx.session).unwrap_or(0);
        tracing::info!(session = %ctx.session.id, cancelled, "session disconnected");
        Ok(Response::new(proto::DisconnectResponse {
            session_id: ctx.session.id,
            cancelled_commands: cancelled,
        }))
    }

    async fn shutdown(
        &self,
        request: Request<proto::ShutdownRequest>,
    ) -> Result<Response<proto::ShutdownResponse>, Status> {
        let ctx = self.context(&request)?;
        let reason = request.into_inner().reason;
        tracing::warn!(identity = %ctx.identity.name, reason = ?reason, "shutdown requested");
        self.audit_lifecycle(&ctx, "shutdown", reason);
        let cancelled = self.state.sessions.running_total() + self.state.jobs.running();
        self.state.request(Outcome::Shutdown);
        Ok(Response::new(proto::ShutdownResponse {
            boot_id: self.state.probe.boot_id().to_owned(),
            cancelled_commands: cancelled,
        }))
    }

    type EnrollStream = super::fleet_service::EnrollStream;

    async fn enroll(
        &self,
        request: Request<tonic::Streaming<proto::EnrollRequest>>,
    ) -> Result<Response<Self::EnrollStream>, Status> {
        self.ensure_running()?;
        super::fleet_service::exchange(&self.state, request, false)
    }

    type RenewCertificateStream = super::fleet_service::EnrollStream;

    async fn renew_certificate(
        &self,
        request: Request<tonic::Streaming<proto::EnrollRequest>>,
    ) -> Result<Response<Self::RenewCertificateStream>, Status> {
        self.ensure_running()?;
        identity_of(&request)?;
        super::fleet_service::exchange(&self.state, request, true)
    }

    async fn push_policy(
        &self,
        request: Request<proto::PushPolicyRequest>,
    ) -> Result<Response<proto::PushPolicyResponse>, Status> {
        identity_of(&request)?;
        super::fleet_service::push_policy(&self.state, request).await
    }

    async fn restart(
        &self,
        request: Request<proto::RestartRequest>,
    ) -> Result<Response<proto::RestartResponse>, Status> {
        let ctx = self.context(&request)?;
        let reason = request.into_inner().reason;
        tracing::warn!(identity = %ctx.identity.name, reason = ?reason, "restart requested");
        self.audit_lifecycle(&ctx, "restart", reason);
        let cancelled = self.state.sessions.running_total() + self.state.jobs.running();
        self.state.request(Outcome::Restart);
        Ok(Response::new(proto::RestartResponse {
            boot_id: self.state.probe.boot_id().to_owned(),
            cancelled_commands: cancelled,
        }))
    }
}

impl Service {
    /// Everything between a valid request and a running command: the
    /// caller's exec scope, planning (which applies it), the session's
    /// limits, spawning the plan.
    fn start_command(
        &self,
        ctx: &CallContext,
        request: &ExecRequest,
    ) -> Result<(exec::Spawned, session::CommandSlot), Error> {
        let scope = self
            .state
            .exec_policy
            .scope_for(&ctx.identity, !request.script.is_empty())
            .map_err(Error::PermissionDenied)?;
        let spec = exec::plan(request, &self.state.host, scope)?;
        let slot = self.state.sessions.start_command(&ctx.session)?;
        let spawned = exec::spawn(spec)?;
        Ok((spawned, slot))
    }

    fn audit_lifecycle(&self, ctx: &CallContext, event: &'static str, reason: String) {
        self.state.audit.record(&Record {
            event,
            identity: Some(ctx.identity.name.clone()),
            peer: ctx.conn.peer.map(|p| p.to_string()),
            session: Some(ctx.session.id.clone()),
            reason: Some(reason),
            ..Record::default()
        });
    }
}

/// Validates the wire request and turns it into the domain request.
fn exec_request(request: proto::ExecuteRequest) -> Result<ExecRequest, Error> {
    let shell = proto::Shell::try_from(request.shell)
        .map_err(|_| Error::InvalidArgument(format!("unknown shell value {}", request.shell)))?;
    let required_os = match proto::OsFamily::try_from(request.required_os) {
        Ok(proto::OsFamily::Unspecified) => None,
        Ok(_) => convert::os_family(request.required_os),
        Err(_) => {
            return Err(Error::InvalidArgument(format!(
                "unknown required_os value {}",
                request.required_os
            )));
        }
    };
    if request.command.trim().is_empty() && request.argv.is_empty() && request.script.is_empty() {
        return Err(Error::Exec(exec::ExecError::EmptyCommand));
    }
    let mut environment: Vec<(String, String)> = request.environment.into_iter().collect();
    // A map has no order; sort for reproducible spawning and logs.
    environment.sort();
    Ok(ExecRequest {
        command: request.command,
        shell: Shell::from(shell),
        argv: request.argv,
        required_os,
        working_directory: Some(request.working_directory).filter(|d| !d.is_empty()),
        environment,
        stdin: request.stdin,
        timeout: (request.timeout_ms > 0).then(|| Duration::from_millis(request.timeout_ms)),
        output_limit: (request.output_limit_bytes > 0).then_some(request.output_limit_bytes),
        detach: request.detach,
        script: request.script,
        interpreter: Some(request.interpreter).filter(|i| !i.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_without_an_identity_is_unauthenticated_never_admin() {
        let bare = Request::new(());
        let status = identity_of(&bare).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        let mut known = Request::new(());
        known.extensions_mut().insert(Identity {
            name: "token:v".into(),
            role: Role::Viewer,
        });
        assert_eq!(identity_of(&known).unwrap().role, Role::Viewer);
    }
}
