//! The exec policy: which commands an identity may run, and which
//! processes it may signal. Plain Rust, read by the planner (`exec::plan`)
//! and by SignalProcess; the config holds it as `no_exec`, `exec_allow` and
//! `signal_any_process`.
//!
//! The rule that matters most: under an allow-list, a command runs without
//! a shell. Its words are matched one by one against a rule's words, its
//! program is resolved with the agent's own PATH (or canonicalized, for a
//! path), and exactly those words are executed, so nothing checked can
//! differ from what runs (see `exec::plan`).
//!
//! How a rule's words match a command's words:
//! - the program word: a bare name matches only the same bare name (`*`
//!   and `?` allowed, e.g. `systemctl`); a path matches the program's
//!   canonical path, symlinks resolved, where `*` and `?` never match `/`;
//! - every other word matches exactly one word of the command: `*` is any
//!   run of characters and `?` one character, but neither ever matches a
//!   shell control character (`;&|<>$\`(){}`, backslash, line breaks);
//!   a word that starts with `-` (an option) is matched only by a rule word
//!   that starts with `-` too, and a word with a `..` path component only
//!   by a rule word that has one;
//! - a last rule word `...` matches any number of further words, none of
//!   them an option.
//!
//! So `systemctl status *` allows `systemctl status nginx` but not
//! `systemctl status nginx sshd`, `systemctl status --help` or
//! `systemctl status x; reboot`; `tar --checkpoint-action=...` and the like
//! are never reached through a `*`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::auth::{Identity, Role};

/// One entry of an allow-list: a command-line pattern, and what a request
/// matching it may add.
///
/// In the config file an entry is either a bare pattern (`"df -h ..."`) or
/// a table (`{ command = "make -C /srv/app build", env = ["CC=gcc"],
/// stdin = true, cwd = ["/srv/app"], detach = true }`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RuleRepr", into = "RuleRepr")]
pub struct AllowRule {
    /// The pattern: words matched one by one against the command's words
    /// (see the module's documentation).
    pub command: String,
    /// Environment variables a matching request may set: `NAME` (any value)
    /// or `NAME=PATTERN` (a value the pattern matches). Nothing else: PATH,
    /// LD_PRELOAD and the like change what runs or what it loads.
    pub env: Vec<String>,
    /// Whether a matching request may send bytes to standard input.
    pub stdin: bool,
    /// Working directories a matching request may run in (compared once
    /// both are canonical). None by default: the directory a program runs
    /// in can decide what it does (a Makefile, a config file).
    pub cwd: Vec<String>,
    /// Whether a matching request may run detached, as a job that outlives
    /// its session: off by default, since a command allowed to follow
    /// something (`journalctl -f`) would otherwise run on for ever.
    pub detach: bool,
}

impl AllowRule {
    /// A rule that allows `pattern` and nothing more.
    pub fn pattern(pattern: impl Into<String>) -> Self {
        Self {
            command: pattern.into(),
            env: Vec::new(),
            stdin: false,
            cwd: Vec::new(),
            detach: false,
        }
    }

    /// The rule's words (it was checked to split when the policy was made).
    pub fn words(&self) -> Vec<String> {
        shell_words::split(&self.command).unwrap_or_default()
    }

    /// True when the rule lets the variable `name` be set to `value`.
    pub fn allows_env(&self, name: &str, value: &str) -> bool {
        self.env.iter().any(|entry| match entry.split_once('=') {
            None => entry == name,
            Some((allowed, pattern)) => allowed == name && glob(pattern, value, true),
        })
    }

    /// True when the rule lets the command run in `dir`.
    pub fn allows_cwd(&self, dir: &std::path::Path) -> bool {
        let Ok(dir) = dir.canonicalize() else {
            return false;
        };
        self.cwd
            .iter()
            .filter_map(|allowed| std::path::Path::new(allowed).canonicalize().ok())
            .any(|allowed| allowed == dir)
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
        #[serde(default)]
        cwd: Vec<String>,
        #[serde(default)]
        detach: bool,
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
                cwd,
                detach,
            } => Self {
                command,
                env,
                stdin,
                cwd,
                detach,
            },
        }
    }
}

impl From<AllowRule> for RuleRepr {
    fn from(rule: AllowRule) -> Self {
        if rule.env.is_empty() && !rule.stdin && rule.cwd.is_empty() && !rule.detach {
            Self::Pattern(rule.command)
        } else {
            Self::Full {
                command: rule.command,
                env: rule.env,
                stdin: rule.stdin,
                cwd: rule.cwd,
                detach: rule.detach,
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
    /// A pattern that cannot be split into words, or misplaces `...`.
    #[error("exec_allow.{role}: pattern {pattern:?}: {reason}")]
    BadPattern {
        /// The role whose list holds it.
        role: Role,
        /// The pattern.
        pattern: String,
        /// What is wrong.
        reason: String,
    },
    /// A working directory that is not absolute.
    #[error("exec_allow.{role}: cwd {dir:?} must be an absolute path")]
    BadCwd {
        /// The role whose list holds it.
        role: Role,
        /// The directory.
        dir: String,
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
    /// Roles whose Execute is restricted but that may run scripts, which
    /// an allow-list cannot check (a script is code).
    pub allow_scripts: std::collections::BTreeSet<Role>,
}

impl ExecPolicy {
    /// The roles that may run scripts under an allow-list.
    pub fn with_scripts(mut self, roles: impl IntoIterator<Item = Role>) -> Self {
        self.allow_scripts = roles.into_iter().collect();
        self
    }

    /// What `identity` may run for a request that is a script (`script`)
    /// or a command: a script is refused to a role under an allow-list
    /// unless `allow_scripts` lists it, and then runs as for an
    /// unrestricted caller.
    pub fn scope_for(&self, identity: &Identity, script: bool) -> Result<ExecScope<'_>, String> {
        let scope = self.scope(identity)?;
        match scope {
            ExecScope::AllowList(_) if script && self.allow_scripts.contains(&identity.role) => {
                Ok(ExecScope::Unrestricted)
            }
            ExecScope::AllowList(_) if script => Err(format!(
                "scripts are refused for the {} role: it runs under an exec allow-list, and the \
                 agent's allow_scripts does not list it",
                identity.role
            )),
            scope => Ok(scope),
        }
    }

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
                let bad = |reason: &str| PolicyError::BadPattern {
                    role: *role,
                    pattern: rule.command.clone(),
                    reason: reason.to_owned(),
                };
                let words = shell_words::split(&rule.command)
                    .map_err(|e| bad(&format!("cannot split it into words: {e}")))?;
                if words.first().is_some_and(|w| w == ELLIPSIS) {
                    return Err(bad("it needs a program before `...`"));
                }
                if words[..words.len().saturating_sub(1)]
                    .iter()
                    .any(|w| w == ELLIPSIS)
                {
                    return Err(bad("`...` may only be its last word"));
                }
                if let Some(name) = rule
                    .env
                    .iter()
                    .map(|e| e.split_once('=').map_or(e.as_str(), |(n, _)| n))
                    .find(|n| !is_env_name(n))
                {
                    return Err(PolicyError::BadEnvName {
                        role: *role,
                        name: name.to_owned(),
                    });
                }
                if let Some(dir) = rule.cwd.iter().find(|d| !d.starts_with('/')) {
                    return Err(PolicyError::BadCwd {
                        role: *role,
                        dir: dir.clone(),
                    });
                }
            }
        }
        Ok(Self {
            disabled,
            allow,
            signal_any_process,
            allow_scripts: std::collections::BTreeSet::new(),
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

/// The last rule word that matches any number of further non-option words.
pub const ELLIPSIS: &str = "...";

/// Checks a command's words against a rule's words (see the module's
/// documentation). `program` is the command's program as it will run: for
/// a rule whose program word is a path, its canonical path.
pub fn words_match(rule: &[String], words: &[String], program: &std::path::Path) -> bool {
    let (Some(rule_program), Some(asked_program)) = (rule.first(), words.first()) else {
        return false;
    };
    let program_matches = if rule_program.contains('/') {
        program
            .to_str()
            .is_some_and(|path| glob(rule_program, path, false))
    } else {
        !asked_program.contains('/') && glob(rule_program, asked_program, false)
    };
    if !program_matches {
        return false;
    }
    let (rule_args, rest) = match rule[1..].split_last() {
        Some((last, before)) if last == ELLIPSIS => (before, true),
        _ => (&rule[1..], false),
    };
    let args = &words[1..];
    if args.len() < rule_args.len() || (!rest && args.len() != rule_args.len()) {
        return false;
    }
    let fixed = rule_args.iter().zip(args).all(|(r, w)| word_matches(r, w));
    fixed
        && args[rule_args.len()..].iter().all(|w| {
            !w.starts_with('-') && !has_parent_component(w) && w.chars().all(|c| !is_control(c))
        })
}

/// The shell's control characters, which no wildcard ever matches: no
/// shell runs an allow-listed command, but a rule must never read as
/// allowing two commands to someone who forgets that.
fn is_control(c: char) -> bool {
    matches!(
        c,
        ';' | '&' | '|' | '<' | '>' | '$' | '`' | '(' | ')' | '{' | '}' | '\\' | '\n' | '\r'
    )
}

/// One rule word against one argument.
fn word_matches(rule: &str, word: &str) -> bool {
    if word.starts_with('-') && !rule.starts_with('-') {
        return false;
    }
    if has_parent_component(word) && !rule.contains("..") {
        return false;
    }
    glob(rule, word, true)
}

fn has_parent_component(word: &str) -> bool {
    word.split(['/', '=']).any(|part| part == "..")
}

/// Wildcard matching: `*` any run of characters and `?` one character,
/// except the shell's control characters (and, unless `slash`, `/`). A
/// pattern character that is not a wildcard matches itself only.
fn glob(pattern: &str, text: &str, slash: bool) -> bool {
    let wild = |c: char| !is_control(c) && (slash || c != '/');
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    // Iterative wildcard matching with one backtracking point, the usual
    // linear-time algorithm; `*` may only swallow characters `wild` allows.
    let (mut p, mut c) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while c < text.len() {
        if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, c));
            p += 1;
        } else if p < pattern.len()
            && (pattern[p] == text[c] || (pattern[p] == '?' && wild(text[c])))
        {
            p += 1;
            c += 1;
        } else if let Some((star_p, star_c)) = star
            && wild(text[star_c])
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

    fn matches(rule: &str, command: &str) -> bool {
        let rule = shell_words::split(rule).unwrap();
        let words = shell_words::split(command).unwrap();
        let program = std::path::PathBuf::from(&words[0]);
        words_match(&rule, &words, &program)
    }

    #[test]
    fn rule_words_match_one_command_word_each() {
        assert!(matches("uptime", "uptime"));
        assert!(!matches("uptime", "uptime -p"));
        assert!(matches("systemctl status *", "systemctl status nginx"));
        assert!(!matches(
            "systemctl status *",
            "systemctl status nginx sshd"
        ));
        assert!(!matches("systemctl status *", "systemctl status --help"));
        assert!(!matches(
            "systemctl status *",
            "systemctl status 'x; reboot'"
        ));
        assert!(matches("df -h ...", "df -h / /home"));
        assert!(matches("df -h ...", "df -h"));
        assert!(!matches("df -h ...", "df -h / --output"));
        assert!(matches("journalctl -u * -n *", "journalctl -u nginx -n 50"));
        assert!(!matches(
            "journalctl -u * -n *",
            "journalctl -u nginx --vacuum-time=1s"
        ));
        assert!(matches("ls -* ...", "ls -la /tmp"));
        assert!(!matches("echo *", "echo $(id)"));
        assert!(!matches("echo ?", "echo ;"));
        assert!(matches("echo 'a b'", "echo \"a b\""));
    }

    #[test]
    fn options_and_parent_directories_need_rule_words_of_their_own() {
        for attack in [
            "tar --checkpoint-action=exec=sh x",
            "git -c alias.x=!id x",
            "find / -exec sh",
            "make CC=x --eval=y",
        ] {
            let program = attack.split(' ').next().unwrap();
            assert!(!matches(&format!("{program} *"), attack), "{attack}");
            assert!(!matches(&format!("{program} ..."), attack), "{attack}");
        }
        assert!(!matches("cat /var/log/*", "cat /var/log/../../etc/shadow"));
        assert!(!matches("cat ...", "cat ../etc/shadow"));
        assert!(matches("cat /var/log/*", "cat /var/log/syslog"));
    }

    #[test]
    fn a_program_path_matches_its_canonical_path_without_crossing_directories() {
        let rule = vec!["/opt/scripts/*.sh".to_owned()];
        let words = vec!["/opt/scripts/../../bin/sh".to_owned()];
        assert!(!words_match(
            &rule,
            &words,
            std::path::Path::new("/usr/bin/dash")
        ));
        assert!(!words_match(
            &rule,
            &words,
            std::path::Path::new("/opt/scripts/a/b.sh")
        ));
        let words = vec!["/opt/scripts/x.sh".to_owned()];
        assert!(words_match(
            &rule,
            &words,
            std::path::Path::new("/opt/scripts/x.sh")
        ));
        let bare = vec!["uptime".to_owned()];
        let by_path = vec!["/tmp/uptime".to_owned()];
        assert!(!words_match(
            &bare,
            &by_path,
            std::path::Path::new("/tmp/uptime")
        ));
    }

    #[test]
    fn environment_values_and_directories_follow_the_rule() {
        let rule = AllowRule {
            env: vec!["LC_ALL".into(), "CC=gcc*".into()],
            cwd: vec!["/".into()],
            ..AllowRule::pattern("make")
        };
        assert!(rule.allows_env("LC_ALL", "anything"));
        assert!(rule.allows_env("CC", "gcc-12"));
        assert!(!rule.allows_env("CC", "sh -c id"));
        assert!(!rule.allows_env("PATH", "/tmp"));
        assert!(rule.allows_cwd(std::path::Path::new("/")));
        assert!(!rule.allows_cwd(std::path::Path::new("/tmp")));
        assert!(!AllowRule::pattern("make").allows_cwd(std::path::Path::new("/")));
    }

    #[test]
    fn rules_read_as_strings_or_tables_and_shell_patterns_are_refused() {
        #[derive(Deserialize)]
        struct Config {
            exec_allow: BTreeMap<Role, Vec<AllowRule>>,
        }
        let config: Config = toml::from_str(
            "[exec_allow]\noperator = [\"uptime\", { command = \"make *\", env = [\"CC\"], stdin = true, cwd = [\"/srv\"] }]\n",
        )
        .unwrap();
        let rules = &config.exec_allow[&Role::Operator];
        assert_eq!(rules[0], AllowRule::pattern("uptime"));
        assert_eq!(rules[1].env, vec!["CC".to_owned()]);
        assert!(rules[1].stdin);
        assert_eq!(rules[1].cwd, vec!["/srv".to_owned()]);
        assert!(ExecPolicy::new(false, config.exec_allow, false).is_ok());
        for (pattern, expected) in [
            ("... x", "before"),
            ("ls ... x", "last"),
            ("ls 'a", "split"),
        ] {
            let list = BTreeMap::from([(Role::Operator, vec![AllowRule::pattern(pattern)])]);
            let err = ExecPolicy::new(false, list, false).unwrap_err().to_string();
            assert!(err.contains(expected), "{pattern}: {err}");
        }

        let piped = BTreeMap::from([(Role::Operator, vec![AllowRule::pattern("ps aux | grep x")])]);
        let err = ExecPolicy::new(false, piped, false).unwrap_err();
        assert!(matches!(err, PolicyError::ShellSyntax { found: '|', .. }));
        assert!(err.to_string().contains("without a shell"), "{err}");
        let bad_env = BTreeMap::from([(
            Role::Operator,
            vec![AllowRule {
                env: vec!["1BAD".into()],
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
