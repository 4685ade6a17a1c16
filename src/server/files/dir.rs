//! Directories for pushing a tree: created under the same path rules as
//! uploads, given their mode while still private, and left alone when
//! they are there already, once checked to be the agent's own (or
//! root's): a directory someone else made where a push creates one is not
//! taken for it.

use std::os::fd::AsFd;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};

use super::{FileError, Place, Roots, paths::not_open_to_all, put};

/// The prefix of directories being made in the private directory.
pub const MAKING: &str = ".vigie-dir-";

/// What [`make_directory`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirDone {
    /// The directory.
    pub path: String,
    /// False when it was there already.
    pub created: bool,
    /// Its permission bits as they are now.
    pub mode: u32,
}

/// Creates the directory `path` with `mode` (its parent must exist); a
/// directory already there is kept as it is, if nobody else can change it.
pub fn make_directory(roots: &Roots, path: &str, mode: u32) -> Result<DirDone, FileError> {
    if mode & !0o775 != 0 {
        return Err(FileError::BadMode(mode));
    }
    let place = roots.resolve_to_write(path)?;
    let shown = place.shown.display().to_string();
    match place.kind()? {
        Some(FileType::Directory) => return existing(&place),
        Some(_) => return Err(FileError::NotADirectory(shown)),
        None => {}
    }
    // Made in the agent's private directory beside its place and given its
    // mode there, where nobody else can reach it, then moved into place
    // without replacing anything: what gets the mode is what was made.
    let mut private = put::private_dir(&place)?;
    put::remove_stale(&private);
    let temp = format!("{MAKING}{}", uuid::Uuid::new_v4().simple());
    let io = |e: rustix::io::Errno| FileError::Io(shown.clone(), e.into());
    match rustix::fs::mkdirat(&private, temp.as_str(), Mode::from_raw_mode(0o700)) {
        Ok(()) => {}
        // Removed by another transfer since it was opened: again.
        Err(rustix::io::Errno::NOENT) => {
            private = put::private_dir(&place)?;
            rustix::fs::mkdirat(&private, temp.as_str(), Mode::from_raw_mode(0o700)).map_err(io)?;
        }
        Err(e) => return Err(io(e)),
    }
    let made = (|| {
        let dir = rustix::fs::openat(
            &private,
            temp.as_str(),
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::RDONLY,
            Mode::empty(),
        )?;
        rustix::fs::fchmod(&dir, Mode::from_raw_mode(mode))?;
        rustix::fs::renameat_with(
            &private,
            temp.as_str(),
            place.dir.as_fd(),
            &place.name,
            RenameFlags::NOREPLACE,
        )
    })();
    let outcome = match made {
        Ok(()) => {
            rustix::fs::fsync(place.dir.as_fd()).map_err(io)?;
            Ok(DirDone {
                path: shown.clone(),
                created: true,
                mode,
            })
        }
        // Made meanwhile by someone else: checked as any existing one.
        Err(rustix::io::Errno::EXIST) => {
            let _ = rustix::fs::unlinkat(&private, temp.as_str(), AtFlags::REMOVEDIR);
            existing(&place)
        }
        // A file system without RENAME_NOREPLACE (NFS): made in place.
        Err(rustix::io::Errno::INVAL) => {
            let _ = rustix::fs::unlinkat(&private, temp.as_str(), AtFlags::REMOVEDIR);
            in_place(&place, mode)
        }
        Err(e) => {
            let _ = rustix::fs::unlinkat(&private, temp.as_str(), AtFlags::REMOVEDIR);
            Err(io(e))
        }
    };
    // The private directory goes when nothing else is in it.
    let _ = rustix::fs::unlinkat(place.dir.as_fd(), put::PRIVATE, AtFlags::REMOVEDIR);
    outcome
}

/// Makes the directory where it goes (0700, then its mode), for file
/// systems that cannot rename without replacing: checked to be the one
/// made, and removed again if anything fails after it was made.
fn in_place(place: &Place, mode: u32) -> Result<DirDone, FileError> {
    let shown = place.shown.display().to_string();
    let io = |e: rustix::io::Errno| FileError::Io(shown.clone(), e.into());
    match rustix::fs::mkdirat(place.dir.as_fd(), &place.name, Mode::from_raw_mode(0o700)) {
        Ok(()) => {}
        Err(rustix::io::Errno::EXIST) => return existing(place),
        Err(e) => return Err(io(e)),
    }
    let finish = || {
        let dir = rustix::fs::openat(
            place.dir.as_fd(),
            &place.name,
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::RDONLY,
            Mode::empty(),
        )?;
        let stat = rustix::fs::fstat(&dir)?;
        if stat.st_uid != rustix::process::geteuid().as_raw() {
            return Err(rustix::io::Errno::PERM);
        }
        rustix::fs::fchmod(&dir, Mode::from_raw_mode(mode))?;
        rustix::fs::fsync(place.dir.as_fd())
    };
    match finish() {
        Ok(()) => Ok(DirDone {
            path: shown,
            created: true,
            mode,
        }),
        Err(e) => {
            let _ = rustix::fs::unlinkat(place.dir.as_fd(), &place.name, AtFlags::REMOVEDIR);
            Err(io(e))
        }
    }
}

/// A directory already at `place`: kept if it belongs to the agent's user
/// or root and is not open to everyone.
fn existing(place: &Place) -> Result<DirDone, FileError> {
    let shown = place.shown.display().to_string();
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
        Err(e) => return Err(FileError::Io(shown, e.into())),
    };
    not_open_to_all(&dir, &place.shown)?;
    let stat = rustix::fs::fstat(&dir).map_err(|e| FileError::Io(shown.clone(), e.into()))?;
    let owner = stat.st_uid;
    if owner != 0 && owner != rustix::process::geteuid().as_raw() {
        return Err(FileError::Untrusted(
            shown,
            format!("it was made by uid {owner}, not by the agent's user or root"),
        ));
    }
    Ok(DirDone {
        path: shown,
        created: false,
        mode: stat.st_mode & 0o7777,
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
        assert_eq!((done.mode, mode("a")), (0o750, 0o750));

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
            make_directory(&roots, &at(put::PRIVATE), 0o755),
            Err(FileError::BadPath(..))
        ));
        assert!(matches!(
            make_directory(&roots, &at(&format!("a/{}/x", put::PRIVATE)), 0o755),
            Err(FileError::BadPath(..))
        ));
        assert!(!root.join("d").exists());
        // Nothing of the agent's own is left beside what it made.
        let mut names: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["a", "file", "link"]);

        // A directory somebody else can change is not written through,
        // nor taken as one that was there.
        std::fs::create_dir(root.join("open")).unwrap();
        std::fs::set_permissions(
            root.join("open"),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        assert!(matches!(
            make_directory(&roots, &at("open"), 0o755),
            Err(FileError::Untrusted(..))
        ));
        assert!(matches!(
            make_directory(&roots, &at("open/inner"), 0o755),
            Err(FileError::Untrusted(..))
        ));
        if rustix::process::geteuid().is_root() {
            std::fs::create_dir(root.join("theirs")).unwrap();
            rustix::fs::chown(
                root.join("theirs"),
                Some(rustix::fs::Uid::from_raw(65534)),
                None,
            )
            .unwrap();
            assert!(matches!(
                make_directory(&roots, &at("theirs"), 0o755),
                Err(FileError::Untrusted(..))
            ));
        }
    }
}
