//! Pulling: each host's file written to `DIR/HOST/NAME` through a private
//! temporary file, renamed into place only once its size and SHA-256 match
//! what the agent announced.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, atomic::Ordering},
};

use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::Progress;
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
            let result = pull_one(&host, index, &remote, &dir, &name, &progress).await;
            host.observe(&result);
            progress.hosts.fetch_add(1, Ordering::Relaxed);
            (index, result)
        }
    });
    futures::future::join_all(pulls).await
}

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
