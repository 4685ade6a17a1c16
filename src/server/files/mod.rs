//! File transfers: uploads written to a temporary file beside the target,
//! checked against the size and SHA-256 announced, synced and renamed into
//! place (so that a broken or corrupted transfer never leaves a partial
//! target), resumable from what an interrupted one kept; downloads read
//! through the same path rules, with the whole file's SHA-256 at the end.
//!
//! The rules this module keeps:
//! - Every path goes through [`Roots::resolve`]: absolute, no `.` or `..`,
//!   under a root the caller's role is given, no symbolic link on the way
//!   or at the end.
//! - A target is replaced only when the request asks; set-id and sticky
//!   bits are never set.
//! - A partial upload is kept only under a name derived from the identity,
//!   the target and the content announced, so that nobody else's upload
//!   can continue it, and it is checked in full before it becomes the
//!   target.

use std::{collections::BTreeMap, path::PathBuf};

pub mod dir;
pub mod get;
pub mod paths;
pub mod put;

pub use dir::{DirDone, make_directory};
pub use get::Download;
pub use paths::{Place, Roots};
pub use put::{Upload, UploadDone};

use super::auth::Role;

/// Why a transfer was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The caller's role has no file roots.
    #[error("file transfers are off for this role: the agent's file_roots gives it no directory")]
    Off,
    /// The caller's Execute is restricted, and a file it writes could run.
    #[error(
        "uploads are refused for the {0} role: its commands are restricted (no_exec or an exec \
         allow-list) and a file it writes could be run; allow_file_writes lists the roles that \
         may upload all the same"
    )]
    WriteRestricted(String),
    /// The path cannot be used as it is.
    #[error("{0}: refused because {1}")]
    BadPath(String, &'static str),
    /// The path is under no root of the caller.
    #[error("{0} is outside the directories transfers may use ({1})")]
    Outside(String, String),
    /// A component of the path is a symbolic link (or not a directory).
    #[error("{0} is a symbolic link or not a directory: transfers never follow links")]
    Link(String),
    /// A directory on the way to a write could be changed by someone else.
    #[error("{0}: refusing to write through it because {1}")]
    Untrusted(String, String),
    /// A directory on the path does not exist.
    #[error("directory {0} does not exist")]
    NoDirectory(String),
    /// The target exists and the request did not ask to replace it.
    #[error("{0} exists: ask to replace it")]
    Exists(String),
    /// The target is not a regular file.
    #[error("{0} is not a regular file")]
    NotAFile(String),
    /// Something other than a directory is where a directory is wanted.
    #[error("{0} exists and is not a directory")]
    NotADirectory(String),
    /// The target does not exist (download).
    #[error("{0} does not exist")]
    NotFound(String),
    /// The file is larger than the agent accepts.
    #[error("{size} bytes is more than the {limit} bytes a transfer may move (max_file_bytes)")]
    TooLarge {
        /// The size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The mode asks for bits transfers never set.
    #[error(
        "mode {0:o} is refused: uploads set permission bits only, never set-id, sticky or \
         others-writable bits"
    )]
    BadMode(u32),
    /// Another upload of the same content to the same place is running.
    #[error("another upload of this file to {0} is in progress")]
    Busy(String),
    /// The agent's private directory beside the target is not its own.
    #[error(
        "{0} is not the agent's private directory (0700, its own user): refusing to write through it"
    )]
    Tampered(String),
    /// The content sent does not match what was announced.
    #[error("{0}")]
    Mismatch(String),
    /// The client broke the exchange.
    #[error("{0}")]
    Protocol(String),
    /// The file system failed.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// The file settings of an agent, per role.
#[derive(Debug, Clone, Default)]
pub struct FileRules {
    roots: BTreeMap<Role, Roots>,
    /// Roles whose Execute is restricted that may upload all the same.
    writers: std::collections::BTreeSet<Role>,
    /// Largest file a transfer may move.
    pub max_bytes: u64,
}

impl FileRules {
    /// The rules of a configuration: each role's roots, made canonical.
    pub fn new(
        roots: &BTreeMap<Role, Vec<PathBuf>>,
        writers: &[Role],
        max_bytes: u64,
    ) -> Result<Self, String> {
        let roots = roots
            .iter()
            .map(|(role, dirs)| Ok((*role, Roots::new(dirs)?)))
            .collect::<Result<_, String>>()?;
        Ok(Self {
            roots,
            writers: writers.iter().copied().collect(),
            max_bytes,
        })
    }

    /// True when `role` may upload although its Execute is restricted.
    pub fn writes_despite_restrictions(&self, role: Role) -> bool {
        self.writers.contains(&role)
    }

    /// The roots of `role` (none: transfers off for it).
    pub fn roots(&self, role: Role) -> Roots {
        self.roots.get(&role).cloned().unwrap_or_default()
    }
}

/// A SHA-256 digest from the wire: exactly 32 bytes.
pub fn digest(bytes: &[u8]) -> Result<[u8; 32], FileError> {
    bytes
        .try_into()
        .map_err(|_| FileError::Protocol(format!("a SHA-256 has 32 bytes, not {}", bytes.len())))
}
