//! The room all job logs share: memory for their tails, and a spill
//! directory with a cap on the bytes its files hold.
//!
//! The spill directory is made on first use, private (0700, files 0600),
//! under the agent's state directory (`jobs/`) or, without one, under the
//! system's temporary directory with an unguessable name; it is removed with
//! the generation of the agent that made it, since jobs end with the agent.

use std::{
    io,
    os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::sync::Semaphore;

/// Shared by every job log of one generation.
#[derive(Debug)]
pub struct LogSpace {
    /// Tail bytes still free.
    memory: Semaphore,
    memory_total: usize,
    /// Where spill files go; made on first use.
    state_dir: Option<PathBuf>,
    /// The directory once made, or why it could not be (said once).
    directory: Mutex<Option<Result<PathBuf, String>>>,
    /// Bytes spill files hold, and the most they may.
    spilled: AtomicU64,
    spill_cap: u64,
}

impl LogSpace {
    /// Room for `memory` tail bytes and `spill` file bytes, spilling under
    /// `state_dir/jobs` (or a private temporary directory).
    pub fn new(state_dir: Option<PathBuf>, memory: usize, spill: u64) -> Self {
        Self {
            memory: Semaphore::new(memory.min(Semaphore::MAX_PERMITS)),
            memory_total: memory.min(Semaphore::MAX_PERMITS),
            state_dir,
            directory: Mutex::new(None),
            spilled: AtomicU64::new(0),
            spill_cap: spill,
        }
    }

    /// Takes `bytes` of tail memory if they are free.
    pub(super) fn take_memory(&self, bytes: usize) -> bool {
        let Ok(count) = u32::try_from(bytes) else {
            return false;
        };
        match self.memory.try_acquire_many(count) {
            Ok(permit) => {
                permit.forget();
                true
            }
            Err(_) => false,
        }
    }

    /// Gives back tail memory taken with [`take_memory`](Self::take_memory).
    pub(super) fn give_back(&self, bytes: usize) {
        if bytes > 0 {
            self.memory.add_permits(bytes);
        }
    }

    /// Tail memory still free.
    pub fn memory_free(&self) -> usize {
        self.memory.available_permits()
    }

    /// Tail memory in use.
    pub fn memory_used(&self) -> usize {
        self.memory_total - self.memory_free()
    }

    /// Bytes the spill files hold.
    pub fn spilled(&self) -> u64 {
        self.spilled.load(Ordering::Relaxed)
    }

    /// Reserves room for a spill file of `bytes`; false when the cap would
    /// be passed.
    pub(super) fn reserve(&self, bytes: u64) -> bool {
        self.spilled
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes)
                    .filter(|&total| total <= self.spill_cap)
            })
            .is_ok()
    }

    /// Gives back room reserved with [`reserve`](Self::reserve).
    pub(super) fn release(&self, bytes: u64) {
        self.spilled.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// The path of spill file `n` of the job `name`; None when there is
    /// no spill directory (the reason is logged once).
    pub(super) fn file_path(&self, name: &str, n: u64) -> Option<PathBuf> {
        let mut directory = self.directory.lock().unwrap_or_else(|e| e.into_inner());
        let made = directory.get_or_insert_with(|| {
            make_directory(self.state_dir.as_deref()).map_err(|e| {
                tracing::warn!(
                    error = %e,
                    "no spill directory for jobs' output: job logs keep only their newest output, in memory"
                );
                e.to_string()
            })
        });
        made.as_ref().ok().map(|d| d.join(format!("{name}.{n}")))
    }

    /// The spill directory, once made.
    pub fn directory(&self) -> Option<PathBuf> {
        self.directory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .and_then(Result::ok)
    }
}

impl Drop for LogSpace {
    fn drop(&mut self) {
        let directory = self.directory.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(Ok(directory)) = directory.take()
            && let Err(e) = std::fs::remove_dir_all(&directory)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(directory = %directory.display(), error = %e, "cannot remove the jobs' spill directory");
        }
    }
}

/// Makes a fresh private spill directory: `STATE/jobs/GENERATION`, or
/// `TMP/vigie-jobs-RANDOM`. The parents must belong to the agent's user and
/// be writable by nobody else, since a local user who could replace a
/// directory on the path could read or redirect the output of commands.
fn make_directory(state_dir: Option<&Path>) -> io::Result<PathBuf> {
    let (parent, prefix) = match state_dir {
        Some(state) => {
            // The state directory is checked before anything is made in it,
            // and `jobs` is made without following a link.
            check_private(state)?;
            let jobs = state.join("jobs");
            match std::fs::DirBuilder::new().mode(0o700).create(&jobs) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            check_private(&jobs)?;
            remove_leftovers(&jobs);
            (jobs, "gen-")
        }
        None => (std::env::temp_dir(), "vigie-jobs-"),
    };
    for _ in 0..8 {
        let path = parent.join(format!("{prefix}{}", uuid::Uuid::new_v4().simple()));
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {
                // The mode above went through the umask; say it outright.
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
                return Ok(path);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("cannot make a fresh spill directory"))
}

/// Makes the state directory if it is missing (0700), and checks that it
/// is private: what the agent checks at start, so that a state directory
/// a local user could tamper with is refused before anything runs.
pub fn check_state_dir(state: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true).mode(0o700);
    builder.create(state)?;
    check_private(state)
}

/// Refuses a directory that is a symbolic link, belongs to another user or
/// that others may write to.
fn check_private(path: &Path) -> io::Result<()> {
    let metadata = std::fs::symlink_metadata(path)?;
    let uid = rustix::process::geteuid().as_raw();
    if !metadata.is_dir() || metadata.uid() != uid || metadata.mode() & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} must be a directory of the agent's user that nobody else may write to",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Removes spill directories an earlier run of the agent left (it was
/// killed before it could): their jobs ended with it.
fn remove_leftovers(jobs: &Path) {
    let Ok(entries) = std::fs::read_dir(jobs) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with("gen-") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spill_cap_is_never_passed() {
        let space = LogSpace::new(None, 10, 100);
        assert!(space.reserve(60));
        assert!(!space.reserve(41));
        assert!(space.reserve(40));
        space.release(60);
        assert_eq!(space.spilled(), 40);
        assert!(space.take_memory(10));
        assert!(!space.take_memory(1));
        space.give_back(10);
        assert_eq!(space.memory_free(), 10);
    }

    #[test]
    fn the_spill_directory_is_private_and_goes_with_the_space() {
        let state = std::env::temp_dir().join(format!("vigie-state-{}", uuid::Uuid::new_v4()));
        // The agent makes its state directory at start.
        check_state_dir(&state).unwrap();
        let space = LogSpace::new(Some(state.clone()), 10, 100);
        let file = space.file_path("j", 1).unwrap();
        let directory = space.directory().unwrap();
        assert_eq!(file.parent(), Some(directory.as_path()));
        let mode = std::fs::metadata(&directory).unwrap().mode();
        assert_eq!(mode & 0o777, 0o700);
        drop(space);
        assert!(!directory.exists());
        // A state directory others may write to is refused.
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
        let open = LogSpace::new(Some(state.clone()), 10, 100);
        assert_eq!(open.file_path("j", 1), None);
        let error = check_state_dir(&state).unwrap_err();
        assert!(error.to_string().contains("nobody else"), "{error}");
        std::fs::remove_dir_all(&state).unwrap();
    }
}
