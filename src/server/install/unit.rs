//! The texts `vigie-agent install` writes: the systemd unit and the agent
//! configuration. Both are pure functions, so that the packaged copies in
//! `packaging/` can be checked against them byte for byte.

use std::{fmt::Write, os::unix::ffi::OsStrExt, path::Path, time::Duration};

use serde::Serialize;

/// The name of the service, as systemctl knows it.
pub const SERVICE: &str = "vigie-agent";

/// How long systemd waits for the agent to stop before it kills what is
/// left. The agent's own stop takes at most three kill graces and a second
/// (its commands) plus the shutdown grace (open calls): 12 s with the
/// defaults. Twice that leaves room for a loaded host.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The systemd unit that runs `binary --config config`.
pub fn unit_text(binary: &Path, config: &Path) -> String {
    let exec_start = format!("{} --config {}", exec_word(binary), exec_word(config));
    let stop_timeout = STOP_TIMEOUT.as_secs();
    format!(
        "\
# The vigie agent: remote management of this host over gRPC.
# Written by `vigie-agent install` or shipped by the vigie package, either of
# which may replace it: put local changes in a drop-in
# (systemctl edit {SERVICE}).
#
# There is no sandboxing here, on purpose. The agent runs administrators'
# commands as root (apt, systemctl, editing files under /etc), and whatever
# restricts this unit restricts those commands too: ProtectSystem,
# ProtectHome, PrivateTmp, NoNewPrivileges, capability bounding, system call
# filters and address family restrictions would make them fail (a package
# upgrade, sudo, a service restart through systemd's socket) or act on a
# private view of the host. To limit what may run, use the agent's own
# policy in its configuration: no_exec, or exec_allow per role.
[Unit]
Description=vigie agent (remote management of this host)
After=network-online.target
Wants=network-online.target
# The agent is the way in to this host: it keeps being restarted, however
# often it fails (an address not up yet, a configuration fixed later).
StartLimitIntervalSec=0

[Service]
Type=simple
ExecStart={exec_start}
Restart=on-failure
RestartSec=2s
# Stopping the service kills every process left in its control group. The
# agent ends its commands' process groups itself; this also ends whatever
# left them (a command that called setsid). A command may still restart the
# agent with `systemctl restart {SERVICE}`: the job belongs to systemd and
# completes, though the command itself ends with the agent.
KillMode=control-group
# Longer than the agent's own stop: its commands get up to three kill graces
# and a second, then open calls get the shutdown grace (12 s with the
# defaults). Raise it in a drop-in along with kill_grace_ms or
# shutdown_grace_ms.
TimeoutStopSec={stop_timeout}s
# Room for many connections and the pipes of many commands.
LimitNOFILE=65536
# No UMask and no OOMScoreAdjust here: the commands the agent runs would
# inherit them (files an admin command creates would be 0600, and a runaway
# command would be spared by the OOM killer). The agent creates its own
# files (key, join code, audit log) with explicit private modes instead.
# A command the kernel kills for memory dies alone; by default systemd would
# stop the whole service, the agent and every other command with it.
OOMPolicy=continue

[Install]
WantedBy=multi-user.target
"
    )
}

/// The agent configuration `install` writes: where it listens, its fleet
/// directory and its audit log; everything else keeps its default.
pub fn config_text(
    listen: &str,
    fleet_dir: &Path,
    audit_log: &Path,
    state_dir: &Path,
) -> Result<String, toml::ser::Error> {
    /// The settings written, in this order.
    #[derive(Serialize)]
    struct Written<'a> {
        listen: &'a str,
        fleet_dir: &'a Path,
        audit_log: &'a Path,
        state_dir: &'a Path,
    }
    // Through the serializer, so that no value can break out of its string.
    let body = toml::to_string(&Written {
        listen,
        fleet_dir,
        audit_log,
        state_dir,
    })?;
    Ok(format!(
        "# vigie agent configuration (every setting: docs/USER_GUIDE.md).\n\
         # The fleet directory holds this agent's key, its certificate and its\n\
         # pending join code; the state directory, detached jobs' output while\n\
         # the agent runs. To restrict what may run, add no_exec or exec_allow.\n\
         {body}"
    ))
}

/// One word of an `ExecStart=` line. A plain path is written as it is;
/// any other is double-quoted, with the characters systemd would read as
/// specifiers (`%`), variables (`$`), quotes or escapes escaped, and bytes
/// outside printable ASCII written as `\xNN` (which systemd turns back
/// into those bytes).
fn exec_word(path: &Path) -> String {
    let bytes = path.as_os_str().as_bytes();
    let plain = |b: &u8| b.is_ascii_alphanumeric() || b"/._-+,:@=".contains(b);
    if !bytes.is_empty() && bytes.iter().all(plain) {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let mut word = String::from("\"");
    for &b in bytes {
        match b {
            b'"' => word.push_str("\\\""),
            b'\\' => word.push_str("\\\\"),
            b'%' => word.push_str("%%"),
            b'$' => word.push_str("$$"),
            0x20..=0x7e => word.push(char::from(b)),
            _ => {
                let _ = write!(word, "\\x{b:02x}");
            }
        }
    }
    word.push('"');
    word
}

#[cfg(test)]
mod tests {
    use std::{ffi::OsStr, path::PathBuf};

    use super::*;
    use crate::server::AgentConfig;

    fn setting<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
        unit.lines()
            .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .collect()
    }

    #[test]
    fn the_unit_restarts_on_failure_and_kills_the_whole_control_group() {
        let unit = unit_text(
            Path::new("/usr/local/bin/vigie-agent"),
            Path::new("/etc/vigie/agent.toml"),
        );
        for (key, value) in [
            (
                "ExecStart",
                "/usr/local/bin/vigie-agent --config /etc/vigie/agent.toml",
            ),
            ("Restart", "on-failure"),
            ("RestartSec", "2s"),
            ("KillMode", "control-group"),
            ("After", "network-online.target"),
            ("Wants", "network-online.target"),
            ("LimitNOFILE", "65536"),
            ("OOMPolicy", "continue"),
            ("WantedBy", "multi-user.target"),
        ] {
            assert_eq!(setting(&unit, key), [value], "{key}");
        }
        // Sandboxing would bind the commands the agent runs: only the
        // comment that says so names it.
        for absent in [
            "ProtectSystem=",
            "ProtectHome=",
            "NoNewPrivileges=",
            "PrivateTmp=",
            "CapabilityBoundingSet=",
            "UMask=",
            "OOMScoreAdjust=",
            "SystemCallFilter=",
            "RestrictAddressFamilies=",
        ] {
            assert!(!unit.contains(absent), "{absent}");
        }
        assert!(unit.contains("exec_allow"), "the comment names the policy");
    }

    #[test]
    fn systemd_waits_longer_than_the_agent_takes_to_stop() {
        let defaults = AgentConfig::default();
        // What `Agent::serve_generation` waits at most, and the runtime's
        // own second after it.
        let agent_stop = defaults.kill_grace() * 3
            + Duration::from_secs(1)
            + defaults.shutdown_grace()
            + Duration::from_secs(1);
        assert!(agent_stop * 2 <= STOP_TIMEOUT, "{agent_stop:?}");
        let unit = unit_text(Path::new("/a"), Path::new("/b"));
        assert_eq!(setting(&unit, "TimeoutStopSec"), ["30s"]);
    }

    #[test]
    fn exec_start_paths_are_quoted_and_escaped_for_systemd() {
        let unit = unit_text(
            Path::new("/opt/my tools/vigie-agent"),
            Path::new("/etc/vigie \"100%\" $HOME\\x/agent.toml"),
        );
        assert_eq!(
            setting(&unit, "ExecStart"),
            [r#""/opt/my tools/vigie-agent" --config "/etc/vigie \"100%%\" $$HOME\\x/agent.toml""#]
        );
        let odd = PathBuf::from(OsStr::from_bytes(b"/tmp/\xffnew\nline"));
        assert_eq!(exec_word(&odd), r#""/tmp/\xffnew\x0aline""#);
        assert_eq!(
            exec_word(Path::new("/usr/bin/vigie-agent")),
            "/usr/bin/vigie-agent"
        );
    }

    #[test]
    fn the_config_written_parses_as_an_agent_config() {
        let text = config_text(
            "0.0.0.0:7421",
            Path::new("/etc/vigie"),
            Path::new("/var/log/vigie/audit.jsonl"),
            Path::new("/var/lib/vigie"),
        )
        .unwrap();
        let config: AgentConfig = toml::from_str(&text).unwrap();
        assert_eq!(
            config,
            AgentConfig {
                listen: "0.0.0.0:7421".into(),
                fleet_dir: Some("/etc/vigie".into()),
                audit_log: Some("/var/log/vigie/audit.jsonl".into()),
                state_dir: Some("/var/lib/vigie".into()),
                ..AgentConfig::default()
            }
        );
        // A value cannot add a setting of its own.
        let sneaky = config_text(
            "x\"\nno_exec = false\n",
            Path::new("/a"),
            Path::new("/b"),
            Path::new("/c"),
        );
        let config: AgentConfig = toml::from_str(&sneaky.unwrap()).unwrap();
        assert_eq!(config.listen, "x\"\nno_exec = false\n");
    }
}
