//! The agent: serves the `RemoteAgent` gRPC service, health checks and
//! reflection on one listening socket.
//!
//! The agent runs in *generations*. A generation has its own boot id,
//! sessions and root cancellation token; it ends on Shutdown, Restart, or an
//! outside stop (SIGINT/SIGTERM, a dropped [`RunningAgent`]). Ending a
//! generation cancels the root token (every command is terminated and
//! reaped), stops accepting, and gives in-flight calls a bounded grace. The
//! listening socket outlives generations: a restart in place serves the next
//! generation on the same socket (in-process), or hands the socket to a
//! fresh copy of the binary through `exec` (the `vigie-agent` binary), so
//! clients that connect during a restart wait in the backlog instead of
//! being refused.

pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod exec;
pub mod init;
pub mod layer;
pub mod net;
pub mod processes;
pub mod security;
pub mod service;
pub mod session;
pub mod system;

use std::{
    io,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{net::TcpListener, sync::watch};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::transport::Server;

pub use config::{AgentConfig, DEFAULT_PORT};

use crate::proto::{self, remote_agent_server::RemoteAgentServer};

/// How a generation of the agent ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stop for good (Shutdown, a signal, or an outside stop).
    Shutdown,
    /// Start again in place with a new boot id.
    Restart,
}

/// Why the agent cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address does not resolve.
    #[error("cannot resolve listen address {addr}: {source}")]
    Resolve {
        /// The address as given.
        addr: String,
        /// Why.
        source: io::Error,
    },
    /// The security settings are unusable or too weak for the address.
    #[error(transparent)]
    Security(#[from] security::SecurityError),
    /// The socket cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: io::Error,
    },
    /// The system cannot be read.
    #[error(transparent)]
    Probe(#[from] system::ProbeError),
    /// The server failed.
    #[error("the server failed: {0}")]
    Serve(String),
}

/// The state of one generation, shared by all its calls.
#[derive(Debug)]
pub struct AgentState {
    sessions: Arc<session::Sessions>,
    probe: Arc<system::SystemProbe>,
    /// Cancelled when this generation stops: every command and stream ends.
    agent_token: CancellationToken,
    /// Cancelled as soon as Shutdown or Restart is accepted, before the
    /// answer goes out, so that no new command or stream starts after it.
    closing: CancellationToken,
    /// Every command and stream task, so that stopping can wait for them.
    tracker: TaskTracker,
    host: exec::Host,
    tuning: exec::ExecTuning,
    hostname: String,
    listen_address: SocketAddr,
    audit: Arc<audit::AuditLog>,
    exec_policy: Arc<security::ExecPolicy>,
    started: Instant,
    lifecycle: watch::Sender<Option<Outcome>>,
}

impl AgentState {
    /// Asks the generation to end; the first request wins.
    fn request(&self, outcome: Outcome) {
        self.closing.cancel();
        self.lifecycle.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(outcome);
                true
            } else {
                false
            }
        });
    }
}

/// A bound agent, ready to serve.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    security: security::Security,
    listener: Arc<TcpListener>,
    local_addr: SocketAddr,
}

impl Agent {
    /// Resolves and binds the listen address (or adopts the socket a
    /// restarting agent handed over). Must run inside a tokio runtime.
    pub fn bind(config: AgentConfig) -> Result<Self, StartError> {
        let listener = bind_listener(&config)?;
        Self::from_listener(config, listener)
    }

    /// An agent on a socket bound by [`bind_listener`]. Must run inside a
    /// tokio runtime.
    pub fn from_listener(
        config: AgentConfig,
        listener: std::net::TcpListener,
    ) -> Result<Self, StartError> {
        let security = security::Security::load(&config)?;
        Self::with_security(config, listener, security)
    }

    /// Like [`Agent::from_listener`], with security settings already loaded.
    pub fn with_security(
        config: AgentConfig,
        listener: std::net::TcpListener,
        security: security::Security,
    ) -> Result<Self, StartError> {
        let bind_error = |source| StartError::Bind {
            addr: config.listen.clone(),
            source,
        };
        let listener = TcpListener::from_std(listener).map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        Ok(Self {
            config,
            security,
            listener: Arc::new(listener),
            local_addr,
        })
    }

    /// The address actually bound (the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The listening socket, for a restart through `exec`.
    pub fn listener(&self) -> &TcpListener {
        &self.listener
    }

    /// Serves one generation until Shutdown, Restart or `stop`.
    pub async fn serve_generation(&self, stop: &CancellationToken) -> Result<Outcome, StartError> {
        let config = &self.config;
        let boot_id = uuid::Uuid::new_v4().to_string();
        let sessions = Arc::new(session::Sessions::new(session::SessionLimits {
            max_sessions: config.max_sessions,
            max_commands_per_session: config.max_commands_per_session,
            max_commands_total: config.max_commands_total,
        }));
        let (lifecycle, mut requested) = watch::channel(None);
        let state = Arc::new(AgentState {
            sessions: sessions.clone(),
            probe: Arc::new(system::SystemProbe::new(boot_id.clone())?),
            agent_token: CancellationToken::new(),
            closing: CancellationToken::new(),
            tracker: TaskTracker::new(),
            host: exec::Host {
                os: crate::command::OsFamily::current(),
                description: system::host_description(),
                output_cap: config.max_output_bytes,
            },
            tuning: exec::ExecTuning {
                kill_grace: config.kill_grace(),
                ..exec::ExecTuning::default()
            },
            hostname: system::hostname(),
            listen_address: self.local_addr,
            audit: self.security.audit.clone(),
            exec_policy: self.security.exec_policy.clone(),
            started: Instant::now(),
            lifecycle,
        });

        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<RemoteAgentServer<service::Service>>()
            .await;
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| StartError::Serve(e.to_string()))?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(|e| StartError::Serve(e.to_string()))?;
        let agent_service = RemoteAgentServer::new(service::Service::new(state.clone()))
            .max_decoding_message_size(config.max_request_bytes);

        let stopping = CancellationToken::new();
        let mut builder = Server::builder();
        if let Some(tls) = &self.security.tls {
            builder = builder
                .tls_config(tls.clone())
                .map_err(|e| StartError::Serve(format!("TLS: {e}")))?;
        }
        let server = builder
            .layer(layer::GateLayer::new(self.security.gate.clone()))
            .http2_keepalive_interval(Some(Duration::from_millis(config.keepalive_interval_ms)))
            .http2_keepalive_timeout(Some(Duration::from_millis(config.keepalive_timeout_ms)))
            .initial_stream_window_size(Some(STREAM_WINDOW))
            .initial_connection_window_size(Some(CONNECTION_WINDOW))
            .max_frame_size(Some(MAX_FRAME))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(agent_service)
            .serve_with_incoming_shutdown(
                net::incoming(self.listener.clone(), sessions),
                stopping.clone().cancelled_owned(),
            );
        tokio::pin!(server);
        tracing::info!(address = %self.local_addr, boot_id = %boot_id, "agent serving");

        let outcome = tokio::select! {
            result = &mut server => {
                // The server only returns on its own if accepting failed.
                return result
                    .map(|()| Outcome::Shutdown)
                    .map_err(|e| StartError::Serve(e.to_string()));
            }
            outcome = requested.wait_for(Option::is_some) => {
                outcome.ok().and_then(|o| *o).unwrap_or(Outcome::Shutdown)
            }
            () = stop.cancelled() => Outcome::Shutdown,
        };

        tracing::info!(?outcome, "agent stopping");
        health
            .set_not_serving::<RemoteAgentServer<service::Service>>()
            .await;
        // Commands first: their streams end with an `exited` event, which
        // lets the graceful shutdown below finish quickly.
        state.closing.cancel();
        state.agent_token.cancel();
        stopping.cancel();
        state.tracker.close();
        let command_grace = config.kill_grace() * 3 + Duration::from_secs(1);
        if tokio::time::timeout(command_grace, state.tracker.wait())
            .await
            .is_err()
        {
            tracing::error!("some commands did not end in time");
        }
        if tokio::time::timeout(config.shutdown_grace(), &mut server)
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within the grace; dropping them");
        }
        Ok(outcome)
    }

    /// Serves generations until Shutdown or `stop`, restarting in place
    /// (in this process, on the same socket) on Restart.
    pub async fn serve_restarting_in_process(
        &self,
        stop: &CancellationToken,
    ) -> Result<(), StartError> {
        loop {
            match self.serve_generation(stop).await? {
                Outcome::Restart if !stop.is_cancelled() => {
                    tracing::info!("restarting in place");
                }
                _ => return Ok(()),
            }
        }
    }
}

/// HTTP/2 flow-control windows and frame size. Larger than the defaults
/// (64 KiB windows, 16 KiB frames) so that bulk output is not throttled by
/// window updates on fast links; the client uses the same values.
pub const STREAM_WINDOW: u32 = 4 << 20;
/// See [`STREAM_WINDOW`].
pub const CONNECTION_WINDOW: u32 = 8 << 20;
/// See [`STREAM_WINDOW`].
pub const MAX_FRAME: u32 = 1 << 20;

/// Resolves and binds the configured address (refusing exposure the
/// security settings do not cover), or adopts the socket a restarting agent
/// handed over. Needs no runtime.
pub fn bind_listener(config: &AgentConfig) -> Result<std::net::TcpListener, StartError> {
    let addr = resolve(&config.listen)?;
    security::check_exposure(addr, config)?;
    let bind_error = |source| StartError::Bind {
        addr: config.listen.clone(),
        source,
    };
    let listener = net::bind(addr).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    Ok(listener)
}

/// Resolves `HOST:PORT` to one socket address.
pub fn resolve(listen: &str) -> Result<SocketAddr, StartError> {
    use std::net::ToSocketAddrs;
    let resolve_error = |source| StartError::Resolve {
        addr: listen.to_owned(),
        source,
    };
    let addrs: Vec<SocketAddr> = listen.to_socket_addrs().map_err(resolve_error)?.collect();
    // A name that resolves to several addresses (localhost → ::1 and
    // 127.0.0.1) binds to the IPv4 one, which every client can reach.
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| resolve_error(io::Error::new(io::ErrorKind::NotFound, "no address found")))
}

/// An agent serving on its own thread and runtime, for tests and for the
/// desktop client's embedded agent. Dropping it stops the agent and waits
/// until every command it ran is terminated and reaped.
#[derive(Debug)]
pub struct RunningAgent {
    addr: SocketAddr,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningAgent {
    /// Binds and starts an agent with this configuration. Restart requests
    /// restart it in place; Shutdown stops it.
    pub fn start(config: AgentConfig) -> Result<Self, StartError> {
        // Everything that can be wrong with the settings is reported here,
        // to the caller, rather than logged by the agent's thread.
        let security = security::Security::load(&config)?;
        let listener = bind_listener(&config)?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen.clone(),
            source,
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("vigie-agent")
            .enable_all()
            .build()
            .map_err(|e| StartError::Serve(e.to_string()))?;
        let stop = CancellationToken::new();
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("vigie-agent-main".into())
            .spawn(move || {
                let served = runtime.block_on(async {
                    Agent::with_security(config, listener, security)?
                        .serve_restarting_in_process(&thread_stop)
                        .await
                });
                if let Err(e) = served {
                    tracing::error!(error = %e, "embedded agent failed");
                }
                // Leave the thread only when every task is gone, so that no
                // command outlives the agent.
                runtime.shutdown_timeout(Duration::from_secs(10));
            })
            .map_err(|e| StartError::Serve(e.to_string()))?;
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address the agent listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address as a URL for a client channel, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// True once the agent has stopped (after a Shutdown request, say).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stops the agent and waits for it.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
