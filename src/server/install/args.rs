//! The arguments of `vigie-agent install` and `uninstall`.

use std::{ffi::OsString, path::PathBuf, time::Duration};

use super::{InstallOptions, Layout, UninstallOptions};

/// `vigie-agent install`.
#[derive(Debug, Clone, clap::Args)]
pub struct InstallArgs {
    /// Address the written configuration listens on.
    #[arg(long, value_name = "HOST:PORT", default_value_t = super::default_listen())]
    pub listen: String,
    /// Read the join code from the first line of stdin and store it (what
    /// `vigie deploy` does); without it, a code is made and shown once if
    /// the agent is neither enrolled nor holding one.
    #[arg(long)]
    pub join_code_stdin: bool,
    /// How long a join code stored now stays valid, e.g. 15m, 1h, 2d.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub join_valid: Duration,
    /// Write everything, but neither enable nor start the agent.
    #[arg(long, conflicts_with = "spawn")]
    pub no_start: bool,
    /// Where systemd is absent, start the agent detached (its pid in
    /// /run/vigie-agent.pid, its output in /var/log/vigie/agent.log).
    #[arg(long)]
    pub spawn: bool,
    /// Replace an existing /etc/vigie/agent.toml.
    #[arg(long)]
    pub force: bool,
    /// Put every system path under this directory (for tests).
    #[arg(long, value_name = "DIR", hide = true)]
    pub root: Option<PathBuf>,
    /// The systemctl program (for tests).
    #[arg(long, value_name = "PROGRAM", hide = true, default_value = "systemctl")]
    pub systemctl: OsString,
}

/// `vigie-agent uninstall`.
#[derive(Debug, Clone, clap::Args)]
pub struct UninstallArgs {
    /// Remove /etc/vigie and /var/log/vigie too: the host then needs a new
    /// join code and enrollment to rejoin its fleet.
    #[arg(long)]
    pub purge: bool,
    /// Put every system path under this directory (for tests).
    #[arg(long, value_name = "DIR", hide = true)]
    pub root: Option<PathBuf>,
    /// The systemctl program (for tests).
    #[arg(long, value_name = "PROGRAM", hide = true, default_value = "systemctl")]
    pub systemctl: OsString,
}

impl InstallArgs {
    /// What to do.
    pub fn options(&self) -> std::io::Result<InstallOptions> {
        Ok(InstallOptions {
            listen: self.listen.clone(),
            join_code_stdin: self.join_code_stdin,
            join_valid: self.join_valid,
            no_start: self.no_start,
            spawn: self.spawn,
            force: self.force,
            layout: layout(self.root.as_ref())?,
            systemctl: self.systemctl.clone(),
        })
    }
}

impl UninstallArgs {
    /// What to do.
    pub fn options(&self) -> std::io::Result<UninstallOptions> {
        Ok(UninstallOptions {
            purge: self.purge,
            layout: layout(self.root.as_ref())?,
            systemctl: self.systemctl.clone(),
        })
    }
}

/// `--root` made absolute, since the files written name paths under it
/// and the agent started from them runs in `/`.
fn layout(root: Option<&PathBuf>) -> std::io::Result<Layout> {
    Ok(Layout::new(root.map(std::path::absolute).transpose()?))
}
