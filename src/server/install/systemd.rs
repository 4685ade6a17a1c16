//! The service under systemd: reloading units, enabling, starting and
//! restarting it, and stopping it again.

use std::{
    ffi::OsString,
    io::{self, Write},
};

use super::{InstallError, SERVICE, say};

/// Enables and starts the service after a daemon-reload; restarts it if it
/// ran and anything changed; leaves a running, unchanged one alone.
pub(super) fn start_service(
    program: &OsString,
    changed: bool,
    no_start: bool,
    out: &mut dyn Write,
) -> Result<(), InstallError> {
    systemctl(program, &["daemon-reload"])?;
    say(out, "reloaded systemd's units")?;
    if no_start {
        return say(
            out,
            format_args!(
                "not enabled or started (--no-start); later: systemctl enable --now {SERVICE}"
            ),
        );
    }
    let enabled = systemctl_says(program, &["is-enabled", "--quiet", SERVICE]);
    let active = systemctl_says(program, &["is-active", "--quiet", SERVICE]);
    if !enabled && !active {
        systemctl(program, &["enable", "--now", SERVICE])?;
        return say(out, format_args!("enabled and started {SERVICE}"));
    }
    if !enabled {
        systemctl(program, &["enable", SERVICE])?;
        say(out, format_args!("enabled {SERVICE}"))?;
    }
    if !active {
        systemctl(program, &["start", SERVICE])?;
        say(out, format_args!("started {SERVICE}"))
    } else if changed {
        systemctl(program, &["restart", SERVICE])?;
        say(out, format_args!("restarted {SERVICE} (its setup changed)"))
    } else {
        say(
            out,
            format_args!("{SERVICE} is running and nothing changed: left it alone"),
        )
    }
}

/// Runs systemctl; its own output goes to stderr, so that stdout keeps one
/// line per step.
pub(super) fn systemctl(program: &OsString, args: &[&str]) -> Result<(), InstallError> {
    let command = format!("{} {}", program.to_string_lossy(), args.join(" "));
    let failed = |e: io::Error| InstallError::Systemctl {
        command: command.clone(),
        reason: e.to_string(),
    };
    let stderr = std::os::fd::AsFd::as_fd(&io::stderr())
        .try_clone_to_owned()
        .map_err(failed)?;
    let status = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(stderr)
        .status()
        .map_err(failed)?;
    if status.success() {
        Ok(())
    } else {
        Err(InstallError::Systemctl {
            command,
            reason: status.to_string(),
        })
    }
}

/// True when a systemctl query answers yes (exit status 0).
fn systemctl_says(program: &OsString, args: &[&str]) -> bool {
    std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}
