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
pub mod embedded;
pub mod enroll;
pub mod error;
pub mod exec;
pub mod files;
pub mod fleet_service;
pub mod init;
pub mod install;
pub mod jobs;
pub mod layer;
pub mod net;
pub mod policy;
pub mod processes;
pub mod security;
pub mod serve;
pub mod service;
pub mod session;
pub mod streams;
pub mod system;
pub mod tls;

use std::{
    io,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{net::TcpListener, sync::watch};

use net::{ListenAddr, Listener};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::Layer;

pub use crate::wire::DEFAULT_PORT;
pub use config::AgentConfig;
pub use embedded::{PrivateAgent, RunningAgent};

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
    /// A restart handed over a socket the new configuration does not name.
    #[error(
        "the socket handed over by the restart listens on {served}, but the configuration now \
         says listen = {configured:?}: refusing to serve it; stop the agent and start it again \
         to listen on the new address"
    )]
    InheritedMismatch {
        /// The address of the socket handed over.
        served: SocketAddr,
        /// The configured address.
        configured: String,
    },
    /// A setting is out of its range.
    #[error(transparent)]
    Setting(#[from] config::SettingError),
    /// A file root is unusable.
    #[error("file_roots: {0}")]
    FileRoots(String),
    /// The state directory is unusable.
    #[error("state_dir {path}: {source}")]
    StateDir {
        /// The directory.
        path: String,
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
    /// Long-lived streams (WatchMetrics), counted against their limits.
    streams: Arc<streams::Streams>,
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
    listen_address: ListenAddr,
    audit: Arc<audit::AuditLog>,
    exec_policy: Arc<policy::ExecPolicy>,
    /// The TLS the agent serves, if any (for the certificate it shows).
    tls: Option<Arc<tls::ServerTls>>,
    /// The agent's fleet identity, for an agent with a fleet directory.
    fleet: Option<Arc<enroll::FleetState>>,
    /// The process groups of the commands running now.
    own_groups: processes::OwnGroups,
    /// Detached commands and their logs.
    jobs: Arc<jobs::Jobs>,
    /// Where file transfers may go, per role.
    files: Arc<files::FileRules>,
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
    /// Where file transfers may go, per role.
    files: Arc<files::FileRules>,
    security: security::Security,
    listener: Arc<Listener>,
    local_addr: ListenAddr,
    /// Open connections, counted across generations (a connection of the
    /// previous generation still counts until it closes).
    connections: Arc<net::ConnLimits>,
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
        let listener = TcpListener::from_std(listener).map_err(|source| StartError::Bind {
            addr: config.listen.clone(),
            source,
        })?;
        Self::on(config, Listener::Tcp(listener), security)
    }

    /// An agent on any listener, with security settings already loaded.
    /// Must run inside a tokio runtime.
    pub fn on(
        config: AgentConfig,
        listener: Listener,
        security: security::Security,
    ) -> Result<Self, StartError> {
        config.check()?;
        if let Some(state) = &config.state_dir {
            jobs::space::check_state_dir(state).map_err(|source| StartError::StateDir {
                path: state.display().to_string(),
                source,
            })?;
        }
        let files = Arc::new(
            files::FileRules::new(
                &config.file_roots,
                &config.allow_file_writes,
                config.max_file_bytes,
            )
            .map_err(StartError::FileRoots)?,
        );
        let local_addr = listener.address().map_err(|source| StartError::Bind {
            addr: config.listen.clone(),
            source,
        })?;
        let connections =
            net::ConnLimits::new(config.max_connections, config.max_connections_per_ip);
        Ok(Self {
            config,
            files,
            security,
            listener: Arc::new(listener),
            local_addr,
            connections,
        })
    }

    /// The address actually bound (the real port when 0 was asked).
    pub fn local_addr(&self) -> &ListenAddr {
        &self.local_addr
    }

    /// The listening TCP socket, for a restart through `exec`; none for an
    /// agent on a Unix socket.
    pub fn tcp_listener(&self) -> Option<&TcpListener> {
        match &*self.listener {
            Listener::Tcp(listener) => Some(listener),
            Listener::Unix(..) => None,
        }
    }

    /// Serves one generation until Shutdown, Restart or `stop`.
    pub async fn serve_generation(&self, stop: &CancellationToken) -> Result<Outcome, StartError> {
        let config = &self.config;
        let boot_id = uuid::Uuid::new_v4().to_string();
        let sessions = Arc::new(session::Sessions::new(session::SessionLimits {
            max_sessions: config.max_sessions,
            admin_reserved_sessions: config.admin_reserved_sessions,
            max_sessions_per_identity: config.max_sessions_per_identity,
            max_sessions_per_connection: config.max_sessions_per_connection,
            max_commands_per_session: config.max_commands_per_session,
            max_commands_per_identity: config.max_commands_per_identity,
            max_commands_total: config.max_commands_total,
            admin_reserved_commands: config.admin_reserved_commands,
        }));
        let (lifecycle, mut requested) = watch::channel(None);
        let state = Arc::new(AgentState {
            sessions: sessions.clone(),
            streams: streams::Streams::new(
                config.max_streams_per_identity,
                config.max_streams_total,
            ),
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
            listen_address: self.local_addr.clone(),
            audit: self.security.audit.clone(),
            exec_policy: self.security.exec_policy.clone(),
            tls: self.security.tls.clone(),
            fleet: self.security.fleet.clone(),
            own_groups: processes::OwnGroups::default(),
            jobs: Arc::new(jobs::Jobs::new(
                jobs::JobLimits {
                    running: config.max_jobs,
                    admin_reserved: config.admin_reserved_jobs,
                    per_identity: config.max_jobs_per_identity,
                    finished: config.max_finished_jobs,
                    finished_per_identity: config.max_finished_jobs_per_identity,
                    retention: Duration::from_secs(config.job_retention_secs),
                    log: jobs::LogLimits {
                        memory: usize::try_from(config.job_memory_bytes).unwrap_or(usize::MAX),
                        retained: config.job_log_bytes,
                    },
                },
                jobs::LogSpace::new(
                    config.state_dir.clone(),
                    usize::try_from(config.jobs_memory_bytes).unwrap_or(usize::MAX),
                    config.jobs_spill_bytes,
                ),
            )),
            files: self.files.clone(),
            started: Instant::now(),
            lifecycle,
        });

        // One task forgets finished jobs as their retention passes.
        state
            .tracker
            .spawn(state.jobs.clone().reap(state.agent_token.clone()));
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

        let mut routes = tonic::service::Routes::builder();
        routes
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(agent_service);
        let service =
            layer::GateLayer::new(self.security.gate.clone()).layer(routes.routes().prepare());
        let http2 = serve::Http2Settings {
            keepalive_interval: Duration::from_millis(config.keepalive_interval_ms),
            keepalive_timeout: Duration::from_millis(config.keepalive_timeout_ms),
            max_concurrent_streams: config.max_concurrent_streams_per_connection,
        };
        let stopping = CancellationToken::new();
        let server = serve::serve(
            service,
            net::incoming(
                self.listener.clone(),
                sessions,
                self.connections.clone(),
                self.security.tls.clone(),
            ),
            &http2,
            stopping.clone(),
        );
        tokio::pin!(server);
        tracing::info!(address = %self.local_addr, boot_id = %boot_id, "agent serving");

        let outcome = tokio::select! {
            // The incoming stream never ends on its own (accept errors are
            // retried there): if it did, the agent could no longer be
            // reached, and exits with an error so that its supervisor
            // restarts it.
            () = &mut server => {
                return Err(StartError::Serve("the agent stopped accepting connections".into()));
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

/// Resolves and binds the configured address (refusing exposure the
/// security settings do not cover), or adopts the socket a restarting agent
/// handed over. Needs no runtime.
///
/// The exposure check runs on the socket actually bound, as the kernel
/// reports it: an adopted socket keeps the address of the configuration it
/// was bound under, which may not be the one read now.
pub fn bind_listener(config: &AgentConfig) -> Result<std::net::TcpListener, StartError> {
    let addr = resolve(&config.listen)?;
    security::check_exposure(addr, config)?;
    let bind_error = |source| StartError::Bind {
        addr: config.listen.clone(),
        source,
    };
    let (listener, inherited) = net::bind(addr).map_err(bind_error)?;
    let served = listener.local_addr().map_err(bind_error)?;
    if inherited && (served.ip() != addr.ip() || (addr.port() != 0 && served.port() != addr.port()))
    {
        return Err(StartError::InheritedMismatch {
            served,
            configured: config.listen.clone(),
        });
    }
    security::check_exposure(served, config)?;
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
