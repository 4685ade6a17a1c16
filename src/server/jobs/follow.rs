//! Attaching to a job: its `started` event, then its log replayed from an
//! offset and followed live, then its exit once it has ended.

use std::{sync::Arc, time::SystemTime};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Job, log::Found};
use crate::command::{Exit, OutputStream};

/// Most output bytes one read of the log returns.
const READ_MOST: usize = 256 * 1024;

/// An event of an attachment, in the order the client receives them.
#[derive(Debug, Clone)]
pub enum JobEvent {
    /// What the job runs; always first.
    Started {
        /// The job id.
        job_id: String,
        /// Its pid, also its process group.
        pid: i32,
        /// What was executed.
        argv: Vec<String>,
        /// When it started.
        started_at: SystemTime,
    },
    /// Output, with its offset in the log.
    Output {
        /// Which stream.
        stream: OutputStream,
        /// Offset of the first byte.
        offset: u64,
        /// The bytes.
        data: Bytes,
    },
    /// Output the log no longer keeps.
    Gap {
        /// Offset of the first byte dropped.
        offset: u64,
        /// Bytes dropped.
        length: u64,
    },
    /// The job ended; always last.
    Exited(Exit),
}

/// What ends an attachment early (the job goes on): the caller's session
/// ending, the agent stopping. The client going away is seen on the channel.
#[derive(Debug, Clone)]
pub struct Detach {
    /// Fires when the attaching session ends.
    pub session: CancellationToken,
    /// Fires when the agent stops.
    pub agent: CancellationToken,
}

/// Sends `job`'s events from `offset` on `events` until the job has ended
/// and everything is sent, or the client detaches.
pub async fn follow(
    job: Arc<Job>,
    mut offset: u64,
    events: mpsc::Sender<JobEvent>,
    detach: Detach,
) {
    let _attached = job.attach();
    let send = |event: JobEvent| {
        let events = events.clone();
        let detach = detach.clone();
        async move {
            tokio::select! {
                biased;
                () = detach.session.cancelled() => false,
                () = detach.agent.cancelled() => false,
                sent = events.send(event) => sent.is_ok(),
            }
        }
    };
    let started = JobEvent::Started {
        job_id: job.id.clone(),
        pid: job.pid,
        argv: job.argv.clone(),
        started_at: job.started_at,
    };
    if !send(started).await {
        return;
    }
    let mut end = job.log.watch();
    loop {
        // Marked seen before the read, so that output added after it wakes
        // the wait below.
        end.borrow_and_update();
        // A read of a spill file waits on the disk: the stops are watched
        // there too, so that nothing outlives a detach or the agent.
        let read = tokio::select! {
            biased;
            () = detach.session.cancelled() => return,
            () = detach.agent.cancelled() => return,
            () = events.closed() => return,
            read = job.log.read(offset, READ_MOST) => read,
        };
        match read {
            Ok(Found::Records(records)) => {
                for (stream, at, data) in records {
                    offset = at + data.len() as u64;
                    let output = JobEvent::Output {
                        stream,
                        offset: at,
                        data,
                    };
                    if !send(output).await {
                        return;
                    }
                }
            }
            Ok(Found::Gap(length)) => {
                let gap = JobEvent::Gap { offset, length };
                offset += length;
                if !send(gap).await {
                    return;
                }
            }
            Ok(Found::Pending) => {
                tokio::select! {
                    biased;
                    () = detach.session.cancelled() => return,
                    () = detach.agent.cancelled() => return,
                    () = events.closed() => return,
                    changed = end.changed() => if changed.is_err() { return },
                }
            }
            Ok(Found::End) => break,
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "cannot read a job's log");
                return;
            }
        }
    }
    // The exit is recorded before the log closes.
    let exit = job.ended().borrow().as_ref().map(|(exit, _)| exit.clone());
    if let Some(exit) = exit {
        send(JobEvent::Exited(exit)).await;
    }
}
