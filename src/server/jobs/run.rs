//! Running a job's command: the command is driven as any other (its own
//! process group, its timeout, ended group and all), and its output goes
//! into the job's log instead of to a client.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::Job;
use crate::{
    command::{Event, Exit},
    server::exec::{self, ExecTuning, Spawned, Stops},
};

/// Runs the job's command to its end. Returns how it ended (`truncated`
/// says whether the log dropped output); the caller records the end with
/// [`Job::finish`] once its audit record is written, so that whoever sees
/// the job ended finds the record too.
pub async fn run(job: Arc<Job>, spawned: Spawned, stops: Stops, tuning: ExecTuning) -> Exit {
    let (tx, mut rx) = mpsc::channel(tuning.channel_capacity);
    let driver = exec::drive(spawned, tx, stops, tuning);
    let pump = async {
        // The log copies each chunk, so the chunk (and the agent-wide
        // output budget it holds) is let go at once.
        while let Some(event) = rx.recv().await {
            if let Event::Output { stream, data } = event {
                job.log.append(stream, &data).await;
            }
        }
    };
    let (mut exit, ()) = tokio::join!(driver, pump);
    exit.truncated = job.log.bounds().0 > 0;
    exit
}
