//! Who is calling, and what they may do.
//!
//! Every method the agent serves has one line in [`POLICY`]; a method that
//! is not there is denied to everyone. Callers prove who they are with a
//! bearer token (stored in the access file only as a SHA-256 hash) or a TLS
//! client certificate whose subject the access file maps to a role. This
//! module is plain Rust: the tower layer in `layer.rs` applies it to
//! requests.

use std::{
    path::{Path, PathBuf},
    sync::RwLock,
    time::SystemTime,
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use crate::types::Role;

/// Who may call a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials (health checks, reflection).
    Public,
    /// An authenticated identity with at least this role.
    AtLeast(Role),
}

/// The access rule of every method the agent serves, by gRPC path. A path
/// missing here is denied to everyone, so a new rpc cannot be served before
/// someone decides who may call it (a test checks that every rpc of the
/// service descriptor has a line).
pub const POLICY: &[(&str, Access)] = &[
    ("/grpc.health.v1.Health/Check", Access::Public),
    ("/grpc.health.v1.Health/Watch", Access::Public),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        Access::Public,
    ),
    (
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        Access::Public,
    ),
    (
        "/vigie.v1.RemoteAgent/GetSystemInfo",
        Access::AtLeast(Role::Viewer),
    ),
    (
        "/vigie.v1.RemoteAgent/WatchMetrics",
        Access::AtLeast(Role::Viewer),
    ),
    (
        "/vigie.v1.RemoteAgent/ListProcesses",
        Access::AtLeast(Role::Viewer),
    ),
    (
        "/vigie.v1.RemoteAgent/GetConnectionInfo",
        Access::AtLeast(Role::Viewer),
    ),
    (
        "/vigie.v1.RemoteAgent/Disconnect",
        Access::AtLeast(Role::Viewer),
    ),
    (
        "/vigie.v1.RemoteAgent/Execute",
        Access::AtLeast(Role::Operator),
    ),
    (
        "/vigie.v1.RemoteAgent/SignalProcess",
        Access::AtLeast(Role::Operator),
    ),
    // Jobs: the handler lets an identity see only its own jobs (admins
    // see all), so a viewer, who cannot start one, sees none.
    (
        "/vigie.v1.RemoteAgent/AttachJob",
        Access::AtLeast(Role::Viewer),
    ),
    (
        "/vigie.v1.RemoteAgent/ListJobs",
        Access::AtLeast(Role::Viewer),
    ),
    (
        "/vigie.v1.RemoteAgent/GetJob",
        Access::AtLeast(Role::Viewer),
    ),
    (
        "/vigie.v1.RemoteAgent/CancelJob",
        Access::AtLeast(Role::Operator),
    ),
    // Files: the handler applies the role's file_roots (none by default).
    (
        "/vigie.v1.RemoteAgent/PutFile",
        Access::AtLeast(Role::Operator),
    ),
    (
        "/vigie.v1.RemoteAgent/GetFile",
        Access::AtLeast(Role::Operator),
    ),
    (
        "/vigie.v1.RemoteAgent/MakeDirectory",
        Access::AtLeast(Role::Operator),
    ),
    (
        "/vigie.v1.RemoteAgent/Shutdown",
        Access::AtLeast(Role::Admin),
    ),
    (
        "/vigie.v1.RemoteAgent/Restart",
        Access::AtLeast(Role::Admin),
    ),
    // The join code is the credential, checked by the handler; an enrolled
    // agent refuses it.
    ("/vigie.v1.RemoteAgent/Enroll", Access::Public),
    (
        "/vigie.v1.RemoteAgent/RenewCertificate",
        Access::AtLeast(Role::Admin),
    ),
    (
        "/vigie.v1.RemoteAgent/PushPolicy",
        Access::AtLeast(Role::Admin),
    ),
];

/// The one path an agent awaiting enrollment serves.
pub const ENROLL_PATH: &str = "/vigie.v1.RemoteAgent/Enroll";

/// The rule for a gRPC path; `None` means nobody may call it.
pub fn access_for(path: &str) -> Option<Access> {
    POLICY.iter().find(|(p, _)| *p == path).map(|(_, a)| *a)
}

/// The caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// A readable name, e.g. "token:alice" or "cert:CN=ops".
    pub name: String,
    /// What it may do.
    pub role: Role,
}

impl Identity {
    /// An identity for tests.
    #[cfg(test)]
    pub(crate) fn for_tests(name: &str, role: Role) -> Self {
        Self {
            name: name.to_owned(),
            role,
        }
    }

    /// The caller when the agent runs without access control (allowed on
    /// loopback only): everyone who can connect may do everything.
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".to_owned(),
            role: Role::Admin,
        }
    }
}

/// Why a caller was turned away. The messages never say whether a token
/// exists: a wrong token and an unknown one read the same.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No credentials, or credentials that prove nothing.
    #[error("missing or invalid credentials")]
    Unauthenticated,
    /// A known identity whose role is too weak.
    #[error("{identity} ({role}) may not call {method}: it needs the {needed} role")]
    Forbidden {
        /// Who called.
        identity: String,
        /// Their role.
        role: Role,
        /// The method, e.g. "Execute".
        method: String,
        /// The weakest role that may call it.
        needed: Role,
    },
    /// No rule names the method.
    #[error("no access rule allows {0}")]
    NoRule(String),
    /// The client certificate is on the fleet's revocation list.
    #[error("this certificate has been revoked")]
    Revoked,
    /// The client certificate has expired (on a connection made before).
    #[error("this certificate has expired")]
    Expired,
    /// The agent awaits enrollment and serves nothing else.
    #[error(
        "this agent awaits enrollment and serves nothing else: enroll it with `vigie enroll HOST`"
    )]
    Awaiting,
}

/// Decides whether `identity` (if any) may call `path`.
pub fn authorize(path: &str, identity: Option<&Identity>) -> Result<(), Denied> {
    let method = path.rsplit('/').next().unwrap_or(path).to_owned();
    match (access_for(path), identity) {
        (Some(Access::Public), _) => Ok(()),
        (_, None) => Err(Denied::Unauthenticated),
        (None, Some(_)) => Err(Denied::NoRule(method)),
        (Some(Access::AtLeast(needed)), Some(who)) if who.role < needed => Err(Denied::Forbidden {
            identity: who.name.clone(),
            role: who.role,
            method,
            needed,
        }),
        (Some(Access::AtLeast(_)), Some(_)) => Ok(()),
    }
}

pub use crate::pki::{TOKEN_PREFIX, generate_token, hash_token};

/// The access file: the tokens and certificate subjects that may call the
/// agent, each with a role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessFile {
    /// Bearer tokens, by hash.
    #[serde(default, rename = "token")]
    pub tokens: Vec<TokenEntry>,
    /// TLS client certificates, by subject.
    #[serde(default, rename = "certificate")]
    pub certificates: Vec<CertificateEntry>,
}

/// One token of the access file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Who holds it, e.g. "alice" (the identity becomes "token:alice").
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// SHA-256 of the token, in hex.
    pub sha256: String,
}

/// One certificate identity of the access file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateEntry {
    /// The certificate's subject as vigie prints it, e.g. "CN=vigie-admin".
    pub subject: String,
    /// What it may do.
    pub role: Role,
}

/// Why the access file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AccessFileError {
    /// It cannot be read.
    #[error("cannot read access file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not valid.
    #[error("invalid access file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl AccessFile {
    /// Reads and checks an access file.
    pub fn load(path: &Path) -> Result<Self, AccessFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| AccessFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|reason| AccessFileError::Invalid {
            path: path.to_owned(),
            reason,
        })
    }

    /// Parses and checks the text of an access file; the error says what
    /// is wrong (with its line, from the TOML parser).
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        // Names become identities, which key sessions and limits and appear
        // in logs: two entries may not share one, and none may hold a
        // control character.
        let mut seen = std::collections::HashSet::new();
        for name in file
            .tokens
            .iter()
            .map(|t| format!("token:{}", t.name))
            .chain(
                file.certificates
                    .iter()
                    .map(|c| format!("cert:{}", c.subject)),
            )
        {
            if name.chars().any(char::is_control) {
                return Err(format!("{name:?}: names may not hold control characters"));
            }
            if !seen.insert(name.clone()) {
                return Err(format!(
                    "{name:?} appears twice: each identity needs one entry"
                ));
            }
        }
        for entry in &file.tokens {
            let valid =
                entry.sha256.len() == 64 && entry.sha256.bytes().all(|b| b.is_ascii_hexdigit());
            if !valid {
                return Err(format!(
                    "token {:?}: sha256 must be 64 hexadecimal digits",
                    entry.name
                ));
            }
        }
        Ok(file)
    }

    /// The identity a token proves, if any. Every entry is compared, in
    /// constant time, so the time taken says nothing about which matched.
    pub fn identify_token(&self, token: &str) -> Option<Identity> {
        let presented = Sha256::digest(token.as_bytes());
        let mut found: Option<&TokenEntry> = None;
        for entry in &self.tokens {
            let Ok(stored) = hex::decode(&entry.sha256) else {
                continue;
            };
            if bool::from(stored.as_slice().ct_eq(presented.as_slice())) {
                found = Some(entry);
            }
        }
        found.map(|entry| Identity {
            name: format!("token:{}", entry.name),
            role: entry.role,
        })
    }

    /// The identity a certificate subject maps to, if any.
    pub fn identify_certificate(&self, subject: &str) -> Option<Identity> {
        self.certificates
            .iter()
            .find(|entry| entry.subject == subject)
            .map(|entry| Identity {
                name: format!("cert:{subject}"),
                role: entry.role,
            })
    }
}

/// The access file, reloaded when it changes on disk, so that a token added
/// with `vigie-agent token add` works without a restart.
#[derive(Debug)]
pub struct AccessList {
    /// None for an agent whose only callers are fleet certificates and
    /// fleet tokens.
    path: Option<PathBuf>,
    current: RwLock<(Option<FileVersion>, AccessFile)>,
}

/// What tells two versions of a file apart. Timestamps alone are too
/// coarse (they advance by kernel ticks), so the inode, which an atomic
/// replace changes, and the size count too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileVersion {
    device: u64,
    inode: u64,
    size: u64,
    modified: Option<SystemTime>,
    changed_ns: i64,
}

impl FileVersion {
    fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        Some(Self {
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.size(),
            modified: meta.modified().ok(),
            changed_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        })
    }
}

impl AccessList {
    /// Loads the file; it must be valid at start.
    pub fn load(path: &Path) -> Result<Self, AccessFileError> {
        let version = FileVersion::of(path);
        let file = AccessFile::load(path)?;
        Ok(Self {
            path: Some(path.to_owned()),
            current: RwLock::new((version, file)),
        })
    }

    /// A list without a file: no token and no subject of its own.
    pub fn empty() -> Self {
        Self {
            path: None,
            current: RwLock::new((None, AccessFile::default())),
        }
    }

    /// The current entries, reloading the file first if it changed.
    ///
    /// A file that became missing, unreadable or invalid fails closed: no
    /// entry is kept, so every identity it listed is refused until the file
    /// is valid again (the next call after the fix reloads it). Keeping the
    /// old entries instead would keep a revoked token working for as long
    /// as the file stayed broken.
    pub fn get(&self) -> AccessFile {
        let Some(path) = &self.path else {
            return AccessFile::default();
        };
        let version = FileVersion::of(path);
        {
            let current = self.current.read().unwrap_or_else(|e| e.into_inner());
            if current.0 == version {
                return current.1.clone();
            }
        }
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        match AccessFile::load(path) {
            Ok(file) => {
                tracing::info!(path = %path.display(), "access file reloaded");
                *current = (version, file);
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    "the access file is unusable: every caller is refused until it is fixed"
                );
                *current = (version, AccessFile::default());
            }
        }
        current.1.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(role: Role) -> Identity {
        Identity {
            name: "token:t".into(),
            role,
        }
    }

    #[test]
    fn the_policy_grants_roles_cumulatively() {
        let exec = "/vigie.v1.RemoteAgent/Execute";
        assert_eq!(authorize(exec, None), Err(Denied::Unauthenticated));
        assert!(matches!(
            authorize(exec, Some(&who(Role::Viewer))),
            Err(Denied::Forbidden {
                needed: Role::Operator,
                ..
            })
        ));
        assert!(authorize(exec, Some(&who(Role::Operator))).is_ok());
        assert!(authorize(exec, Some(&who(Role::Admin))).is_ok());
        assert!(authorize("/grpc.health.v1.Health/Check", None).is_ok());
        assert_eq!(
            authorize("/vigie.v1.RemoteAgent/Unknown", Some(&who(Role::Admin))),
            Err(Denied::NoRule("Unknown".into()))
        );
    }

    #[test]
    fn an_identity_appears_once_and_names_hold_no_control_character() {
        let hash = "0".repeat(64);
        let twice = format!(
            "[[token]]\nname = \"a\"\nrole = \"viewer\"\nsha256 = \"{hash}\"\n\
             [[token]]\nname = \"a\"\nrole = \"admin\"\nsha256 = \"{}\"\n",
            "1".repeat(64)
        );
        assert!(
            AccessFile::parse(&twice)
                .unwrap_err()
                .contains("appears twice")
        );
        let control =
            format!("[[token]]\nname = \"a\\nb\"\nrole = \"viewer\"\nsha256 = \"{hash}\"\n");
        assert!(AccessFile::parse(&control).unwrap_err().contains("control"));
    }

    #[test]
    fn tokens_are_found_by_hash_only() {
        let token = generate_token().unwrap();
        assert!(token.starts_with(TOKEN_PREFIX) && token.len() == 4 + 43);
        let file = AccessFile {
            tokens: vec![TokenEntry {
                name: "alice".into(),
                role: Role::Operator,
                sha256: hash_token(&token),
            }],
            certificates: vec![],
        };
        assert_eq!(
            file.identify_token(&token),
            Some(Identity {
                name: "token:alice".into(),
                role: Role::Operator
            })
        );
        assert_eq!(file.identify_token("vgt_wrong"), None);
        assert_eq!(file.identify_token(""), None);
        assert_ne!(generate_token().unwrap(), token);
    }
}
