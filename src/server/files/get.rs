//! One download: a regular file reached through the path rules without
//! following a link, read in chunks from an offset, with the SHA-256 of the
//! whole file at the end (the bytes before the offset are read to hash
//! them, not sent), so that a resumed download is checked in full too.

use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
    os::fd::AsFd,
};

use rustix::fs::{FileType, Mode, OFlags};
use sha2::{Digest, Sha256};

use super::{FileError, Roots};

/// A download in progress.
#[derive(Debug)]
pub struct Download {
    file: File,
    hasher: Sha256,
    /// The file's size when it was opened.
    pub size: u64,
    /// Its permission bits.
    pub mode: u32,
    /// When it was last modified (ms since the epoch).
    pub modified_ms: i64,
    /// The path, for messages and the audit log.
    pub path: String,
    read: u64,
}

impl Download {
    /// Opens `path` for reading from `offset`.
    pub fn open(roots: &Roots, max: u64, path: &str, offset: u64) -> Result<Self, FileError> {
        let place = roots.resolve(path)?;
        let shown = place.shown.display().to_string();
        let fd = rustix::fs::openat(
            place.dir.as_fd(),
            &place.name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| match e {
            rustix::io::Errno::NOENT => FileError::NotFound(shown.clone()),
            rustix::io::Errno::LOOP => FileError::Link(shown.clone()),
            e => FileError::Io(shown.clone(), e.into()),
        })?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| FileError::Io(shown.clone(), e.into()))?;
        // A FIFO or a device would block or never end: regular files only
        // (opened without blocking, so that a FIFO cannot hold the open).
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(FileError::NotAFile(shown));
        }
        let size = stat.st_size as u64;
        if size > max {
            return Err(FileError::TooLarge { size, limit: max });
        }
        if offset > size {
            return Err(FileError::Protocol(format!(
                "offset {offset} is past the end of {shown} ({size} bytes)"
            )));
        }
        let mut file = File::from(fd);
        let mut hasher = Sha256::new();
        let mut prefix = (&mut file).take(offset);
        std::io::copy(&mut prefix, &mut HashWriter(&mut hasher))
            .map_err(|e| FileError::Io(shown.clone(), e))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| FileError::Io(shown.clone(), e))?;
        Ok(Self {
            file,
            hasher,
            size,
            mode: stat.st_mode & 0o777,
            modified_ms: stat.st_mtime.saturating_mul(1000),
            path: shown,
            read: offset,
        })
    }

    /// The next chunk, at most `most` bytes; empty at the end. Never reads
    /// past the size the file had when it was opened, so that a file that
    /// grows meanwhile does not make the transfer endless.
    pub fn next_chunk(&mut self, most: usize) -> Result<Vec<u8>, FileError> {
        let left = self.size - self.read;
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(most);
        let mut buffer = vec![0; want];
        let mut filled = 0;
        while filled < want {
            let n = self
                .file
                .read(&mut buffer[filled..])
                .map_err(|e| FileError::Io(self.path.clone(), e))?;
            if n == 0 {
                return Err(FileError::Mismatch(format!(
                    "{} shrank while it was read",
                    self.path
                )));
            }
            filled += n;
        }
        self.hasher.update(&buffer);
        self.read += want as u64;
        Ok(buffer)
    }

    /// Bytes read so far (from the start of the file).
    pub fn sent(&self) -> u64 {
        self.read
    }

    /// The SHA-256 of everything read, prefix included.
    pub fn finish(self) -> [u8; 32] {
        self.hasher.finalize().into()
    }
}

struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.update(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
