//! The agent's settings: a serde struct with a default for every field, so
//! a config file names only what it changes and command-line flags override
//! the file.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::{auth::Role, policy::AllowRule};

pub use crate::wire::SettingError;
use crate::wire::{DEFAULT_PORT, check_keepalive_ms};

/// The agent's default keepalive: a client that vanished (a partition, a
/// host that lost power, a frozen process) is noticed within 10 s and its
/// commands are ended, for the price of one small frame every 5 s on an
/// idle connection.
pub const DEFAULT_KEEPALIVE_INTERVAL_MS: u64 = 5_000;
/// See [`DEFAULT_KEEPALIVE_INTERVAL_MS`].
pub const DEFAULT_KEEPALIVE_TIMEOUT_MS: u64 = 5_000;

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
    /// Of `max_sessions`, how many only admins may open, so that an admin
    /// can always reach a busy agent to stop it.
    pub admin_reserved_sessions: usize,
    /// Most sessions one identity may hold at once.
    pub max_sessions_per_identity: usize,
    /// Most sessions one connection may carry at once.
    pub max_sessions_per_connection: usize,
    /// Most WatchMetrics streams one identity may have open.
    pub max_streams_per_identity: usize,
    /// Most WatchMetrics streams open in all.
    pub max_streams_total: usize,
    /// Most unauthenticated streams (health Watch, reflection) open in all.
    pub max_public_streams: usize,
    /// Most HTTP/2 streams (calls) open at once on one connection.
    pub max_concurrent_streams_per_connection: u32,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one IP address.
    pub max_connections_per_ip: usize,
    /// Most running commands in one session.
    pub max_commands_per_session: u32,
    /// Most running commands of one identity.
    pub max_commands_per_identity: u32,
    /// Most running commands in all.
    pub max_commands_total: u32,
    /// Of `max_commands_total`, how many only admins may start.
    pub admin_reserved_commands: u32,
    /// Most output bytes one command may send back (the default cap; a
    /// request may ask for less).
    pub max_output_bytes: u64,
    /// Largest request message accepted, in bytes (stdin included).
    pub max_request_bytes: usize,
    /// Time without a frame from the client after which the agent pings
    /// it, in ms (HTTP/2 PING). Clients ping while they have a call open,
    /// so on a busy connection the agent rarely needs to.
    pub keepalive_interval_ms: u64,
    /// Time a ping may go unanswered before the agent closes the
    /// connection (and ends its commands), in ms. A vanished client is thus
    /// noticed within `keepalive_interval_ms + keepalive_timeout_ms`.
    pub keepalive_timeout_ms: u64,
    /// The fleet directory: where an agent that joins a fleet keeps its
    /// own key, the certificate the fleet CA signed for it, the fleet CA,
    /// the revocation list and its pending join code. Until it is enrolled
    /// the agent serves nothing but enrollment. Excludes `tls_cert`,
    /// `tls_key` and `client_ca`, which it replaces.
    pub fleet_dir: Option<PathBuf>,
    /// The agent's TLS certificate chain (PEM). With `tls_key`, the agent
    /// serves TLS only.
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM).
    pub tls_key: Option<PathBuf>,
    /// CA certificate (PEM) that signs client certificates. When set, every
    /// client must present a certificate it signed (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// The access file: tokens (as hashes) and certificate subjects, each
    /// with a role. Without it, every caller is the anonymous admin, which
    /// the agent allows on loopback only.
    pub access_file: Option<PathBuf>,
    /// Where the audit log (JSON lines) is written; none when unset.
    pub audit_log: Option<PathBuf>,
    /// Allows plaintext on a non-loopback address. Anyone on the path can
    /// then read commands, output and tokens: for isolated test networks.
    pub insecure_plaintext: bool,
    /// Refuses every Execute: the agent only reports and signals.
    pub no_exec: bool,
    /// Per role, the command lines it may run (`*` and `?` wildcards that
    /// never match shell control characters), each a pattern or a table
    /// `{ command = "…", env = ["NAME"], stdin = true }`. Allow-listed
    /// commands run without a shell, with the program found on the agent's
    /// own PATH. A role without an entry may run anything its role allows.
    pub exec_allow: BTreeMap<Role, Vec<AllowRule>>,
    /// Lets identities whose Execute is restricted (`no_exec`, or an
    /// `exec_allow` entry for their role) signal any process the agent may
    /// signal. Without it they may signal only the agent's own commands.
    pub signal_any_process: bool,
    /// The agent's state directory: the spill files of detached jobs' logs
    /// go under `jobs/` there (0700; the directory must belong to the
    /// agent's user and be writable by nobody else). Without it, under a
    /// private directory in the system's temporary directory. Either way
    /// they are removed when the agent stops, as the jobs end with it.
    pub state_dir: Option<PathBuf>,
    /// Most detached jobs running at once.
    pub max_jobs: u32,
    /// Of `max_jobs`, how many only admins may start.
    pub admin_reserved_jobs: u32,
    /// Most detached jobs one identity may have running.
    pub max_jobs_per_identity: u32,
    /// Most finished jobs kept (oldest forgotten first).
    pub max_finished_jobs: usize,
    /// Most finished jobs kept of one identity (its oldest forgotten
    /// first), so that one identity cannot push out everyone's results.
    pub max_finished_jobs_per_identity: usize,
    /// How long a finished job (its exit and its log) is kept, in seconds.
    pub job_retention_secs: u64,
    /// Most bytes of output one job's log keeps (memory and spill file
    /// together); beyond it the oldest output is dropped, and reported as
    /// a gap to clients that replay it.
    pub job_log_bytes: u64,
    /// Most bytes of one job's log held in memory before it goes to its
    /// spill file.
    pub job_memory_bytes: u64,
    /// Most bytes of all jobs' logs held in memory.
    pub jobs_memory_bytes: u64,
    /// Most bytes all jobs' spill files hold together; when full, a job's
    /// log keeps only what is in memory.
    pub jobs_spill_bytes: u64,
    /// Per role, the directories PutFile and GetFile may use (a role
    /// without an entry may transfer nothing, the default): e.g.
    /// `file_roots = { operator = ["/srv/app"], admin = ["/"] }`.
    pub file_roots: BTreeMap<Role, Vec<PathBuf>>,
    /// Largest file one transfer may move.
    pub max_file_bytes: u64,
    /// Roles whose Execute is restricted (`no_exec`, or an `exec_allow`
    /// entry) that may upload files all the same: a file written as the
    /// agent's user can be run, so by default they may only download.
    pub allow_file_writes: Vec<Role>,
    /// Roles under an `exec_allow` list that may still run scripts
    /// (`vigie script`), which no allow-list can check.
    pub allow_scripts: Vec<Role>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            listen: format!("127.0.0.1:{DEFAULT_PORT}"),
            kill_grace_ms: 2_000,
            shutdown_grace_ms: 5_000,
            max_sessions: 256,
            admin_reserved_sessions: 16,
            max_sessions_per_identity: 64,
            max_sessions_per_connection: 32,
            max_streams_per_identity: 16,
            max_streams_total: 128,
            max_public_streams: 64,
            max_concurrent_streams_per_connection: 256,
            max_connections: 4096,
            max_connections_per_ip: 512,
            max_commands_per_session: 128,
            max_commands_per_identity: 256,
            max_commands_total: 512,
            admin_reserved_commands: 32,
            max_output_bytes: 4 << 30,
            max_request_bytes: 4 << 20,
            keepalive_interval_ms: DEFAULT_KEEPALIVE_INTERVAL_MS,
            keepalive_timeout_ms: DEFAULT_KEEPALIVE_TIMEOUT_MS,
            fleet_dir: None,
            tls_cert: None,
            tls_key: None,
            client_ca: None,
            access_file: None,
            audit_log: None,
            insecure_plaintext: false,
            no_exec: false,
            exec_allow: BTreeMap::new(),
            signal_any_process: false,
            state_dir: None,
            max_jobs: 64,
            admin_reserved_jobs: 8,
            max_jobs_per_identity: 16,
            max_finished_jobs: 256,
            max_finished_jobs_per_identity: 64,
            job_retention_secs: 24 * 3600,
            job_log_bytes: 64 << 20,
            job_memory_bytes: 1 << 20,
            jobs_memory_bytes: 32 << 20,
            jobs_spill_bytes: 4 << 30,
            file_roots: BTreeMap::new(),
            max_file_bytes: 16 << 30,
            allow_scripts: Vec::new(),
            allow_file_writes: Vec::new(),
        }
    }
}

impl AgentConfig {
    /// Checks the settings that have a range.
    pub fn check(&self) -> Result<(), SettingError> {
        check_keepalive_ms("keepalive_interval_ms", self.keepalive_interval_ms)?;
        check_keepalive_ms("keepalive_timeout_ms", self.keepalive_timeout_ms)?;
        // Ten years: beyond, a finished job's expiry could not be written.
        if self.job_retention_secs > 315_360_000 {
            return Err(SettingError {
                name: "job_retention_secs",
                value: self.job_retention_secs,
                min: 0,
                max: 315_360_000,
            });
        }
        // A tail must hold one chunk of output as the agent reads it.
        if self.job_memory_bytes < 64 << 10 || self.job_memory_bytes > self.job_log_bytes / 2 {
            return Err(SettingError {
                name: "job_memory_bytes",
                value: self.job_memory_bytes,
                min: 64 << 10,
                max: self.job_log_bytes / 2,
            });
        }
        Ok(())
    }

    /// The KILL grace as a duration.
    pub fn kill_grace(&self) -> Duration {
        Duration::from_millis(self.kill_grace_ms)
    }

    /// Makes relative file paths relative to `base` (the config file's
    /// directory), so a config works from any working directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        for path in [
            &mut self.fleet_dir,
            &mut self.tls_cert,
            &mut self.tls_key,
            &mut self.client_ca,
            &mut self.access_file,
            &mut self.audit_log,
            &mut self.state_dir,
        ]
        .into_iter()
        .flatten()
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    /// The shutdown grace as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_settings_out_of_range_are_refused_by_name() {
        let defaults = AgentConfig::default();
        assert_eq!(defaults.check(), Ok(()));
        assert_eq!(
            defaults.keepalive_interval_ms + defaults.keepalive_timeout_ms,
            10_000,
            "a vanished client is noticed within 10 s"
        );
        let fast = AgentConfig {
            keepalive_interval_ms: 100,
            ..AgentConfig::default()
        };
        let error = fast.check().expect_err("refused");
        assert_eq!(
            error.to_string(),
            "keepalive_interval_ms = 100 is out of range: use 500 to 3600000"
        );
        let slow = AgentConfig {
            keepalive_timeout_ms: 3_600_001,
            ..AgentConfig::default()
        };
        assert_eq!(
            slow.check().expect_err("refused").name,
            "keepalive_timeout_ms"
        );
    }
}
