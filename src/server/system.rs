//! System information, metric samples and the process list, read with
//! sysinfo.
//!
//! Nothing here runs in the background: the agent samples only when a client
//! asks, so an idle agent uses no CPU. CPU usage is a difference between two
//! samples, so the probe keeps the previous one and reports usage since then
//! (refreshed at most every `MINIMUM_CPU_UPDATE_INTERVAL`).

use std::{sync::Mutex, time::Instant};

use sysinfo::{
    CpuRefreshKind, DiskRefreshKind, Disks, MemoryRefreshKind, Networks, ProcessRefreshKind,
    ProcessesToUpdate, System, UpdateKind, Users,
};

use crate::{
    command::OsFamily,
    types::{
        Disk, DiskUsage, InterfaceAddress, LoadAverage, Memory, MetricsSample, NetworkInterface,
        ProcessInfo, SystemInfo,
    },
};

/// Reads the host's state on demand.
#[derive(Debug)]
pub struct SystemProbe {
    state: Mutex<ProbeState>,
    boot_id: String,
}

#[derive(Debug)]
struct ProbeState {
    system: System,
    networks: Networks,
    disks: Disks,
    last_cpu_refresh: Instant,
}

/// Why the probe could not read the system.
#[derive(Debug, thiserror::Error)]
#[error("cannot read system information: {0}")]
pub struct ProbeError(String);

impl SystemProbe {
    /// A probe that reports `boot_id` as the agent's.
    pub fn new(boot_id: String) -> Result<Self, ProbeError> {
        let mut system = System::new().map_err(|e| ProbeError(e.to_string()))?;
        // The first CPU sample is the baseline that the first request's
        // usage is measured against.
        system.refresh_cpu_list(CpuRefreshKind::nothing().with_usage());
        Ok(Self {
            state: Mutex::new(ProbeState {
                system,
                networks: Networks::new().map_err(|e| ProbeError(e.to_string()))?,
                disks: Disks::new().map_err(|e| ProbeError(e.to_string()))?,
                last_cpu_refresh: Instant::now(),
            }),
            boot_id,
        })
    }

    /// The agent's boot id.
    pub fn boot_id(&self) -> &str {
        &self.boot_id
    }

    /// The host's description now. Blocking (reads /proc and statvfs): call
    /// it from a blocking thread.
    pub fn system_info(&self) -> SystemInfo {
        let mut state = self.lock();
        state.refresh_cpu_if_due();
        state
            .system
            .refresh_memory_specifics(MemoryRefreshKind::everything());
        state.networks.refresh(true);
        state
            .disks
            .refresh_specifics(true, DiskRefreshKind::nothing().with_storage());
        let system = &state.system;
        let cpus = system.cpus();
        let mut interfaces: Vec<NetworkInterface> = state
            .networks
            .iter()
            .map(|(name, data)| NetworkInterface {
                name: name.to_string_lossy().into_owned(),
                mac_address: if data.mac_address().is_unspecified() {
                    String::new()
                } else {
                    data.mac_address().to_string()
                },
                addresses: data
                    .ip_networks()
                    .iter()
                    .map(|n| InterfaceAddress {
                        address: n.addr,
                        prefix_length: n.prefix,
                    })
                    .collect(),
            })
            .collect();
        interfaces.sort_by(|a, b| a.name.cmp(&b.name));
        let disks = state
            .disks
            .iter()
            .map(|d| Disk {
                mount_point: d.mount_point().to_string_lossy().into_owned(),
                device: d.name().to_string_lossy().into_owned(),
                file_system: d.file_system().to_string_lossy().into_owned(),
                total_bytes: d.total_space(),
                available_bytes: d.available_space(),
                read_only: d.is_read_only(),
                removable: d.is_removable(),
            })
            .collect();
        SystemInfo {
            os_family: Some(OsFamily::current()),
            os_name: System::name().unwrap_or_default(),
            os_version: System::os_version().unwrap_or_default(),
            os_long_name: System::long_os_version().unwrap_or_default(),
            kernel_version: System::kernel_version().unwrap_or_default(),
            architecture: System::cpu_arch(),
            hostname: hostname(),
            interfaces,
            cpu_model: cpus
                .first()
                .map(|c| c.brand().trim().to_owned())
                .unwrap_or_default(),
            cpu_count: u32::try_from(cpus.len()).unwrap_or(u32::MAX),
            physical_core_count: System::physical_core_count()
                .ok()
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
            cpu_usage_percent: system.global_cpu_usage(),
            cpu_usage_per_core: cpus.iter().map(|c| c.usage()).collect(),
            memory: memory(system),
            disks,
            uptime_seconds: System::uptime().unwrap_or(0),
            load_average: load_average(),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            boot_id: self.boot_id.clone(),
            timestamp_ms: crate::clock::now_ms(),
        }
    }

    /// The process list, optionally filtered. Blocking: call it from a
    /// blocking thread.
    pub fn processes(&self, filter: &str) -> Vec<ProcessInfo> {
        let mut state = self.lock();
        state.system.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing()
                .with_cpu()
                .with_memory()
                .with_cmd(UpdateKind::OnlyIfNotSet)
                .with_user(UpdateKind::OnlyIfNotSet),
        );
        let users = Users::new_with_refreshed_list().ok();
        let needle = filter.to_lowercase();
        let mut list: Vec<ProcessInfo> = state
            .system
            .processes()
            .values()
            // Threads are listed as processes on Linux; a process list shows
            // processes only.
            .filter(|p| p.thread_kind().is_none())
            .filter_map(|p| {
                let name = p.name().to_string_lossy().into_owned();
                let command_line = p
                    .cmd()
                    .iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" ");
                if !needle.is_empty()
                    && !name.to_lowercase().contains(&needle)
                    && !command_line.to_lowercase().contains(&needle)
                {
                    return None;
                }
                let user = p
                    .user_id()
                    .map(|uid| {
                        users
                            .as_ref()
                            .and_then(|u| u.get_user_by_id(uid))
                            .map(|u| u.name().to_owned())
                            .unwrap_or_else(|| uid.to_string())
                    })
                    .unwrap_or_default();
                Some(ProcessInfo {
                    pid: i32::try_from(p.pid().as_u32()).ok()?,
                    parent_pid: p
                        .parent()
                        .and_then(|pp| i32::try_from(pp.as_u32()).ok())
                        .unwrap_or(0),
                    name,
                    command_line,
                    user,
                    cpu_usage_percent: p.cpu_usage(),
                    memory_bytes: p.memory(),
                    start_time_ms: i64::try_from(p.start_time()).unwrap_or(0) * 1000,
                    status: p.status().to_string(),
                })
            })
            .collect();
        list.sort_by_key(|p| p.pid);
        list
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ProbeState> {
        // sysinfo's state stays valid even if a refresh panicked halfway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ProbeState {
    fn refresh_cpu_if_due(&mut self) {
        if self.last_cpu_refresh.elapsed() >= sysinfo::MINIMUM_CPU_UPDATE_INTERVAL {
            self.system.refresh_cpu_usage();
            self.last_cpu_refresh = Instant::now();
        }
    }
}

/// Samples CPU and memory for one WatchMetrics stream. Each stream has its
/// own sampler, so its usage figures cover exactly its own intervals.
#[derive(Debug)]
pub struct MetricsSampler {
    system: System,
    per_core: bool,
    disks: Disks,
}

impl MetricsSampler {
    /// Takes the baseline sample.
    pub fn new(per_core: bool) -> Result<Self, ProbeError> {
        let mut system = System::new().map_err(|e| ProbeError(e.to_string()))?;
        system.refresh_cpu_list(CpuRefreshKind::nothing().with_usage());
        let disks = Disks::new().map_err(|e| ProbeError(e.to_string()))?;
        Ok(Self {
            system,
            per_core,
            disks,
        })
    }

    /// The local writable file system with the least room left (its size
    /// read again now; the list of mounts too, so that one mounted since
    /// the stream began counts).
    fn fullest_disk(&mut self) -> Option<DiskUsage> {
        self.disks
            .refresh_specifics(true, DiskRefreshKind::nothing().with_storage());
        self.disks
            .iter()
            .filter(|d| {
                let kind = d.file_system().to_string_lossy();
                // Memory-backed and image file systems fill by design.
                !d.is_read_only()
                    && d.total_space() > 0
                    && !matches!(
                        &*kind,
                        "tmpfs" | "devtmpfs" | "squashfs" | "iso9660" | "ramfs"
                    )
            })
            .map(|d| DiskUsage {
                mount_point: d.mount_point().to_string_lossy().into_owned(),
                total_bytes: d.total_space(),
                available_bytes: d.available_space(),
            })
            .max_by(|a, b| a.used_percent().total_cmp(&b.used_percent()))
    }

    /// Takes a sample: usage since the previous one.
    pub fn sample(&mut self) -> MetricsSample {
        self.system.refresh_cpu_usage();
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::everything());
        MetricsSample {
            timestamp_ms: crate::clock::now_ms(),
            cpu_usage_percent: self.system.global_cpu_usage(),
            cpu_usage_per_core: if self.per_core {
                self.system.cpus().iter().map(|c| c.usage()).collect()
            } else {
                Vec::new()
            },
            memory: memory(&self.system),
            load_average: load_average(),
            fullest_disk: self.fullest_disk(),
        }
    }
}

fn memory(system: &System) -> Memory {
    Memory {
        total_bytes: system.total_memory(),
        used_bytes: system.used_memory(),
        available_bytes: system.available_memory(),
        free_bytes: system.free_memory(),
        swap_total_bytes: system.total_swap(),
        swap_used_bytes: system.used_swap(),
    }
}

fn load_average() -> Option<LoadAverage> {
    if cfg!(windows) {
        return None;
    }
    System::load_average().ok().map(|l| LoadAverage {
        one: l.one,
        five: l.five,
        fifteen: l.fifteen,
    })
}

/// The host's name, as the host reports it.
pub fn hostname() -> String {
    System::host_name().unwrap_or_else(|_| "localhost".to_owned())
}

/// A readable description of the host for error messages, e.g.
/// "Linux (Debian GNU/Linux 12)".
pub fn host_description() -> String {
    let family = OsFamily::current();
    match System::long_os_version() {
        // sysinfo's long name already starts with the family on Linux
        // ("Linux (Debian GNU/Linux 12)"); elsewhere, add it.
        Ok(long) if long.starts_with(&family.to_string()) => long,
        Ok(long) if !long.is_empty() => format!("{family} ({long})"),
        _ => family.to_string(),
    }
}
