//! System information, metric samples and the process list, read with
//! sysinfo.
//!
//! Nothing here runs in the background: the agent samples only when a client
//! asks, so an idle agent uses no CPU. CPU usage is a difference between two
//! samples, so the probe keeps the previous one and reports usage since then
//! (refreshed at most every `MINIMUM_CPU_UPDATE_INTERVAL`). The fullest
//! disk that metrics samples carry is read on a thread of its own at most
//! every 10 s while streams ask for it, and shared by them all.

use std::{
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

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
}

impl MetricsSampler {
    /// Takes the baseline sample.
    pub fn new(per_core: bool) -> Result<Self, ProbeError> {
        let mut system = System::new().map_err(|e| ProbeError(e.to_string()))?;
        system.refresh_cpu_list(CpuRefreshKind::nothing().with_usage());
        // Ready, most likely, by the first sample, one interval from now.
        let _ = fullest_disk();
        Ok(Self { system, per_core })
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
            fullest_disk: fullest_disk(),
        }
    }
}

/// How often the fullest disk is looked at again: file systems fill over
/// minutes, and every stream of the agent shares the one figure.
const DISK_EVERY: Duration = Duration::from_secs(10);

/// A figure older than this is not reported: the thread reading the mounts
/// is stuck (a hung mount that `statvfs` never returns from).
const DISK_STALE: Duration = Duration::from_secs(60);

#[derive(Default)]
struct DiskCache {
    value: Option<DiskUsage>,
    at: Option<Instant>,
    reading: bool,
}

/// The local writable file system with the least room left, as last read;
/// reads it again on a thread of its own when it is older than
/// [`DISK_EVERY`]. Never blocks: a stream's sample must not wait on a
/// mount, and a mount that hangs holds one thread, once, not the agent.
fn fullest_disk() -> Option<DiskUsage> {
    static CACHE: OnceLock<Mutex<DiskCache>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    let mut state = cache.lock().unwrap_or_else(|e| e.into_inner());
    let due = state.at.is_none_or(|at| at.elapsed() >= DISK_EVERY);
    if due && !state.reading {
        state.reading = true;
        let spawned = std::thread::Builder::new()
            .name("vigie-disks".into())
            .spawn(move || {
                let value = read_fullest_disk();
                let mut state = cache.lock().unwrap_or_else(|e| e.into_inner());
                *state = DiskCache {
                    value,
                    at: Some(Instant::now()),
                    reading: false,
                };
            });
        if spawned.is_err() {
            state.reading = false;
        }
    }
    match state.at {
        Some(at) if at.elapsed() < DISK_STALE => state.value.clone(),
        _ => None,
    }
}

/// Reads every mount's room (blocking): the fullest of the local, writable,
/// fixed ones. Left out: memory-backed and image file systems (full by
/// design), network and FUSE ones (remote, and the ones that hang), loop
/// devices and removable media (a user may attach a full one to hide a
/// filling disk), and each device's mounts after its first (bind mounts).
fn read_fullest_disk() -> Option<DiskUsage> {
    let disks =
        Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing().with_storage()).ok()?;
    let mut devices = std::collections::HashSet::new();
    disks
        .iter()
        .filter(|d| {
            let kind = d.file_system().to_string_lossy();
            let device = d.name().to_string_lossy();
            let local = is_local(&kind, d.mount_point());
            local
                && !d.is_read_only()
                && !d.is_removable()
                && d.total_space() > 0
                && !device.starts_with("/dev/loop")
                && devices.insert(device.into_owned())
        })
        .map(|d| DiskUsage {
            mount_point: d.mount_point().to_string_lossy().into_owned(),
            total_bytes: d.total_space(),
            available_bytes: d.available_space(),
        })
        .max_by(|a, b| a.used_percent().total_cmp(&b.used_percent()))
}

/// True for a file system whose room is this host's own to watch: not
/// memory-backed or an image (full by design), not remote or FUSE (the
/// ones that hang), and, of overlays, only the root (a container's).
fn is_local(kind: &str, mount: &std::path::Path) -> bool {
    const NOT_LOCAL: &[&str] = &[
        "tmpfs",
        "devtmpfs",
        "ramfs",
        "squashfs",
        "iso9660",
        "udf",
        "cifs",
        "smb3",
        "smbfs",
        "9p",
        "ceph",
        "glusterfs",
        "lustre",
        "afs",
        "virtiofs",
    ];
    !kind.starts_with("fuse")
        && !kind.starts_with("nfs")
        && !NOT_LOCAL.contains(&kind)
        && (kind != "overlay" || mount == std::path::Path::new("/"))
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
