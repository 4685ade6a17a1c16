//! The exec planner under an allow-list: whatever plans runs exactly the
//! words that matched, by an absolute path, with nothing the rule does not
//! permit, and never through a shell.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigie::{
    command::{ExecRequest, OsFamily, Shell},
    server::{
        exec::{self, Host},
        policy::{AllowRule, ExecScope, words_match},
    },
};

fuzz_target!(|input: (&str, Vec<String>, u8, Vec<(String, String)>, bool)| {
    let (command, argv, shell, environment, stdin) = input;
    let request = ExecRequest {
        command: command.to_owned(),
        argv,
        shell: match shell % 4 {
            0 => Shell::Default,
            1 => Shell::Sh,
            2 => Shell::None,
            _ => Shell::PowerShell,
        },
        environment,
        stdin: if stdin {
            bytes::Bytes::from_static(b"x")
        } else {
            bytes::Bytes::new()
        },
        ..ExecRequest::default()
    };
    let host = Host {
        os: OsFamily::Linux,
        description: "Linux (fuzz)".into(),
        output_cap: 1 << 20,
    };
    let rules = [
        AllowRule::pattern("uptime"),
        AllowRule::pattern("echo ..."),
        AllowRule {
            env: vec!["LC_ALL".into()],
            stdin: true,
            ..AllowRule::pattern("cat *")
        },
    ];
    let Ok(spec) = exec::plan(&request, &host, ExecScope::AllowList(&rules)) else {
        return;
    };
    let words = shell_words::split(&spec.command_line).expect("the plan's own quoting");
    let rule = rules
        .iter()
        .find(|r| words_match(&r.words(), &words, &spec.program))
        .expect("a plan matches a rule");
    assert!(spec.program.is_absolute());
    let args: Vec<String> = spec
        .args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert_eq!(&args[..], &words[1..]);
    assert!(spec.environment.iter().all(|(k, v)| rule.allows_env(k, v)));
    assert!(spec.stdin.is_empty() || rule.stdin);
    let name = spec.program.file_name().unwrap().to_string_lossy().into_owned();
    assert!(!["sh", "bash", "dash", "pwsh", "cmd"].contains(&name.as_str()));
});
