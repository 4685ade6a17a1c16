//! Pushing: every host's upload of a file is fed from one reader of the
//! local file, so that it is read once whatever the number of hosts, with
//! at most [`QUEUED`] chunks per host in flight; a tree's directories are
//! created first, then its files go a few at a time.

use std::{
    io::Read,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use bytes::Bytes;
use futures::{StreamExt, stream::FuturesUnordered};
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

/// What a push did so far on one host: its files with their place in the
/// plan.
#[derive(Debug, Default)]
struct Building {
    files: Vec<(usize, PutDone)>,
    dirs: usize,
    dirs_created: usize,
}

/// Each host's outcome so far, in selection order.
type Ledger = Vec<(usize, Result<Building, Failed>)>;

/// What host `index` did so far, while it has not failed.
fn building(ledger: &mut Ledger, index: usize) -> Option<&mut Building> {
    match ledger.iter_mut().find(|(i, _)| *i == index) {
        Some((_, Ok(building))) => Some(building),
        _ => None,
    }
}

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
///
/// Each file goes to its hosts at once, at the pace of the slowest, so
/// every host of a group must hold its connection together: a fleet too
/// large to keep them all is pushed to in groups the connection budget
/// holds, one after the other.
pub async fn push_plan(
    fleet: &Fleet,
    selection: &[usize],
    plan: &Plan,
    replace: bool,
    progress: Arc<Progress>,
) -> Vec<(usize, Result<Pushed, Failed>)> {
    let group = fleet.connection_limit().unwrap_or(usize::MAX).max(1);
    let mut outcomes = Vec::with_capacity(selection.len());
    for hosts in selection.chunks(group) {
        outcomes.extend(push_group(fleet, hosts, plan, replace, progress.clone()).await);
    }
    outcomes
}

/// Pushes `plan` to every host of `selection` at once.
async fn push_group(
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
    // Each host's client is held for the whole push, so that a host whose
    // connection closes when idle (the CLI's) makes one connection for all
    // its directories and files, not one each.
    let _held: Vec<_> = futures::future::join_all(
        selection
            .iter()
            .filter_map(|&index| fleet.host(index))
            .map(|host| host.client()),
    )
    .await;
    let mut ledger: Ledger = selection
        .iter()
        .map(|&i| (i, Ok(Building::default())))
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
                    if let Some(pushed) = building(&mut ledger, index) {
                        pushed.dirs = dirs.len();
                        pushed.dirs_created = created;
                    }
                }
                Err((remote, error)) => mark_failed(&mut ledger, &progress, index, remote, error),
            }
        }
    }
    // Then the files, a few at once, each to the hosts that have not
    // failed when it starts; results taken as they come (a host's failure
    // stops the next files going to it), reported in the plan's order.
    let mut pending = files.into_iter().enumerate();
    let mut in_flight = FuturesUnordered::new();
    loop {
        while in_flight.len() < FILES_AT_ONCE {
            let Some((order, (remote, file))) = pending.next() else {
                break;
            };
            let hosts = alive(&ledger);
            let progress = progress.clone();
            in_flight.push(async move {
                let results = push_file(fleet, &hosts, file, remote, replace, progress).await;
                (order, remote, results)
            });
        }
        let Some((order, remote, results)) = in_flight.next().await else {
            break;
        };
        for (index, result) in results {
            match result {
                Ok(done) => {
                    if let Some(pushed) = building(&mut ledger, index) {
                        pushed.files.push((order, done));
                    }
                }
                Err(e) => mark_failed(&mut ledger, &progress, index, remote, e),
            }
        }
    }
    let ledger: Vec<(usize, Result<Pushed, Failed>)> = ledger
        .into_iter()
        .map(|(index, result)| {
            (
                index,
                result.map(|mut pushed| {
                    pushed.files.sort_by_key(|(order, _)| *order);
                    Pushed {
                        files: pushed.files.into_iter().map(|(_, done)| done).collect(),
                        dirs: pushed.dirs,
                        dirs_created: pushed.dirs_created,
                    }
                }),
            )
        })
        .collect();
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
    // One client for every directory: one connection, even for a leased
    // host; waiting for it is not counted against the host's answer.
    let client = match host.client().await {
        Ok(client) => client,
        Err(e) => {
            let result = Err(e);
            host.observe::<bool>(&result);
            let first = dirs.first().map_or("", |(remote, _)| *remote);
            return (index, result.map(|_| 0).map_err(|e| (first, e)));
        }
    };
    for &(remote, mode) in dirs {
        let call = client.make_directory(remote, mode);
        let result = match tokio::time::timeout(MAKE_WAIT, call).await {
            Ok(result) => result,
            Err(_) => Err(Error::Transport {
                address: host.address().to_string(),
                reason: format!("no answer within {} s", MAKE_WAIT.as_secs()),
            }),
        };
        host.observe(&result);
        match result {
            Ok(true) => created += 1,
            Ok(false) => {}
            Err(e) => return (index, Err((remote, e))),
        }
    }
    (index, Ok(created))
}

/// The longest a host may take to accept an upload's header (it may be
/// re-reading a large partial upload to resume it), and the longest it
/// may take no data. Both stay well under the 60 s an agent waits for its
/// client's next message, so that the hosts that are waited for while a
/// slow one is given up are never cut by their own agents.
const STALL: Duration = Duration::from_secs(40);
/// The longest the hosts may take, together, to answer once the content
/// is sent (each syncs and renames its file).
const ANSWER_WAIT: Duration = Duration::from_secs(120);
/// The longest a directory may take to be made.
const MAKE_WAIT: Duration = Duration::from_secs(30);

/// One host's upload of a file.
struct Upload {
    index: usize,
    /// Where its content goes; None once it gets no more.
    chunks: Option<mpsc::Sender<Bytes>>,
    /// Where the host resumes, once it accepted.
    offset: Option<u64>,
    /// The call, cut if dropped.
    task: AbortOnDropHandle<Result<PutDone, Error>>,
    /// Why this client gave it up, if it did.
    given_up: Option<String>,
}

impl Upload {
    fn give_up(&mut self, why: String) {
        self.task.abort();
        self.chunks = None;
        self.given_up.get_or_insert(why);
    }
}

/// Pushes one file to `remote` on each host of `selection`; each host's
/// outcome. The file is read once for all; a host that does not accept,
/// stalls or does not answer in time is given up alone.
async fn push_file(
    fleet: &Fleet,
    selection: &[usize],
    file: &LocalFile,
    remote: &str,
    replace: bool,
    progress: Arc<Progress>,
) -> Vec<(usize, Result<PutDone, Error>)> {
    // Every host's upload starts; each says where it resumes.
    let mut uploads = Vec::new();
    let mut accepts = Vec::new();
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
        let task = AbortOnDropHandle::new(tokio::spawn(async move {
            let result = async {
                let client = host.client().await?;
                client.put_file(header, accepted, content).await
            }
            .await;
            host.observe(&result);
            result
        }));
        uploads.push(Upload {
            index,
            chunks: Some(chunks),
            offset: None,
            task,
            given_up: None,
        });
        accepts.push(tokio::time::timeout(STALL, offset));
    }
    // The answers are awaited together: a slow host delays nobody more
    // than the slowest of the others.
    for (upload, accept) in uploads
        .iter_mut()
        .zip(futures::future::join_all(accepts).await)
    {
        match accept {
            Ok(Ok(offset)) => {
                progress.add(upload.index, offset.min(file.size));
                upload.offset = Some(offset);
            }
            // It ended before accepting: refused, or unchanged (which
            // counts as moved).
            Ok(Err(_)) => upload.chunks = None,
            Err(_) => upload.give_up(format!(
                "no answer to the upload within {} s",
                STALL.as_secs()
            )),
        }
    }
    let local = if uploads.iter().any(|u| u.chunks.is_some()) {
        send(file, &mut uploads, &progress).await
    } else {
        None
    };
    // Dropping the senders tells each agent the content is complete.
    for upload in &mut uploads {
        upload.chunks = None;
    }
    // Every host's answer, awaited together under one deadline.
    let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
    let answers = futures::future::join_all(uploads.iter_mut().map(|upload| async move {
        match upload.given_up.take() {
            Some(why) => Err(why),
            None => match tokio::time::timeout_at(deadline, &mut upload.task).await {
                Ok(Ok(result)) => Ok(result),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!(
                    "no answer within {} s once the content was sent",
                    ANSWER_WAIT.as_secs()
                )),
            },
        }
    }))
    .await;
    let mut results = Vec::new();
    for (upload, result) in uploads.into_iter().zip(answers) {
        let address = fleet
            .host(upload.index)
            .map_or_else(String::new, |h| h.address().to_string());
        let result = match result {
            Err(reason) => Err(Error::Transport { address, reason }),
            // The local file could not be sent whole: that is the reason,
            // whatever the host said of the short content.
            Ok(Err(_)) if local.is_some() && upload.offset.is_some() => Err(Error::Protocol(
                format!("not sent: {}", local.as_ref().expect("checked")),
            )),
            Ok(Ok(done)) => {
                if done.unchanged {
                    progress.add(upload.index, file.size);
                }
                checked(done, file)
            }
            Ok(Err(e)) => Err(e),
        };
        results.push((upload.index, result));
    }
    results
}

/// Reads the file once and hands each chunk to every upload still taking
/// content, from where it resumes; a host that takes nothing for
/// [`STALL`] is given up. The local error that stopped the reading, if one
/// did.
async fn send(
    file: &LocalFile,
    uploads: &mut [Upload],
    progress: &Progress,
) -> Option<super::LocalError> {
    // Read from the smallest offset a host resumes at: what every host has
    // already is never read again.
    let start = uploads
        .iter()
        .filter(|u| u.chunks.is_some())
        .filter_map(|u| u.offset)
        .min()
        .unwrap_or(file.size)
        .min(file.size);
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, super::LocalError>>(2);
    let local = file.clone();
    let read = tokio::task::spawn_blocking(move || {
        // A file replaced since it was hashed is not sent: the agents
        // would refuse its content anyway, and a FIFO in its place must
        // not hang the push.
        let mut opened = match local.reopen() {
            Ok(opened) => opened,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        if let Err(source) = std::io::Seek::seek(&mut opened, std::io::SeekFrom::Start(start)) {
            let _ = tx.blocking_send(Err(super::LocalError {
                path: local.path.clone(),
                source,
            }));
            return;
        }
        let mut left = local.size - start;
        while left > 0 {
            let mut buffer = vec![0; CHUNK.min(usize::try_from(left).unwrap_or(CHUNK))];
            match opened.read(&mut buffer) {
                Ok(0) => {
                    let _ = tx.blocking_send(Err(super::LocalError {
                        path: local.path.clone(),
                        source: std::io::Error::other("the file got shorter after it was hashed"),
                    }));
                    return;
                }
                Ok(n) => {
                    buffer.truncate(n);
                    left -= n as u64;
                    if tx.blocking_send(Ok(Bytes::from(buffer))).is_err() {
                        return;
                    }
                }
                Err(source) => {
                    let _ = tx.blocking_send(Err(super::LocalError {
                        path: local.path.clone(),
                        source,
                    }));
                    return;
                }
            }
        }
    });
    let mut at = start;
    let mut failed = None;
    while let Some(chunk) = rx.recv().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                failed = Some(e);
                break;
            }
        };
        let end = at + chunk.len() as u64;
        let sends = uploads.iter().map(|upload| {
            let part = match (&upload.chunks, upload.offset) {
                (Some(sender), Some(offset)) if offset < end => {
                    let skip = usize::try_from(offset.saturating_sub(at)).unwrap_or(0);
                    Some((sender.clone(), chunk.slice(skip..)))
                }
                _ => None,
            };
            async move {
                let Some((sender, part)) = part else {
                    return Ok(0);
                };
                let len = part.len() as u64;
                match sender.send_timeout(part, STALL).await {
                    Ok(()) => Ok(len),
                    Err(mpsc::error::SendTimeoutError::Timeout(_)) => Err(true),
                    // The upload ended (the host refused): its result says why.
                    Err(mpsc::error::SendTimeoutError::Closed(_)) => Err(false),
                }
            }
        });
        let sent = futures::future::join_all(sends).await;
        for (upload, sent) in uploads.iter_mut().zip(sent) {
            match sent {
                Ok(len) => progress.add(upload.index, len),
                Err(true) => upload.give_up(format!("took no data for {} s", STALL.as_secs())),
                Err(false) => upload.chunks = None,
            }
        }
        at = end;
        if uploads.iter().all(|u| u.chunks.is_none()) {
            break;
        }
    }
    drop(rx);
    let _ = read.await;
    failed
}

/// A host's word that the file landed, checked against what was sent: a
/// host that reports another size or digest is not believed.
fn checked(done: PutDone, file: &LocalFile) -> Result<PutDone, Error> {
    let ours = hex::encode(file.sha256);
    if done.size != file.size || done.sha256 != ours {
        return Err(Error::Protocol(format!(
            "the agent said the file landed with {} bytes and SHA-256 {}, not the {} bytes and {ours} sent",
            done.size,
            crate::client::text::visible(&done.sha256.chars().take(64).collect::<String>()),
            file.size
        )));
    }
    Ok(done)
}
