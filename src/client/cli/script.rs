//! `vigie script FILE [ARGS…]`: runs a local script on the selected hosts
//! with its own interpreter (its `#!` line, or `--interpreter`), its
//! arguments passed as they are, output as for `exec`. The agents keep the
//! script in memory only.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use bytes::Bytes;

use super::{
    CliError, Context,
    exec::{Launch, View},
    output::Printer,
};
use crate::command::{ExecRequest, Shell};

/// Arguments of `vigie script`.
#[derive(Debug, clap::Args)]
pub struct ScriptArgs {
    /// The interpreter, as a `#!` line names it ("/bin/bash", "/usr/bin/env
    /// python3") [default: the script's own `#!` line].
    #[arg(long, value_name = "PROGRAM")]
    pub interpreter: Option<String>,

    /// Gather output (like exec -b).
    #[arg(short = 'b', long = "gather")]
    pub gather: bool,

    /// Time limit per host (e.g. 30s, 5m).
    #[arg(short, long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,

    /// File whose bytes go to the script's standard input ("-": this
    /// program's standard input).
    #[arg(long, value_name = "FILE")]
    pub stdin: Option<PathBuf>,

    /// The local script.
    pub file: PathBuf,

    /// The script's arguments, passed as they are (no shell re-parses them).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

pub(super) async fn run(
    context: &Context,
    args: ScriptArgs,
    printer: &Printer,
) -> Result<ExitCode, CliError> {
    let script = std::fs::read(&args.file)
        .map_err(|e| CliError::Usage(format!("{}: {e}", args.file.display())))?;
    if script.is_empty() {
        return Err(CliError::Usage(format!("{} is empty", args.file.display())));
    }
    let stdin = super::exec::stdin_of(args.stdin.as_deref())?;
    let request = ExecRequest {
        shell: Shell::None,
        argv: args.args,
        script: Bytes::from(script),
        interpreter: args.interpreter,
        stdin,
        ..ExecRequest::default()
    };
    let launch = Launch::Run {
        request: Box::new(request),
        deadline: args.timeout,
        rollout: None,
    };
    Ok(super::exec::execute(context, launch, View::of(args.gather, false), printer).await)
}
