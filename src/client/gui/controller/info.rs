//! What the desktop client shows of a host's answers: its description as
//! the system-information panel's labelled rows, and the text of the
//! preset buttons (the brief's queries, connection, processes). The words
//! and fields are `client::present`'s, the same as the CLI's.
//!
//! Every string an agent sends is made visible field by field here
//! (`client::text::visible`), before it is framed: a line break inside a
//! process's command line must not start a new row of the answer.

use crate::{
    client::{
        present::{self, Query, Table},
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

/// The answer to a query about a host, as text: one line of labelled
/// cells ("total 23.5 GiB · used …") for a one-row answer, a line per row
/// (after the column names) for several. Every cell is made visible.
pub fn answer(query: Query, info: &SystemInfo) -> String {
    let table = query.table(info);
    match table.rows.as_slice() {
        [row] if table.columns.len() > 1 => table
            .columns
            .iter()
            .zip(row)
            .map(|(label, cell)| format!("{} {}", label.to_lowercase(), visible(cell)))
            .collect::<Vec<_>>()
            .join(" · "),
        [row] => row.iter().map(|c| visible(c).into_owned()).collect(),
        _ => table_text(&table, true),
    }
}

/// A table as lines of text: with `header`, the columns first; the cells
/// of a row separated by two spaces.
fn table_text(table: &Table, header: bool) -> String {
    let mut lines = Vec::new();
    if header {
        lines.push(table.columns.join("  "));
    }
    for row in &table.rows {
        let cells: Vec<String> = row.iter().map(|c| visible(c).into_owned()).collect();
        lines.push(cells.join("  "));
    }
    lines.join("\n")
}

/// Every row of the panel for a host.
pub fn rows(info: &SystemInfo) -> Vec<InfoRow> {
    present::system_fields(info)
        .into_iter()
        .map(|(label, value)| InfoRow {
            label: label.to_owned(),
            value: visible(&value).into_owned(),
        })
        .collect()
}

/// The panel when the host did not answer: the error, made visible (it
/// may quote the agent).
pub fn error_rows(message: &str) -> Vec<InfoRow> {
    vec![InfoRow {
        label: "Error".into(),
        value: visible(message).into_owned(),
    }]
}

/// The Conn. preset's answer: what the agent sees of this client, a
/// labelled line per field.
pub fn connection_text(c: &ConnectionInfo) -> String {
    present::connection_fields(c)
        .into_iter()
        .map(|(label, value)| format!("{label}: {}", visible(&value)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The processes preset's answer: the process table, the busiest first.
pub fn processes_text(mut processes: Vec<ProcessInfo>) -> String {
    processes.sort_by(|a, b| b.cpu_usage_percent.total_cmp(&a.cpu_usage_percent));
    let table = Table {
        columns: &present::PROCESS_COLUMNS,
        rows: processes
            .iter()
            .map(|p| present::process_row(p).to_vec())
            .collect(),
    };
    table_text(&table, true)
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
            if !["RAM", "Uptime", "Load", "IP"].contains(&row.label.as_str()) {
                assert_shown(&row.value);
            }
        }
        for query in [Query::Os, Query::Cpu, Query::Ip, Query::Name] {
            let answer = answer(query, &info);
            assert_eq!(answer.lines().count(), 1, "{query:?}: {answer:?}");
            assert_shown(&answer);
        }
        assert!(answer(Query::Ram, &info).starts_with("total "));
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
            agent_certificate: None,
            revocation_list_number: 0,
        };
        let text = connection_text(&connection);
        assert_eq!(text.lines().count(), 8, "{text:?}");
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
