//! One upload: a temporary file in the target's directory, written as the
//! chunks come, checked against the size and SHA-256 announced, synced and
//! renamed into place. An upload that does not finish keeps what it wrote
//! under a name derived from the identity, the target and the announced
//! content, which a later upload of the same content by the same identity
//! continues (resume); anything else it leaves behind is removed.

use std::{
    ffi::OsString,
    fs::File,
    io::{Read, Write},
    os::fd::AsFd,
    time::{Duration, SystemTime},
};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};
use sha2::{Digest, Sha256};

use super::{FileError, Place, Roots};

/// Partial uploads older than this are removed when another upload goes
/// to the same directory.
const STALE: Duration = Duration::from_secs(24 * 3600);
/// The prefix of partial uploads' names.
const PARTIAL: &str = ".vigie-partial-";
/// The agent's private directory (0700) beside a target, where partial
/// uploads live until they are renamed into place: nobody else can
/// replace, link or swap what is in it, whoever may write the target's
/// directory. Removed when it is empty.
pub const PRIVATE: &str = ".vigie-uploads";

/// What a finished upload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadDone {
    /// The target.
    pub path: String,
    /// Its size.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
    /// True when a file was replaced.
    pub replaced: bool,
    /// Its permission bits.
    pub mode: u32,
    /// True when the target already held this content with this mode:
    /// nothing was sent or written.
    pub unchanged: bool,
}

/// An upload in progress.
#[derive(Debug)]
pub struct Upload {
    place: Place,
    /// The private directory the partial is in.
    private: rustix::fd::OwnedFd,
    temp: OsString,
    file: File,
    hasher: Sha256,
    written: u64,
    size: u64,
    sha256: [u8; 32],
    mode: u32,
    replace: bool,
    replaced: bool,
    done: bool,
}

/// What an upload asks for.
#[derive(Debug, Clone)]
pub struct UploadRequest<'a> {
    /// The target path.
    pub path: &'a str,
    /// Its permission bits.
    pub mode: u32,
    /// Its size.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
    /// Whether an existing file may be replaced.
    pub replace: bool,
    /// Who uploads (partial uploads are theirs only).
    pub identity: &'a str,
}

impl Upload {
    /// The answer to an upload whose target already holds exactly the
    /// content and mode announced (a push run again, after a cut or on a
    /// host that has the file): it is left untouched. None otherwise.
    pub fn unchanged(
        roots: &Roots,
        max: u64,
        request: &UploadRequest<'_>,
    ) -> Result<Option<UploadDone>, FileError> {
        if request.size > max {
            return Ok(None);
        }
        let place = roots.resolve_to_write(request.path)?;
        // Only a regular file the agent's user or root owns, with no other
        // link, counts: a copy a local user planted (in a sticky directory,
        // say) is not taken for the one pushed, which would then be theirs
        // to change. Looked at before it is opened, so that a device or a
        // FIFO there is never opened.
        let ours = |stat: &rustix::fs::Stat| {
            FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile
                && (stat.st_uid == 0 || stat.st_uid == rustix::process::geteuid().as_raw())
                && stat.st_nlink == 1
                && stat.st_size as u64 == request.size
                && stat.st_mode & 0o7777 == request.mode
        };
        match rustix::fs::statat(place.dir.as_fd(), &place.name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if ours(&stat) => {}
            _ => return Ok(None),
        }
        let target = match rustix::fs::openat(
            place.dir.as_fd(),
            &place.name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(_) => return Ok(None),
        };
        let stat = rustix::fs::fstat(&target)
            .map_err(|e| FileError::Io(place.shown.display().to_string(), e.into()))?;
        if !ours(&stat) {
            return Ok(None);
        }
        let mut file = File::from(target);
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; 256 * 1024];
        loop {
            let n = file
                .read(&mut buffer)
                .map_err(|e| FileError::Io(place.shown.display().to_string(), e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
        let sha256: [u8; 32] = hasher.finalize().into();
        Ok((sha256 == request.sha256).then(|| UploadDone {
            path: place.shown.display().to_string(),
            size: request.size,
            sha256,
            replaced: false,
            mode: request.mode,
            unchanged: true,
        }))
    }

    /// Checks the request and opens the temporary file; continues a
    /// partial upload of the same content by the same identity when one
    /// is there. [`Upload::offset`] says where the content resumes.
    pub fn begin(roots: &Roots, max: u64, request: &UploadRequest<'_>) -> Result<Self, FileError> {
        if request.mode & !0o775 != 0 {
            return Err(FileError::BadMode(request.mode));
        }
        if request.size > max {
            return Err(FileError::TooLarge {
                size: request.size,
                limit: max,
            });
        }
        let place = roots.resolve_to_write(request.path)?;
        let shown = place.shown.display().to_string();
        let replaced = match place.kind()? {
            None => false,
            Some(FileType::RegularFile) if request.replace => true,
            Some(FileType::RegularFile) => return Err(FileError::Exists(shown)),
            Some(_) => return Err(FileError::NotAFile(shown)),
        };
        let mut private = private_dir(&place)?;
        remove_stale(&private);
        let temp = partial_name(request, &place);
        let io = |e: rustix::io::Errno| FileError::Io(shown.clone(), e.into());
        // The partial of this very upload, if an earlier one was cut: a
        // regular file of the agent's user, with no other link, no longer
        // than the content. Anything else there is removed.
        let existing = match rustix::fs::openat(
            &private,
            &temp,
            OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => {
                let stat = rustix::fs::fstat(&fd).map_err(io)?;
                let ours = FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile
                    && stat.st_uid == rustix::process::geteuid().as_raw()
                    && stat.st_nlink == 1
                    && (stat.st_size as u64) <= request.size;
                if ours {
                    Some(fd)
                } else {
                    drop(fd);
                    let _ = rustix::fs::unlinkat(&private, &temp, AtFlags::empty());
                    None
                }
            }
            Err(rustix::io::Errno::NOENT) => None,
            Err(e) => return Err(io(e)),
        };
        let resumed = existing.is_some();
        let fd = match existing {
            Some(fd) => fd,
            None => match create(&private, &temp) {
                Ok(fd) => fd,
                // Removed by another transfer since it was opened: again.
                Err(rustix::io::Errno::NOENT) => {
                    private = private_dir(&place)?;
                    create(&private, &temp).map_err(io)?
                }
                Err(e) => return Err(io(e)),
            },
        };
        // One upload of this content to this place at a time: a second
        // stream would write the same partial under the first one's hash.
        match rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Err(FileError::Busy(shown)),
            Err(e) => return Err(io(e)),
        }
        let mut file = File::from(fd);
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        if resumed {
            let mut buffer = vec![0; 256 * 1024];
            loop {
                let n = file
                    .read(&mut buffer)
                    .map_err(|e| FileError::Io(shown.clone(), e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buffer[..n]);
                written += n as u64;
            }
        }
        std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0))
            .map_err(|e| FileError::Io(shown.clone(), e))?;
        Ok(Self {
            place,
            private,
            temp,
            file,
            hasher,
            written,
            size: request.size,
            sha256: request.sha256,
            mode: request.mode,
            replace: request.replace,
            replaced,
            done: false,
        })
    }

    /// Where the content resumes: the bytes a cut upload kept.
    pub fn offset(&self) -> u64 {
        self.written
    }

    /// The target, for messages and the audit log.
    pub fn path(&self) -> String {
        self.place.shown.display().to_string()
    }

    /// Writes the next chunk.
    pub fn write(&mut self, data: &[u8]) -> Result<(), FileError> {
        if self.written + data.len() as u64 > self.size {
            return Err(FileError::Mismatch(format!(
                "more than the {} bytes announced were sent",
                self.size
            )));
        }
        self.file
            .write_all(data)
            .map_err(|e| FileError::Io(self.path(), e))?;
        self.hasher.update(data);
        self.written += data.len() as u64;
        Ok(())
    }

    /// Checks the content, syncs it and renames it into place.
    pub fn finish(mut self) -> Result<UploadDone, FileError> {
        if self.written != self.size {
            return Err(FileError::Mismatch(format!(
                "{} bytes were sent of the {} announced",
                self.written, self.size
            )));
        }
        let sha256: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
        if sha256 != self.sha256 {
            // Corrupted on the way (or a lie): nothing of it is kept.
            self.discard();
            return Err(FileError::Mismatch(format!(
                "the content's SHA-256 is {}, not the {} announced: the target is untouched",
                hex::encode(sha256),
                hex::encode(self.sha256)
            )));
        }
        let shown = self.path();
        let io = |e: rustix::io::Errno| FileError::Io(shown.clone(), e.into());
        rustix::fs::fchmod(self.file.as_fd(), Mode::from_raw_mode(self.mode)).map_err(io)?;
        rustix::fs::fsync(self.file.as_fd()).map_err(io)?;
        let flags = if self.replace {
            RenameFlags::empty()
        } else {
            RenameFlags::NOREPLACE
        };
        match rustix::fs::renameat_with(
            &self.private,
            &self.temp,
            self.place.dir.as_fd(),
            &self.place.name,
            flags,
        ) {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => {
                self.discard();
                return Err(FileError::Exists(shown));
            }
            Err(e) => {
                self.discard();
                return Err(io(e));
            }
        }
        self.done = true;
        // The rename itself is durable once the directory is synced.
        rustix::fs::fsync(self.place.dir.as_fd()).map_err(io)?;
        self.tidy();
        Ok(UploadDone {
            path: shown,
            size: self.size,
            sha256,
            replaced: self.replaced,
            mode: self.mode,
            unchanged: false,
        })
    }

    /// Removes the temporary file: what it holds can never become the
    /// target.
    fn discard(&mut self) {
        let _ = rustix::fs::unlinkat(&self.private, &self.temp, AtFlags::empty());
        self.done = true;
        self.tidy();
    }

    /// Removes the private directory when nothing is left in it.
    fn tidy(&self) {
        let _ = rustix::fs::unlinkat(self.place.dir.as_fd(), PRIVATE, AtFlags::REMOVEDIR);
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // A cut upload keeps what it wrote for a resume; one that wrote
        // nothing leaves nothing.
        if !self.done && self.written == 0 {
            self.discard();
        }
    }
}

/// The partial's name: a hash of who uploads what where, so that another
/// identity, another target or other content never continues it.
fn partial_name(request: &UploadRequest<'_>, place: &Place) -> OsString {
    let mut hasher = Sha256::new();
    for part in [
        request.identity.as_bytes(),
        place.shown.as_os_str().as_encoded_bytes(),
        &request.size.to_le_bytes(),
        &request.sha256,
        &request.mode.to_le_bytes(),
    ] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let key = hex::encode(&hasher.finalize()[..16]);
    OsString::from(format!("{PARTIAL}{key}"))
}

fn create(
    private: &rustix::fd::OwnedFd,
    name: &OsString,
) -> Result<rustix::fd::OwnedFd, rustix::io::Errno> {
    rustix::fs::openat(
        private,
        name,
        OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
}

/// The agent's private directory beside the target, made if missing:
/// refused unless it is a directory of the agent's user that nobody else
/// may enter.
pub(super) fn private_dir(place: &Place) -> Result<rustix::fd::OwnedFd, FileError> {
    let shown = place.shown.with_file_name(PRIVATE).display().to_string();
    // Another transfer to this directory removes the private directory
    // when it leaves it empty, possibly between the two calls here: made
    // again then, a few times.
    let mut tries = 0;
    let dir = loop {
        tries += 1;
        match rustix::fs::mkdirat(place.dir.as_fd(), PRIVATE, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(FileError::Io(shown, e.into())),
        }
        match rustix::fs::openat(
            place.dir.as_fd(),
            PRIVATE,
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(dir) => break dir,
            Err(rustix::io::Errno::NOENT) if tries < 5 => continue,
            Err(_) => return Err(FileError::Tampered(shown)),
        }
    };
    let stat = rustix::fs::fstat(&dir).map_err(|e| FileError::Io(shown.clone(), e.into()))?;
    if stat.st_uid != rustix::process::geteuid().as_raw() || stat.st_mode & 0o077 != 0 {
        return Err(FileError::Tampered(shown));
    }
    Ok(dir)
}

/// Removes partial uploads older than [`STALE`] from the private directory.
pub(super) fn remove_stale(private: &rustix::fd::OwnedFd) {
    let Ok(dir) = rustix::fs::openat(
        private,
        ".",
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    let Ok(entries) = rustix::fs::Dir::read_from(&dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let name = entry.file_name();
        // A directory a killed agent was making is empty, and removed as
        // such once stale like a partial.
        let making = name.to_bytes().starts_with(super::dir::MAKING.as_bytes());
        if !making && !name.to_bytes().starts_with(PARTIAL.as_bytes()) {
            continue;
        }
        let Ok(stat) = rustix::fs::statat(private, name, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(stat.st_mtime.max(0) as u64);
        if now.duration_since(modified).is_ok_and(|age| age > STALE) {
            let flags = if making {
                AtFlags::REMOVEDIR
            } else {
                AtFlags::empty()
            };
            let _ = rustix::fs::unlinkat(private, name, flags);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }

    fn request<'a>(path: &'a str, data: &[u8]) -> UploadRequest<'a> {
        UploadRequest {
            path,
            mode: 0o640,
            size: data.len() as u64,
            sha256: sha(data),
            replace: false,
            identity: "alice",
        }
    }

    #[test]
    fn an_upload_lands_whole_or_not_at_all_and_resumes_where_it_was_cut() {
        let dir = tempfile::tempdir().unwrap();
        let roots = Roots::new(&[dir.path().to_owned()]).unwrap();
        let root = dir.path().canonicalize().unwrap();
        let target = root.join("file");
        let path = target.to_str().unwrap().to_owned();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();

        // Cut in the middle: the target does not exist, the partial is kept.
        let mut first = Upload::begin(&roots, 1 << 30, &request(&path, &data)).unwrap();
        assert_eq!(first.offset(), 0);
        first.write(&data[..100_000]).unwrap();
        drop(first);
        assert!(!target.exists());
        // Another identity starts from zero; the same one resumes.
        let other = UploadRequest {
            identity: "bob",
            ..request(&path, &data)
        };
        assert_eq!(Upload::begin(&roots, 1 << 30, &other).unwrap().offset(), 0);
        let mut again = Upload::begin(&roots, 1 << 30, &request(&path, &data)).unwrap();
        assert_eq!(again.offset(), 100_000);
        again.write(&data[100_000..]).unwrap();
        let done = again.finish().unwrap();
        assert_eq!(done.size, 300_000);
        assert_eq!(std::fs::read(&target).unwrap(), data);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&target).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o640);
        // Nothing else is left in the directory.
        let names: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("file")]);

        // Not replaced unless asked; a corrupted content leaves it as it was.
        assert!(matches!(
            Upload::begin(&roots, 1 << 30, &request(&path, b"new")),
            Err(FileError::Exists(_))
        ));
        let mut corrupt = Upload::begin(
            &roots,
            1 << 30,
            &UploadRequest {
                replace: true,
                ..request(&path, b"new")
            },
        )
        .unwrap();
        corrupt.write(b"neW").unwrap();
        assert!(matches!(corrupt.finish(), Err(FileError::Mismatch(_))));
        assert_eq!(std::fs::read(&target).unwrap(), data);
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 1);

        // Caps and modes.
        assert!(matches!(
            Upload::begin(&roots, 10, &request(&path, &data)),
            Err(FileError::TooLarge { .. })
        ));
        let setuid = UploadRequest {
            mode: 0o4755,
            ..request(&path, b"x")
        };
        assert!(matches!(
            Upload::begin(&roots, 1 << 30, &setuid),
            Err(FileError::BadMode(_))
        ));
    }

    #[test]
    fn only_the_agents_own_copy_of_the_content_counts_as_unchanged() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let roots = Roots::new(std::slice::from_ref(&root)).unwrap();
        let path = format!("{}/tool.sh", root.display());
        let data = b"#!/bin/sh\necho hi\n";
        std::fs::write(&path, data).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let done = Upload::unchanged(&roots, 1 << 20, &request(&path, data))
            .unwrap()
            .expect("the same content and mode");
        assert!(done.unchanged && !done.replaced);
        // Other content, another mode: sent as usual.
        assert!(
            Upload::unchanged(&roots, 1 << 20, &request(&path, b"other"))
                .unwrap()
                .is_none()
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            Upload::unchanged(&roots, 1 << 20, &request(&path, data))
                .unwrap()
                .is_none()
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        // A second link to it (someone else's name for it): not taken.
        std::fs::hard_link(&path, root.join("elsewhere")).unwrap();
        assert!(
            Upload::unchanged(&roots, 1 << 20, &request(&path, data))
                .unwrap()
                .is_none()
        );
        std::fs::remove_file(root.join("elsewhere")).unwrap();
        if rustix::process::geteuid().is_root() {
            rustix::fs::chown(path.as_str(), Some(rustix::fs::Uid::from_raw(65534)), None).unwrap();
            assert!(
                Upload::unchanged(&roots, 1 << 20, &request(&path, data))
                    .unwrap()
                    .is_none()
            );
        }
        // A FIFO there is never opened (this would block).
        std::fs::remove_file(&path).unwrap();
        rustix::fs::mkfifoat(rustix::fs::CWD, path.as_str(), Mode::from_raw_mode(0o640)).unwrap();
        assert!(
            Upload::unchanged(&roots, 1 << 20, &request(&path, b""))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_link_at_the_target_is_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"keep").unwrap();
        std::os::unix::fs::symlink(&secret, root.join("link")).unwrap();
        let roots = Roots::new(std::slice::from_ref(&root)).unwrap();
        let path = format!("{}/link", root.canonicalize().unwrap().display());
        let replace = UploadRequest {
            replace: true,
            ..request(&path, b"evil")
        };
        assert!(matches!(
            Upload::begin(&roots, 1 << 30, &replace),
            Err(FileError::NotAFile(_))
        ));
        assert_eq!(std::fs::read(&secret).unwrap(), b"keep");
    }
}
