//! Pushing: every host's upload of a file is fed from one reader of the
//! local file, so that it is read once whatever the number of hosts, with
//! at most [`QUEUED`] chunks per host in flight; a tree's directories are
//! created first, then its files go a few at a time.

use std::{
    io::Read,
    sync::{Arc, Mutex, atomic::Ordering},
};

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};

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

/// Each host's state during a push.
type Ledger = Mutex<Vec<(usize, Result<Pushed, Failed>)>>;

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
    let ledger: Ledger = Mutex::new(
        selection
            .iter()
            .map(|&i| (i, Ok(Pushed::default())))
            .collect(),
    );
    let fail = |index: usize, remote: &str, error: Error| {
        let mut ledger = ledger.lock().expect("ledger");
        if let Some(slot) = ledger.iter_mut().find(|(i, _)| *i == index)
            && slot.1.is_ok()
        {
            slot.1 = Err(Failed {
                remote: remote.to_owned(),
                error,
            });
            progress.hosts.fetch_add(1, Ordering::Relaxed);
        }
    };
    // Directories first, each host in order, the hosts at once.
    let dirs: Vec<(&str, u32)> = plan
        .entries
        .iter()
        .filter_map(|e| match e {
            Entry::Dir { remote, mode } => Some((remote.as_str(), *mode)),
            Entry::File { .. } => None,
        })
        .collect();
    if !dirs.is_empty() {
        futures::future::join_all(selection.iter().map(|&index| {
            let (dirs, fail, ledger) = (&dirs, &fail, &ledger);
            async move {
                let host = fleet.host(index).expect("filtered").clone();
                let mut created = 0;
                for &(remote, mode) in dirs {
                    // The host's channel is kept: only the first call
                    // connects.
                    let result =
                        async { host.client().await?.make_directory(remote, mode).await }.await;
                    host.observe(&result);
                    match result {
                        Ok(true) => created += 1,
                        Ok(false) => {}
                        Err(e) => return fail(index, remote, e),
                    }
                }
                let mut ledger = ledger.lock().expect("ledger");
                if let Some((_, Ok(pushed))) = ledger.iter_mut().find(|(i, _)| *i == index) {
                    pushed.dirs = dirs.len();
                    pushed.dirs_created = created;
                }
            }
        }))
        .await;
    }
    // Then the files, a few at once, each to the hosts that have not
    // failed when it starts.
    let files = plan.entries.iter().filter_map(|e| match e {
        Entry::File { remote, file } => Some((remote, file)),
        Entry::Dir { .. } => None,
    });
    let mut uploads = futures::stream::iter(files)
        .map(|(remote, file)| {
            let alive: Vec<usize> = ledger
                .lock()
                .expect("ledger")
                .iter()
                .filter(|(_, r)| r.is_ok())
                .map(|(i, _)| *i)
                .collect();
            let progress = progress.clone();
            async move {
                let results = push_file(fleet, &alive, file, remote, replace, progress).await;
                (remote, results)
            }
        })
        // In the plan's order, whatever order the uploads end in.
        .buffered(FILES_AT_ONCE);
    while let Some((remote, results)) = uploads.next().await {
        for (index, result) in results {
            match result {
                Ok(done) => {
                    let mut ledger = ledger.lock().expect("ledger");
                    if let Some((_, Ok(pushed))) = ledger.iter_mut().find(|(i, _)| *i == index) {
                        pushed.files.push(done);
                    }
                }
                Err(e) => fail(index, remote, e),
            }
        }
    }
    drop(uploads);
    let results = ledger.into_inner().expect("ledger");
    let done = results.iter().filter(|(_, r)| r.is_ok()).count();
    progress.hosts.fetch_add(done as u64, Ordering::Relaxed);
    results
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
        uploads.push(tokio::spawn(async move {
            let result = async {
                let client = host.client().await?;
                client.put_file(header, accepted, content).await
            }
            .await;
            host.observe(&result);
            (index, result)
        }));
        senders.push((chunks, offset));
    }
    // One reader for all hosts.
    let file = file.clone();
    let reader = tokio::spawn(async move {
        let mut hosts = Vec::new();
        for (chunks, offset) in senders {
            // A host that failed before accepting gets nothing.
            if let Ok(offset) = offset.await {
                hosts.push((chunks, offset));
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
