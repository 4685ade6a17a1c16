//! Agents that run inside another program, on a thread and runtime of
//! their own: [`RunningAgent`] on a TCP socket (the tests, the benchmark
//! farm), and [`PrivateAgent`] on a Unix socket that only its owner can
//! reach, which the CLI and the desktop client start when no hosts file is
//! given. The private one has no TCP port at all, so while it runs no other
//! local user can borrow its rights.
//!
//! Dropping either stops the agent and waits until every command it ran is
//! terminated and reaped.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use tokio_util::sync::CancellationToken;

use super::{
    Agent, AgentConfig, StartError, bind_listener,
    net::{self, Listener},
    security,
};

/// The thread that serves an embedded agent, stopped and joined on drop.
#[derive(Debug)]
struct Served {
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    /// Serves on its own runtime the agent that `make` builds there.
    fn start(
        make: impl FnOnce() -> Result<Agent, StartError> + Send + 'static,
    ) -> Result<Self, StartError> {
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
                let served = runtime
                    .block_on(async { make()?.serve_restarting_in_process(&thread_stop).await });
                if let Err(e) = served {
                    tracing::error!(error = %e, "embedded agent failed");
                }
                // Leave the thread only when every task is gone, so that no
                // command outlives the agent.
                runtime.shutdown_timeout(Duration::from_secs(10));
            })
            .map_err(|e| StartError::Serve(e.to_string()))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    fn stop_and_join(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// An agent serving TCP on its own thread and runtime. Restart requests
/// restart it in place; Shutdown stops it.
#[derive(Debug)]
pub struct RunningAgent {
    addr: SocketAddr,
    served: Served,
}

impl RunningAgent {
    /// Binds and starts an agent with this configuration.
    pub fn start(config: AgentConfig) -> Result<Self, StartError> {
        // Everything that can be wrong with the settings is reported here,
        // to the caller, rather than logged by the agent's thread.
        let security = security::Security::load(&config)?;
        let listener = bind_listener(&config)?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen.clone(),
            source,
        })?;
        let served = Served::start(move || Agent::with_security(config, listener, security))?;
        Ok(Self { addr, served })
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
        self.served.is_finished()
    }

    /// Stops the agent and waits for it.
    pub fn stop(mut self) {
        self.served.stop_and_join();
    }
}

/// An agent on a Unix socket in a directory (mode 0700) that only the user
/// running it may enter; it also refuses connections from any other user.
/// It runs without access control (its owner is its only possible caller).
#[derive(Debug)]
pub struct PrivateAgent {
    path: PathBuf,
    // Declared before the directory, so that the agent stops before its
    // socket's directory is removed.
    served: Served,
    _dir: tempfile::TempDir,
}

impl PrivateAgent {
    /// Starts an agent with this configuration (its `listen` is ignored).
    pub fn start(config: AgentConfig) -> Result<Self, StartError> {
        let security = security::Security::load(&config)?;
        let (dir, listener) = net::bind_private().map_err(|source| StartError::Bind {
            addr: "a private Unix socket".into(),
            source,
        })?;
        let path = dir.path().join("agent.sock");
        let socket = path.clone();
        let served = Served::start(move || {
            let listener = tokio::net::UnixListener::from_std(listener).map_err(|source| {
                StartError::Bind {
                    addr: socket.display().to_string(),
                    source,
                }
            })?;
            Agent::on(config, Listener::Unix(listener, socket), security)
        })?;
        Ok(Self {
            path,
            served,
            _dir: dir,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True once the agent has stopped.
    pub fn is_finished(&self) -> bool {
        self.served.is_finished()
    }
}
