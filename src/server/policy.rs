//! The exec policy: which commands an identity may run, and which
//! processes it may signal. Plain Rust, read by the planner (`exec::plan`)
//! and by SignalProcess; the config holds it as `no_exec`, `exec_allow` and
//! `signal_any_process`.
//!
//! The rule that matters most: under an allow-list, a command runs without
//! a shell. Its words are matched, its program is resolved with the agent's
//! own PATH, and exactly those words are executed, so nothing checked can
//! differ from what runs (see `exec::plan`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::auth::{Identity, Role};

/// One entry of an allow-list: a command-line pattern, and what a request
/// matching it may add.
///
/// In the config file an entry is either a bare pattern (`"df *"`) or a
/// table (`{ command = "make *", env = ["CC"], stdin = true }`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RuleRepr", into = "RuleRepr")]
pub struct AllowRule {
    /// The pattern (`*` and `?` wildcards that never match shell control
    /// characters), matched against the command's words joined with
    /// POSIX shell quoting.
    pub command: String,
    /// Environment variables a matching request may set. Nothing else:
    /// PATH, LD_PRELOAD and the like change what runs or what it loads.
    pub env: Vec<String>,
    /// Whether a matching request may send bytes to standard input.
    pub stdin: bool,
}

impl AllowRule {
    /// A rule that allows `pattern` and nothing more.
    pub fn pattern(pattern: impl Into<String>) -> Self {
        Self {
            command: pattern.into(),
            env: Vec::new(),
            stdin: false,
        }
    }
}

impl From<&str> for AllowRule {
    fn from(pattern: &str) -> Self {
        Self::pattern(pattern)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum RuleRepr {
    Pattern(String),
    Full {
        command: String,
        #[serde(default)]
        env: Vec<String>,
        #[serde(default)]
        stdin: bool,
    },
}

impl From<RuleRepr> for AllowRule {
    fn from(repr: RuleRepr) -> Self {
        match repr {
            RuleRepr::Pattern(command) => Self::pattern(command),
            RuleRepr::Full {
                command,
                env,
                stdin,
            } => Self {
                command,
                env,
                stdin,
            },
        }
    }
}

impl From<AllowRule> for RuleRepr {
    fn from(rule: AllowRule) -> Self {
        if rule.env.is_empty() && !rule.stdin {
            Self::Pattern(rule.command)
        } else {
            Self::Full {
                command: rule.command,
                env: rule.env,
                stdin: rule.stdin,
            }
        }
    }
}

/// Why an allow-list cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A pattern relies on a shell, which allow-listed commands never get.
    #[error(
        "exec_allow.{role}: pattern {pattern:?} contains {found:?}: allow-listed commands run \
         without a shell, so pipes, redirections, `;`, `&` and `$` cannot work; install a script \
         on the host and allow the script instead"
    )]
    ShellSyntax {
        /// The role whose list holds it.
        role: Role,
        /// The pattern.
        pattern: String,
        /// The first shell character found.
        found: char,
    },
    /// A pattern without a program.
    #[error("exec_allow.{role}: an empty pattern allows nothing; remove it")]
    Empty {
        /// The role whose list holds it.
        role: Role,
    },
    /// An environment variable name that cannot exist.
    #[error("exec_allow.{role}: {name:?} is not an environment variable name")]
    BadEnvName {
        /// The role whose list holds it.
        role: Role,
        /// The name.
        name: String,
    },
}

/// Shell characters that make a pattern meaningless without a shell.
const SHELL_CHARACTERS: &[char] = &['|', ';', '&', '<', '>', '$', '`', '(', ')', '\n', '\r'];

/// What the exec policy decided for one caller.
#[derive(Debug, Clone, Copy)]
pub enum ExecScope<'a> {
    /// The caller may run anything its role allows, with any shell.
    Unrestricted,
    /// The caller may run only what these rules allow, without a shell.
    AllowList(&'a [AllowRule]),
}

/// Which commands an identity may run, and which processes it may signal.
#[derive(Debug, Clone, Default)]
pub struct ExecPolicy {
    /// Execute is off for everyone.
    pub disabled: bool,
    /// Per role, the rules it may run.
    pub allow: BTreeMap<Role, Vec<AllowRule>>,
    /// Lets callers whose Execute is restricted signal any process the
    /// agent's user may signal, not only the agent's own commands.
    pub signal_any_process: bool,
}

impl ExecPolicy {
    /// A policy from the config's settings, checked.
    pub fn new(
        disabled: bool,
        allow: BTreeMap<Role, Vec<AllowRule>>,
        signal_any_process: bool,
    ) -> Result<Self, PolicyError> {
        for (role, rules) in &allow {
            for rule in rules {
                if rule.command.trim().is_empty() {
                    return Err(PolicyError::Empty { role: *role });
                }
                if let Some(found) = rule.command.chars().find(|c| SHELL_CHARACTERS.contains(c)) {
                    return Err(PolicyError::ShellSyntax {
                        role: *role,
                        pattern: rule.command.clone(),
                        found,
                    });
                }
                if let Some(name) = rule.env.iter().find(|n| !is_env_name(n)) {
                    return Err(PolicyError::BadEnvName {
                        role: *role,
                        name: name.clone(),
                    });
                }
            }
        }
        Ok(Self {
            disabled,
            allow,
            signal_any_process,
        })
    }

    /// What `identity` may run; an error (the reason) when it may run
    /// nothing at all.
    pub fn scope(&self, identity: &Identity) -> Result<ExecScope<'_>, String> {
        if self.disabled {
            return Err("command execution is disabled on this agent (no_exec)".into());
        }
        Ok(match self.allow.get(&identity.role) {
            None => ExecScope::Unrestricted,
            Some(rules) => ExecScope::AllowList(rules),
        })
    }

    /// True when `identity` may signal only the processes of the agent's
    /// own commands: its Execute is restricted (no_exec, or an allow-list
    /// for its role), so signalling anything else would reach further than
    /// what it may run, unless the config widens it.
    pub fn signals_own_commands_only(&self, identity: &Identity) -> bool {
        !self.signal_any_process && (self.disabled || self.allow.contains_key(&identity.role))
    }
}

fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Checks a command line against an allow-list pattern.
///
/// `*` matches any run of characters and `?` one character, except the
/// shell's control characters (`;&|<>$\`(){}` backslash and line breaks), so
/// that a pattern like `systemctl status *` never reads as allowing more
/// than one command, even to someone who forgets that allow-listed commands
/// run without a shell. A pattern that contains such a character literally
/// matches it literally.
pub fn command_matches(pattern: &str, command: &str) -> bool {
    fn is_control(c: char) -> bool {
        matches!(
            c,
            ';' | '&' | '|' | '<' | '>' | '$' | '`' | '(' | ')' | '{' | '}' | '\\' | '\n' | '\r'
        )
    }
    let pattern: Vec<char> = pattern.chars().collect();
    let command: Vec<char> = command.chars().collect();
    // Iterative wildcard matching with one backtracking point, the usual
    // linear-time algorithm; `*` may only swallow non-control characters.
    let (mut p, mut c) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while c < command.len() {
        if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, c));
            p += 1;
        } else if p < pattern.len()
            && (pattern[p] == command[c] || (pattern[p] == '?' && !is_control(command[c])))
        {
            p += 1;
            c += 1;
        } else if let Some((star_p, star_c)) = star
            && !is_control(command[star_c])
        {
            star = Some((star_p, star_c + 1));
            p = star_p + 1;
            c = star_c + 1;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|ch| *ch == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_wildcards_stop_at_shell_control_characters() {
        assert!(command_matches("uptime", "uptime"));
        assert!(!command_matches("uptime", "uptime -p"));
        assert!(command_matches(
            "systemctl status *",
            "systemctl status nginx"
        ));
        assert!(command_matches("df *", "df -h /"));
        assert!(!command_matches(
            "systemctl status *",
            "systemctl status x; rm -rf /"
        ));
        assert!(!command_matches("echo *", "echo $(id)"));
        assert!(!command_matches("echo *", "echo a | sh"));
        assert!(!command_matches("echo ?", "echo ;"));
        assert!(
            command_matches("echo a;b", "echo a;b"),
            "literal control characters match"
        );
        assert!(command_matches("*", "anything at all"));
        assert!(!command_matches("*", "a && b"));
        assert!(command_matches("ls * *", "ls -la /tmp"));
    }

    #[test]
    fn rules_read_as_strings_or_tables_and_shell_patterns_are_refused() {
        #[derive(Deserialize)]
        struct Config {
            exec_allow: BTreeMap<Role, Vec<AllowRule>>,
        }
        let config: Config = toml::from_str(
            "[exec_allow]\noperator = [\"uptime\", { command = \"make *\", env = [\"CC\"], stdin = true }]\n",
        )
        .unwrap();
        let rules = &config.exec_allow[&Role::Operator];
        assert_eq!(rules[0], AllowRule::pattern("uptime"));
        assert_eq!(rules[1].env, vec!["CC".to_owned()]);
        assert!(rules[1].stdin);
        assert!(ExecPolicy::new(false, config.exec_allow, false).is_ok());

        let piped = BTreeMap::from([(Role::Operator, vec![AllowRule::pattern("ps aux | grep x")])]);
        let err = ExecPolicy::new(false, piped, false).unwrap_err();
        assert!(matches!(err, PolicyError::ShellSyntax { found: '|', .. }));
        assert!(err.to_string().contains("without a shell"), "{err}");
        let bad_env = BTreeMap::from([(
            Role::Operator,
            vec![AllowRule {
                env: vec!["A=B".into()],
                ..AllowRule::pattern("make")
            }],
        )]);
        assert!(matches!(
            ExecPolicy::new(false, bad_env, false),
            Err(PolicyError::BadEnvName { .. })
        ));
    }

    #[test]
    fn signalling_follows_the_exec_restriction() {
        let who = |role| Identity {
            name: "token:t".into(),
            role,
        };
        let open = ExecPolicy::default();
        assert!(!open.signals_own_commands_only(&who(Role::Operator)));
        let listed = ExecPolicy::new(
            false,
            BTreeMap::from([(Role::Operator, vec![AllowRule::pattern("uptime")])]),
            false,
        )
        .unwrap();
        assert!(listed.signals_own_commands_only(&who(Role::Operator)));
        assert!(!listed.signals_own_commands_only(&who(Role::Admin)));
        let off = ExecPolicy::new(true, BTreeMap::new(), false).unwrap();
        assert!(off.signals_own_commands_only(&who(Role::Admin)));
        let widened = ExecPolicy::new(true, BTreeMap::new(), true).unwrap();
        assert!(!widened.signals_own_commands_only(&who(Role::Operator)));
    }
}
