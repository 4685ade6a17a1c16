//! What both front-ends show of a host's answers, in one place: the
//! queries of the brief (and a few more) as tables of text, the connection
//! information, the process table. Plain text, neither escaped nor
//! painted: the CLI's tables and the desktop client's views make it
//! visible (`client::text`) and lay it out their way.

use std::time::Duration;

use crate::{
    client::format::{bytes, duration},
    types::{ConnectionInfo, ProcessInfo, SystemInfo},
};

/// The questions a user can ask of hosts' system information.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Query {
    /// OS name, version, kernel, architecture.
    Os,
    /// Memory and swap.
    Ram,
    /// CPU usage, model, count, load.
    Cpu,
    /// IP addresses per interface.
    Ip,
    /// Host name.
    Name,
    /// File systems.
    Disks,
    /// Uptime and load.
    Uptime,
    /// Everything, one block per host.
    All,
}

/// An answer laid out as columns: one row per host for most queries,
/// several for addresses and disks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The column headers.
    pub columns: &'static [&'static str],
    /// The rows, each with one cell per column.
    pub rows: Vec<Vec<String>>,
}

impl Query {
    /// The query a preset button or a command-line word names.
    pub fn parse(name: &str) -> Option<Self> {
        <Self as clap::ValueEnum>::from_str(name, true).ok()
    }

    /// The answer of one host.
    pub fn table(self, info: &SystemInfo) -> Table {
        let m = &info.memory;
        let one = |columns, row: Vec<String>| Table {
            columns,
            rows: vec![row],
        };
        match self {
            Self::Os => one(
                &["OS", "VERSION", "KERNEL", "ARCH"],
                vec![
                    info.os_name.clone(),
                    info.os_version.clone(),
                    info.kernel_version.clone(),
                    info.architecture.clone(),
                ],
            ),
            Self::Ram => one(
                &["TOTAL", "USED", "AVAILABLE", "SWAP"],
                vec![
                    bytes(m.total_bytes),
                    format!(
                        "{} ({})",
                        bytes(m.used_bytes),
                        percent(m.used_bytes, m.total_bytes)
                    ),
                    bytes(m.available_bytes),
                    format!(
                        "{} / {}",
                        bytes(m.swap_used_bytes),
                        bytes(m.swap_total_bytes)
                    ),
                ],
            ),
            Self::Cpu => one(
                &["USAGE", "CPUS", "LOAD", "MODEL"],
                vec![
                    format!("{:.1}%", info.cpu_usage_percent),
                    info.cpu_count.to_string(),
                    load(info),
                    info.cpu_model.clone(),
                ],
            ),
            Self::Ip => Table {
                columns: &["INTERFACE", "ADDRESSES"],
                rows: info
                    .interfaces
                    .iter()
                    .filter(|i| !i.addresses.is_empty())
                    .map(|i| {
                        let addresses: Vec<String> = i
                            .addresses
                            .iter()
                            .map(|a| format!("{}/{}", a.address, a.prefix_length))
                            .collect();
                        vec![i.name.clone(), addresses.join(", ")]
                    })
                    .collect(),
            },
            Self::Name => one(&["NAME"], vec![info.hostname.clone()]),
            Self::Disks => Table {
                columns: &["MOUNT", "FS", "SIZE", "AVAILABLE", "USED"],
                rows: info
                    .disks
                    .iter()
                    .map(|d| {
                        vec![
                            d.mount_point.clone(),
                            d.file_system.clone(),
                            bytes(d.total_bytes),
                            bytes(d.available_bytes),
                            percent(
                                d.total_bytes.saturating_sub(d.available_bytes),
                                d.total_bytes,
                            ),
                        ]
                    })
                    .collect(),
            },
            Self::Uptime => one(
                &["UPTIME", "LOAD"],
                vec![
                    duration(Duration::from_secs(info.uptime_seconds)),
                    load(info),
                ],
            ),
            Self::All => Table {
                columns: &["FIELD", "VALUE"],
                rows: system_fields(info)
                    .into_iter()
                    .map(|(label, value)| vec![label.to_owned(), value])
                    .collect(),
            },
        }
    }
}

/// A host in one line of fields: what `vigie info` shows without a query.
pub fn summary_table(info: &SystemInfo) -> Table {
    Table {
        columns: &["NAME", "OS", "CPU", "RAM", "UPTIME"],
        rows: vec![vec![
            info.hostname.clone(),
            info.os_long_name.clone(),
            format!("{:.0}% of {}", info.cpu_usage_percent, info.cpu_count),
            format!(
                "{} / {}",
                bytes(info.memory.used_bytes),
                bytes(info.memory.total_bytes)
            ),
            duration(Duration::from_secs(info.uptime_seconds)),
        ]],
    }
}

/// Everything about a host, as labelled fields: `vigie info all` and the
/// desktop client's information panel.
pub fn system_fields(info: &SystemInfo) -> Vec<(&'static str, String)> {
    let m = &info.memory;
    let addresses: Vec<String> = info.addresses().map(ToString::to_string).collect();
    let mut fields = vec![
        ("Name", info.hostname.clone()),
        (
            "OS",
            format!(
                "{} (kernel {}, {})",
                info.os_long_name, info.kernel_version, info.architecture
            ),
        ),
        (
            "CPU",
            format!(
                "{:.1}% of {} CPUs, {}",
                info.cpu_usage_percent, info.cpu_count, info.cpu_model
            ),
        ),
        ("Load", load(info)),
        (
            "RAM",
            format!(
                "{} used of {} ({} available), swap {} of {}",
                bytes(m.used_bytes),
                bytes(m.total_bytes),
                bytes(m.available_bytes),
                bytes(m.swap_used_bytes),
                bytes(m.swap_total_bytes)
            ),
        ),
        (
            "IP",
            if addresses.is_empty() {
                "-".into()
            } else {
                addresses.join(", ")
            },
        ),
    ];
    for d in &info.disks {
        fields.push((
            "Disk",
            format!(
                "{} {} free of {} ({})",
                d.mount_point,
                bytes(d.available_bytes),
                bytes(d.total_bytes),
                d.file_system
            ),
        ));
    }
    fields.push(("Uptime", duration(Duration::from_secs(info.uptime_seconds))));
    fields.push((
        "Agent",
        format!("{} (boot {})", info.agent_version, info.boot_id),
    ));
    fields
}

/// What an agent sees of this client, and its own state: `vigie conn` and
/// the desktop client's connection preset.
pub fn connection_fields(c: &ConnectionInfo) -> Vec<(&'static str, String)> {
    vec![
        ("SEEN FROM", c.peer_address.clone()),
        ("IDENTITY", format!("{} ({})", c.identity, c.role)),
        ("LINK", if c.tls { "tls" } else { "plaintext" }.to_owned()),
        ("AGENT HOST", c.hostname.clone()),
        ("LISTENS", c.listen_addresses.join(",")),
        ("BOOT", c.boot_id.chars().take(8).collect()),
        ("UP", duration(Duration::from_millis(c.agent_uptime_ms))),
        (
            "LOAD",
            format!(
                "{} session{}, {} running",
                c.session_count,
                if c.session_count == 1 { "" } else { "s" },
                c.running_commands
            ),
        ),
    ]
}

/// The columns of a process table.
pub const PROCESS_COLUMNS: [&str; 6] = ["PID", "USER", "CPU%", "MEM", "NAME", "COMMAND"];

/// One process as a row of [`PROCESS_COLUMNS`]; the command line is cut at
/// 100 characters.
pub fn process_row(p: &ProcessInfo) -> [String; 6] {
    [
        p.pid.to_string(),
        p.user.clone(),
        format!("{:.1}", p.cpu_usage_percent),
        bytes(p.memory_bytes),
        p.name.clone(),
        p.command_line.chars().take(100).collect(),
    ]
}

/// `part` of `whole` as a whole percentage, "-" when there is no whole.
pub fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.0}%", part as f64 * 100.0 / whole as f64)
    }
}

/// Load averages over 1, 5 and 15 minutes, "-" where the OS has none.
pub fn load(info: &SystemInfo) -> String {
    info.load_average.map_or_else(
        || "-".into(),
        |l| format!("{:.2} {:.2} {:.2}", l.one, l.five, l.fifteen),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_as_buttons_and_words_name_them() {
        assert_eq!(Query::parse("os"), Some(Query::Os));
        assert_eq!(Query::parse("RAM"), Some(Query::Ram));
        assert_eq!(Query::parse("conn"), None);
        assert_eq!(percent(1, 4), "25%");
        assert_eq!(percent(1, 0), "-");
    }

    #[test]
    fn every_row_has_a_cell_per_column() {
        let info = SystemInfo {
            os_family: None,
            os_name: "Debian GNU/Linux".into(),
            os_version: "12".into(),
            os_long_name: "Linux (Debian GNU/Linux 12)".into(),
            kernel_version: "6.1".into(),
            architecture: "x86_64".into(),
            hostname: "web1".into(),
            interfaces: vec![crate::types::NetworkInterface {
                name: "eth0".into(),
                mac_address: String::new(),
                addresses: vec![crate::types::InterfaceAddress {
                    address: "10.0.0.1".parse().unwrap(),
                    prefix_length: 8,
                }],
            }],
            cpu_model: "cpu".into(),
            cpu_count: 2,
            physical_core_count: 1,
            cpu_usage_percent: 1.0,
            cpu_usage_per_core: Vec::new(),
            memory: crate::types::Memory::default(),
            disks: vec![crate::types::Disk {
                mount_point: "/".into(),
                device: "/dev/vda1".into(),
                file_system: "ext4".into(),
                total_bytes: 10,
                available_bytes: 5,
                read_only: false,
                removable: false,
            }],
            uptime_seconds: 1,
            load_average: None,
            agent_version: "0.1.0".into(),
            boot_id: "b".into(),
            timestamp_ms: 0,
        };
        for query in <Query as clap::ValueEnum>::value_variants() {
            let table = query.table(&info);
            assert!(!table.rows.is_empty(), "{query:?}");
            for row in &table.rows {
                assert_eq!(row.len(), table.columns.len(), "{query:?}");
            }
        }
        let c = summary_table(&info);
        assert_eq!(c.rows[0].len(), c.columns.len());
    }
}
