//! Moving files across the fleet, for both front-ends: a push reads the
//! local file twice whatever the number of hosts (once to hash it, since
//! the agents check the content against the SHA-256 announced first, then
//! once to send it, each chunk shared by every host's stream), with bounded
//! memory; a pull writes `DIR/HOST/NAME` for each host, through a temporary
//! file renamed into place once the SHA-256 the agent sent matches.

use std::{
    io::Read,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::{Error, fleet::Fleet};
use crate::types::{GetEvent, PutDone, PutHeader};

/// Bytes read from the local file at once.
const CHUNK: usize = 256 * 1024;
/// Chunks queued per host: what a push holds in memory is this many chunks
/// (shared between hosts), whatever the number of hosts.
const QUEUED: usize = 8;

/// Bytes moved so far, for a progress bar: shared with the caller.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes sent or received, all hosts together.
    pub bytes: AtomicU64,
    /// Hosts done (whatever the outcome).
    pub hosts: AtomicU64,
}

/// Why a local file cannot be pushed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct LocalError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
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
}

impl LocalFile {
    /// Reads `path` once to hash it (on a blocking thread).
    pub async fn hash(path: &Path) -> Result<Self, LocalError> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            let fail = |source| LocalError {
                path: path.clone(),
                source,
            };
            let mut file = std::fs::File::open(&path).map_err(fail)?;
            let metadata = file.metadata().map_err(fail)?;
            if !metadata.is_file() {
                return Err(fail(std::io::Error::other("not a regular file")));
            }
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
                // Others-writable, set-id and sticky bits never travel: a
                // file the agent writes as its user must not be one anybody
                // can change.
                mode: std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o775,
                sha256: hasher.finalize().into(),
                path,
            })
        })
        .await
        .unwrap_or_else(|e| {
            Err(LocalError {
                path: PathBuf::new(),
                source: std::io::Error::other(e),
            })
        })
    }
}

/// Pushes `file` to `remote` on each selected host, `concurrency` at once;
/// each host's outcome in selection order.
pub async fn push(
    fleet: &Fleet,
    selection: &[usize],
    file: &LocalFile,
    remote: &str,
    replace: bool,
    progress: Arc<Progress>,
) -> Vec<(usize, Result<PutDone, Error>)> {
    // Every host's upload starts; each says where it resumes.
    let mut senders = Vec::new();
    let mut uploads = Vec::new();
    for &index in selection {
        let Some(host) = fleet.host(index).cloned() else {
            continue;
        };
        let (chunks, content) = mpsc::channel::<Bytes>(QUEUED);
        let (accepted, offset) = oneshot::channel();
        let header = PutHeader {
            path: remote.to_owned(),
            mode: file.mode,
            size: file.size,
            sha256: file.sha256,
            replace,
        };
        let progress = progress.clone();
        uploads.push(tokio::spawn(async move {
            let result = async {
                let client = host.client().await?;
                client.put_file(header, accepted, content).await
            }
            .await;
            host.observe(&result);
            progress.hosts.fetch_add(1, Ordering::Relaxed);
            (index, result)
        }));
        senders.push((chunks, offset));
    }
    // One reader for all hosts.
    let path = file.path.clone();
    let size = file.size;
    let reader = tokio::spawn(async move {
        let mut hosts = Vec::new();
        for (chunks, offset) in senders {
            // A host that failed before accepting gets nothing.
            if let Ok(offset) = offset.await {
                hosts.push((chunks, offset));
            }
        }
        let (tx, mut rx) = mpsc::channel::<std::io::Result<Bytes>>(2);
        let read = tokio::task::spawn_blocking(move || {
            let mut file = match std::fs::File::open(&path) {
                Ok(file) => file,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            let mut left = size;
            while left > 0 {
                let mut buffer = vec![0; CHUNK.min(usize::try_from(left).unwrap_or(CHUNK))];
                match file.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => {
                        buffer.truncate(n);
                        left -= n as u64;
                        if tx.blocking_send(Ok(Bytes::from(buffer))).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
        });
        let mut at = 0u64;
        while let Some(chunk) = rx.recv().await {
            let Ok(chunk) = chunk else { break };
            let end = at + chunk.len() as u64;
            let sends = hosts.iter().map(|(sender, offset)| {
                let part = if *offset >= end {
                    None
                } else {
                    let skip = usize::try_from(offset.saturating_sub(at)).unwrap_or(0);
                    Some(chunk.slice(skip..))
                };
                let progress = progress.clone();
                async move {
                    if let Some(part) = part {
                        let len = part.len() as u64;
                        // A host that failed drops its receiver: the others go on.
                        if sender.send(part).await.is_ok() {
                            progress.bytes.fetch_add(len, Ordering::Relaxed);
                        }
                    }
                }
            });
            futures::future::join_all(sends).await;
            at = end;
        }
        let _ = read.await;
        // Dropping the senders tells each agent the content is complete.
    });
    let mut results = Vec::new();
    for upload in uploads {
        if let Ok(result) = upload.await {
            results.push(result);
        }
    }
    let _ = reader.await;
    results
}

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
    let pulls = selection.iter().map(|&index| {
        let host = fleet.host(index).cloned();
        let (remote, name, dir, progress) = (
            remote.to_owned(),
            name.clone(),
            dir.to_owned(),
            progress.clone(),
        );
        async move {
            let Some(host) = host else {
                return (index, Err(Error::Protocol("no such host".into())));
            };
            let result = pull_one(&host, &remote, &dir, &name, &progress).await;
            host.observe(&result);
            progress.hosts.fetch_add(1, Ordering::Relaxed);
            (index, result)
        }
    });
    futures::future::join_all(pulls).await
}

async fn pull_one(
    host: &super::fleet::Host,
    remote: &str,
    dir: &Path,
    name: &std::ffi::OsStr,
    progress: &Progress,
) -> Result<Pulled, Error> {
    use tokio::io::AsyncWriteExt;
    // The host's name becomes a directory: one that could climb out of
    // `dir` is refused.
    let host_dir = super::text::safe_file_name(host.name())
        .map(|n| dir.join(n))
        .ok_or_else(|| Error::Protocol(format!("{:?} cannot name a directory", host.name())))?;
    let client = host.client().await?;
    let mut events = client.get_file(remote, 0).await?;
    let local_error = |e: std::io::Error| Error::Protocol(format!("{}: {e}", host_dir.display()));
    tokio::fs::create_dir_all(&host_dir)
        .await
        .map_err(local_error)?;
    let target = host_dir.join(name);
    // A fresh name, created exclusively and privately: a link planted in a
    // shared directory is never followed.
    let temp = host_dir.join(format!(
        ".{}.{}.vigie-part",
        name.to_string_lossy(),
        uuid::Uuid::new_v4().simple()
    ));
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .await
        .map_err(local_error)?;
    let mut announced = None;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut mode = 0o644;
    let outcome = async {
        while let Some(event) = events.next().await {
            match event? {
                GetEvent::Info { mode: m, size: s } => {
                    mode = m;
                    announced = Some(s);
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
                    progress
                        .bytes
                        .fetch_add(data.len() as u64, Ordering::Relaxed);
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
                    file.sync_all().await.map_err(local_error)?;
                    return Ok(sha256);
                }
            }
        }
        Err(Error::Protocol(
            "the download ended without its digest".into(),
        ))
    }
    .await;
    drop(file);
    match outcome {
        Ok(sha256) => {
            tokio::fs::set_permissions(
                &temp,
                std::os::unix::fs::PermissionsExt::from_mode(mode & 0o755),
            )
            .await
            .map_err(local_error)?;
            tokio::fs::rename(&temp, &target)
                .await
                .map_err(local_error)?;
            Ok(Pulled {
                local: target,
                size,
                sha256,
            })
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&temp).await;
            Err(e)
        }
    }
}
