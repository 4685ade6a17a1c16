//! Pulling: each host's file written to `DIR/HOST/NAME` through a private
//! temporary file, renamed into place only once its size and SHA-256 match
//! what the agent announced.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, atomic::Ordering},
};

use futures::StreamExt;
use rustix::fs::{Mode, OFlags};
use sha2::{Digest, Sha256};

use super::Progress;

/// The longest a download may send nothing before the host is given up.
const STALL: std::time::Duration = std::time::Duration::from_secs(60);
use crate::{
    client::{Error, fleet::Fleet},
    types::GetEvent,
};

/// What a pull wrote for one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The local file.
    pub local: PathBuf,
    /// Its size.
    pub size: u64,
    /// Its SHA-256 (hex), checked.
    pub sha256: String,
}

/// Pulls `remote` from each selected host into `dir/HOST/NAME`.
pub async fn pull(
    fleet: &Fleet,
    selection: &[usize],
    remote: &str,
    dir: &Path,
    progress: Arc<Progress>,
) -> Vec<(usize, Result<Pulled, Error>)> {
    let name = Path::new(remote)
        .file_name()
        .map(|n| n.to_owned())
        .unwrap_or_else(|| "file".into());
    // A pull holds a connection and a local file open while it runs: a
    // few dozen at once fill any network, and a fleet of thousands would
    // otherwise open thousands of files at once.
    let at_once = Arc::new(tokio::sync::Semaphore::new(PULLS_AT_ONCE));
    let pulls = selection.iter().map(|&index| {
        let host = fleet.host(index).cloned();
        let (remote, name, dir, progress) = (
            remote.to_owned(),
            name.clone(),
            dir.to_owned(),
            progress.clone(),
        );
        let at_once = at_once.clone();
        async move {
            let Some(host) = host else {
                return (index, Err(Error::Protocol("no such host".into())));
            };
            let Ok(_turn) = at_once.acquire().await else {
                return (index, Err(Error::Protocol("the pull was stopped".into())));
            };
            let result = pull_one(&host, index, &remote, &dir, &name, &progress).await;
            host.observe(&result);
            progress.hosts.fetch_add(1, Ordering::Relaxed);
            (index, result)
        }
    });
    futures::future::join_all(pulls).await
}

/// How many hosts a pull reads from at once.
const PULLS_AT_ONCE: usize = 64;

async fn pull_one(
    host: &crate::client::fleet::Host,
    index: usize,
    remote: &str,
    dir: &Path,
    name: &std::ffi::OsStr,
    progress: &Progress,
) -> Result<Pulled, Error> {
    use tokio::io::AsyncWriteExt;
    // The host's name becomes a directory: one that could climb out of
    // `dir` is refused.
    let host_dir = crate::client::text::safe_file_name(host.name())
        .map(|n| dir.join(n))
        .ok_or_else(|| Error::Protocol(format!("{:?} cannot name a directory", host.name())))?;
    let client = host.client().await?;
    let Ok(opened) = tokio::time::timeout(STALL, client.get_file(remote, 0)).await else {
        return Err(Error::Transport {
            address: host.address().to_string(),
            reason: format!("no answer to the download within {} s", STALL.as_secs()),
        });
    };
    let mut events = opened?;
    let local_error = |e: std::io::Error| Error::Protocol(format!("{}: {e}", host_dir.display()));
    let errno = |e: rustix::io::Errno| local_error(e.into());
    tokio::fs::create_dir_all(dir).await.map_err(local_error)?;
    match tokio::fs::create_dir(&host_dir).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(local_error(e)),
    }
    // DIR/HOST is written through its descriptor, opened without following
    // a link: one planted there (in a shared DIR) is refused, never
    // written through.
    let host_fd = rustix::fs::open(
        &host_dir,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => Error::Protocol(format!(
            "{} is a symbolic link or not a directory: not written through",
            host_dir.display()
        )),
        e => errno(e),
    })?;
    let target = host_dir.join(name);
    // A fresh name, created exclusively and privately.
    // (The name is cut so that the temporary one stays a valid name.)
    let temp = format!(
        ".{}.{}.vigie-part",
        name.to_string_lossy().chars().take(100).collect::<String>(),
        uuid::Uuid::new_v4().simple()
    );
    let created = rustix::fs::openat(
        &host_fd,
        temp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(errno)?;
    // Removed however this ends (an error, or the pull dropped because it
    // was cancelled) unless it was renamed into place.
    let mut leftover = Leftover {
        dir: &host_fd,
        name: Some(temp.clone()),
    };
    let mut file = tokio::fs::File::from_std(std::fs::File::from(created));
    let mut announced = None;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut mode = 0o644;
    let outcome = async {
        loop {
            // A host that sends nothing for this long is given up.
            let Ok(event) = tokio::time::timeout(STALL, events.next()).await else {
                return Err(Error::Transport {
                    address: host.address().to_string(),
                    reason: format!("the download sent nothing for {} s", STALL.as_secs()),
                });
            };
            let Some(event) = event else { break };
            match event? {
                GetEvent::Info { mode: m, size: s } => {
                    // More than this disk holds is refused before a byte
                    // is written: a host cannot fill it by announcing a
                    // huge file.
                    let free = rustix::fs::fstatvfs(&host_fd)
                        .map(|v| v.f_bavail.saturating_mul(v.f_frsize))
                        .unwrap_or(u64::MAX);
                    if s > free {
                        return Err(Error::Protocol(format!(
                            "the file has {s} bytes, more than the {free} free in {}",
                            host_dir.display()
                        )));
                    }
                    mode = m;
                    announced = Some(s);
                    progress.expect(index, s);
                }
                GetEvent::Chunk(data) => {
                    // Never more than the agent said: a hostile agent
                    // cannot fill this disk.
                    if announced.is_none_or(|a| size + data.len() as u64 > a) {
                        return Err(Error::Protocol(
                            "the agent sent more than the file's size".into(),
                        ));
                    }
                    hasher.update(&data);
                    size += data.len() as u64;
                    progress.add(index, data.len() as u64);
                    file.write_all(&data).await.map_err(local_error)?;
                }
                GetEvent::Done { sha256 } => {
                    if announced != Some(size) {
                        return Err(Error::Protocol(
                            "the agent sent less than the file's size".into(),
                        ));
                    }
                    let ours = hex::encode(std::mem::take(&mut hasher).finalize());
                    if ours != sha256 {
                        return Err(Error::Protocol(format!(
                            "the bytes received hash to {ours}, not the {sha256} the agent sent"
                        )));
                    }
                    // Written out and synced, errors included (a full disk
                    // on the last chunk is an error, not a short file).
                    file.flush().await.map_err(local_error)?;
                    file.sync_all().await.map_err(local_error)?;
                    let written = file.metadata().await.map_err(local_error)?.len();
                    if written != size {
                        return Err(local_error(std::io::Error::other(format!(
                            "{written} bytes written of {size}"
                        ))));
                    }
                    return Ok(sha256);
                }
            }
        }
        Err(Error::Protocol(
            "the download ended without its digest".into(),
        ))
    }
    .await;
    let file = file.into_std().await;
    let landed = outcome.and_then(|sha256| {
        // Pulled files are data: the host's read bits are kept, never its
        // write-for-others or execute bits.
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode & 0o644)).map_err(errno)?;
        rustix::fs::renameat(&host_fd, temp.as_str(), &host_fd, name).map_err(errno)?;
        Ok(sha256)
    });
    drop(file);
    let sha256 = landed?;
    leftover.name = None;
    Ok(Pulled {
        local: target,
        size,
        sha256,
    })
}

/// A temporary file removed when this is dropped, unless `name` was taken.
struct Leftover<'a> {
    dir: &'a rustix::fd::OwnedFd,
    name: Option<String>,
}

impl Drop for Leftover<'_> {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            let _ = rustix::fs::unlinkat(self.dir, name.as_str(), rustix::fs::AtFlags::empty());
        }
    }
}
