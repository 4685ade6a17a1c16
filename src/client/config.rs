//! The client configuration: how to reach and authenticate to agents, for
//! all hosts (`[defaults]`) and per host (`[host.NAME]`), plus the default
//! hosts file. `vigie-agent init` writes one.
//!
//! Precedence, most specific first: command-line flags, then the
//! `VIGIE_TOKEN` environment variable (token only), then the host's own
//! section, then `[defaults]`.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// A secret string (a token) that `Debug` and `Display` never show.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// How to connect to an agent. Every field is optional so that sections
/// can be layered; [`ConnectionSettings::merged_over`] combines them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionSettings {
    /// Use TLS. Implied by `ca`, `cert` or `fingerprint`.
    pub tls: Option<bool>,
    /// CA certificate(s) (PEM) that sign the agents' certificates.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), for agents that require mutual TLS.
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub key: Option<PathBuf>,
    /// The agent certificate's SHA-256 fingerprint ("sha256:" and 64 hex
    /// digits, colons allowed): the certificate is accepted if and only if
    /// it matches (and, with `ca` too, is signed by it).
    pub fingerprint: Option<String>,
    /// The fleet's revocation list (DER, as `vigie pki` writes it): an
    /// agent certificate on it is refused.
    pub crl: Option<PathBuf>,
    /// Name to check the agent's certificate against, when it differs from
    /// the address dialled.
    pub server_name: Option<String>,
    /// Bearer token.
    pub token: Option<Secret>,
    /// Allow sending a token in plaintext to a non-loopback address.
    pub insecure_plaintext: Option<bool>,
    /// While a call is open, time without a frame from the agent before
    /// the client pings it, in ms [default: 4000]. Idle connections are
    /// never pinged.
    pub keepalive_interval_ms: Option<u64>,
    /// Time a ping may go unanswered before the client gives the agent up
    /// (its calls fail as "connection lost"), in ms [default: 4000].
    pub keepalive_timeout_ms: Option<u64>,
}

impl ConnectionSettings {
    /// These settings, with the unset ones taken from `base`.
    pub fn merged_over(&self, base: &ConnectionSettings) -> ConnectionSettings {
        ConnectionSettings {
            tls: self.tls.or(base.tls),
            ca: self.ca.clone().or_else(|| base.ca.clone()),
            cert: self.cert.clone().or_else(|| base.cert.clone()),
            key: self.key.clone().or_else(|| base.key.clone()),
            crl: self.crl.clone().or_else(|| base.crl.clone()),
            fingerprint: self
                .fingerprint
                .clone()
                .or_else(|| base.fingerprint.clone()),
            server_name: self
                .server_name
                .clone()
                .or_else(|| base.server_name.clone()),
            token: self.token.clone().or_else(|| base.token.clone()),
            insecure_plaintext: self.insecure_plaintext.or(base.insecure_plaintext),
            keepalive_interval_ms: self.keepalive_interval_ms.or(base.keepalive_interval_ms),
            keepalive_timeout_ms: self.keepalive_timeout_ms.or(base.keepalive_timeout_ms),
        }
    }

    /// True when connections use TLS.
    pub fn uses_tls(&self) -> bool {
        self.tls
            .unwrap_or(self.ca.is_some() || self.cert.is_some() || self.fingerprint.is_some())
    }

    fn resolve_paths(&mut self, base: &Path) {
        for path in [&mut self.ca, &mut self.crl, &mut self.cert, &mut self.key]
            .into_iter()
            .flatten()
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }
}

/// The client configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// The hosts file used when `--hosts` is not given.
    pub hosts: Option<PathBuf>,
    /// How many hosts a fan-out talks to at once.
    pub concurrency: Option<usize>,
    /// Settings for every host.
    pub defaults: ConnectionSettings,
    /// Settings for one host, by its name in the hosts file.
    pub host: BTreeMap<String, ConnectionSettings>,
}

/// Why the client configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot load client config {path}: {reason}")]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

impl ClientConfig {
    /// Reads a config file; relative paths in it are relative to the file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let error = |reason: String| ConfigError {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        let mut config: Self = toml::from_str(&text).map_err(|e| error(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.defaults.resolve_paths(base);
        for settings in config.host.values_mut() {
            settings.resolve_paths(base);
        }
        if let Some(hosts) = &mut config.hosts
            && hosts.is_relative()
        {
            *hosts = base.join(&*hosts);
        }
        Ok(config)
    }

    /// The settings for the host named `name`: its section over `[defaults]`.
    pub fn settings_for(&self, name: &str) -> ConnectionSettings {
        match self.host.get(name) {
            Some(own) => own.merged_over(&self.defaults),
            None => self.defaults.clone(),
        }
    }
}

/// The default location of the client config: `$XDG_CONFIG_HOME/vigie/client.toml`.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("vigie").join("client.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_sections_override_defaults_and_paths_are_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.toml");
        std::fs::write(
            &path,
            r#"
hosts = "hosts.csv"
[defaults]
ca = "ca.pem"
token = "vgt_default"
[host.web-1]
token = "vgt_web"
server_name = "web-1.internal"
"#,
        )
        .unwrap();
        let config = ClientConfig::load(&path).unwrap();
        assert_eq!(config.hosts, Some(dir.path().join("hosts.csv")));
        let web = config.settings_for("web-1");
        assert_eq!(web.token.as_ref().map(Secret::expose), Some("vgt_web"));
        assert_eq!(web.ca, Some(dir.path().join("ca.pem")));
        assert_eq!(web.server_name.as_deref(), Some("web-1.internal"));
        assert!(web.uses_tls());
        let other = config.settings_for("db-1");
        assert_eq!(
            other.token.as_ref().map(Secret::expose),
            Some("vgt_default")
        );
        assert_eq!(other.server_name, None);
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let settings = ConnectionSettings {
            token: Some(Secret::new("vgt_very_secret")),
            ..ConnectionSettings::default()
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("vgt_very_secret"), "{shown}");
        assert!(shown.contains("***"));
    }

    #[test]
    fn unknown_keys_are_errors_with_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.toml");
        std::fs::write(&path, "[defaults]\ntokn = \"x\"\n").unwrap();
        let error = ClientConfig::load(&path).unwrap_err().to_string();
        assert!(
            error.contains("client.toml") && error.contains("tokn"),
            "{error}"
        );
    }
}
