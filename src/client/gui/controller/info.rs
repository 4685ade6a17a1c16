//! The system-information panel: a host's description as labelled rows.

use std::time::Duration;

use crate::{
    client::format::{bytes, duration},
    types::SystemInfo,
};

/// One row of the panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfoRow {
    /// What it is, e.g. "RAM".
    pub label: String,
    /// Its value.
    pub value: String,
}

/// The brief's queries, as preset buttons name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    /// OS name and version.
    Os,
    /// Memory.
    Ram,
    /// CPU.
    Cpu,
    /// IP addresses.
    Ip,
    /// Host name.
    Name,
}

impl Query {
    /// Parses a preset's name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "os" => Self::Os,
            "ram" => Self::Ram,
            "cpu" => Self::Cpu,
            "ip" => Self::Ip,
            "name" => Self::Name,
            _ => return None,
        })
    }

    /// The answer to this query about a host, as text lines.
    pub fn answer(self, info: &SystemInfo) -> String {
        let m = &info.memory;
        match self {
            Self::Os => format!(
                "{} {} (kernel {}, {})",
                info.os_name, info.os_version, info.kernel_version, info.architecture
            ),
            Self::Ram => format!(
                "total {}, used {} ({:.0} %), available {}, swap {} of {}",
                bytes(m.total_bytes),
                bytes(m.used_bytes),
                percent(m.used_bytes, m.total_bytes),
                bytes(m.available_bytes),
                bytes(m.swap_used_bytes),
                bytes(m.swap_total_bytes)
            ),
            Self::Cpu => format!(
                "{:.1} % of {} CPUs ({}){}",
                info.cpu_usage_percent,
                info.cpu_count,
                info.cpu_model,
                info.load_average
                    .map(|l| format!(", load {:.2} {:.2} {:.2}", l.one, l.five, l.fifteen))
                    .unwrap_or_default()
            ),
            Self::Ip => addresses(info).join("\n"),
            Self::Name => info.hostname.clone(),
        }
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn addresses(info: &SystemInfo) -> Vec<String> {
    info.interfaces
        .iter()
        .flat_map(|i| {
            i.addresses
                .iter()
                .map(move |a| format!("{}  {}/{}", i.name, a.address, a.prefix_length))
        })
        .collect()
}

/// Every row of the panel for a host.
pub fn rows(info: &SystemInfo) -> Vec<InfoRow> {
    let row = |label: &str, value: String| InfoRow {
        label: label.to_owned(),
        value,
    };
    let mut rows = vec![
        row("Name", info.hostname.clone()),
        row("OS", Query::Os.answer(info)),
        row("CPU", Query::Cpu.answer(info)),
        row("RAM", Query::Ram.answer(info)),
        row("IP", addresses(info).join(", ")),
    ];
    for disk in &info.disks {
        rows.push(row(
            "Disk",
            format!(
                "{}  {} free of {} ({})",
                disk.mount_point,
                bytes(disk.available_bytes),
                bytes(disk.total_bytes),
                disk.file_system
            ),
        ));
    }
    rows.push(row(
        "Uptime",
        duration(Duration::from_secs(info.uptime_seconds)),
    ));
    rows.push(row(
        "Agent",
        format!("{} · boot {}", info.agent_version, info.boot_id),
    ));
    rows
}
