//! Conversions between the generated proto types and the domain types, in
//! both directions: the agent converts domain → proto, the client library
//! proto → domain. Keeping both here keeps them symmetrical.

use std::{net::IpAddr, time::Duration};

use crate::{
    command::{EndReason, Event, ExecRequest, Exit, OsFamily, OutputStream, Shell},
    proto,
    types::{
        CertificateSummary, ConnectionInfo, Disk, InterfaceAddress, LoadAverage, Memory,
        MetricsSample, NetworkInterface, ProcessInfo, ProcessSignal, SystemInfo,
    },
};

// --- OS family and shell -------------------------------------------------

impl From<OsFamily> for proto::OsFamily {
    fn from(os: OsFamily) -> Self {
        match os {
            OsFamily::Linux => Self::Linux,
            OsFamily::Windows => Self::Windows,
            OsFamily::Macos => Self::Macos,
            OsFamily::OtherUnix => Self::OtherUnix,
        }
    }
}

/// The domain OS family of a proto value; `None` for "unspecified" and for
/// values this build does not know.
pub fn os_family(raw: i32) -> Option<OsFamily> {
    match proto::OsFamily::try_from(raw).ok()? {
        proto::OsFamily::Unspecified => None,
        proto::OsFamily::Linux => Some(OsFamily::Linux),
        proto::OsFamily::Windows => Some(OsFamily::Windows),
        proto::OsFamily::Macos => Some(OsFamily::Macos),
        proto::OsFamily::OtherUnix => Some(OsFamily::OtherUnix),
    }
}

impl From<Shell> for proto::Shell {
    fn from(shell: Shell) -> Self {
        match shell {
            Shell::Default => Self::Default,
            Shell::Sh => Self::Sh,
            Shell::Cmd => Self::Cmd,
            Shell::PowerShell => Self::Powershell,
            Shell::None => Self::None,
        }
    }
}

impl From<proto::Shell> for Shell {
    fn from(shell: proto::Shell) -> Self {
        match shell {
            proto::Shell::Default => Self::Default,
            proto::Shell::Sh => Self::Sh,
            proto::Shell::Cmd => Self::Cmd,
            proto::Shell::Powershell => Self::PowerShell,
            proto::Shell::None => Self::None,
        }
    }
}

// --- System information ---------------------------------------------------

impl From<Memory> for proto::MemoryInfo {
    fn from(m: Memory) -> Self {
        Self {
            total_bytes: m.total_bytes,
            used_bytes: m.used_bytes,
            available_bytes: m.available_bytes,
            free_bytes: m.free_bytes,
            swap_total_bytes: m.swap_total_bytes,
            swap_used_bytes: m.swap_used_bytes,
        }
    }
}

impl From<proto::MemoryInfo> for Memory {
    fn from(m: proto::MemoryInfo) -> Self {
        Self {
            total_bytes: m.total_bytes,
            used_bytes: m.used_bytes,
            available_bytes: m.available_bytes,
            free_bytes: m.free_bytes,
            swap_total_bytes: m.swap_total_bytes,
            swap_used_bytes: m.swap_used_bytes,
        }
    }
}

impl From<LoadAverage> for proto::LoadAverage {
    fn from(l: LoadAverage) -> Self {
        Self {
            one: l.one,
            five: l.five,
            fifteen: l.fifteen,
        }
    }
}

impl From<proto::LoadAverage> for LoadAverage {
    fn from(l: proto::LoadAverage) -> Self {
        Self {
            one: l.one,
            five: l.five,
            fifteen: l.fifteen,
        }
    }
}

impl From<SystemInfo> for proto::GetSystemInfoResponse {
    fn from(s: SystemInfo) -> Self {
        Self {
            os_family: s
                .os_family
                .map_or(proto::OsFamily::Unspecified, Into::into)
                .into(),
            os_name: s.os_name,
            os_version: s.os_version,
            os_long_name: s.os_long_name,
            kernel_version: s.kernel_version,
            architecture: s.architecture,
            hostname: s.hostname,
            interfaces: s
                .interfaces
                .into_iter()
                .map(|i| proto::NetworkInterface {
                    name: i.name,
                    mac_address: i.mac_address,
                    addresses: i
                        .addresses
                        .into_iter()
                        .map(|a| proto::IpAddress {
                            address: a.address.to_string(),
                            prefix_length: u32::from(a.prefix_length),
                            ipv6: a.address.is_ipv6(),
                            loopback: a.address.is_loopback(),
                        })
                        .collect(),
                })
                .collect(),
            cpu_model: s.cpu_model,
            cpu_count: s.cpu_count,
            physical_core_count: s.physical_core_count,
            cpu_usage_percent: s.cpu_usage_percent,
            cpu_usage_per_core: s.cpu_usage_per_core,
            memory: Some(s.memory.into()),
            disks: s
                .disks
                .into_iter()
                .map(|d| proto::DiskInfo {
                    mount_point: d.mount_point,
                    device: d.device,
                    file_system: d.file_system,
                    total_bytes: d.total_bytes,
                    available_bytes: d.available_bytes,
                    read_only: d.read_only,
                    removable: d.removable,
                })
                .collect(),
            uptime_seconds: s.uptime_seconds,
            load_average: s.load_average.map(Into::into),
            agent_version: s.agent_version,
            boot_id: s.boot_id,
            timestamp_ms: s.timestamp_ms,
        }
    }
}

impl From<proto::GetSystemInfoResponse> for SystemInfo {
    fn from(s: proto::GetSystemInfoResponse) -> Self {
        Self {
            os_family: os_family(s.os_family),
            os_name: s.os_name,
            os_version: s.os_version,
            os_long_name: s.os_long_name,
            kernel_version: s.kernel_version,
            architecture: s.architecture,
            hostname: s.hostname,
            interfaces: s
                .interfaces
                .into_iter()
                .map(|i| NetworkInterface {
                    name: i.name,
                    mac_address: i.mac_address,
                    addresses: i
                        .addresses
                        .into_iter()
                        // An address this client cannot parse is skipped
                        // rather than failing the whole answer.
                        .filter_map(|a| {
                            Some(InterfaceAddress {
                                address: a.address.parse::<IpAddr>().ok()?,
                                prefix_length: u8::try_from(a.prefix_length).unwrap_or(u8::MAX),
                            })
                        })
                        .collect(),
                })
                .collect(),
            cpu_model: s.cpu_model,
            cpu_count: s.cpu_count,
            physical_core_count: s.physical_core_count,
            cpu_usage_percent: s.cpu_usage_percent,
            cpu_usage_per_core: s.cpu_usage_per_core,
            memory: s.memory.map(Into::into).unwrap_or_default(),
            disks: s
                .disks
                .into_iter()
                .map(|d| Disk {
                    mount_point: d.mount_point,
                    device: d.device,
                    file_system: d.file_system,
                    total_bytes: d.total_bytes,
                    available_bytes: d.available_bytes,
                    read_only: d.read_only,
                    removable: d.removable,
                })
                .collect(),
            uptime_seconds: s.uptime_seconds,
            load_average: s.load_average.map(Into::into),
            agent_version: s.agent_version,
            boot_id: s.boot_id,
            timestamp_ms: s.timestamp_ms,
        }
    }
}

impl From<MetricsSample> for proto::WatchMetricsResponse {
    fn from(m: MetricsSample) -> Self {
        Self {
            timestamp_ms: m.timestamp_ms,
            cpu_usage_percent: m.cpu_usage_percent,
            cpu_usage_per_core: m.cpu_usage_per_core,
            memory: Some(m.memory.into()),
            load_average: m.load_average.map(Into::into),
            fullest_disk: m.fullest_disk.map(|d| proto::DiskUsage {
                mount_point: d.mount_point,
                total_bytes: d.total_bytes,
                available_bytes: d.available_bytes,
            }),
        }
    }
}

impl From<proto::WatchMetricsResponse> for MetricsSample {
    fn from(m: proto::WatchMetricsResponse) -> Self {
        Self {
            timestamp_ms: m.timestamp_ms,
            cpu_usage_percent: m.cpu_usage_percent,
            cpu_usage_per_core: m.cpu_usage_per_core,
            memory: m.memory.map(Into::into).unwrap_or_default(),
            load_average: m.load_average.map(Into::into),
            fullest_disk: m.fullest_disk.map(|d| crate::types::DiskUsage {
                mount_point: d.mount_point,
                total_bytes: d.total_bytes,
                available_bytes: d.available_bytes,
            }),
        }
    }
}

// --- Processes ------------------------------------------------------------

impl From<ProcessInfo> for proto::ProcessInfo {
    fn from(p: ProcessInfo) -> Self {
        Self {
            pid: p.pid,
            parent_pid: p.parent_pid,
            name: p.name,
            command_line: p.command_line,
            user: p.user,
            cpu_usage_percent: p.cpu_usage_percent,
            memory_bytes: p.memory_bytes,
            start_time_ms: p.start_time_ms,
            status: p.status,
        }
    }
}

impl From<proto::ProcessInfo> for ProcessInfo {
    fn from(p: proto::ProcessInfo) -> Self {
        Self {
            pid: p.pid,
            parent_pid: p.parent_pid,
            name: p.name,
            command_line: p.command_line,
            user: p.user,
            cpu_usage_percent: p.cpu_usage_percent,
            memory_bytes: p.memory_bytes,
            start_time_ms: p.start_time_ms,
            status: p.status,
        }
    }
}

impl From<ProcessSignal> for proto::Signal {
    fn from(s: ProcessSignal) -> Self {
        match s {
            ProcessSignal::Hup => Self::Hup,
            ProcessSignal::Int => Self::Int,
            ProcessSignal::Quit => Self::Quit,
            ProcessSignal::Kill => Self::Kill,
            ProcessSignal::Usr1 => Self::Usr1,
            ProcessSignal::Usr2 => Self::Usr2,
            ProcessSignal::Term => Self::Term,
            ProcessSignal::Cont => Self::Cont,
            ProcessSignal::Stop => Self::Stop,
        }
    }
}

/// The domain signal of a proto value; `None` for "unspecified" and unknown values.
pub fn process_signal(raw: i32) -> Option<ProcessSignal> {
    Some(match proto::Signal::try_from(raw).ok()? {
        proto::Signal::Unspecified => return None,
        proto::Signal::Hup => ProcessSignal::Hup,
        proto::Signal::Int => ProcessSignal::Int,
        proto::Signal::Quit => ProcessSignal::Quit,
        proto::Signal::Kill => ProcessSignal::Kill,
        proto::Signal::Usr1 => ProcessSignal::Usr1,
        proto::Signal::Usr2 => ProcessSignal::Usr2,
        proto::Signal::Term => ProcessSignal::Term,
        proto::Signal::Cont => ProcessSignal::Cont,
        proto::Signal::Stop => ProcessSignal::Stop,
    })
}

// --- Execute --------------------------------------------------------------

impl From<OutputStream> for proto::OutputStream {
    fn from(s: OutputStream) -> Self {
        match s {
            OutputStream::Stdout => Self::Stdout,
            OutputStream::Stderr => Self::Stderr,
        }
    }
}

impl From<ExecRequest> for proto::ExecuteRequest {
    fn from(r: ExecRequest) -> Self {
        Self {
            command: r.command,
            shell: proto::Shell::from(r.shell).into(),
            argv: r.argv,
            required_os: r
                .required_os
                .map_or(proto::OsFamily::Unspecified, Into::into)
                .into(),
            working_directory: r.working_directory.unwrap_or_default(),
            environment: r.environment.into_iter().collect(),
            stdin: r.stdin,
            timeout_ms: r.timeout.map_or(0, |t| {
                u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)
            }),
            output_limit_bytes: r.output_limit.unwrap_or(0),
            detach: r.detach,
            script: r.script,
            interpreter: r.interpreter.unwrap_or_default(),
        }
    }
}

impl From<Event> for proto::ExecuteResponse {
    fn from(event: Event) -> Self {
        use proto::execute_response::Event as Wire;
        let event = match event {
            Event::Started {
                pid,
                argv,
                started_at,
                job_id,
            } => Wire::Started(proto::Started {
                pid,
                argv,
                started_at_ms: crate::clock::ms_since_epoch(started_at),
                job_id: job_id.unwrap_or_default(),
            }),
            Event::Output { stream, data } => Wire::Output(proto::Output {
                stream: proto::OutputStream::from(stream).into(),
                data,
                offset: 0,
            }),
            Event::Gap { offset, length } => Wire::Gap(proto::Gap { offset, length }),
            Event::Exited(exit) => Wire::Exited(exit.into()),
        };
        Self { event: Some(event) }
    }
}

/// An Execute stream message this client cannot understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected Execute event from the agent: {0}")]
pub struct UnknownEvent(&'static str);

impl TryFrom<proto::ExecuteResponse> for Event {
    type Error = UnknownEvent;

    fn try_from(response: proto::ExecuteResponse) -> Result<Self, Self::Error> {
        use proto::execute_response::Event as Wire;
        Ok(match response.event.ok_or(UnknownEvent("empty event"))? {
            Wire::Started(s) => Event::Started {
                pid: s.pid,
                argv: s.argv,
                started_at: std::time::UNIX_EPOCH
                    + Duration::from_millis(u64::try_from(s.started_at_ms).unwrap_or(0)),
                job_id: Some(s.job_id).filter(|id| !id.is_empty()),
            },
            Wire::Output(o) => Event::Output {
                stream: match proto::OutputStream::try_from(o.stream) {
                    Ok(proto::OutputStream::Stdout) => OutputStream::Stdout,
                    Ok(proto::OutputStream::Stderr) => OutputStream::Stderr,
                    _ => return Err(UnknownEvent("output of an unknown stream")),
                },
                data: o.data,
            },
            Wire::Gap(g) => Event::Gap {
                offset: g.offset,
                length: g.length,
            },
            Wire::Exited(e) => Event::Exited(e.into()),
        })
    }
}

impl From<EndReason> for proto::EndReason {
    fn from(r: EndReason) -> Self {
        match r {
            // A client that is gone never sees its reason; map it to the
            // nearest public one for completeness.
            EndReason::Exited => Self::Exited,
            EndReason::TimedOut => Self::TimedOut,
            EndReason::SessionEnded | EndReason::ClientGone => Self::SessionEnded,
            EndReason::AgentStopping => Self::AgentStopping,
            EndReason::Cancelled => Self::Cancelled,
        }
    }
}

fn end_reason(raw: i32) -> EndReason {
    match proto::EndReason::try_from(raw) {
        Ok(proto::EndReason::TimedOut) => EndReason::TimedOut,
        Ok(proto::EndReason::SessionEnded) => EndReason::SessionEnded,
        Ok(proto::EndReason::AgentStopping) => EndReason::AgentStopping,
        Ok(proto::EndReason::Cancelled) => EndReason::Cancelled,
        _ => EndReason::Exited,
    }
}

impl From<Exit> for proto::Exited {
    fn from(e: Exit) -> Self {
        Self {
            exit_code: e.exit_code,
            signal: e.signal.unwrap_or(0),
            signal_name: e
                .signal
                .map(crate::command::signal_name)
                .unwrap_or_default(),
            timed_out: e.timed_out,
            truncated: e.truncated,
            duration_us: u64::try_from(e.duration.as_micros()).unwrap_or(u64::MAX),
            stdout_bytes: e.stdout_bytes,
            stderr_bytes: e.stderr_bytes,
            reason: proto::EndReason::from(e.reason).into(),
            core_dumped: e.core_dumped,
        }
    }
}

impl From<proto::Exited> for Exit {
    fn from(e: proto::Exited) -> Self {
        Self {
            exit_code: e.exit_code,
            signal: (e.signal != 0).then_some(e.signal),
            core_dumped: e.core_dumped,
            timed_out: e.timed_out,
            truncated: e.truncated,
            duration: Duration::from_micros(e.duration_us),
            stdout_bytes: e.stdout_bytes,
            stderr_bytes: e.stderr_bytes,
            reason: end_reason(e.reason),
        }
    }
}

// --- Connection information ----------------------------------------------

impl From<ConnectionInfo> for proto::GetConnectionInfoResponse {
    fn from(c: ConnectionInfo) -> Self {
        Self {
            peer_address: c.peer_address,
            session_id: c.session_id,
            identity: c.identity,
            role: c.role,
            tls: c.tls,
            hostname: c.hostname,
            listen_addresses: c.listen_addresses,
            boot_id: c.boot_id,
            agent_uptime_ms: c.agent_uptime_ms,
            agent_version: c.agent_version,
            session_count: c.session_count,
            running_commands: c.running_commands,
            session_running_commands: c.session_running_commands,
            agent_pid: c.agent_pid,
            agent_certificate: c.agent_certificate.map(Into::into),
            revocation_list_number: c.revocation_list_number,
        }
    }
}

impl From<CertificateSummary> for proto::CertificateSummary {
    fn from(c: CertificateSummary) -> Self {
        Self {
            subject: c.subject,
            serial: c.serial,
            not_after_ms: c.not_after_ms,
            fingerprint: c.fingerprint,
        }
    }
}

impl From<proto::CertificateSummary> for CertificateSummary {
    fn from(c: proto::CertificateSummary) -> Self {
        Self {
            subject: c.subject,
            serial: c.serial,
            not_after_ms: c.not_after_ms,
            fingerprint: c.fingerprint,
        }
    }
}

impl From<&crate::pki::CertFacts> for CertificateSummary {
    fn from(f: &crate::pki::CertFacts) -> Self {
        Self {
            subject: f.subject.clone(),
            serial: f.serial_hex(),
            not_after_ms: f.not_after_ms,
            fingerprint: f.fingerprint.clone(),
        }
    }
}

impl From<proto::Job> for crate::types::JobInfo {
    fn from(j: proto::Job) -> Self {
        let finished = j.state == i32::from(proto::JobState::Finished);
        Self {
            job_id: j.job_id,
            identity: j.identity,
            command: j.command,
            pid: j.pid,
            started_at_ms: j.started_at_ms,
            exit: j.exited.filter(|_| finished).map(Into::into),
            ended_at_ms: j.ended_at_ms,
            output_bytes: j.output_bytes,
            retained_from: j.retained_from,
            attached: j.attached,
            expires_at_ms: j.expires_at_ms,
        }
    }
}

impl From<proto::GetConnectionInfoResponse> for ConnectionInfo {
    fn from(c: proto::GetConnectionInfoResponse) -> Self {
        Self {
            peer_address: c.peer_address,
            session_id: c.session_id,
            identity: c.identity,
            role: c.role,
            tls: c.tls,
            hostname: c.hostname,
            listen_addresses: c.listen_addresses,
            boot_id: c.boot_id,
            agent_uptime_ms: c.agent_uptime_ms,
            agent_version: c.agent_version,
            session_count: c.session_count,
            running_commands: c.running_commands,
            session_running_commands: c.session_running_commands,
            agent_pid: c.agent_pid,
            agent_certificate: c.agent_certificate.map(Into::into),
            revocation_list_number: c.revocation_list_number,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_survives_the_round_trip() {
        let exit = Exit {
            exit_code: 137,
            signal: Some(9),
            core_dumped: false,
            timed_out: true,
            truncated: true,
            duration: Duration::from_micros(1234),
            stdout_bytes: 5,
            stderr_bytes: 6,
            reason: EndReason::TimedOut,
        };
        let wire = proto::Exited::from(exit.clone());
        assert_eq!(wire.signal_name, "SIGKILL");
        assert_eq!(Exit::from(wire), exit);
    }

    #[test]
    fn unknown_enum_values_are_not_guessed() {
        assert_eq!(os_family(99), None);
        assert_eq!(os_family(0), None);
        assert_eq!(process_signal(0), None);
        assert_eq!(process_signal(77), None);
        assert_eq!(process_signal(15), Some(ProcessSignal::Term));
    }
}
