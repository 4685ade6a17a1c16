//! The agent's settings: a serde struct with a default for every field, so
//! a config file names only what it changes and command-line flags override
//! the file.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The port the agent listens on when none is given.
pub const DEFAULT_PORT: u16 = 7421;

/// Everything the agent can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Address to listen on, `HOST:PORT`; port 0 picks a free port.
    pub listen: String,
    /// Time between TERM and KILL when the agent ends a command, in ms.
    pub kill_grace_ms: u64,
    /// Time in-flight calls get to finish when the agent stops, in ms.
    pub shutdown_grace_ms: u64,
    /// Most sessions at once.
    pub max_sessions: usize,
    /// Most running commands in one session.
    pub max_commands_per_session: u32,
    /// Most running commands in all.
    pub max_commands_total: u32,
    /// Most output bytes one command may send back (the default cap; a
    /// request may ask for less).
    pub max_output_bytes: u64,
    /// Largest request message accepted, in bytes (stdin included).
    pub max_request_bytes: usize,
    /// Interval of HTTP/2 keepalive pings on idle connections, in ms.
    pub keepalive_interval_ms: u64,
    /// Time to wait for a keepalive answer before closing, in ms.
    pub keepalive_timeout_ms: u64,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            listen: format!("127.0.0.1:{DEFAULT_PORT}"),
            kill_grace_ms: 2_000,
            shutdown_grace_ms: 5_000,
            max_sessions: 256,
            max_commands_per_session: 128,
            max_commands_total: 512,
            max_output_bytes: 4 << 30,
            max_request_bytes: 4 << 20,
            keepalive_interval_ms: 30_000,
            keepalive_timeout_ms: 10_000,
        }
    }
}

impl AgentConfig {
    /// The KILL grace as a duration.
    pub fn kill_grace(&self) -> Duration {
        Duration::from_millis(self.kill_grace_ms)
    }

    /// The shutdown grace as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}
