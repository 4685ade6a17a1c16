//! What a push sends, read from the local disk: each file hashed once
//! before anything is sent (the agents check the content against the
//! SHA-256 announced first), a tree as its directories and files in an
//! order where every directory comes before what it holds.

use std::{
    io::Read,
    os::unix::{
        ffi::OsStrExt,
        fs::{MetadataExt, OpenOptionsExt},
    },
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

use super::CHUNK;

/// Why a local file cannot be pushed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct LocalError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

impl LocalError {
    fn new(path: &Path, why: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            path: path.to_owned(),
            source: std::io::Error::other(why),
        }
    }
}

/// A local file ready to push: its size, mode and SHA-256.
#[derive(Debug, Clone)]
pub struct LocalFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its size.
    pub size: u64,
    /// Its permission bits.
    pub mode: u32,
    /// Its SHA-256.
    pub sha256: [u8; 32],
    /// Its device and inode when it was hashed: the file sent must be the
    /// very file hashed.
    identity: (u64, u64),
}

/// Permission bits a push carries: others-writable, set-id and sticky bits
/// never travel, since a file the agent writes as its user must not be one
/// anybody can change.
fn carried(mode: u32) -> u32 {
    mode & 0o775
}

/// Opens a regular file without blocking on it: a FIFO or a device put in
/// its place is refused instead of hanging the push.
pub(super) fn open_regular(path: &Path) -> Result<(std::fs::File, std::fs::Metadata), LocalError> {
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|source| LocalError {
            path: path.to_owned(),
            source,
        })?;
    let metadata = file.metadata().map_err(|source| LocalError {
        path: path.to_owned(),
        source,
    })?;
    if !metadata.is_file() {
        return Err(LocalError::new(path, "not a regular file"));
    }
    Ok((file, metadata))
}

impl LocalFile {
    /// Reads `path` once to hash it (on a blocking thread).
    pub async fn hash(path: &Path) -> Result<Self, LocalError> {
        let owned = path.to_owned();
        tokio::task::spawn_blocking(move || Self::hash_now(&owned))
            .await
            .unwrap_or_else(|e| Err(LocalError::new(path, e.to_string())))
    }

    /// Reads `path` once to hash it.
    pub fn hash_now(path: &Path) -> Result<Self, LocalError> {
        let (file, metadata) = open_regular(path)?;
        Self::hash_open(path, file, &metadata)
    }

    /// Hashes an opened regular file, known as `path`.
    fn hash_open(
        path: &Path,
        mut file: std::fs::File,
        metadata: &std::fs::Metadata,
    ) -> Result<Self, LocalError> {
        let fail = |source| LocalError {
            path: path.to_owned(),
            source,
        };
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; CHUNK];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buffer).map_err(fail)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            size += n as u64;
        }
        Ok(Self {
            size,
            mode: carried(metadata.mode()),
            sha256: hasher.finalize().into(),
            path: path.to_owned(),
            identity: (metadata.dev(), metadata.ino()),
        })
    }

    /// Opens the file again to send it: refused if it is no longer the
    /// file that was hashed (replaced, or swapped for a FIFO).
    pub(super) fn reopen(&self) -> Result<std::fs::File, LocalError> {
        let (file, metadata) = open_regular(&self.path)?;
        if (metadata.dev(), metadata.ino()) != self.identity {
            return Err(LocalError::new(
                &self.path,
                "the file was replaced after it was hashed",
            ));
        }
        Ok(file)
    }
}

/// One thing a push creates on each host.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A directory, with the local directory's mode.
    Dir {
        /// Its path on the hosts.
        remote: String,
        /// Its permission bits.
        mode: u32,
    },
    /// A file.
    File {
        /// Its path on the hosts.
        remote: String,
        /// The local file, hashed.
        file: LocalFile,
    },
}

/// Something of a local tree a push leaves out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The local path.
    pub path: PathBuf,
    /// Why it is not sent.
    pub why: &'static str,
}

/// What a push sends: directories before what they hold.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// In order.
    pub entries: Vec<Entry>,
    /// What was left out (symbolic links, devices, names that are not
    /// UTF-8).
    pub skipped: Vec<Skipped>,
}

/// A file's device and inode: what it is, whatever its path.
type FileId = (u64, u64);

/// Joins a name to a remote directory.
fn join(remote: &str, name: &str) -> String {
    format!("{}/{name}", remote.trim_end_matches('/'))
}

impl Plan {
    /// The plan for `locals` to `remote`, reading and hashing every file
    /// (blocking). One local and a `remote` without a trailing `/`: the
    /// file or directory becomes `remote`. Several, or a trailing `/`:
    /// `remote` is a directory on each host and each local lands in it
    /// under its own name (as given: a link named on the command line
    /// lands under the link's name). Symbolic links inside a tree, and
    /// anything that is neither a file nor a directory, are left out
    /// (listed in `skipped`); a local named on the command line is
    /// followed. Two locals that would land on the same remote path are
    /// refused.
    pub fn new(locals: &[PathBuf], remote: &str) -> Result<Self, LocalError> {
        if locals.is_empty() {
            return Err(LocalError::new(Path::new(""), "nothing to push"));
        }
        let into = remote.ends_with('/') || locals.len() > 1;
        let mut plan = Self::default();
        for local in locals {
            let metadata = std::fs::metadata(local).map_err(|source| LocalError {
                path: local.clone(),
                source,
            })?;
            let target = if into {
                let name = local
                    .file_name()
                    .map(|n| n.to_owned())
                    .or_else(|| {
                        local
                            .canonicalize()
                            .ok()
                            .and_then(|c| c.file_name().map(|n| n.to_owned()))
                    })
                    .ok_or_else(|| LocalError::new(local, "has no name to give it on the hosts"))?;
                let name = name
                    .to_str()
                    .ok_or_else(|| LocalError::new(local, "its name is not UTF-8"))?
                    .to_owned();
                join(remote, &name)
            } else {
                remote.to_owned()
            };
            if metadata.is_dir() {
                plan.walk(local, target)?;
            } else if metadata.is_file() {
                plan.entries.push(Entry::File {
                    remote: target,
                    file: LocalFile::hash_now(local)?,
                });
            } else {
                return Err(LocalError::new(local, "not a regular file or a directory"));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for entry in &plan.entries {
            let (remote, what) = match entry {
                Entry::Dir { remote, .. } => (remote, "directory"),
                Entry::File { remote, file } => (remote, file.path.to_str().unwrap_or("file")),
            };
            if !seen.insert(remote.trim_end_matches('/')) {
                return Err(LocalError::new(
                    Path::new(what),
                    format!("two of the files and directories pushed would both land on {remote}"),
                ));
            }
        }
        Ok(plan)
    }

    /// Adds the tree at `dir` as `remote`, depth first, every directory
    /// before its content, names in byte order. Every entry is looked at
    /// relative to its directory's descriptor, and every directory and
    /// file is opened without following a link and checked to be the one
    /// that was looked at: a link put in place of either while the tree
    /// is read is never followed.
    fn walk(&mut self, top: &Path, remote: String) -> Result<(), LocalError> {
        use rustix::fs::{AtFlags, FileType, Mode, OFlags};
        let mut stack: Vec<(PathBuf, String, Option<FileId>)> =
            vec![(top.to_owned(), remote, None)];
        while let Some((dir, remote, expected)) = stack.pop() {
            let fail = |e: std::io::Error| LocalError {
                path: dir.clone(),
                source: e,
            };
            let mut flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
            if expected.is_some() {
                flags |= OFlags::NOFOLLOW;
            }
            let fd = rustix::fs::open(&dir, flags, Mode::empty()).map_err(|e| fail(e.into()))?;
            let stat = rustix::fs::fstat(&fd).map_err(|e| fail(e.into()))?;
            if expected.is_some_and(|id| id != (stat.st_dev, stat.st_ino)) {
                return Err(fail(std::io::Error::other(
                    "it was replaced while the tree was read",
                )));
            }
            self.entries.push(Entry::Dir {
                remote: remote.clone(),
                mode: carried(stat.st_mode),
            });
            let mut names = Vec::new();
            for entry in rustix::fs::Dir::read_from(&fd).map_err(|e| fail(e.into()))? {
                let entry = entry.map_err(|e| fail(e.into()))?;
                let name = entry.file_name().to_bytes();
                if name != b"." && name != b".." {
                    names.push(std::ffi::OsStr::from_bytes(name).to_owned());
                }
            }
            names.sort();
            let mut subdirs = Vec::new();
            for name in names {
                let child = dir.join(&name);
                let Some(text) = name.to_str().map(str::to_owned) else {
                    self.skipped.push(Skipped {
                        path: child,
                        why: "its name is not UTF-8",
                    });
                    continue;
                };
                let child_fail = |e: std::io::Error| LocalError {
                    path: child.clone(),
                    source: e,
                };
                let seen = rustix::fs::statat(&fd, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| child_fail(e.into()))?;
                match FileType::from_raw_mode(seen.st_mode) {
                    FileType::Symlink => self.skipped.push(Skipped {
                        path: child,
                        why: "a symbolic link",
                    }),
                    FileType::Directory => subdirs.push((
                        child,
                        join(&remote, &text),
                        Some((seen.st_dev, seen.st_ino)),
                    )),
                    FileType::RegularFile => {
                        let opened = rustix::fs::openat(
                            &fd,
                            name.as_os_str(),
                            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                            Mode::empty(),
                        )
                        .map_err(|e| child_fail(e.into()))?;
                        let file = std::fs::File::from(opened);
                        let metadata = file.metadata().map_err(child_fail)?;
                        if !metadata.is_file()
                            || (metadata.dev(), metadata.ino()) != (seen.st_dev, seen.st_ino)
                        {
                            return Err(child_fail(std::io::Error::other(
                                "it was replaced while the tree was read",
                            )));
                        }
                        self.entries.push(Entry::File {
                            remote: join(&remote, &text),
                            file: LocalFile::hash_open(&child, file, &metadata)?,
                        });
                    }
                    _ => self.skipped.push(Skipped {
                        path: child,
                        why: "neither a file nor a directory",
                    }),
                }
            }
            // Popped in name order.
            stack.extend(subdirs.into_iter().rev());
        }
        Ok(())
    }

    /// The number of files.
    pub fn files(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e, Entry::File { .. }))
            .count()
    }

    /// The bytes of all files.
    pub fn bytes(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match e {
                Entry::File { file, .. } => file.size,
                Entry::Dir { .. } => 0,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remotes(plan: &Plan) -> Vec<(String, Option<u32>)> {
        plan.entries
            .iter()
            .map(|e| match e {
                Entry::Dir { remote, mode } => (format!("{remote}/"), Some(*mode)),
                Entry::File { remote, .. } => (remote.clone(), None),
            })
            .collect()
    }

    #[test]
    fn a_tree_is_planned_parents_first_with_modes_and_links_left_out() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("app");
        std::fs::create_dir_all(tree.join("b/c")).unwrap();
        std::fs::create_dir(tree.join("a")).unwrap();
        std::fs::write(tree.join("top"), "t").unwrap();
        std::fs::write(tree.join("b/c/deep"), "dd").unwrap();
        std::fs::set_permissions(tree.join("b"), std::fs::Permissions::from_mode(0o750)).unwrap();
        std::fs::set_permissions(tree.join("a"), std::fs::Permissions::from_mode(0o777)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", tree.join("link")).unwrap();

        let plan = Plan::new(std::slice::from_ref(&tree), "/srv/x").unwrap();
        let got = remotes(&plan);
        let names: Vec<&str> = got.iter().map(|(r, _)| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "/srv/x/",
                "/srv/x/top",
                "/srv/x/a/",
                "/srv/x/b/",
                "/srv/x/b/c/",
                "/srv/x/b/c/deep"
            ]
        );
        // Others-write never travels.
        assert_eq!(got[2].1, Some(0o775));
        assert_eq!(got[3].1, Some(0o750));
        assert_eq!(
            plan.skipped,
            [Skipped {
                path: tree.join("link"),
                why: "a symbolic link"
            }]
        );
        assert_eq!((plan.files(), plan.bytes()), (2, 3));

        // Into a directory: by name.
        let plan = Plan::new(&[tree.clone(), tree.join("top")], "/srv").unwrap();
        assert_eq!(remotes(&plan)[0].0, "/srv/app/");
        assert_eq!(remotes(&plan).last().unwrap().0, "/srv/top");
        let plan = Plan::new(&[tree.join("top")], "/srv/").unwrap();
        assert_eq!(remotes(&plan)[0].0, "/srv/top");
        let plan = Plan::new(&[tree.join("top")], "/srv/renamed").unwrap();
        assert_eq!(remotes(&plan)[0].0, "/srv/renamed");

        // A link named on the command line lands under its own name.
        let current = dir.path().join("current");
        std::os::unix::fs::symlink(&tree, &current).unwrap();
        let plan = Plan::new(std::slice::from_ref(&current), "/srv/").unwrap();
        assert_eq!(remotes(&plan)[0].0, "/srv/current/");

        // Two locals landing on one remote path are refused.
        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("top"), "o").unwrap();
        let error = Plan::new(&[tree.join("top"), other.join("top")], "/srv/").unwrap_err();
        assert!(error.to_string().contains("/srv/top"), "{error}");
        assert!(Plan::new(&[tree.clone(), current], "/srv/app-and-current/").is_ok());
    }

    #[test]
    fn a_fifo_is_refused_without_blocking_and_a_replaced_file_is_not_sent() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        assert!(LocalFile::hash_now(&fifo).is_err());
        assert!(Plan::new(std::slice::from_ref(&fifo), "/srv/x").is_err());

        let path = dir.path().join("file");
        std::fs::write(&path, "one").unwrap();
        let file = LocalFile::hash_now(&path).unwrap();
        assert!(file.reopen().is_ok());
        std::fs::remove_file(&path).unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &path,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        assert!(file.reopen().is_err());
    }
}
