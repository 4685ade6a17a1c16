//! `vigie deploy`: puts an agent on hosts over SSH and enrolls it, with the
//! system's OpenSSH client, so the user's own keys, agent and
//! `~/.ssh/config` apply (host key checking included: deploy never turns it
//! off).
//!
//! For each host: look (is an agent enrolled there already?), copy the
//! agent binary (through ssh's stdin, into a private temporary file),
//! install it (`vigie-agent install`, which writes /etc/vigie and the
//! systemd unit, or starts it detached where systemd is absent) with a
//! fresh join code on stdin, enroll it from here, and check it over mutual
//! TLS. Nothing secret ever appears on a command line: the binary and the
//! code go through stdin, and the only values in the remote scripts are a
//! port number and a temporary path this module checked.

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use tokio::{io::AsyncWriteExt, process::Command};

use super::{Error, enroll, fleet::Host, pki::FleetCa};
use crate::types::CertificateSummary;

/// How a host is reached over SSH.
#[derive(Debug, Clone, Default)]
pub struct SshOptions {
    /// `ssh -F FILE`.
    pub config: Option<PathBuf>,
    /// `ssh -o OPTION`, repeated.
    pub options: Vec<String>,
    /// Run the install through `sudo -n` (a remote user that is not root).
    pub sudo: bool,
    /// Dial the hosts file's address rather than the host's name.
    pub by_address: bool,
    /// A private directory (0700) for ssh's control sockets: each host's
    /// steps share one ssh connection (one handshake and login, not four).
    pub control_dir: Option<PathBuf>,
}

/// What a deployment does.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    /// The agent binary to copy.
    pub agent: PathBuf,
    /// SSH.
    pub ssh: SshOptions,
    /// Install again (binary, config, service) on hosts already enrolled.
    pub force: bool,
    /// How long the agents' certificates are valid.
    pub validity: Duration,
}

/// The steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Looking at the host over SSH.
    Look,
    /// Copying the agent.
    Copy,
    /// Running `vigie-agent install`.
    Install,
    /// Enrolling from here.
    Enroll,
    /// Checking it over mutual TLS.
    Check,
}

impl Step {
    /// The step as the table shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Look => "look",
            Self::Copy => "copy",
            Self::Install => "install",
            Self::Enroll => "enroll",
            Self::Check => "check",
        }
    }
}

/// How one host's deployment ended.
#[derive(Debug, Clone)]
pub enum Deployed {
    /// Installed, enrolled and checked.
    Done {
        /// Its certificate.
        certificate: CertificateSummary,
        /// How long it took.
        took: Duration,
    },
    /// Enrolled before: left alone, and checked.
    AlreadyEnrolled {
        /// Its certificate, as this client saw it.
        not_after_ms: Option<i64>,
    },
}

/// Why one host's deployment stopped.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{step}: {reason}", step = step.as_str())]
pub struct Failed {
    /// Where it stopped.
    pub step: Step,
    /// Why.
    pub reason: String,
}

fn failed(step: Step) -> impl FnOnce(String) -> Failed {
    move |reason| Failed { step, reason }
}

/// The agent binary to copy when none is named: the `vigie-agent` beside
/// this program, else the one on PATH.
pub fn default_agent() -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("vigie-agent")))
        .filter(|path| path.is_file());
    beside.or_else(|| which::which("vigie-agent").ok())
}

/// Deploys to one host. `step` is told each step as it starts.
pub async fn deploy_host(
    ca: &FleetCa,
    host: &Host,
    options: &DeployOptions,
    step: impl Fn(Step),
) -> Result<Deployed, Failed> {
    let target = if options.ssh.by_address {
        host.entry.address.clone()
    } else {
        host.name().to_owned()
    };
    let result = deploy_steps(ca, host, options, &target, step).await;
    if options.ssh.control_dir.is_some() {
        // The shared connection ends with the host's deployment.
        let mut exit = ssh_base(&options.ssh);
        exit.args(["-O", "exit", "--"]).arg(&target);
        let _ = run(exit, None, Duration::from_secs(5)).await;
    }
    result
}

async fn deploy_steps(
    ca: &FleetCa,
    host: &Host,
    options: &DeployOptions,
    target: &str,
    step: impl Fn(Step),
) -> Result<Deployed, Failed> {
    let started = Instant::now();
    let ssh = |script: &str| ssh_command(&options.ssh, target, script);

    step(Step::Look);
    let looked = run(ssh(LOOK), None, Duration::from_secs(30))
        .await
        .map_err(failed(Step::Look))?;
    let mut lines = looked.lines();
    let enrolled = lines.next() == Some("enrolled");
    let arch = lines.next().unwrap_or_default().trim().to_owned();
    if arch != std::env::consts::ARCH {
        return Err(failed(Step::Look)(format!(
            "the host is {arch:?}, this agent binary is for {}",
            std::env::consts::ARCH
        )));
    }
    if enrolled && !options.force {
        step(Step::Check);
        check(host).await.map_err(failed(Step::Check))?;
        return Ok(Deployed::AlreadyEnrolled {
            not_after_ms: host.certificate().map(|c| c.not_after_ms),
        });
    }

    step(Step::Copy);
    let binary = tokio::fs::read(&options.agent)
        .await
        .map_err(|e| failed(Step::Copy)(format!("{}: {e}", options.agent.display())))?;
    let copied = run(ssh(COPY), Some(&binary), Duration::from_secs(300))
        .await
        .map_err(failed(Step::Copy))?;
    let temp = copied.trim().to_owned();
    if !is_temp_path(&temp) {
        return Err(failed(Step::Copy)(format!(
            "unexpected answer {:?}",
            crate::client::text::visible(&temp)
        )));
    }

    step(Step::Install);
    let code =
        crate::pki::generate_join_code().map_err(|e| failed(Step::Install)(e.to_string()))?;
    let script = install_script(&temp, host.entry.port, options.ssh.sudo, options.force);
    run(
        ssh(&script),
        Some(format!("{code}\n").as_bytes()),
        Duration::from_secs(120),
    )
    .await
    .map_err(failed(Step::Install))?;
    if enrolled {
        // Installed again over an enrolled agent: its identity stays.
        step(Step::Check);
        check(host).await.map_err(failed(Step::Check))?;
        return Ok(Deployed::AlreadyEnrolled {
            not_after_ms: host.certificate().map(|c| c.not_after_ms),
        });
    }

    step(Step::Enroll);
    let certificate = enroll_when_up(ca, host, &code, options.validity)
        .await
        .map_err(failed(Step::Enroll))?;
    step(Step::Check);
    check(host).await.map_err(failed(Step::Check))?;
    Ok(Deployed::Done {
        certificate,
        took: started.elapsed(),
    })
}

/// Prints "enrolled" or "fresh", then the machine architecture.
const LOOK: &str =
    "if [ -f /etc/vigie/agent.pem ]; then echo enrolled; else echo fresh; fi; uname -m";

/// Takes the binary on stdin into a new private temporary file and prints
/// its path.
const COPY: &str = "umask 077 && t=$(mktemp /tmp/vigie-agent.XXXXXXXX) && cat > \"$t\" && chmod 700 \"$t\" && echo \"$t\"";

fn install_script(temp: &str, port: u16, sudo: bool, force: bool) -> String {
    format!(
        "{sudo}{temp} install --join-code-stdin --listen 0.0.0.0:{port} --spawn{force}; rc=$?; rm -f {temp}; exit $rc",
        sudo = if sudo { "sudo -n " } else { "" },
        force = if force { " --force" } else { "" },
    )
}

/// What `mktemp` may have printed: the only text from the host that goes
/// into a remote script, so it is checked to the letter.
fn is_temp_path(path: &str) -> bool {
    path.strip_prefix("/tmp/vigie-agent.")
        .is_some_and(|rest| rest.len() == 8 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn ssh_command(options: &SshOptions, target: &str, script: &str) -> Command {
    let mut command = ssh_base(options);
    command.arg("--").arg(target).arg(script);
    command
}

/// ssh with the options every deployment step uses, before the target.
fn ssh_base(options: &SshOptions) -> Command {
    let mut command = Command::new("ssh");
    if let Some(config) = &options.config {
        command.arg("-F").arg(config);
    }
    // Never a prompt: a host that needs a password or an unknown host key
    // fails with ssh's own message instead of hanging the deployment. And
    // nothing forwarded: a hostile host must not get the operator's ssh
    // agent (to log into the other hosts) or X display while deploy runs.
    command.args([
        "-a",
        "-x",
        "-o",
        "BatchMode=yes",
        "-o",
        "ClearAllForwardings=yes",
        "-o",
        "PermitLocalCommand=no",
    ]);
    if let Some(dir) = &options.control_dir {
        command
            .args(["-o", "ControlMaster=auto", "-o"])
            .arg(format!("ControlPath={}/%C", dir.display()))
            .args(["-o", "ControlPersist=30"]);
    }
    for option in &options.options {
        command.arg("-o").arg(option);
    }
    command.kill_on_drop(true);
    command
}

/// Runs an ssh command with `input` on its stdin; its stdout, or why it
/// failed (ssh's or the remote command's stderr).
async fn run(
    mut command: Command,
    input: Option<&[u8]>,
    limit: Duration,
) -> Result<String, String> {
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run ssh: {e}"))?;
    let stdin = child.stdin.take();
    let feed = async {
        if let (Some(mut stdin), Some(input)) = (stdin, input) {
            // A host that stops reading shows up as ssh's own error.
            let _ = stdin.write_all(input).await;
            let _ = stdin.shutdown().await;
        }
    };
    let (output, ()) = tokio::time::timeout(limit, async {
        tokio::join!(child.wait_with_output(), feed)
    })
    .await
    .map_err(|_| format!("ssh did not finish within {} s", limit.as_secs()))?;
    let output = output.map_err(|e| format!("ssh: {e}"))?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message");
    Err(format!(
        "{} (exit status {})",
        crate::client::text::visible(last.trim()),
        output
            .status
            .code()
            .map_or("none".into(), |c| c.to_string())
    ))
}

/// Enrolls the host, waiting up to 15 s for its agent to listen (a service
/// takes a moment to start).
async fn enroll_when_up(
    ca: &FleetCa,
    host: &Host,
    code: &str,
    validity: Duration,
) -> Result<CertificateSummary, String> {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        match enroll::enroll(ca, host.name(), &host.address(), code, validity).await {
            Ok(certificate) => return Ok(certificate),
            Err(enroll::EnrollFailure::Client(e)) if is_not_up(&e) && Instant::now() < until => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn is_not_up(error: &Error) -> bool {
    matches!(error, Error::Connect { .. } | Error::Transport { .. })
}

/// Checks the agent over the fleet's mutual TLS, as every later command
/// will reach it.
async fn check(host: &Host) -> Result<(), String> {
    let client = host.client().await.map_err(|e| e.to_string())?;
    let info = client.connection_info().await.map_err(|e| e.to_string())?;
    if !info.tls {
        return Err("the agent answered without TLS".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_mktemp_path_goes_into_the_install_script() {
        assert!(is_temp_path("/tmp/vigie-agent.AbC123xY"));
        for bad in [
            "/tmp/vigie-agent.AbC123x",
            "/tmp/vigie-agent.AbC12;xY",
            "/tmp/vigie-agent.AbC123xY; rm -rf /",
            "/var/tmp/vigie-agent.AbC123xY",
            "",
        ] {
            assert!(!is_temp_path(bad), "{bad:?}");
        }
        let script = install_script("/tmp/vigie-agent.AbC123xY", 7421, true, false);
        assert_eq!(
            script,
            "sudo -n /tmp/vigie-agent.AbC123xY install --join-code-stdin --listen 0.0.0.0:7421 \
             --spawn; rc=$?; rm -f /tmp/vigie-agent.AbC123xY; exit $rc"
        );
    }
}
