//! One-time join codes: made for one agent, stored on it only as a hash
//! with an expiry, used once.
//!
//! The code is 128 random bits. The agent keeps SHA-256 of it, and both
//! sides key their HMAC proofs with that hash, so the code itself is never
//! written on the managed host and never sent over the network. Whoever
//! can read the join file can enroll this one agent until the code expires
//! or is used, which is no more than root on that host can do anyway.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use super::{FleetDir, files};

pub use crate::pki::JOIN_PREFIX;

/// Why a join code cannot be made, stored or read.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The OS random generator failed.
    #[error("cannot generate a join code: {0}")]
    Random(String),
    /// The code given is not one vigie makes.
    #[error(
        "this is not a join code: it starts with {JOIN_PREFIX} and 32 hexadecimal digits follow"
    )]
    Malformed,
    /// The join file cannot be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The join file is not valid.
    #[error("invalid join file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// A new join code: 128 bits from the OS, in hexadecimal.
pub fn generate() -> Result<String, JoinError> {
    crate::pki::generate_join_code().map_err(|e| JoinError::Random(e.to_string()))
}

/// The key both sides derive from a join code: SHA-256 of the code as
/// written (after checking its shape, with surrounding blanks removed).
pub fn key_of(code: &str) -> Result<[u8; 32], JoinError> {
    crate::pki::join_key(code).ok_or(JoinError::Malformed)
}

/// The join file: the key of the pending code and when it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    /// SHA-256 of the join code, in hex.
    pub sha256: String,
    /// When the code stops working, in ms since the Unix epoch.
    pub expires_at_ms: i64,
}

impl Pending {
    /// The HMAC key, if the file's hash is well formed.
    pub fn key(&self) -> Option<[u8; 32]> {
        hex::decode(&self.sha256).ok()?.try_into().ok()
    }

    /// True while the code may still be used.
    pub fn is_live(&self, now_ms: i64) -> bool {
        now_ms < self.expires_at_ms
    }
}

/// Stores `code` as the pending join code of `dir` (replacing any other),
/// valid for `valid` from now. Only its hash is written, with mode 0600.
pub fn store(dir: &FleetDir, code: &str, valid: Duration) -> Result<Pending, JoinError> {
    let pending = Pending {
        sha256: hex::encode(key_of(code)?),
        expires_at_ms: crate::clock::now_ms()
            .saturating_add(i64::try_from(valid.as_millis()).unwrap_or(i64::MAX)),
    };
    let body = toml::to_string(&pending).map_err(|e| JoinError::Invalid {
        path: dir.file(files::JOIN),
        reason: e.to_string(),
    })?;
    let text = format!(
        "# The pending join code of this agent: its SHA-256 only, and when it expires.\n\
         # It is removed when the agent is enrolled.\n{body}"
    );
    let path = dir.file(files::JOIN);
    crate::atomic_file::replace(&path, text.as_bytes(), 0o600).map_err(|source| JoinError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(pending)
}

/// The pending join code of `dir`, if there is one.
pub fn load(dir: &FleetDir) -> Result<Option<Pending>, JoinError> {
    let path = dir.file(files::JOIN);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(JoinError::Io { path, source }),
    };
    let pending: Pending = toml::from_str(&text).map_err(|e| JoinError::Invalid {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if pending.key().is_none() {
        return Err(JoinError::Invalid {
            path,
            reason: "sha256 must be 64 hexadecimal digits".into(),
        });
    }
    Ok(Some(pending))
}

/// Removes the pending join code (once it has been used).
pub fn consume(dir: &FleetDir) -> Result<(), JoinError> {
    let path = dir.file(files::JOIN);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(JoinError::Io { path, source }),
    }
}

/// Reads a join code from `reader` (its first line), for `--join-code-stdin`:
/// a code given on a command line would be visible to every local user.
pub fn read_code(reader: &mut impl std::io::BufRead) -> Result<String, JoinError> {
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|source| JoinError::Io {
            path: PathBuf::from("<stdin>"),
            source,
        })?;
    key_of(&line)?;
    Ok(line.trim().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_their_shape_and_only_their_hash_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let fleet = FleetDir::new(dir.path());
        let code = generate().unwrap();
        assert!(code.starts_with(JOIN_PREFIX) && code.len() == 36, "{code}");
        assert_ne!(generate().unwrap(), code);
        let pending = store(&fleet, &code, Duration::from_secs(60)).unwrap();
        let text = std::fs::read_to_string(fleet.file(files::JOIN)).unwrap();
        assert!(
            !text.contains(&code[4..]),
            "the code itself is never written"
        );
        assert_eq!(load(&fleet).unwrap(), Some(pending.clone()));
        assert_eq!(pending.key(), Some(key_of(&code).unwrap()));
        assert_eq!(
            key_of(&format!(
                "  {}\n",
                code.to_ascii_uppercase().replace("VGJ_", "vgj_")
            ))
            .unwrap(),
            key_of(&code).unwrap()
        );
        let now = crate::clock::now_ms();
        assert!(pending.is_live(now) && !pending.is_live(now + 61_000));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(fleet.file(files::JOIN))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        consume(&fleet).unwrap();
        assert_eq!(load(&fleet).unwrap(), None);
        for bad in [
            "",
            "vgj_",
            "vgt_0123456789abcdef0123456789abcdef",
            "vgj_zz23456789abcdef0123456789abcdef",
        ] {
            assert!(matches!(key_of(bad), Err(JoinError::Malformed)), "{bad:?}");
        }
    }
}
