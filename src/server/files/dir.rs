//! Directories for pushing a tree: created under the same path rules as
//! uploads, with the mode asked for set exactly, and left alone when they
//! are there already.

use std::os::fd::AsFd;

use rustix::fs::{FileType, Mode, OFlags};

use super::{FileError, Roots, put::PRIVATE};

/// What [`make_directory`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirDone {
    /// The directory.
    pub path: String,
    /// False when it was there already.
    pub created: bool,
}

/// Creates the directory `path` with `mode` (its parent must exist); a
/// directory already there is kept as it is.
pub fn make_directory(roots: &Roots, path: &str, mode: u32) -> Result<DirDone, FileError> {
    if mode & !0o775 != 0 {
        return Err(FileError::BadMode(mode));
    }
    let place = roots.resolve(path)?;
    let shown = place.shown.display().to_string();
    if place.name == PRIVATE {
        return Err(FileError::BadPath(
            shown,
            "the name is one vigie keeps for itself",
        ));
    }
    let io = |e: rustix::io::Errno| FileError::Io(shown.clone(), e.into());
    let created =
        match rustix::fs::mkdirat(place.dir.as_fd(), &place.name, Mode::from_raw_mode(0o700)) {
            Ok(()) => true,
            Err(rustix::io::Errno::EXIST) => false,
            Err(e) => return Err(io(e)),
        };
    // Opened without following a link, so that what is checked (and, for a
    // new directory, what gets its mode) is the directory itself, whatever
    // a local user puts in its place meanwhile.
    let dir = match rustix::fs::openat(
        place.dir.as_fd(),
        &place.name,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::RDONLY,
        Mode::empty(),
    ) {
        Ok(dir) => dir,
        Err(rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP) => {
            return Err(FileError::NotADirectory(shown));
        }
        Err(e) => return Err(io(e)),
    };
    if created {
        // Created 0700 and only then opened up: the directory is never
        // more open than asked, whatever the umask.
        let stat = rustix::fs::fstat(&dir).map_err(io)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::Directory
            || stat.st_uid != rustix::process::geteuid().as_raw()
        {
            return Err(FileError::NotADirectory(shown));
        }
        rustix::fs::fchmod(&dir, Mode::from_raw_mode(mode)).map_err(io)?;
        rustix::fs::fsync(place.dir.as_fd()).map_err(io)?;
    }
    Ok(DirDone {
        path: shown,
        created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_created_with_their_mode_kept_and_existing_ones_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let roots = Roots::new(std::slice::from_ref(&root)).unwrap();
        let at = |p: &str| format!("{}/{p}", root.display());
        let mode = |p: &str| {
            std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(root.join(p)).unwrap().permissions(),
            ) & 0o7777
        };

        let done = make_directory(&roots, &at("a"), 0o750).unwrap();
        assert!(done.created);
        assert_eq!(mode("a"), 0o750);
        let done = make_directory(&roots, &at("a/b"), 0o775).unwrap();
        assert!(done.created);
        assert_eq!(mode("a/b"), 0o775);
        // There already: kept, mode unchanged.
        let done = make_directory(&roots, &at("a"), 0o755).unwrap();
        assert!(!done.created);
        assert_eq!(mode("a"), 0o750);

        std::fs::write(root.join("file"), "x").unwrap();
        assert!(matches!(
            make_directory(&roots, &at("file"), 0o755),
            Err(FileError::NotADirectory(_))
        ));
        std::os::unix::fs::symlink("/", root.join("link")).unwrap();
        assert!(matches!(
            make_directory(&roots, &at("link"), 0o755),
            Err(FileError::NotADirectory(_))
        ));
        assert!(matches!(
            make_directory(&roots, &at("missing/c"), 0o755),
            Err(FileError::NoDirectory(_))
        ));
        assert!(matches!(
            make_directory(&roots, &at("d"), 0o1777),
            Err(FileError::BadMode(_))
        ));
        assert!(matches!(
            make_directory(&roots, &at(PRIVATE), 0o755),
            Err(FileError::BadPath(..))
        ));
        assert!(!root.join("d").exists());
    }
}
