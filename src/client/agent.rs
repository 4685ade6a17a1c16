//! A typed client for one agent: the generated client behind a session id,
//! returning domain types and [`Error`] instead of proto types.

use std::{pin::Pin, sync::Arc, time::Duration};

use futures::{Stream, StreamExt};
use tonic::{
    Request, Status, metadata::MetadataValue, service::interceptor::InterceptedService,
    transport::Channel,
};

use super::{Address, ConnectionSettings, Error, Secret, connect};
use crate::{
    command::{Event, ExecRequest},
    proto::{self, remote_agent_client::RemoteAgentClient},
    types::{ConnectionInfo, JobInfo, MetricsSample, ProcessInfo, ProcessSignal, SystemInfo},
    wire::SESSION_HEADER,
};

/// Adds the session header and the bearer token to every call.
#[derive(Clone)]
pub struct CallMetadata {
    session: MetadataValue<tonic::metadata::Ascii>,
    authorization: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl std::fmt::Debug for CallMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallMetadata")
            .field("session", &self.session)
            .field("authorization", &self.authorization.as_ref().map(|_| "***"))
            .finish()
    }
}

impl tonic::service::Interceptor for CallMetadata {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let metadata = request.metadata_mut();
        metadata.insert(SESSION_HEADER, self.session.clone());
        if let Some(authorization) = &self.authorization {
            metadata.insert("authorization", authorization.clone());
        }
        Ok(request)
    }
}

type Inner = RemoteAgentClient<InterceptedService<Channel, CallMetadata>>;

/// A stream of events of one running command.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Event, Error>> + Send>>;
/// A stream of metric samples.
pub type MetricsStream = Pin<Box<dyn Stream<Item = Result<MetricsSample, Error>> + Send>>;

/// A connection to one agent, in one session.
#[derive(Debug, Clone)]
pub struct AgentClient {
    inner: Inner,
    session_id: String,
    /// The agent's address, for error messages.
    address: Arc<str>,
    tls: bool,
    /// Whatever must live as long as this client and its clones: the
    /// fleet's connection lease when connections are bounded (see
    /// `fleet::connections`).
    hold: Option<connect::Hold>,
}

impl AgentClient {
    /// Connects to the agent at `url` (e.g. `http://127.0.0.1:7421`), in
    /// plaintext and without credentials, with a new random session id.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let channel = connect::endpoint(url, connect::Keepalive::DEFAULT)?
            .connect()
            .await
            .map_err(|e| Error::connect(url, &e))?;
        Ok(
            Self::with_channel(channel, uuid::Uuid::new_v4().to_string(), None)?
                .described_as(url.trim_start_matches("http://"), false),
        )
    }

    /// Connects to the agent at `address` with these settings (TLS, token),
    /// with a new random session id.
    pub async fn connect_with(
        address: &Address,
        settings: &ConnectionSettings,
    ) -> Result<Self, Error> {
        let channel = connect::channel(address, settings, false).await?;
        Ok(Self::with_channel(
            channel,
            uuid::Uuid::new_v4().to_string(),
            settings.token.as_ref(),
        )?
        .described_as(&address.to_string(), settings.uses_tls()))
    }

    /// Names the agent in error messages, and says whether the channel
    /// uses TLS (for the hint given when a plaintext connection breaks).
    pub fn described_as(mut self, address: &str, tls: bool) -> Self {
        self.address = Arc::from(address);
        self.tls = tls;
        self
    }

    /// The agent's address as error messages name it.
    /// The generated client, for the fleet exchanges of `client::enroll`.
    pub(crate) fn raw(&self) -> Inner {
        self.inner.clone()
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    fn fail(&self, status: Status) -> Error {
        Error::from_status(status, &self.address, self.tls)
    }

    /// A client over an existing channel, in the session `session_id`,
    /// sending `token` as a bearer token when given.
    pub fn with_channel(
        channel: Channel,
        session_id: String,
        token: Option<&Secret>,
    ) -> Result<Self, Error> {
        let bad = |what: &str| Error::InvalidAddress {
            address: what.to_owned(),
            reason: "must be printable ASCII".into(),
        };
        let session =
            MetadataValue::try_from(session_id.as_str()).map_err(|_| bad("session id"))?;
        let authorization = token
            .map(|t| MetadataValue::try_from(format!("Bearer {}", t.expose())))
            .transpose()
            .map_err(|_| bad("the token"))?;
        let inner = RemoteAgentClient::with_interceptor(
            channel,
            CallMetadata {
                session,
                authorization,
            },
        )
        .max_decoding_message_size(64 << 20);
        Ok(Self {
            inner,
            session_id,
            address: Arc::from("the agent"),
            tls: false,
            hold: None,
        })
    }

    /// This client, keeping `hold` alive as long as it or a clone lives.
    pub(crate) fn holding(mut self, hold: connect::Hold) -> Self {
        self.hold = Some(hold);
        self
    }

    /// The session id this client sends.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The host's description.
    pub async fn system_info(&self) -> Result<SystemInfo, Error> {
        let response = self
            .inner
            .clone()
            .get_system_info(proto::GetSystemInfoRequest {})
            .await
            .map_err(|s| self.fail(s))?;
        Ok(response.into_inner().into())
    }

    /// Starts a command; its events arrive on the returned stream. Dropping
    /// the stream cancels the command on the agent.
    pub async fn execute(&self, request: ExecRequest) -> Result<EventStream, Error> {
        let stream = self
            .inner
            .clone()
            .execute(proto::ExecuteRequest::from(request))
            .await
            .map_err(|s| self.fail(s))?
            .into_inner();
        Ok(self.events(stream))
    }

    /// An Execute or AttachJob stream as domain events.
    fn events(&self, stream: tonic::Streaming<proto::ExecuteResponse>) -> EventStream {
        let (address, tls, hold) = (self.address.clone(), self.tls, self.hold.clone());
        Box::pin(stream.map(move |item| {
            // The connection's lease lives as long as the stream using it.
            let _ = &hold;
            let response = item.map_err(|s| Error::from_status(s, &address, tls))?;
            Event::try_from(response).map_err(|e| Error::Protocol(e.to_string()))
        }))
    }

    /// Runs a command to its end and collects everything it wrote.
    pub async fn run(&self, request: ExecRequest) -> Result<Collected, Error> {
        let mut events = self.execute(request).await?;
        let mut collected = Collected::default();
        while let Some(event) = events.next().await {
            match event? {
                Event::Started { pid, .. } => collected.pid = Some(pid),
                Event::Output { stream, data } => match stream {
                    crate::command::OutputStream::Stdout => {
                        collected.stdout.extend_from_slice(&data)
                    }
                    crate::command::OutputStream::Stderr => {
                        collected.stderr.extend_from_slice(&data)
                    }
                },
                Event::Gap { length, .. } => {
                    collected.dropped = collected.dropped.saturating_add(length)
                }
                Event::Exited(exit) => {
                    collected.exit = Some(exit);
                }
            }
        }
        if collected.exit.is_none() {
            return Err(Error::Protocol(
                "the command's stream ended without an exit event".into(),
            ));
        }
        Ok(collected)
    }

    /// Streams CPU and memory samples every `interval`.
    pub async fn watch_metrics(
        &self,
        interval: Duration,
        per_core: bool,
    ) -> Result<MetricsStream, Error> {
        let stream = self
            .inner
            .clone()
            .watch_metrics(proto::WatchMetricsRequest {
                interval_ms: u32::try_from(interval.as_millis()).unwrap_or(u32::MAX),
                per_core,
            })
            .await
            .map_err(|s| self.fail(s))?
            .into_inner();
        let (address, tls, hold) = (self.address.clone(), self.tls, self.hold.clone());
        Ok(Box::pin(stream.map(move |item| {
            let _ = &hold;
            item.map(Into::into)
                .map_err(|s| Error::from_status(s, &address, tls))
        })))
    }

    /// Attaches to a job: its output from `offset`, then live, then its
    /// exit. Dropping the stream detaches; the job runs on.
    pub async fn attach_job(&self, job_id: &str, offset: u64) -> Result<EventStream, Error> {
        let stream = self
            .inner
            .clone()
            .attach_job(proto::AttachJobRequest {
                job_id: job_id.to_owned(),
                offset,
            })
            .await
            .map_err(|s| self.fail(s))?
            .into_inner();
        Ok(self.events(stream))
    }

    /// The jobs this identity may see on the agent, oldest first.
    pub async fn list_jobs(&self) -> Result<Vec<JobInfo>, Error> {
        let response = self
            .inner
            .clone()
            .list_jobs(proto::ListJobsRequest {})
            .await
            .map_err(|s| self.fail(s))?;
        Ok(response
            .into_inner()
            .jobs
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// One job.
    pub async fn get_job(&self, job_id: &str) -> Result<JobInfo, Error> {
        let response = self
            .inner
            .clone()
            .get_job(proto::GetJobRequest {
                job_id: job_id.to_owned(),
            })
            .await
            .map_err(|s| self.fail(s))?;
        job_of(response.into_inner().job)
    }

    /// Cancels a job; returns it as the agent left it (ended, normally).
    pub async fn cancel_job(&self, job_id: &str) -> Result<JobInfo, Error> {
        let response = self
            .inner
            .clone()
            .cancel_job(proto::CancelJobRequest {
                job_id: job_id.to_owned(),
            })
            .await
            .map_err(|s| self.fail(s))?;
        job_of(response.into_inner().job)
    }

    /// Uploads a file: sends `header`, learns from the agent where the
    /// content resumes (0, or what an interrupted upload of the same
    /// content kept), which `accepted` receives, then sends `content`'s
    /// chunks (from that offset: the caller skips what the agent has) and
    /// returns what the agent says once the file is in place.
    pub async fn put_file(
        &self,
        header: crate::types::PutHeader,
        accepted: tokio::sync::oneshot::Sender<u64>,
        content: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    ) -> Result<crate::types::PutDone, Error> {
        use proto::put_file_request::Step;
        let first = proto::PutFileRequest {
            step: Some(Step::Header(proto::PutFileHeader {
                path: header.path,
                mode: header.mode,
                size: header.size,
                sha256: header.sha256.to_vec(),
                replace: header.replace,
            })),
        };
        let chunks = tokio_stream::wrappers::ReceiverStream::new(content).map(|chunk| {
            proto::PutFileRequest {
                step: Some(Step::Chunk(chunk)),
            }
        });
        let outbound = futures::stream::once(async { first }).chain(chunks);
        let mut answers = self
            .inner
            .clone()
            .put_file(outbound)
            .await
            .map_err(|s| self.fail(s))?
            .into_inner();
        let mut accepted = Some(accepted);
        while let Some(answer) = answers.message().await.map_err(|s| self.fail(s))? {
            match answer.step {
                Some(proto::put_file_response::Step::Accepted(a)) => {
                    if let Some(tell) = accepted.take() {
                        let _ = tell.send(a.offset);
                    }
                }
                Some(proto::put_file_response::Step::Done(done)) => {
                    return Ok(crate::types::PutDone {
                        path: done.path,
                        size: done.size,
                        sha256: hex::encode(done.sha256),
                        replaced: done.replaced,
                        unchanged: done.unchanged,
                    });
                }
                None => {}
            }
        }
        Err(Error::Protocol(
            "the upload ended without the agent saying it landed".into(),
        ))
    }

    /// Creates a directory with `mode`; false when it was there already.
    pub async fn make_directory(&self, path: &str, mode: u32) -> Result<bool, Error> {
        let response = self
            .inner
            .clone()
            .make_directory(proto::MakeDirectoryRequest {
                path: path.to_owned(),
                mode,
            })
            .await
            .map_err(|s| self.fail(s))?;
        Ok(response.into_inner().created)
    }

    /// Downloads a file from `offset`: its size and mode first, then its
    /// chunks, then the SHA-256 of the whole file.
    pub async fn get_file(
        &self,
        path: &str,
        offset: u64,
    ) -> Result<Pin<Box<dyn Stream<Item = Result<crate::types::GetEvent, Error>> + Send>>, Error>
    {
        let stream = self
            .inner
            .clone()
            .get_file(proto::GetFileRequest {
                path: path.to_owned(),
                offset,
            })
            .await
            .map_err(|s| self.fail(s))?
            .into_inner();
        let (address, tls, hold) = (self.address.clone(), self.tls, self.hold.clone());
        Ok(Box::pin(stream.map(move |item| {
            let _ = &hold;
            use crate::types::GetEvent;
            use proto::get_file_response::Step;
            let response = item.map_err(|s| Error::from_status(s, &address, tls))?;
            match response.step {
                Some(Step::Info(info)) => Ok(GetEvent::Info {
                    size: info.size,
                    mode: info.mode,
                }),
                Some(Step::Chunk(data)) => Ok(GetEvent::Chunk(data)),
                Some(Step::Done(done)) => Ok(GetEvent::Done {
                    sha256: hex::encode(done.sha256),
                }),
                None => Err(Error::Protocol("an empty download message".into())),
            }
        })))
    }

    /// The process list, filtered by name when `filter` is not empty.
    pub async fn list_processes(&self, filter: &str) -> Result<Vec<ProcessInfo>, Error> {
        let response = self
            .inner
            .clone()
            .list_processes(proto::ListProcessesRequest {
                name_filter: filter.to_owned(),
            })
            .await
            .map_err(|s| self.fail(s))?;
        Ok(response
            .into_inner()
            .processes
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Sends a signal to one process.
    pub async fn signal_process(&self, pid: i32, signal: ProcessSignal) -> Result<(), Error> {
        self.inner
            .clone()
            .signal_process(proto::SignalProcessRequest {
                pid,
                signal: proto::Signal::from(signal).into(),
            })
            .await
            .map_err(|s| self.fail(s))?;
        Ok(())
    }

    /// What the agent sees of this connection.
    pub async fn connection_info(&self) -> Result<ConnectionInfo, Error> {
        let response = self
            .inner
            .clone()
            .get_connection_info(proto::GetConnectionInfoRequest {})
            .await
            .map_err(|s| self.fail(s))?;
        Ok(response.into_inner().into())
    }

    /// Ends this session on the agent; returns how many commands it cancelled.
    pub async fn disconnect(&self) -> Result<u32, Error> {
        let response = self
            .inner
            .clone()
            .disconnect(proto::DisconnectRequest {})
            .await
            .map_err(|s| self.fail(s))?;
        Ok(response.into_inner().cancelled_commands)
    }

    /// Asks the agent to stop; returns the boot id of the stopping agent.
    pub async fn shutdown(&self, reason: &str) -> Result<String, Error> {
        let response = self
            .inner
            .clone()
            .shutdown(proto::ShutdownRequest {
                reason: reason.to_owned(),
            })
            .await
            .map_err(|s| self.fail(s))?;
        Ok(response.into_inner().boot_id)
    }

    /// Asks the agent to restart; returns the boot id of the restarting agent.
    pub async fn restart(&self, reason: &str) -> Result<String, Error> {
        let response = self
            .inner
            .clone()
            .restart(proto::RestartRequest {
                reason: reason.to_owned(),
            })
            .await
            .map_err(|s| self.fail(s))?;
        Ok(response.into_inner().boot_id)
    }
}

fn job_of(job: Option<proto::Job>) -> Result<JobInfo, Error> {
    job.map(Into::into)
        .ok_or_else(|| Error::Protocol("the agent's answer names no job".into()))
}

/// Everything a command wrote, and how it ended.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    /// Its pid.
    pub pid: Option<i32>,
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: Vec<u8>,
    /// How it ended.
    pub exit: Option<crate::command::Exit>,
    /// Output bytes a job's log had dropped before they could be read.
    pub dropped: u64,
}
