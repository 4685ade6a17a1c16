//! Where a transfer may read or write: a path is accepted only when it is
//! absolute, names no `.` or `..`, lies under one of the configured roots,
//! and reaches its last component without following a symbolic link. The
//! directories are opened one by one from the root with `O_NOFOLLOW`, and
//! the file is then reached relative to the last one, so that what was
//! checked is what is written or read, even if a local user swaps a
//! directory for a link meanwhile.

use std::{
    ffi::OsString,
    os::fd::{AsFd, OwnedFd},
    path::{Component, Path, PathBuf},
};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::FileError;

/// The longest path a transfer takes (PATH_MAX).
const LONGEST_PATH: usize = 4096;

/// The directories transfers may use, as the configuration names them
/// (canonical once loaded).
#[derive(Debug, Clone, Default)]
pub struct Roots(Vec<PathBuf>);

impl Roots {
    /// The roots, made canonical; a root that does not exist is refused.
    pub fn new(roots: &[PathBuf]) -> Result<Self, String> {
        roots
            .iter()
            .map(|root| {
                if !root.is_absolute() {
                    return Err(format!("file root {} is not absolute", root.display()));
                }
                root.canonicalize()
                    .map_err(|e| format!("file root {}: {e}", root.display()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// True when no root is configured: transfers are off.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The roots, for messages.
    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(|r| r.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Opens the directory that holds `path` (which must be under a root,
    /// through directories only, none of them a link) and returns it with
    /// the file's name in it.
    pub fn resolve(&self, path: &str) -> Result<Place, FileError> {
        self.walk(path, false)
    }

    /// As [`Roots::resolve`], for writing: no directory from the root to
    /// the target's may be writable by everyone without the sticky bit,
    /// since anybody on the host could then rename what the agent writes
    /// there, or put a directory of their own where it writes next.
    /// (Directories of another user are allowed: that user can change
    /// what is in them anyway, and roots in an application's own tree are
    /// common.)
    pub fn resolve_to_write(&self, path: &str) -> Result<Place, FileError> {
        self.walk(path, true)
    }

    fn walk(&self, path: &str, to_write: bool) -> Result<Place, FileError> {
        if self.is_empty() {
            return Err(FileError::Off);
        }
        if path.contains('\0') {
            return Err(FileError::BadPath(path.into(), "it holds a NUL byte"));
        }
        // Longer than the kernel takes in one call: a path built deeper
        // and deeper one directory at a time ends here.
        if path.len() > LONGEST_PATH {
            return Err(FileError::BadPath(
                path.chars().take(256).collect::<String>() + "…",
                "it is longer than 4,096 bytes",
            ));
        }
        let wanted = Path::new(path);
        if !wanted.is_absolute() {
            return Err(FileError::BadPath(path.into(), "it is not absolute"));
        }
        let mut parts = Vec::new();
        for component in wanted.components() {
            match component {
                Component::RootDir => {}
                // The agent's private directory is never reached through a
                // transfer, at whatever depth.
                Component::Normal(part) if part == super::put::PRIVATE => {
                    return Err(FileError::BadPath(
                        path.into(),
                        "it goes through a directory vigie keeps for itself",
                    ));
                }
                Component::Normal(part) => parts.push(part.to_owned()),
                Component::CurDir | Component::ParentDir | Component::Prefix(_) => {
                    return Err(FileError::BadPath(path.into(), "it holds `.` or `..`"));
                }
            }
        }
        // A path that ends in `/` names a directory, never a file.
        if path.ends_with('/') || parts.is_empty() {
            return Err(FileError::BadPath(path.into(), "it names a directory"));
        }
        let root = self
            .0
            .iter()
            .filter(|root| {
                let depth = root.components().count() - 1;
                depth < parts.len()
                    && root
                        .components()
                        .skip(1)
                        .zip(&parts)
                        .all(|(a, b)| a.as_os_str() == b.as_os_str())
            })
            .max_by_key(|root| root.components().count())
            .ok_or_else(|| FileError::Outside(path.into(), self.describe()))?;
        let depth = root.components().count() - 1;
        let mut dir = rustix::fs::open(
            root,
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::RDONLY,
            Mode::empty(),
        )
        .map_err(|e| FileError::Io(root.display().to_string(), e.into()))?;
        let name = parts.pop().expect("not empty");
        let mut walked = root.clone();
        if to_write {
            not_open_to_all(&dir, &walked)?;
        }
        for part in &parts[depth..] {
            walked.push(part);
            dir = rustix::fs::openat(
                &dir,
                part,
                OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::RDONLY,
                Mode::empty(),
            )
            .map_err(|e| match e {
                rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => {
                    FileError::Link(walked.display().to_string())
                }
                rustix::io::Errno::NOENT => FileError::NoDirectory(walked.display().to_string()),
                e => FileError::Io(walked.display().to_string(), e.into()),
            })?;
            if to_write {
                not_open_to_all(&dir, &walked)?;
            }
        }
        walked.push(&name);
        Ok(Place {
            dir,
            name,
            shown: walked,
        })
    }
}

/// Refuses a directory anybody may write in without the sticky bit.
pub(super) fn not_open_to_all(dir: &OwnedFd, shown: &Path) -> Result<(), FileError> {
    let stat =
        rustix::fs::fstat(dir).map_err(|e| FileError::Io(shown.display().to_string(), e.into()))?;
    if stat.st_mode & 0o002 != 0 && stat.st_mode & 0o1000 == 0 {
        return Err(FileError::Untrusted(
            shown.display().to_string(),
            "anybody may write in it (and it is not sticky)".into(),
        ));
    }
    Ok(())
}

/// A file's place: its directory, opened, and its name in it.
#[derive(Debug)]
pub struct Place {
    /// The directory.
    pub dir: OwnedFd,
    /// The file's name in it.
    pub name: OsString,
    /// The whole path, for messages and the audit log.
    pub shown: PathBuf,
}

impl Place {
    /// What is there now, without following a link: None when nothing is.
    pub fn kind(&self) -> Result<Option<FileType>, FileError> {
        match rustix::fs::statat(self.dir.as_fd(), &self.name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(FileType::from_raw_mode(stat.st_mode))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(FileError::Io(self.shown.display().to_string(), e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_outside_the_roots_through_links_or_with_dots_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        let roots = Roots::new(std::slice::from_ref(&root)).unwrap();
        let root = root.canonicalize().unwrap();
        let at = |p: &str| format!("{}/{p}", root.display());

        let place = roots.resolve(&at("sub/file")).unwrap();
        assert_eq!(place.name, "file");
        assert_eq!(place.shown, root.join("sub/file"));
        assert!(matches!(
            roots.resolve(&at("link/file")),
            Err(FileError::Link(_))
        ));
        assert!(matches!(
            roots.resolve(&at("sub/../../outside/file")),
            Err(FileError::BadPath(..))
        ));
        assert!(matches!(
            roots.resolve(&format!("{}/file", outside.display())),
            Err(FileError::Outside(..))
        ));
        assert!(matches!(
            roots.resolve("relative/file"),
            Err(FileError::BadPath(..))
        ));
        assert!(matches!(
            roots.resolve(&at("missing/file")),
            Err(FileError::NoDirectory(_))
        ));
        assert!(matches!(
            roots.resolve(&format!("{}", root.display())),
            Err(FileError::Outside(..))
        ));
        assert!(matches!(
            Roots::default().resolve("/tmp/x"),
            Err(FileError::Off)
        ));
        // A name beside a root that shares its prefix is not under it.
        let beside = format!("{}-other/file", root.display());
        assert!(matches!(
            roots.resolve(&beside),
            Err(FileError::Outside(..))
        ));
    }
}
