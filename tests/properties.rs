//! Property tests for the parsers an attacker feeds and for the exec
//! planner: arbitrary input never makes them panic, bad input is reported
//! where it is, and whatever the planner checks is exactly what it plans to
//! run.

use std::{collections::BTreeMap, path::Path};

use proptest::prelude::*;
use vigie::{
    client::hosts::HostsFile,
    command::{self, ExecRequest, OsFamily, Shell},
    server::{
        AgentConfig,
        auth::{AccessFile, Role, TokenEntry},
        exec::{self, ExecError, Host},
        policy::{AllowRule, ExecScope, words_match},
    },
};

fn roles() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Viewer), Just(Role::Operator), Just(Role::Admin)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn access_files_never_panic_and_hold_only_valid_hashes(text in "(?s).{0,400}") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.toml");
        std::fs::write(&path, &text).unwrap();
        if let Ok(file) = AccessFile::load(&path) {
            for token in &file.tokens {
                prop_assert_eq!(token.sha256.len(), 64);
                prop_assert!(token.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
            }
        }
    }

    #[test]
    fn access_files_round_trip(
        // Distinct names: each identity has one entry (a file that repeats
        // one is refused, which the test above covers).
        entries in proptest::collection::btree_map("[a-z][a-z0-9._-]{0,20}", (roles(), "[0-9a-f]{64}"), 0..8)
    ) {
        let file = AccessFile {
            tokens: entries
                .into_iter()
                .map(|(name, (role, sha256))| TokenEntry { name, role, sha256 })
                .collect(),
            certificates: vec![],
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.toml");
        std::fs::write(&path, toml::to_string(&file).unwrap()).unwrap();
        prop_assert_eq!(AccessFile::load(&path).unwrap(), file);
    }

    #[test]
    fn agent_configs_never_panic(text in "(?s).{0,400}") {
        let _ = toml::from_str::<AgentConfig>(&text);
    }

    #[test]
    fn allow_lists_round_trip_through_the_config(
        rules in proptest::collection::vec(
            ("[a-z]{1,8}( [a-z*?-]{1,8}){0,3}", proptest::collection::vec("[A-Z_]{1,8}", 0..3), any::<bool>()),
            0..5,
        )
    ) {
        let rules: Vec<AllowRule> = rules
            .into_iter()
            .map(|(command, env, stdin)| AllowRule {
                cwd: if stdin { vec!["/srv".into()] } else { Vec::new() },
                command,
                env,
                stdin,
                detach: false,
            })
            .collect();
        let config = AgentConfig {
            exec_allow: BTreeMap::from([(Role::Operator, rules)]),
            ..AgentConfig::default()
        };
        let text = toml::to_string(&config).unwrap();
        prop_assert_eq!(toml::from_str::<AgentConfig>(&text).unwrap(), config);
    }

    #[test]
    fn hosts_files_report_each_bad_line_by_its_number(
        lines in proptest::collection::vec(
            prop_oneof![
                "[a-z][a-z0-9-]{0,10}(:[0-9]{1,5})?",
                "[a-z]{1,6}=[0-9]{1,3}(\\.[0-9]{1,3}){3}(:[0-9]{1,6})?",
                "# .{0,20}",
                ".{0,30}",
            ],
            0..20,
        ),
        csv in any::<bool>(),
    ) {
        let mut text = if csv { "name,address,port\n".to_owned() } else { String::new() };
        text.push_str(&lines.join("\n"));
        // A bare CR ends a CSV record too: count every kind of line end.
        let total = text.split(['\n', '\r']).count();
        if let Ok(file) = HostsFile::parse(&text) {
            for error in &file.errors {
                prop_assert!((1..=total).contains(&error.line), "{error} of {total} lines");
            }
            prop_assert!(file.hosts.len() + file.errors.len() <= total);
        }
    }

    #[test]
    fn prefixes_take_nothing_but_the_prefix(line in "(?s)(dos|DOS|linux|Linux|powershell|x)?:?.{0,30}") {
        let parsed = command::parse(&line);
        match parsed.prefix {
            Some(prefix) => {
                let name = prefix.as_str();
                prop_assert!(line[..name.len()].eq_ignore_ascii_case(name));
                prop_assert_eq!(parsed.command, line[name.len()..].trim_start());
            }
            None => prop_assert_eq!(parsed.command, line.as_str()),
        }
    }
}

// --- The exec planner ------------------------------------------------------

fn host() -> Host {
    Host {
        os: OsFamily::Linux,
        description: "Linux (test)".into(),
        output_cap: 1 << 20,
    }
}

fn rules() -> Vec<AllowRule> {
    vec![
        AllowRule::pattern("uptime"),
        AllowRule::pattern("echo ..."),
        AllowRule::pattern("/usr/bin/echo ?"),
        AllowRule {
            env: vec!["LC_ALL".into()],
            stdin: true,
            ..AllowRule::pattern("cat *")
        },
    ]
}

/// Words an attacker would try: programs, shell syntax, quotes, paths.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("uptime".to_owned()),
        Just("echo".to_owned()),
        Just("cat".to_owned()),
        Just("/bin/echo".to_owned()),
        Just("/usr/bin/echo".to_owned()),
        Just("/usr/bin/../bin/echo".to_owned()),
        Just("./uptime".to_owned()),
        Just("sh".to_owned()),
        Just("id".to_owned()),
        "[;&|<>$`(){}\\\\'\" *?\n.-]{1,3}",
        Just("-e".to_owned()),
        Just("--x=y".to_owned()),
        "[a-z]{1,5}",
        "\\$\\([a-z]{1,4}\\)",
    ]
}

fn request() -> impl Strategy<Value = ExecRequest> {
    (
        proptest::collection::vec(word(), 0..5),
        any::<bool>(),
        prop_oneof![
            Just(Shell::Default),
            Just(Shell::Sh),
            Just(Shell::None),
            Just(Shell::PowerShell)
        ],
        proptest::collection::vec(
            prop_oneof![
                Just("PATH"),
                Just("LD_PRELOAD"),
                Just("LC_ALL"),
                Just("BASH_ENV")
            ],
            0..2,
        ),
        any::<bool>(),
        prop_oneof![Just(""), Just("Linux:"), Just("DOS:"), Just("Powershell:")],
    )
        .prop_map(|(words, as_argv, shell, env, stdin, prefix)| ExecRequest {
            command: if as_argv {
                String::new()
            } else {
                format!("{prefix}{}", words.join(" "))
            },
            argv: if as_argv { words } else { Vec::new() },
            shell,
            environment: env
                .into_iter()
                .map(|k| (k.to_owned(), "x".to_owned()))
                .collect(),
            stdin: if stdin {
                bytes::Bytes::from_static(b"in")
            } else {
                bytes::Bytes::new()
            },
            ..ExecRequest::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Under an allow-list, a plan that exists runs exactly the words that
    /// matched a pattern, by the absolute path the agent's PATH gives their
    /// first word, with only what the matching rule permits, and no shell.
    #[test]
    fn under_an_allow_list_what_is_checked_is_what_runs(request in request()) {
        let rules = rules();
        let Ok(spec) = exec::plan(&request, &host(), ExecScope::AllowList(&rules)) else {
            return Ok(());
        };
        let words = shell_words::split(&spec.command_line).expect("the plan's own quoting");
        let rule = rules
            .iter()
            .find(|r| words_match(&r.words(), &words, &spec.program))
            .expect("the plan matches a rule");
        prop_assert!(spec.program.is_absolute(), "{:?}", spec.program);
        let expected = if words[0].starts_with('/') {
            Path::new(&words[0]).canonicalize().unwrap()
        } else {
            which::which(&words[0]).unwrap()
        };
        // No option and no `..` was let through by a wildcard.
        for (i, word) in words.iter().enumerate().skip(1) {
            let rule_word = rule.words().get(i).cloned().unwrap_or_default();
            prop_assert!(!word.starts_with('-') || rule_word.starts_with('-'), "{word}");
            prop_assert!(!word.split('/').any(|p| p == "..") || rule_word.contains(".."), "{word}");
        }
        prop_assert_eq!(&spec.program, &expected);
        let args: Vec<String> = spec.args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        prop_assert_eq!(&args[..], &words[1..]);
        let name = spec.program.file_name().unwrap().to_string_lossy().into_owned();
        prop_assert!(!["sh", "bash", "dash", "pwsh"].contains(&name.as_str()));
        for (key, value) in &spec.environment {
            prop_assert!(rule.allows_env(key, value), "{key} is not allowed by {rule:?}");
        }
        prop_assert!(spec.working_directory.is_none());
        prop_assert!(spec.stdin.is_empty() || rule.stdin);
        // The request's own words: its argv, or its command line (prefix off).
        let asked = if request.argv.is_empty() {
            shell_words::split(command::parse(&request.command).command.trim()).unwrap()
        } else {
            request.argv.clone()
        };
        prop_assert_eq!(words, asked);
    }

    /// Without an allow-list, a shell command runs the very text asked,
    /// and a request carrying both a command line and an argv never plans.
    #[test]
    fn without_an_allow_list_the_shell_gets_the_text_asked(request in request()) {
        let planned = exec::plan(&request, &host(), ExecScope::Unrestricted);
        if !request.argv.is_empty() && !request.command.is_empty() {
            prop_assert!(matches!(planned, Err(ExecError::InvalidArgument(_))));
        }
        let Ok(spec) = planned else { return Ok(()) };
        if spec.args.first().is_some_and(|a| a == "-c") {
            let asked = if request.shell == Shell::Default {
                command::parse(&request.command).command
            } else {
                request.command.as_str()
            };
            prop_assert_eq!(spec.args[1].to_str().unwrap(), asked.trim());
            prop_assert_eq!(&spec.command_line, asked.trim());
        }
    }
}
