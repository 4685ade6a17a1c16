//! Command lines as the original brief wrote them: an optional OS prefix
//! (`DOS:dir`, `Linux:ls -la`, `Powershell:Get-Process`) before the command.
//!
//! The agent, the CLI and the GUI all parse prefixes here, so a command means
//! the same thing whichever way it is sent. The agent checks compatibility
//! itself in any case; clients use the same check to skip hosts that would
//! refuse the command.

use std::fmt;

/// The operating-system families vigie distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OsFamily {
    /// Linux, any distribution.
    Linux,
    /// Microsoft Windows.
    Windows,
    /// Apple macOS.
    Macos,
    /// Another Unix (FreeBSD, OpenBSD, ...).
    OtherUnix,
}

impl OsFamily {
    /// The family of the machine this code runs on.
    pub fn current() -> Self {
        if cfg!(target_os = "linux") {
            Self::Linux
        } else if cfg!(windows) {
            Self::Windows
        } else if cfg!(target_os = "macos") {
            Self::Macos
        } else {
            Self::OtherUnix
        }
    }
}

impl fmt::Display for OsFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Linux => "Linux",
            Self::Windows => "Windows",
            Self::Macos => "macOS",
            Self::OtherUnix => "Unix",
        })
    }
}

/// How a command line is run on the host.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Shell {
    /// The host's default shell (`sh -c` on Unix, `cmd /C` on Windows).
    #[default]
    Default,
    /// POSIX `sh -c`.
    Sh,
    /// Windows `cmd /C`.
    Cmd,
    /// PowerShell (`pwsh`, or Windows PowerShell `powershell`).
    PowerShell,
    /// No shell: the words are executed directly.
    None,
}

/// The OS prefixes of the original brief.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prefix {
    /// `DOS:` runs with `cmd`, on Windows only.
    Dos,
    /// `Linux:` runs with the default shell, on Linux only.
    Linux,
    /// `Powershell:` runs with PowerShell, on any OS that has it.
    PowerShell,
}

impl Prefix {
    /// The prefix as users write it, colon included.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dos => "DOS:",
            Self::Linux => "Linux:",
            Self::PowerShell => "Powershell:",
        }
    }

    /// Every prefix, in the order hints show them.
    pub const ALL: [Prefix; 3] = [Self::Dos, Self::Linux, Self::PowerShell];
}

/// A command line with its prefix taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCommand<'a> {
    /// The prefix that was found, if any.
    pub prefix: Option<Prefix>,
    /// The shell the prefix asks for (`Default` when there is no prefix).
    pub shell: Shell,
    /// The OS the prefix requires, if any.
    pub required_os: Option<OsFamily>,
    /// The command without its prefix and the blanks after it.
    pub command: &'a str,
}

/// Splits an optional OS prefix off a command line.
///
/// A prefix is one of `DOS:`, `Linux:` and `Powershell:` at the very start
/// of the line, in any letter case (`dos:`, `POWERSHELL:` also count), and
/// the blanks after the colon are dropped. Anything else, such as
/// `C:\tools\x.exe` or `http://…`, is not a prefix and is left as it is.
pub fn parse(line: &str) -> ParsedCommand<'_> {
    let unprefixed = ParsedCommand {
        prefix: None,
        shell: Shell::Default,
        required_os: None,
        command: line,
    };
    let Some((head, rest)) = line.split_once(':') else {
        return unprefixed;
    };
    let prefix = if head.eq_ignore_ascii_case("dos") {
        Prefix::Dos
    } else if head.eq_ignore_ascii_case("linux") {
        Prefix::Linux
    } else if head.eq_ignore_ascii_case("powershell") {
        Prefix::PowerShell
    } else {
        return unprefixed;
    };
    let (shell, required_os) = match prefix {
        Prefix::Dos => (Shell::Cmd, Some(OsFamily::Windows)),
        Prefix::Linux => (Shell::Default, Some(OsFamily::Linux)),
        Prefix::PowerShell => (Shell::PowerShell, None),
    };
    ParsedCommand {
        prefix: Some(prefix),
        shell,
        required_os,
        command: rest.trim_start(),
    }
}

/// Why a command cannot run on a host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Incompatible {
    /// The command needs another OS.
    #[error("this host runs {host}; the command needs {needed}")]
    Os {
        /// What the host runs.
        host: OsFamily,
        /// What the command needs.
        needed: OsFamily,
    },
    /// The shell only exists on another OS.
    #[error("this host runs {host}; {shell} exists only on Windows")]
    Shell {
        /// What the host runs.
        host: OsFamily,
        /// The shell that was asked for.
        shell: &'static str,
    },
}

/// Checks, from the OS family alone, whether a command with this shell and
/// OS requirement can run on a host. (Whether PowerShell is installed can
/// only be checked on the host itself.)
pub fn check_compatible(
    host: OsFamily,
    shell: Shell,
    required_os: Option<OsFamily>,
) -> Result<(), Incompatible> {
    if let Some(needed) = required_os
        && needed != host
    {
        return Err(Incompatible::Os { host, needed });
    }
    if shell == Shell::Cmd && host != OsFamily::Windows {
        return Err(Incompatible::Shell { host, shell: "cmd" });
    }
    Ok(())
}

/// Which output stream bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Why a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// It exited, or died of a signal, on its own.
    Exited,
    /// Its time limit expired and the agent terminated it.
    TimedOut,
    /// Its session ended and the agent terminated it.
    SessionEnded,
    /// The agent was stopping or restarting and terminated it.
    AgentStopping,
    /// The client went away (cancelled the call) and the agent terminated it.
    ClientGone,
    /// A job was cancelled (CancelJob).
    Cancelled,
}

/// How a command ended, as the agent reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Exit {
    /// Exit status; 128 + the signal number when a signal ended it.
    pub exit_code: i32,
    /// The signal that ended it, if any (Unix numbering).
    pub signal: Option<i32>,
    /// True when the process dumped core.
    pub core_dumped: bool,
    /// True when its time limit expired.
    pub timed_out: bool,
    /// True when output went past the cap and the rest was discarded.
    pub truncated: bool,
    /// Wall time from start to the end of its output.
    pub duration: std::time::Duration,
    /// Bytes written to stdout, including any discarded.
    pub stdout_bytes: u64,
    /// Bytes written to stderr, including any discarded.
    pub stderr_bytes: u64,
    /// Why it ended.
    pub reason: EndReason,
}

impl Exit {
    /// True when the command exited on its own with status 0.
    pub fn success(&self) -> bool {
        self.exit_code == 0 && self.signal.is_none() && self.reason == EndReason::Exited
    }
}

/// The conventional name of a Unix signal number, e.g. "SIGKILL" for 9.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        17 => "SIGCHLD",
        18 => "SIGCONT",
        19 => "SIGSTOP",
        20 => "SIGTSTP",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        _ => return format!("SIG{signal}"),
    };
    name.to_owned()
}

/// What a client asks to run (the domain form of `ExecuteRequest`).
///
/// Its `Debug` output leaves out the stdin bytes and environment values,
/// which may hold secrets, so that no log can show them.
#[derive(Clone, Default)]
pub struct ExecRequest {
    /// The command line, possibly with an OS prefix.
    pub command: String,
    /// How to run it.
    pub shell: Shell,
    /// With `Shell::None`, the program and its arguments; `command` is
    /// then empty (an agent refuses a request that sets both).
    pub argv: Vec<String>,
    /// The OS the command needs.
    pub required_os: Option<OsFamily>,
    /// Working directory; `None` means the agent's own.
    pub working_directory: Option<String>,
    /// Environment additions.
    pub environment: Vec<(String, String)>,
    /// Bytes for standard input.
    pub stdin: bytes::Bytes,
    /// Time limit.
    pub timeout: Option<std::time::Duration>,
    /// Most output bytes to send back; `None` means the agent's cap. For a
    /// detached job, the size of its log.
    pub output_limit: Option<u64>,
    /// Runs it as a job that outlives the call (see `Event::Started::job_id`).
    pub detach: bool,
    /// A script's bytes, run by its interpreter with `argv` as its
    /// arguments (then `command` is empty); empty for a plain command.
    pub script: bytes::Bytes,
    /// The script's interpreter, as a `#!` line would name it (e.g.
    /// "/usr/bin/env python3"); `None` means the script's own `#!` line.
    pub interpreter: Option<String>,
}

impl ExecRequest {
    /// A request for this command line, everything else by default.
    pub fn new(command: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            ..Self::default()
        }
    }

    /// The command line as the client's history shows it: the argv joined
    /// with shell quoting when there is one, else `command`. (The agent
    /// logs and checks its own plan of the request, never this text.)
    pub fn command_line(&self) -> String {
        if !self.script.is_empty() {
            let mut line = format!("script of {} bytes", self.script.len());
            if !self.argv.is_empty() {
                line.push(' ');
                line.push_str(&shell_words::join(&self.argv));
            }
            return line;
        }
        if self.argv.is_empty() {
            self.command.clone()
        } else {
            shell_words::join(&self.argv)
        }
    }
}

impl std::fmt::Debug for ExecRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let environment: Vec<&str> = self.environment.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ExecRequest")
            .field("command", &self.command)
            .field("shell", &self.shell)
            .field("argv", &self.argv)
            .field("required_os", &self.required_os)
            .field("working_directory", &self.working_directory)
            .field("environment_names", &environment)
            .field("stdin_bytes", &self.stdin.len())
            .field("timeout", &self.timeout)
            .field("output_limit", &self.output_limit)
            .field("detach", &self.detach)
            .field("script_bytes", &self.script.len())
            .field("interpreter", &self.interpreter)
            .finish()
    }
}

/// An event of a running command, in the order the client receives them.
#[derive(Debug, Clone)]
pub enum Event {
    /// The command started.
    Started {
        /// Its pid, which is also its process group id.
        pid: i32,
        /// What was executed.
        argv: Vec<String>,
        /// When it started.
        started_at: std::time::SystemTime,
        /// The job id, for a detached command.
        job_id: Option<String>,
    },
    /// A chunk of output.
    Output {
        /// Which stream.
        stream: OutputStream,
        /// The bytes.
        data: bytes::Bytes,
    },
    /// Output a job's log dropped to stay within its cap.
    Gap {
        /// Offset of the first byte dropped.
        offset: u64,
        /// Bytes dropped.
        length: u64,
    },
    /// The command ended; always the last event.
    Exited(Exit),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_of_the_brief() {
        let dos = parse("DOS:dir");
        assert_eq!(dos.prefix, Some(Prefix::Dos));
        assert_eq!(dos.shell, Shell::Cmd);
        assert_eq!(dos.required_os, Some(OsFamily::Windows));
        assert_eq!(dos.command, "dir");

        let linux = parse("Linux:ls -la");
        assert_eq!(linux.shell, Shell::Default);
        assert_eq!(linux.required_os, Some(OsFamily::Linux));
        assert_eq!(linux.command, "ls -la");

        let ps = parse("Powershell: get-process");
        assert_eq!(ps.shell, Shell::PowerShell);
        assert_eq!(ps.required_os, None);
        assert_eq!(ps.command, "get-process");
    }

    #[test]
    fn prefixes_ignore_letter_case() {
        assert_eq!(parse("dos:mkdir toto").prefix, Some(Prefix::Dos));
        assert_eq!(parse("LINUX:uname").prefix, Some(Prefix::Linux));
        assert_eq!(parse("PowerShell:ls").prefix, Some(Prefix::PowerShell));
    }

    #[test]
    fn colons_that_are_not_prefixes_stay() {
        for line in [
            "python --version",
            "C:\\tools\\x.exe",
            "curl http://127.0.0.1:80/",
            "echo a:b",
            ":",
            "",
            " Linux:ls",
        ] {
            let parsed = parse(line);
            assert_eq!(parsed.prefix, None, "{line:?}");
            assert_eq!(parsed.command, line);
            assert_eq!(parsed.shell, Shell::Default);
        }
    }

    #[test]
    fn a_bare_prefix_leaves_an_empty_command() {
        assert_eq!(parse("Linux:").command, "");
        assert_eq!(parse("DOS:   ").command, "");
    }

    #[test]
    fn compatibility() {
        let linux = OsFamily::Linux;
        assert!(check_compatible(linux, Shell::Default, Some(OsFamily::Linux)).is_ok());
        assert_eq!(
            check_compatible(linux, Shell::Cmd, Some(OsFamily::Windows)),
            Err(Incompatible::Os {
                host: linux,
                needed: OsFamily::Windows
            })
        );
        assert!(matches!(
            check_compatible(linux, Shell::Cmd, None),
            Err(Incompatible::Shell { .. })
        ));
        assert!(check_compatible(OsFamily::Windows, Shell::Cmd, None).is_ok());
        assert!(check_compatible(linux, Shell::PowerShell, None).is_ok());
        let message = check_compatible(linux, Shell::Cmd, Some(OsFamily::Windows))
            .unwrap_err()
            .to_string();
        assert_eq!(message, "this host runs Linux; the command needs Windows");
    }
}
