//! What the desktop client shows of a host's answers: its description as
//! the system-information panel's labelled rows, and the text of the
//! preset buttons (the brief's queries, connection, processes).
//!
//! Every string an agent sends is made visible field by field here
//! (`client::text::visible`), before it is framed: a line break inside a
//! process's command line must not start a new row of the answer.

use std::time::Duration;

use crate::{
    client::{
        format::{bytes, duration},
        text::visible,
    },
    types::{ConnectionInfo, ProcessInfo, SystemInfo},
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
                visible(&info.os_name),
                visible(&info.os_version),
                visible(&info.kernel_version),
                visible(&info.architecture)
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
                visible(&info.cpu_model),
                info.load_average
                    .map(|l| format!(", load {:.2} {:.2} {:.2}", l.one, l.five, l.fifteen))
                    .unwrap_or_default()
            ),
            Self::Ip => addresses(info).join("\n"),
            Self::Name => visible(&info.hostname).into_owned(),
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
                .map(move |a| format!("{}  {}/{}", visible(&i.name), a.address, a.prefix_length))
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
        row("Name", visible(&info.hostname).into_owned()),
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
                visible(&disk.mount_point),
                bytes(disk.available_bytes),
                bytes(disk.total_bytes),
                visible(&disk.file_system)
            ),
        ));
    }
    rows.push(row(
        "Uptime",
        duration(Duration::from_secs(info.uptime_seconds)),
    ));
    rows.push(row(
        "Agent",
        format!(
            "{} · boot {}",
            visible(&info.agent_version),
            visible(&info.boot_id)
        ),
    ));
    rows
}

/// The panel when the host did not answer: the error, made visible (it
/// may quote the agent).
pub fn error_rows(message: &str) -> Vec<InfoRow> {
    vec![InfoRow {
        label: "Error".into(),
        value: visible(message).into_owned(),
    }]
}

/// The Conn. preset's answer: what the agent sees of this client.
pub fn connection_text(c: &ConnectionInfo) -> String {
    format!(
        "seen from {} as {} ({}), {}\nagent host {} listening on {}, boot {}, up {}\n{} sessions, {} running commands",
        visible(&c.peer_address),
        visible(&c.identity),
        visible(&c.role),
        if c.tls { "TLS" } else { "plaintext" },
        visible(&c.hostname),
        visible(&c.listen_addresses.join(", ")),
        visible(&c.boot_id),
        duration(Duration::from_millis(c.agent_uptime_ms)),
        c.session_count,
        c.running_commands
    )
}

/// The processes preset's answer: a table, the busiest first.
pub fn processes_text(mut processes: Vec<ProcessInfo>) -> String {
    processes.sort_by(|a, b| b.cpu_usage_percent.total_cmp(&a.cpu_usage_percent));
    let mut text = format!(
        "{:>7}  {:<10} {:>6} {:>10}  COMMAND\n",
        "PID", "USER", "CPU%", "MEMORY"
    );
    for p in processes {
        let command = if p.command_line.is_empty() {
            &p.name
        } else {
            &p.command_line
        };
        text.push_str(&format!(
            "{:>7}  {:<10} {:>6.1} {:>10}  {}\n",
            p.pid,
            visible(&p.user.chars().take(10).collect::<String>()),
            p.cpu_usage_percent,
            bytes(p.memory_bytes),
            visible(command)
        ));
    }
    text
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::types::{InterfaceAddress, Memory, NetworkInterface};

    /// What a hostile agent would answer: escape sequences, a carriage
    /// return, a line break, a C1 control, a bidi override and a
    /// zero-width space in every string.
    pub(crate) const EVIL: &str = "\u{1b}]0;pwned\u{7}\u{1b}[2J\r\n\u{9b}\u{202e}\u{200b}";
    pub(crate) const SHOWN: &str = "^[]0;pwned^G^[[2J^M^J<U+009B><U+202E><U+200B>";

    pub(crate) fn hostile_info() -> SystemInfo {
        SystemInfo {
            os_family: None,
            os_name: EVIL.into(),
            os_version: EVIL.into(),
            os_long_name: EVIL.into(),
            kernel_version: EVIL.into(),
            architecture: EVIL.into(),
            hostname: EVIL.into(),
            interfaces: vec![NetworkInterface {
                name: EVIL.into(),
                mac_address: EVIL.into(),
                addresses: vec![InterfaceAddress {
                    address: "10.0.0.1".parse().unwrap(),
                    prefix_length: 8,
                }],
            }],
            cpu_model: EVIL.into(),
            cpu_count: 1,
            physical_core_count: 1,
            cpu_usage_percent: 1.0,
            cpu_usage_per_core: Vec::new(),
            memory: Memory::default(),
            disks: vec![crate::types::Disk {
                mount_point: EVIL.into(),
                device: EVIL.into(),
                file_system: EVIL.into(),
                total_bytes: 1,
                available_bytes: 1,
                read_only: false,
                removable: false,
            }],
            uptime_seconds: 1,
            load_average: None,
            agent_version: EVIL.into(),
            boot_id: EVIL.into(),
            timestamp_ms: 0,
        }
    }

    pub(crate) fn assert_shown(text: &str) {
        assert!(
            crate::client::text::shows_as_is(text),
            "a hidden character in {text:?}"
        );
        assert!(text.contains(SHOWN), "{text:?}");
    }

    #[test]
    fn every_answer_shows_what_the_host_sent_instead_of_obeying_it() {
        let info = hostile_info();
        for row in rows(&info) {
            if row.label != "RAM" && row.label != "Uptime" {
                assert_shown(&row.value);
            }
        }
        for query in [Query::Os, Query::Cpu, Query::Ip, Query::Name] {
            let answer = query.answer(&info);
            assert_eq!(answer.lines().count(), 1, "{query:?}: {answer:?}");
            assert_shown(&answer);
        }
        assert_shown(&error_rows(EVIL)[0].value);
        let connection = ConnectionInfo {
            peer_address: EVIL.into(),
            session_id: EVIL.into(),
            identity: EVIL.into(),
            role: EVIL.into(),
            tls: false,
            hostname: EVIL.into(),
            listen_addresses: vec![EVIL.into()],
            boot_id: EVIL.into(),
            agent_uptime_ms: 0,
            agent_version: EVIL.into(),
            session_count: 1,
            running_commands: 0,
            session_running_commands: 0,
            agent_pid: 1,
        };
        let text = connection_text(&connection);
        assert_eq!(text.lines().count(), 3, "{text:?}");
        text.lines().take(2).for_each(assert_shown);
        let process = ProcessInfo {
            pid: 1,
            parent_pid: 0,
            name: EVIL.into(),
            command_line: EVIL.into(),
            user: "root".into(),
            cpu_usage_percent: 0.0,
            memory_bytes: 0,
            start_time_ms: 0,
            status: EVIL.into(),
        };
        let text = processes_text(vec![process]);
        assert_eq!(text.lines().count(), 2, "a header and one row: {text:?}");
        assert_shown(text.lines().nth(1).unwrap());
    }
}
