//! Domain types shared by the agent and the client library: what a host
//! is and does, independent of the wire format. `crate::convert` maps them
//! to and from the generated proto types; the CLI prints them (also as
//! JSON, hence serde) and the GUI shows them.

use std::{fmt, net::IpAddr};

use serde::{Deserialize, Serialize};

use crate::command::OsFamily;

/// A host's description (the answer to GetSystemInfo).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemInfo {
    /// OS family, when the agent knows it.
    pub os_family: Option<OsFamily>,
    /// OS name, e.g. "Debian GNU/Linux".
    pub os_name: String,
    /// OS version, e.g. "12".
    pub os_version: String,
    /// OS name with version.
    pub os_long_name: String,
    /// Kernel version.
    pub kernel_version: String,
    /// CPU architecture.
    pub architecture: String,
    /// Host name.
    pub hostname: String,
    /// Network interfaces.
    pub interfaces: Vec<NetworkInterface>,
    /// CPU model.
    pub cpu_model: String,
    /// Logical CPUs.
    pub cpu_count: u32,
    /// Physical cores, 0 when unknown.
    pub physical_core_count: u32,
    /// Global CPU usage in percent.
    pub cpu_usage_percent: f32,
    /// CPU usage of each logical CPU in percent.
    pub cpu_usage_per_core: Vec<f32>,
    /// Memory and swap.
    pub memory: Memory,
    /// Mounted file systems.
    pub disks: Vec<Disk>,
    /// Seconds since boot.
    pub uptime_seconds: u64,
    /// Load averages, where the OS has them.
    pub load_average: Option<LoadAverage>,
    /// The agent's version.
    pub agent_version: String,
    /// The agent's boot id.
    pub boot_id: String,
    /// Time of the sample, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

impl SystemInfo {
    /// Every non-loopback address, in interface order.
    pub fn addresses(&self) -> impl Iterator<Item = &IpAddr> {
        self.interfaces
            .iter()
            .flat_map(|i| i.addresses.iter())
            .filter(|a| !a.address.is_loopback())
            .map(|a| &a.address)
    }
}

/// One network interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkInterface {
    /// Interface name.
    pub name: String,
    /// MAC address, empty when none.
    pub mac_address: String,
    /// Addresses with prefix lengths.
    pub addresses: Vec<InterfaceAddress>,
}

/// One address of an interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterfaceAddress {
    /// The address.
    pub address: IpAddr,
    /// Prefix length.
    pub prefix_length: u8,
}

/// Memory and swap in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Memory {
    /// Physical memory.
    pub total_bytes: u64,
    /// In use.
    pub used_bytes: u64,
    /// Available without swapping.
    pub available_bytes: u64,
    /// Not used at all.
    pub free_bytes: u64,
    /// Swap size.
    pub swap_total_bytes: u64,
    /// Swap in use.
    pub swap_used_bytes: u64,
}

/// One mounted file system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    /// Mount point.
    pub mount_point: String,
    /// Device name.
    pub device: String,
    /// File-system type.
    pub file_system: String,
    /// Size.
    pub total_bytes: u64,
    /// Available space.
    pub available_bytes: u64,
    /// Mounted read-only.
    pub read_only: bool,
    /// Removable medium.
    pub removable: bool,
}

/// Load averages.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoadAverage {
    /// One minute.
    pub one: f64,
    /// Five minutes.
    pub five: f64,
    /// Fifteen minutes.
    pub fifteen: f64,
}

/// How full one file system is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskUsage {
    /// Where it is mounted.
    pub mount_point: String,
    /// Size.
    pub total_bytes: u64,
    /// Space available to unprivileged users.
    pub available_bytes: u64,
}

impl DiskUsage {
    /// How much of it is used, in percent (0 for an empty size).
    pub fn used_percent(&self) -> f64 {
        if self.total_bytes == 0 {
            return 0.0;
        }
        let used = self.total_bytes.saturating_sub(self.available_bytes);
        used as f64 * 100.0 / self.total_bytes as f64
    }
}

/// One CPU and memory sample of a WatchMetrics stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsSample {
    /// Time of the sample, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Global CPU usage in percent.
    pub cpu_usage_percent: f32,
    /// Per-CPU usage in percent, when asked for.
    pub cpu_usage_per_core: Vec<f32>,
    /// Memory and swap.
    pub memory: Memory,
    /// Load averages, where the OS has them.
    pub load_average: Option<LoadAverage>,
    /// The local writable file system with the least room left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fullest_disk: Option<DiskUsage>,
}

/// One process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// Process id.
    pub pid: i32,
    /// Parent's pid, 0 if none.
    pub parent_pid: i32,
    /// Name.
    pub name: String,
    /// Command line.
    pub command_line: String,
    /// Owner.
    pub user: String,
    /// CPU usage in percent of one CPU.
    pub cpu_usage_percent: f32,
    /// Resident memory.
    pub memory_bytes: u64,
    /// Start time, milliseconds since the Unix epoch.
    pub start_time_ms: i64,
    /// State.
    pub status: String,
}

/// The signals a client may send to a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ProcessSignal {
    /// SIGHUP.
    Hup,
    /// SIGINT.
    Int,
    /// SIGQUIT.
    Quit,
    /// SIGKILL.
    Kill,
    /// SIGUSR1.
    Usr1,
    /// SIGUSR2.
    Usr2,
    /// SIGTERM.
    Term,
    /// SIGCONT.
    Cont,
    /// SIGSTOP.
    Stop,
}

impl ProcessSignal {
    /// Every signal, in the order menus show them.
    pub const ALL: [Self; 9] = [
        Self::Term,
        Self::Kill,
        Self::Int,
        Self::Hup,
        Self::Quit,
        Self::Stop,
        Self::Cont,
        Self::Usr1,
        Self::Usr2,
    ];

    /// The signal's name, e.g. "SIGTERM".
    pub fn name(self) -> &'static str {
        match self {
            Self::Hup => "SIGHUP",
            Self::Int => "SIGINT",
            Self::Quit => "SIGQUIT",
            Self::Kill => "SIGKILL",
            Self::Usr1 => "SIGUSR1",
            Self::Usr2 => "SIGUSR2",
            Self::Term => "SIGTERM",
            Self::Cont => "SIGCONT",
            Self::Stop => "SIGSTOP",
        }
    }
}

impl std::str::FromStr for ProcessSignal {
    type Err = String;

    /// Parses "TERM", "SIGTERM", "term" or the Linux number "15".
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        Self::ALL
            .into_iter()
            .find(|sig| &sig.name()[3..] == bare || sig.linux_number().to_string() == bare)
            .ok_or_else(|| {
                format!(
                    "unknown signal {s:?} (try TERM, KILL, INT, HUP, QUIT, STOP, CONT, USR1, USR2)"
                )
            })
    }
}

impl ProcessSignal {
    /// The signal's number on Linux.
    pub fn linux_number(self) -> i32 {
        match self {
            Self::Hup => 1,
            Self::Int => 2,
            Self::Quit => 3,
            Self::Kill => 9,
            Self::Usr1 => 10,
            Self::Usr2 => 12,
            Self::Term => 15,
            Self::Cont => 18,
            Self::Stop => 19,
        }
    }
}

/// What the agent sees of a connection (the answer to GetConnectionInfo).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    /// The client's address as the agent sees it.
    pub peer_address: String,
    /// The session of the call.
    pub session_id: String,
    /// The authenticated identity.
    pub identity: String,
    /// The identity's role.
    pub role: String,
    /// Whether the connection uses TLS.
    pub tls: bool,
    /// The agent's host name.
    pub hostname: String,
    /// Addresses the agent listens on.
    pub listen_addresses: Vec<String>,
    /// The agent's boot id.
    pub boot_id: String,
    /// Milliseconds since the agent (re)started.
    pub agent_uptime_ms: u64,
    /// The agent's version.
    pub agent_version: String,
    /// Open sessions.
    pub session_count: u32,
    /// Running commands, all sessions.
    pub running_commands: u32,
    /// Running commands in this session.
    pub session_running_commands: u32,
    /// The agent's pid.
    pub agent_pid: i32,
    /// The certificate the agent serves, when it serves TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_certificate: Option<CertificateSummary>,
    /// The number of the fleet revocation list in force (0: none).
    #[serde(default)]
    pub revocation_list_number: u64,
}

/// What a client may want to know of a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateSummary {
    /// The subject, e.g. "CN=web1".
    pub subject: String,
    /// The serial number, in hexadecimal.
    pub serial: String,
    /// When it stops being valid, in ms since the Unix epoch.
    pub not_after_ms: i64,
    /// SHA-256 of its DER, as "sha256:" and hex.
    pub fingerprint: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_in_every_usual_form() {
        for text in ["TERM", "SIGTERM", "term", "15", " sigterm "] {
            assert_eq!(
                text.parse::<ProcessSignal>(),
                Ok(ProcessSignal::Term),
                "{text}"
            );
        }
        assert_eq!("9".parse::<ProcessSignal>(), Ok(ProcessSignal::Kill));
        assert!("SIGWINCH".parse::<ProcessSignal>().is_err());
        assert!("".parse::<ProcessSignal>().is_err());
    }
}

/// What an identity may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads system information, metrics, processes and connection info.
    Viewer,
    /// Viewer, plus runs commands and signals processes.
    Operator,
    /// Operator, plus stops and restarts the agent.
    Admin,
}

impl Role {
    /// Every role, weakest first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    /// The role's name as config files and answers write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?} (viewer, operator or admin)"))
    }
}

/// A detached command on one agent, as ListJobs and GetJob describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    /// Its id on that agent.
    pub job_id: String,
    /// The identity that started it.
    pub identity: String,
    /// The command line as it runs.
    pub command: String,
    /// Its pid (also its process group).
    pub pid: i32,
    /// When it started (ms since the epoch).
    pub started_at_ms: i64,
    /// How it ended, once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<crate::command::Exit>,
    /// When it ended (ms since the epoch), 0 while it runs.
    #[serde(default)]
    pub ended_at_ms: i64,
    /// Output bytes written so far.
    pub output_bytes: u64,
    /// The first offset its log still keeps.
    pub retained_from: u64,
    /// Clients attached now.
    pub attached: u32,
    /// When a finished job will be forgotten (ms since the epoch), 0 while
    /// it runs.
    #[serde(default)]
    pub expires_at_ms: i64,
}

impl JobInfo {
    /// True while its command runs.
    pub fn running(&self) -> bool {
        self.exit.is_none()
    }
}

/// What an upload announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutHeader {
    /// The target path on the host.
    pub path: String,
    /// Its permission bits.
    pub mode: u32,
    /// The content's size.
    pub size: u64,
    /// The content's SHA-256.
    pub sha256: [u8; 32],
    /// Whether an existing file may be replaced.
    pub replace: bool,
}

/// An upload that landed, as the agent reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutDone {
    /// The target.
    pub path: String,
    /// Its size.
    pub size: u64,
    /// Its SHA-256 (hex), as the agent computed it.
    pub sha256: String,
    /// True when a file was replaced.
    pub replaced: bool,
    /// True when the host had this content already (nothing was sent).
    #[serde(default)]
    pub unchanged: bool,
}

/// One event of a download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetEvent {
    /// The file, first.
    Info {
        /// Its size.
        size: u64,
        /// Its permission bits.
        mode: u32,
    },
    /// The next bytes.
    Chunk(bytes::Bytes),
    /// The whole file's SHA-256 (hex), last.
    Done {
        /// The digest.
        sha256: String,
    },
}
