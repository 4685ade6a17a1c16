//! Planning a command: from a request to the exact program, arguments,
//! environment and input that will be spawned, with every check made on
//! that plan and nothing else.
//!
//! A request names a command line for a shell (`command`), or a program and
//! its arguments (`argv`, with `SHELL_NONE`), never both. Under an exec
//! allow-list the command runs without a shell: its words are matched
//! against the caller's patterns, its program is resolved to an absolute
//! path with the agent's own PATH, and the environment and standard input
//! are allowed only as far as the matching entry says. The spec returned
//! is what `spawn` runs and what the audit log records, so a check can never
//! look at one command while another one runs.

use std::{
    ffi::OsString,
    io,
    path::{Path, PathBuf},
    time::Duration,
};

use bytes::Bytes;

use super::ExecError;
use crate::{
    command::{self, ExecRequest, OsFamily, Shell},
    server::policy::{self, AllowRule, ExecScope},
};

/// A command ready to spawn.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    /// The program, as an absolute path when it was looked up.
    pub program: PathBuf,
    /// Arguments after the program.
    pub args: Vec<OsString>,
    /// The command as the policy saw it and as logs show it: the text given
    /// to the shell, or the words run directly joined with shell quoting.
    pub command_line: String,
    /// Working directory.
    pub working_directory: Option<PathBuf>,
    /// Environment additions.
    pub environment: Vec<(String, String)>,
    /// Bytes for standard input.
    pub stdin: Bytes,
    /// Time limit.
    pub timeout: Option<Duration>,
    /// Most output bytes to forward.
    pub output_limit: u64,
    /// A script's bytes, given to the interpreter as the file
    /// [`SCRIPT_ARG`] names (replaced by its descriptor when spawned).
    pub script: Option<Bytes>,
}

/// The argument that stands for a script's memory file until it is spawned.
pub const SCRIPT_ARG: &str = "/dev/fd/{script}";

impl CommandSpec {
    /// The program and its arguments, as text for logs and the `started` event.
    pub fn display_argv(&self) -> Vec<String> {
        std::iter::once(self.program.to_string_lossy().into_owned())
            .chain(self.args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect()
    }
}

/// Facts about the host that planning needs.
#[derive(Debug, Clone)]
pub struct Host {
    /// The host's OS family.
    pub os: OsFamily,
    /// A readable description for error messages, e.g. "Linux (Debian GNU/Linux 12)".
    pub description: String,
    /// The agent's output cap per command.
    pub output_cap: u64,
}

/// Turns a request into a command to spawn: resolves the OS prefix and the
/// shell, applies the caller's exec scope, and checks everything that can
/// be checked before spawning.
pub fn plan(
    request: &ExecRequest,
    host: &Host,
    scope: ExecScope<'_>,
) -> Result<CommandSpec, ExecError> {
    check_text("command", &request.command)?;
    for arg in &request.argv {
        check_text("argument", arg)?;
    }
    if !request.argv.is_empty() {
        if !request.command.is_empty() {
            return Err(ExecError::InvalidArgument(
                "set either command or argv, not both: argv is run as it is, command by a shell"
                    .into(),
            ));
        }
        if request.shell != Shell::None {
            return Err(ExecError::InvalidArgument(
                "argv is run without a shell: it needs shell = SHELL_NONE".into(),
            ));
        }
    }
    // The prefixed form is honoured whenever no shell was named, so that a
    // grpcurl user typing "DOS:dir" gets what the CLI user gets.
    let (shell, prefix_os, text) = if request.shell == Shell::Default {
        let parsed = command::parse(&request.command);
        (parsed.shell, parsed.required_os, parsed.command)
    } else {
        (request.shell, None, request.command.as_str())
    };
    // The prefix's requirement first, so that "DOS:dir" on Linux says the
    // command needs Windows rather than that cmd is missing.
    for (required, origin) in [
        (prefix_os, " (the command's OS prefix)"),
        (request.required_os, ""),
    ] {
        command::check_compatible(host.os, shell, required).map_err(|e| {
            ExecError::Incompatible(match e {
                command::Incompatible::Os { needed, .. } => format!(
                    "this host runs {}; the command needs {needed}{origin}",
                    host.description
                ),
                command::Incompatible::Shell { shell, .. } => format!(
                    "this host runs {}; {shell} exists only on Windows",
                    host.description
                ),
            })
        })?;
    }
    let text = text.trim();
    for (key, value) in &request.environment {
        if key.is_empty() || key.contains('=') {
            return Err(ExecError::InvalidArgument(format!(
                "environment variable name {key:?} is empty or contains '='"
            )));
        }
        check_text("environment variable name", key)?;
        check_text("environment variable value", value)?;
    }

    let (program, args, command_line) = if !request.script.is_empty() {
        plan_script(request, host)?
    } else {
        plan_command(request, host, scope, (shell, text))?
    };

    let working_directory = match request.working_directory.as_deref() {
        None | Some("") => None,
        Some(dir) => {
            check_text("working directory", dir)?;
            Some(check_directory(dir)?)
        }
    };
    let output_limit = match request.output_limit {
        None | Some(0) => host.output_cap,
        Some(limit) => limit.min(host.output_cap),
    };
    Ok(CommandSpec {
        program,
        args,
        command_line,
        working_directory,
        environment: request.environment.clone(),
        stdin: request.stdin.clone(),
        timeout: request.timeout.filter(|t| !t.is_zero()),
        output_limit,
        script: (!request.script.is_empty()).then(|| request.script.clone()),
    })
}

/// A script's plan: its interpreter (the request's, or the script's `#!`
/// line read as the kernel reads it: a program and at most one argument),
/// the script's memory file, then its arguments as they are.
fn plan_script(
    request: &ExecRequest,
    host: &Host,
) -> Result<(PathBuf, Vec<OsString>, String), ExecError> {
    if !request.command.trim().is_empty() {
        return Err(ExecError::InvalidArgument(
            "a script runs instead of a command: leave command empty and pass its arguments in argv"
                .into(),
        ));
    }
    if host.os == OsFamily::Windows {
        return Err(ExecError::Incompatible(format!(
            "this host runs {}: scripts run on Unix hosts only",
            host.description
        )));
    }
    let from_script = || {
        let first = request
            .script
            .split(|&b| b == b'\n')
            .next()
            .unwrap_or_default();
        first
            .strip_prefix(b"#!")
            .and_then(|line| std::str::from_utf8(line).ok())
            .map(|line| line.trim().to_owned())
    };
    let line = match request
        .interpreter
        .as_deref()
        .filter(|i| !i.trim().is_empty())
    {
        Some(given) => given.trim().to_owned(),
        None => from_script().filter(|l| !l.is_empty()).ok_or_else(|| {
            ExecError::InvalidArgument(
                "the script has no #! line: name its interpreter (--interpreter)".into(),
            )
        })?,
    };
    check_text("interpreter", &line)?;
    let (name, argument) = match line.split_once(char::is_whitespace) {
        Some((name, rest)) => (name, Some(rest.trim()).filter(|r| !r.is_empty())),
        None => (line.as_str(), None),
    };
    let program = if name.contains('/') {
        let path = Path::new(name);
        if !path.is_absolute() || !path.is_file() {
            return Err(ExecError::ProgramNotFound(name.to_owned()));
        }
        path.to_owned()
    } else {
        find_on_agent_path(name)?
    };
    let mut args: Vec<OsString> = argument.map(OsString::from).into_iter().collect();
    args.push(SCRIPT_ARG.into());
    args.extend(request.argv.iter().map(OsString::from));
    let digest = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&request.script))
    };
    let mut command_line = format!(
        "script of {} bytes (sha256 {digest}) run by {line}",
        request.script.len()
    );
    if !request.argv.is_empty() {
        command_line.push(' ');
        command_line.push_str(&shell_words::join(&request.argv));
    }
    Ok((program, args, command_line))
}

/// A command's plan under the caller's scope.
fn plan_command(
    request: &ExecRequest,
    host: &Host,
    scope: ExecScope<'_>,
    (shell, text): (Shell, &str),
) -> Result<(PathBuf, Vec<OsString>, String), ExecError> {
    Ok(match scope {
        ExecScope::AllowList(rules) => {
            if !matches!(shell, Shell::Default | Shell::Sh | Shell::None) {
                return Err(ExecError::NotAllowed(
                    "allow-listed commands run without a shell: cmd and PowerShell commands \
                     are not allowed for this caller"
                        .into(),
                ));
            }
            plan_allowed(words(request, text)?, rules, request)?
        }
        ExecScope::Unrestricted => match shell {
            Shell::None => {
                let words = words(request, text)?;
                let program = resolve_program(&words[0])?;
                let args = words[1..].iter().map(OsString::from).collect();
                (program, args, shell_words::join(&words))
            }
            Shell::Default | Shell::Sh if host.os != OsFamily::Windows => {
                let sh = find_shell(&["sh"]).ok_or_else(|| {
                    ExecError::Incompatible(format!("this host ({}) has no sh", host.description))
                })?;
                (
                    sh,
                    vec!["-c".into(), nonempty(text)?.into()],
                    text.to_owned(),
                )
            }
            Shell::Default | Shell::Sh | Shell::Cmd => {
                if shell == Shell::Sh {
                    return Err(ExecError::Incompatible(format!(
                        "this host runs {}; sh is not available",
                        host.description
                    )));
                }
                let cmd = find_shell(&["cmd"]).unwrap_or_else(|| "cmd.exe".into());
                (
                    cmd,
                    vec!["/C".into(), nonempty(text)?.into()],
                    text.to_owned(),
                )
            }
            Shell::PowerShell => {
                let text = nonempty(text)?;
                let program = find_shell(&["pwsh", "powershell"]).ok_or_else(|| {
                    ExecError::Incompatible(format!(
                        "PowerShell is not installed on this host ({}): neither pwsh nor powershell is on the PATH",
                        host.description
                    ))
                })?;
                let args = ["-NoLogo", "-NoProfile", "-NonInteractive", "-Command", text]
                    .map(OsString::from)
                    .to_vec();
                (program, args, text.to_owned())
            }
        },
    })
}

/// The words of a command run without a shell: `argv`, or the command
/// line split as a POSIX shell would split it. Never empty.
fn words(request: &ExecRequest, text: &str) -> Result<Vec<String>, ExecError> {
    let words = if request.argv.is_empty() {
        shell_words::split(text).map_err(|e| {
            ExecError::InvalidArgument(format!("cannot split the command into words: {e}"))
        })?
    } else {
        request.argv.clone()
    };
    if words.is_empty() {
        return Err(ExecError::EmptyCommand);
    }
    Ok(words)
}

/// Checks words against an allow-list and makes the plan from exactly
/// those words: the program resolved with the agent's PATH (or, named by a
/// path, canonicalized), the arguments as they are, and only the
/// environment, input and working directory the rule permits.
fn plan_allowed(
    words: Vec<String>,
    rules: &[AllowRule],
    request: &ExecRequest,
) -> Result<(PathBuf, Vec<OsString>, String), ExecError> {
    let command_line = shell_words::join(&words);
    let first = &words[0];
    let program = if first.contains('/') {
        if !Path::new(first).is_absolute() {
            return Err(ExecError::NotAllowed(format!(
                "`{first}` is a relative path: allow-listed programs are named by a name on the \
                 agent's PATH or by an absolute path"
            )));
        }
        // Checked and run by its canonical path, so that neither `..` nor a
        // symlink can lead the check one way and the exec another.
        Path::new(first)
            .canonicalize()
            .map_err(|_| ExecError::ProgramNotFound(first.clone()))?
    } else {
        find_on_agent_path(first)?
    };
    let rule = rules
        .iter()
        .find(|rule| policy::words_match(&rule.words(), &words, &program))
        .ok_or_else(|| {
            ExecError::NotAllowed(format!(
                "`{command_line}` matches no allowed pattern for this caller's role \
                 (allow-listed commands run without a shell, word by word)"
            ))
        })?;
    if let Some((name, _)) = request
        .environment
        .iter()
        .find(|(name, value)| !rule.allows_env(name, value))
    {
        return Err(ExecError::NotAllowed(format!(
            "environment variable {name} is not allowed for `{}`: variables such as PATH or \
             LD_PRELOAD change what runs; the exec_allow entry must list it in env",
            rule.command
        )));
    }
    if !request.stdin.is_empty() && !rule.stdin {
        return Err(ExecError::NotAllowed(format!(
            "standard input is not allowed for `{}`: its exec_allow entry needs stdin = true",
            rule.command
        )));
    }
    if request.detach && !rule.detach {
        return Err(ExecError::NotAllowed(format!(
            "running detached is not allowed for `{}`: its exec_allow entry needs detach = true",
            rule.command
        )));
    }
    if let Some(dir) = request
        .working_directory
        .as_deref()
        .filter(|d| !d.is_empty())
        && !rule.allows_cwd(Path::new(dir))
    {
        return Err(ExecError::NotAllowed(format!(
            "working directory {dir:?} is not allowed for `{}`: the directory a program runs in \
             can change what it does; the exec_allow entry must list it in cwd",
            rule.command
        )));
    }
    let args = words[1..].iter().map(OsString::from).collect();
    Ok((program, args, command_line))
}

/// Looks a program name up on the agent's own PATH, skipping empty and
/// relative entries (they would name directories relative to wherever the
/// agent happens to run).
fn find_on_agent_path(name: &str) -> Result<PathBuf, ExecError> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| ExecError::ProgramNotFound(name.to_owned()))
}

/// The program to run directly: a path as it is, or a name looked up on
/// the agent's own PATH (never the request's), as an absolute path.
fn resolve_program(name: &str) -> Result<PathBuf, ExecError> {
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    match which::which(name) {
        Ok(path) if path.is_absolute() => Ok(path),
        Ok(path) => std::path::absolute(&path).map_err(|_| ExecError::ProgramNotFound(name.into())),
        Err(_) => Err(ExecError::ProgramNotFound(name.to_owned())),
    }
}

fn nonempty(text: &str) -> Result<&str, ExecError> {
    if text.is_empty() {
        Err(ExecError::EmptyCommand)
    } else {
        Ok(text)
    }
}

fn check_text(what: &str, text: &str) -> Result<(), ExecError> {
    if text.contains('\0') {
        return Err(ExecError::InvalidArgument(format!(
            "the {what} contains a NUL byte"
        )));
    }
    Ok(())
}

fn check_directory(dir: &str) -> Result<PathBuf, ExecError> {
    let problem = |reason: &str| ExecError::WorkingDirectory {
        path: dir.to_owned(),
        reason: reason.to_owned(),
    };
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(PathBuf::from(dir)),
        Ok(_) => Err(problem("not a directory")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(problem("no such directory")),
        Err(e) => Err(problem(&e.to_string())),
    }
}

/// Finds the first of these shells, trying the usual absolute paths before
/// the PATH, so that a request's environment cannot change which shell runs.
fn find_shell(names: &[&str]) -> Option<PathBuf> {
    names.iter().find_map(|name| {
        ["/bin", "/usr/bin"]
            .iter()
            .map(|dir| Path::new(dir).join(name))
            .find(|path| path.is_file())
            .or_else(|| which::which(name).ok())
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A Linux host with a small output cap, for the tests of this module
    /// and of the runner.
    pub(in crate::server::exec) fn host() -> Host {
        Host {
            os: OsFamily::Linux,
            description: "Linux (test)".into(),
            output_cap: 1000,
        }
    }

    /// A request for this command line, everything else by default.
    pub(in crate::server::exec) fn request(command: &str) -> ExecRequest {
        ExecRequest {
            command: command.into(),
            ..Default::default()
        }
    }

    fn open(request: &ExecRequest) -> Result<CommandSpec, ExecError> {
        plan(request, &host(), ExecScope::Unrestricted)
    }

    #[test]
    fn the_default_shell_is_sh() {
        let spec = open(&request("echo hi")).unwrap();
        assert!(spec.program.ends_with("sh"), "{:?}", spec.program);
        assert_eq!(spec.args, vec![OsString::from("-c"), "echo hi".into()]);
        assert_eq!(spec.command_line, "echo hi");
    }

    #[test]
    fn prefixes_are_checked_against_the_host() {
        let spec = open(&request("Linux:ls -la")).unwrap();
        assert_eq!(spec.args[1], OsString::from("ls -la"));
        let err = open(&request("DOS:dir")).unwrap_err();
        assert!(matches!(err, ExecError::Incompatible(_)));
        assert_eq!(
            err.to_string(),
            "this host runs Linux (test); the command needs Windows (the command's OS prefix)"
        );
    }

    #[test]
    fn direct_argv_is_looked_up_on_the_path() {
        let spec = open(&ExecRequest {
            command: "printf '%s' 'a b'".into(),
            shell: Shell::None,
            ..Default::default()
        })
        .unwrap();
        assert!(spec.program.is_absolute());
        assert_eq!(spec.args, vec![OsString::from("%s"), "a b".into()]);
        let err = open(&ExecRequest {
            command: "no-such-program-here".into(),
            shell: Shell::None,
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(err, ExecError::ProgramNotFound(_)));
    }

    #[test]
    fn a_request_is_a_command_line_or_an_argv_never_both() {
        // The shape of the allow-list bypass: a harmless argv beside a shell
        // command line that would have run.
        let both = ExecRequest {
            command: "id; echo PWNED".into(),
            argv: vec!["uptime".into()],
            ..Default::default()
        };
        assert!(matches!(open(&both), Err(ExecError::InvalidArgument(_))));
        let with_shell = ExecRequest {
            argv: vec!["uptime".into()],
            ..Default::default()
        };
        let err = open(&with_shell).unwrap_err();
        assert!(err.to_string().contains("SHELL_NONE"), "{err}");
        let direct = ExecRequest {
            argv: vec!["printf".into(), "a b".into()],
            shell: Shell::None,
            ..Default::default()
        };
        let spec = open(&direct).unwrap();
        assert_eq!(spec.command_line, "printf 'a b'");
    }

    #[test]
    fn bad_requests_are_refused() {
        assert!(matches!(
            open(&request("   ")),
            Err(ExecError::EmptyCommand)
        ));
        assert!(matches!(
            open(&request("Linux:")),
            Err(ExecError::EmptyCommand)
        ));
        assert!(matches!(
            open(&request("echo \0")),
            Err(ExecError::InvalidArgument(_))
        ));
        let mut bad_env = request("true");
        bad_env.environment = vec![("A=B".into(), "c".into())];
        assert!(matches!(open(&bad_env), Err(ExecError::InvalidArgument(_))));
        let mut bad_dir = request("true");
        bad_dir.working_directory = Some("/no/such/dir".into());
        assert!(matches!(
            open(&bad_dir),
            Err(ExecError::WorkingDirectory { .. })
        ));
    }

    #[test]
    fn the_output_limit_never_exceeds_the_cap() {
        let mut r = request("true");
        assert_eq!(open(&r).unwrap().output_limit, 1000);
        r.output_limit = Some(10);
        assert_eq!(open(&r).unwrap().output_limit, 10);
        r.output_limit = Some(10_000);
        assert_eq!(open(&r).unwrap().output_limit, 1000);
    }

    fn listed(request: &ExecRequest, rules: &[AllowRule]) -> Result<CommandSpec, ExecError> {
        plan(request, &host(), ExecScope::AllowList(rules))
    }

    #[test]
    fn allow_listed_commands_run_without_a_shell_from_the_agents_path() {
        let rules = [AllowRule::pattern("uptime"), AllowRule::pattern("echo ...")];
        let spec = listed(&request("echo a b"), &rules).unwrap();
        assert!(spec.program.is_absolute() && spec.program.ends_with("echo"));
        assert_eq!(spec.args, vec![OsString::from("a"), "b".into()]);
        assert_eq!(spec.command_line, "echo a b");
        // What a shell would interpret is an argument here, if it matches.
        for refused in [
            "echo a; id",
            "echo $(id)",
            "id",
            "uptime -p",
            "./uptime",
            "echo -e x",
        ] {
            assert!(
                matches!(
                    listed(&request(refused), &rules),
                    Err(ExecError::NotAllowed(_))
                ),
                "{refused}"
            );
        }
        let powershell = listed(&request("Powershell:uptime"), &rules).unwrap_err();
        assert!(
            matches!(powershell, ExecError::NotAllowed(_)),
            "{powershell}"
        );
    }

    #[test]
    fn allow_lists_govern_the_environment_and_standard_input() {
        let rules = [
            AllowRule::pattern("uptime"),
            AllowRule {
                env: vec!["LC_ALL".into()],
                stdin: true,
                cwd: vec!["/".into()],
                ..AllowRule::pattern("cat")
            },
        ];
        let mut evil_path = request("uptime");
        evil_path.environment = vec![("PATH".into(), "/tmp/evil".into())];
        let err = listed(&evil_path, &rules).unwrap_err();
        assert!(err.to_string().contains("PATH"), "{err}");
        let mut preload = request("cat");
        preload.environment = vec![("LD_PRELOAD".into(), "/tmp/x.so".into())];
        assert!(matches!(
            listed(&preload, &rules),
            Err(ExecError::NotAllowed(_))
        ));
        let mut fine = request("cat");
        fine.environment = vec![("LC_ALL".into(), "C".into())];
        fine.stdin = Bytes::from_static(b"x");
        assert!(listed(&fine, &rules).is_ok());
        let mut input = request("uptime");
        input.stdin = Bytes::from_static(b"x");
        assert!(matches!(
            listed(&input, &rules),
            Err(ExecError::NotAllowed(_))
        ));
        let mut elsewhere = request("uptime");
        elsewhere.working_directory = Some("/".into());
        assert!(matches!(
            listed(&elsewhere, &rules),
            Err(ExecError::NotAllowed(_))
        ));
        let mut allowed = request("cat");
        allowed.working_directory = Some("/".into());
        assert!(listed(&allowed, &rules).is_ok());
    }
}
