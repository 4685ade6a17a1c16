//! Pushing: every host's upload of a file is fed from one reader of the
//! local file, so that it is read once whatever the number of hosts, with
//! at most [`QUEUED`] chunks per host in flight; a tree's directories are
//! created first, then its files go a few at a time.

use std::{
    io::Read,
    sync::{Arc, atomic::Ordering},
};

use bytes::Bytes;
use futures::{
    StreamExt,
    stream::{FuturesOrdered, FuturesUnordered},
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::AbortOnDropHandle;

use super::{CHUNK, Entry, LocalFile, Plan, Progress, QUEUED};
use crate::{
    client::{Error, fleet::Fleet},
    types::{PutDone, PutHeader},
};

/// Files of a tree in flight at once: each is one upload stream per host,
/// well within the agents' per-identity stream limit, and enough to keep
/// the round trips of small files overlapped.
const FILES_AT_ONCE: usize = 4;

/// What a push did on one host.
#[derive(Debug, Clone, Default)]
pub struct Pushed {
    /// The files, in the plan's order.
    pub files: Vec<PutDone>,
    /// Directories of the plan.
    pub dirs: usize,
    /// Of which created (the others were there).
    pub dirs_created: usize,
}

/// Where a push failed on one host: it sends that host nothing more.
#[derive(Debug)]
pub struct Failed {
    /// The remote path that failed.
    pub remote: String,
    /// Why.
    pub error: Error,
}

/// Each host's outcome so far, in selection order.
type Ledger = Vec<(usize, Result<Pushed, Failed>)>;

/// Marks host `index` failed at `remote` (its first failure only).
fn mark_failed(ledger: &mut Ledger, progress: &Progress, index: usize, remote: &str, error: Error) {
    if let Some(slot) = ledger.iter_mut().find(|(i, _)| *i == index)
        && slot.1.is_ok()
    {
        // A connection lost under an upload leaves what arrived with the
        // agent: say what to do about it.
        let error = match error {
            Error::Transport { address, reason } => Error::Transport {
                address,
                reason: format!(
                    "{reason}; pushing the same file again resumes from what the agent kept"
                ),
            },
            other => other,
        };
        slot.1 = Err(Failed {
            remote: remote.to_owned(),
            error,
        });
        progress.hosts.fetch_add(1, Ordering::Relaxed);
    }
}

/// The hosts that have not failed.
fn alive(ledger: &Ledger) -> Vec<usize> {
    ledger
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(i, _)| *i)
        .collect()
}

/// Pushes `plan` to each selected host; each host's outcome in selection
/// order. A host that fails one entry gets nothing more; the others go on.
pub async fn push_plan(
    fleet: &Fleet,
    selection: &[usize],
    plan: &Plan,
    replace: bool,
    progress: Arc<Progress>,
) -> Vec<(usize, Result<Pushed, Failed>)> {
    let selection: Vec<usize> = selection
        .iter()
        .copied()
        .filter(|&i| fleet.host(i).is_some())
        .collect();
    for &index in &selection {
        progress.expect(index, plan.bytes());
    }
    let mut ledger: Ledger = selection
        .iter()
        .map(|&i| (i, Ok(Pushed::default())))
        .collect();
    // Directories first, each host in order, the hosts at once.
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    for entry in &plan.entries {
        match entry {
            Entry::Dir { remote, mode } => dirs.push((remote.as_str(), *mode)),
            Entry::File { remote, file } => files.push((remote.as_str(), file)),
        }
    }
    if !dirs.is_empty() {
        let mut making: FuturesUnordered<_> = selection
            .iter()
            .map(|&index| make_directories(fleet, index, &dirs))
            .collect();
        while let Some((index, made)) = making.next().await {
            match made {
                Ok(created) => {
                    if let Some((_, Ok(pushed))) = ledger.iter_mut().find(|(i, _)| *i == index) {
                        pushed.dirs = dirs.len();
                        pushed.dirs_created = created;
                    }
                }
                Err((remote, error)) => mark_failed(&mut ledger, &progress, index, remote, error),
            }
        }
    }
    // Then the files, a few at once, each to the hosts that have not
    // failed when it starts; results taken in the plan's order.
    let mut pending = files.into_iter();
    let mut in_flight = FuturesOrdered::new();
    loop {
        while in_flight.len() < FILES_AT_ONCE {
            let Some((remote, file)) = pending.next() else {
                break;
            };
            let hosts = alive(&ledger);
            let progress = progress.clone();
            in_flight.push_back(async move {
                let results = push_file(fleet, &hosts, file, remote, replace, progress).await;
                (remote, results)
            });
        }
        let Some((remote, results)) = in_flight.next().await else {
            break;
        };
        for (index, result) in results {
            match result {
                Ok(done) => {
                    if let Some((_, Ok(pushed))) = ledger.iter_mut().find(|(i, _)| *i == index) {
                        pushed.files.push(done);
                    }
                }
                Err(e) => mark_failed(&mut ledger, &progress, index, remote, e),
            }
        }
    }
    let done = ledger.iter().filter(|(_, r)| r.is_ok()).count();
    progress.hosts.fetch_add(done as u64, Ordering::Relaxed);
    ledger
}

/// Creates `dirs` in order on host `index`: how many were new, or the
/// first that failed.
async fn make_directories<'a>(
    fleet: &Fleet,
    index: usize,
    dirs: &[(&'a str, u32)],
) -> (usize, Result<usize, (&'a str, Error)>) {
    let Some(host) = fleet.host(index) else {
        return (index, Ok(0));
    };
    let mut created = 0;
    for &(remote, mode) in dirs {
        // The host's channel is kept: only the first call connects.
        let result = async { host.client().await?.make_directory(remote, mode).await }.await;
        host.observe(&result);
        match result {
            Ok(true) => created += 1,
            Ok(false) => {}
            Err(e) => return (index, Err((remote, e))),
        }
    }
    (index, Ok(created))
}

/// Pushes one file to `remote` on each host of `selection`; each host's
/// outcome.
async fn push_file(
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
        // Aborted when dropped: a push that is itself dropped (cancelled)
        // cuts every host's upload instead of leaving them running.
        uploads.push(AbortOnDropHandle::new(tokio::spawn(async move {
            let result = async {
                let client = host.client().await?;
                client.put_file(header, accepted, content).await
            }
            .await;
            host.observe(&result);
            (index, result)
        })));
        senders.push((index, chunks, offset));
    }
    // One reader for all hosts.
    let file = file.clone();
    let reader = AbortOnDropHandle::new(tokio::spawn(async move {
        let mut hosts = Vec::new();
        for (index, chunks, offset) in senders {
            // A host that failed before accepting gets nothing; what one
            // has already (a resume) counts as moved.
            if let Ok(offset) = offset.await {
                progress.add(index, offset.min(file.size));
                hosts.push((index, chunks, offset));
            }
        }
        if hosts.is_empty() {
            return;
        }
        let (tx, mut rx) = mpsc::channel::<Bytes>(2);
        let size = file.size;
        let read = tokio::task::spawn_blocking(move || {
            // A file replaced since it was hashed is not sent: the agents
            // would refuse its content anyway, and a FIFO in its place
            // must not hang the push. Dropping the senders early makes
            // each agent refuse the short content.
            let Ok(mut local) = file.reopen() else {
                return;
            };
            let mut left = size;
            while left > 0 {
                let mut buffer = vec![0; CHUNK.min(usize::try_from(left).unwrap_or(CHUNK))];
                match local.read(&mut buffer) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        buffer.truncate(n);
                        left -= n as u64;
                        if tx.blocking_send(Bytes::from(buffer)).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut at = 0u64;
        while let Some(chunk) = rx.recv().await {
            let end = at + chunk.len() as u64;
            let sends = hosts.iter().map(|(index, sender, offset)| {
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
                            progress.add(*index, len);
                        }
                    }
                }
            });
            futures::future::join_all(sends).await;
            at = end;
        }
        let _ = read.await;
        // Dropping the senders tells each agent the content is complete.
    }));
    let mut results = Vec::new();
    for upload in uploads {
        if let Ok(result) = upload.await {
            results.push(result);
        }
    }
    let _ = reader.await;
    results
}
