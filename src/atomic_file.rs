//! Replacing a file so that a reader sees the old contents or the new ones,
//! never half of them, and a crash leaves the old file: a temporary file in
//! the same directory, written and synced, then renamed over the target.
//! Hosts files, the access file and saved output all go through here.

use std::{io::Write, path::Path};

/// Creates a file that must not exist yet (an `AlreadyExists` error
/// otherwise) with `mode`, writes `contents` and syncs it: for keys and
/// other files that are made once and never silently replaced.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Holds an exclusive lock (flock) on a directory until the returned file
/// is dropped, so that two programs never change its files at once.
pub fn lock_directory(dir: &Path) -> std::io::Result<std::fs::File> {
    let handle = std::fs::File::open(dir)?;
    rustix::fs::flock(&handle, rustix::fs::FlockOperation::LockExclusive)?;
    Ok(handle)
}

/// Writes `contents` to `path` atomically. A file that exists keeps its
/// permissions, owner and group (a root-run tool must not leave a file its
/// usual user can no longer read); a new one gets `new_mode`.
pub fn replace(path: &Path, contents: &[u8], new_mode: u32) -> std::io::Result<()> {
    replace_with(path, new_mode, |file| file.write_all(contents))
}

/// Like [`replace`], with the contents written by `write` into the new
/// file (so that they need not all be in memory at once).
pub fn replace_with(
    path: &Path,
    new_mode: u32,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".vigie-")
        .permissions(std::fs::Permissions::from_mode(new_mode))
        .tempfile_in(dir)?;
    if let Ok(old) = std::fs::metadata(path) {
        temp.as_file().set_permissions(old.permissions())?;
        // Keeping the owner needs the right to give files away (root); a
        // user replacing its own file already owns the new one.
        if old.uid() != rustix::process::geteuid().as_raw()
            || old.gid() != rustix::process::getegid().as_raw()
        {
            rustix::fs::fchown(
                temp.as_file(),
                Some(rustix::fs::Uid::from_raw(old.uid())),
                Some(rustix::fs::Gid::from_raw(old.gid())),
            )?;
        }
    }
    write(temp.as_file_mut())?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_file_keeps_its_mode_and_a_new_one_gets_the_asked_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        replace(&path, b"one", 0o600).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        replace(&path, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(mode(&path), 0o640);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }
}
