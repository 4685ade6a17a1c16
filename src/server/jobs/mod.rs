//! Detached commands ("jobs"): commands that outlive their client on
//! purpose, with their output kept in a bounded log that clients replay and
//! follow (attach), list, describe and cancel.
//!
//! The rules this module keeps:
//! - A job belongs to the identity that started it; only that identity and
//!   admins may see, attach to or cancel it.
//! - A job is not part of any session: a session ending or a connection
//!   closing leaves it running. It ends by itself, by its timeout, by a
//!   cancel, or with the agent's generation (Shutdown and Restart end every
//!   job, as every command).
//! - Running jobs are limited per identity and in all; finished jobs are
//!   kept for a time and up to a count, oldest forgotten first, and take
//!   their log files with them.
//! - The job's command never waits for a reader: its output goes to the
//!   log (see [`log`]), which readers replay at their own pace.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex, MutexGuard, OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

pub mod follow;
pub mod log;
pub mod run;
pub mod space;

pub use follow::{Detach, JobEvent, follow};
pub use log::{JobLog, LogLimits};
pub use run::run;
pub use space::LogSpace;

use super::auth::{Identity, Role};
use crate::command::Exit;

/// Why a job call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// No such job (never was, or forgotten).
    #[error("no job {0} on this agent (it never ran here, or was forgotten)")]
    NotFound(String),
    /// The job is another identity's.
    #[error("job {0} belongs to another identity")]
    NotYours(String),
    /// The job id cannot be one.
    #[error("invalid job id {0:?}")]
    InvalidId(String),
    /// An identity has as many running jobs as it may.
    #[error("{identity} has {limit} running jobs, the most it may")]
    TooManyForIdentity {
        /// The identity.
        identity: String,
        /// The limit.
        limit: u32,
    },
    /// The agent runs as many jobs as it may.
    #[error("the agent runs {0} jobs, the most it may")]
    TooMany(u32),
    /// The offset is past the end of the log.
    #[error("offset {offset} is past the end of job {job}'s output ({end} bytes)")]
    PastEnd {
        /// The job.
        job: String,
        /// What was asked.
        offset: u64,
        /// Where the log ends.
        end: u64,
    },
}

/// Limits on jobs, from the agent's configuration.
#[derive(Debug, Clone, Copy)]
pub struct JobLimits {
    /// Most running jobs in all.
    pub running: u32,
    /// Of `running`, how many only admins may start.
    pub admin_reserved: u32,
    /// Most running jobs of one identity.
    pub per_identity: u32,
    /// Most finished jobs kept.
    pub finished: usize,
    /// Most finished jobs kept of one identity, so that one identity's
    /// many short jobs do not push out everyone else's results.
    pub finished_per_identity: usize,
    /// How long a finished job is kept.
    pub retention: Duration,
    /// Each job's log.
    pub log: LogLimits,
}

/// A job's state, as ListJobs and GetJob report it.
#[derive(Debug, Clone)]
pub struct JobInfo {
    /// Its id.
    pub id: String,
    /// Who started it.
    pub owner: String,
    /// The command line as planned.
    pub command: String,
    /// What was executed.
    pub argv: Vec<String>,
    /// Its pid (and process group).
    pub pid: i32,
    /// When it started.
    pub started_at: SystemTime,
    /// How and when it ended, once it has.
    pub ended: Option<(Exit, SystemTime)>,
    /// (first offset kept, offset past the last byte).
    pub log: (u64, u64),
    /// Clients attached now.
    pub attached: u32,
    /// When a finished job will be forgotten.
    pub expires_at: Option<SystemTime>,
}

/// One job.
#[derive(Debug)]
pub struct Job {
    /// Its id: 128 random bits, so that nobody can guess another's.
    pub id: String,
    /// The identity that started it.
    pub owner: String,
    /// The command line as planned.
    pub command: String,
    /// What was executed.
    pub argv: Vec<String>,
    /// Its pid (and process group).
    pub pid: i32,
    /// When it started.
    pub started_at: SystemTime,
    /// Its output.
    pub log: JobLog,
    /// Fires to cancel it.
    pub cancel: CancellationToken,
    ended: watch::Sender<Option<(Exit, SystemTime)>>,
    /// When it ended, on the monotonic clock: what its retention counts
    /// from, whatever the wall clock does.
    finished_at: OnceLock<Instant>,
    attached: AtomicU32,
    retention: Duration,
}

impl Job {
    /// Its state now.
    pub fn info(&self) -> JobInfo {
        let ended = self.ended.borrow().clone();
        JobInfo {
            id: self.id.clone(),
            owner: self.owner.clone(),
            command: self.command.clone(),
            argv: self.argv.clone(),
            pid: self.pid,
            started_at: self.started_at,
            expires_at: ended
                .as_ref()
                .and_then(|(_, at)| at.checked_add(self.retention)),
            ended,
            log: self.log.bounds(),
            attached: self.attached.load(Ordering::Relaxed),
        }
    }

    /// How it ended, once it has.
    pub fn ended(&self) -> watch::Receiver<Option<(Exit, SystemTime)>> {
        self.ended.subscribe()
    }

    /// True while its command runs.
    pub fn running(&self) -> bool {
        self.ended.borrow().is_none()
    }

    /// Counts an attached client until the guard is dropped.
    pub fn attach(self: &Arc<Self>) -> Attached {
        self.attached.fetch_add(1, Ordering::Relaxed);
        Attached(self.clone())
    }

    /// Records its end; the log is closed after, so a reader that reaches
    /// the end of the log always finds the exit.
    pub async fn finish(&self, exit: Exit) {
        let _ = self.finished_at.set(Instant::now());
        self.ended.send_replace(Some((exit, SystemTime::now())));
        self.log.close().await;
    }
}

/// An attached client, counted while it lives.
#[derive(Debug)]
pub struct Attached(Arc<Job>);

impl Drop for Attached {
    fn drop(&mut self) {
        self.0.attached.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Room for one job, taken before its command is spawned so that two
/// callers cannot both pass the limits; given back if it never starts.
#[derive(Debug)]
pub struct Reservation<'a> {
    jobs: &'a Jobs,
    owner: String,
    used: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.used {
            let mut inner = self.jobs.lock();
            inner.reserved -= 1;
            if let Some(n) = inner.reserved_by.get_mut(&self.owner) {
                *n -= 1;
            }
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Every job kept, by id.
    jobs: BTreeMap<String, Arc<Job>>,
    /// Reservations not yet turned into jobs.
    reserved: u32,
    reserved_by: BTreeMap<String, u32>,
}

/// The jobs of one generation of the agent.
#[derive(Debug)]
pub struct Jobs {
    limits: JobLimits,
    space: Arc<LogSpace>,
    inner: Mutex<Inner>,
    /// Wakes the reaper when a job ended.
    ended: Notify,
}

/// The longest command line and argv a job's record keeps, so that a
/// large command kept for a day costs little.
const LONGEST_COMMAND: usize = 4096;

/// The smallest memory tail of a log, and so half its smallest cap.
const SMALLEST_TAIL: usize = 64 * 1024;

/// `text` cut at `most` bytes (on a character boundary), marked when cut.
fn bounded(text: &str, most: usize) -> String {
    if text.len() <= most {
        return text.to_owned();
    }
    let mut end = most;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

impl Jobs {
    /// No jobs yet.
    pub fn new(limits: JobLimits, space: LogSpace) -> Self {
        Self {
            limits,
            space: Arc::new(space),
            inner: Mutex::new(Inner::default()),
            ended: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The room all logs share.
    pub fn space(&self) -> &Arc<LogSpace> {
        &self.space
    }

    /// How long finished jobs are kept.
    pub fn retention(&self) -> Duration {
        self.limits.retention
    }

    /// Takes room for a job of `identity`, or says which limit is reached.
    pub fn reserve(&self, identity: &Identity) -> Result<Reservation<'_>, JobError> {
        let mut inner = self.lock();
        let running = |owner: Option<&str>| {
            inner
                .jobs
                .values()
                .filter(|j| j.running() && owner.is_none_or(|o| j.owner == o))
                .count() as u32
        };
        let mine = running(Some(&identity.name))
            + inner.reserved_by.get(&identity.name).copied().unwrap_or(0);
        if mine >= self.limits.per_identity {
            return Err(JobError::TooManyForIdentity {
                identity: identity.name.clone(),
                limit: self.limits.per_identity,
            });
        }
        // Room is kept for admins, so that one can always start a job.
        let room = if identity.role == Role::Admin {
            self.limits.running
        } else {
            self.limits
                .running
                .saturating_sub(self.limits.admin_reserved)
        };
        if running(None) + inner.reserved >= room {
            return Err(JobError::TooMany(self.limits.running));
        }
        inner.reserved += 1;
        *inner.reserved_by.entry(identity.name.clone()).or_default() += 1;
        Ok(Reservation {
            jobs: self,
            owner: identity.name.clone(),
            used: false,
        })
    }

    /// Turns a reservation into a job for a spawned command. `log_cap` is
    /// what the request asked its log to keep, if anything.
    pub fn insert(
        &self,
        mut reservation: Reservation<'_>,
        (command, argv, pid): (String, Vec<String>, i32),
        log_cap: Option<u64>,
    ) -> Arc<Job> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut limits = self.limits.log;
        // A request may ask for a smaller log, never for one so small that
        // every byte would become a file of its own.
        if let Some(cap) = log_cap {
            limits.retained = limits.retained.min(cap.max(2 * SMALLEST_TAIL as u64));
        }
        // A log keeps at least two tails' worth, so that dropping its
        // oldest segment never leaves it empty.
        limits.memory = limits
            .memory
            .min(usize::try_from(limits.retained / 2).unwrap_or(usize::MAX))
            .max(SMALLEST_TAIL);
        let (command, argv, pid) = (
            bounded(&command, LONGEST_COMMAND),
            argv.into_iter()
                .scan(0, |used, arg| {
                    *used += arg.len();
                    (*used <= LONGEST_COMMAND).then_some(arg)
                })
                .collect(),
            pid,
        );
        let job = Arc::new(Job {
            log: JobLog::new(&id, limits, self.space.clone()),
            id: id.clone(),
            owner: reservation.owner.clone(),
            command,
            argv,
            pid,
            started_at: SystemTime::now(),
            cancel: CancellationToken::new(),
            ended: watch::Sender::new(None),
            finished_at: OnceLock::new(),
            attached: AtomicU32::new(0),
            retention: self.limits.retention,
        });
        let mut inner = self.lock();
        inner.reserved -= 1;
        if let Some(n) = inner.reserved_by.get_mut(&reservation.owner) {
            *n -= 1;
        }
        reservation.used = true;
        inner.jobs.insert(id, job.clone());
        job
    }

    /// After a job ended: forgets the oldest finished jobs beyond the count
    /// kept, first those of identities beyond their own count, and wakes
    /// the reaper for the new job's expiry.
    pub fn ended(&self) {
        let forgotten = {
            let mut inner = self.lock();
            let mut finished: Vec<(Instant, String, String)> = inner
                .jobs
                .values()
                .filter_map(|j| Some((*j.finished_at.get()?, j.owner.clone(), j.id.clone())))
                .collect();
            finished.sort();
            let mut per_owner: BTreeMap<String, usize> = BTreeMap::new();
            for (_, owner, _) in &finished {
                *per_owner.entry(owner.clone()).or_default() += 1;
            }
            let mut forget = Vec::new();
            let mut kept = finished.len();
            for (_, owner, id) in &finished {
                let mine = per_owner.get_mut(owner).expect("counted");
                if *mine > self.limits.finished_per_identity || kept > self.limits.finished {
                    *mine -= 1;
                    kept -= 1;
                    forget.push(id.clone());
                }
            }
            forget
                .iter()
                .filter_map(|id| inner.jobs.remove(id))
                .collect::<Vec<_>>()
        };
        // Dropped outside the lock: dropping a log removes files.
        drop(forgotten);
        self.ended.notify_one();
    }

    /// Forgets finished jobs whose time is up; returns when the next one
    /// is due, if any.
    fn expire(&self) -> Option<Instant> {
        let now = Instant::now();
        let (due, next) = {
            let mut inner = self.lock();
            let retention = self.limits.retention;
            let expiry = |j: &Job| j.finished_at.get().map(|at| *at + retention);
            let due: Vec<String> = inner
                .jobs
                .values()
                .filter(|j| expiry(j).is_some_and(|at| at <= now))
                .map(|j| j.id.clone())
                .collect();
            let due: Vec<Arc<Job>> = due.iter().filter_map(|id| inner.jobs.remove(id)).collect();
            let next = inner.jobs.values().filter_map(|j| expiry(j)).min();
            (due, next)
        };
        drop(due);
        next
    }

    /// Forgets finished jobs when their retention passes, until `stop`:
    /// one task for all jobs, asleep until the next expiry (or until a job
    /// ends), never polling.
    pub async fn reap(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let next = self.expire();
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = sleep => {}
                () = self.ended.notified() => {}
            }
        }
    }

    /// The job `id`, if `identity` may see it.
    pub fn get(&self, id: &str, identity: &Identity) -> Result<Arc<Job>, JobError> {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(JobError::InvalidId(id.chars().take(80).collect()));
        }
        let job = self
            .lock()
            .jobs
            .get(id)
            .cloned()
            .ok_or_else(|| JobError::NotFound(id.to_owned()))?;
        if job.owner != identity.name && identity.role != Role::Admin {
            return Err(JobError::NotYours(id.to_owned()));
        }
        Ok(job)
    }

    /// The jobs `identity` may see, oldest first.
    pub fn list(&self, identity: &Identity) -> Vec<JobInfo> {
        let jobs: Vec<Arc<Job>> = self
            .lock()
            .jobs
            .values()
            .filter(|j| identity.role == Role::Admin || j.owner == identity.name)
            .cloned()
            .collect();
        let mut infos: Vec<JobInfo> = jobs.iter().map(|j| j.info()).collect();
        infos.sort_by_key(|i| i.started_at);
        infos
    }

    /// Cancels every running job of `owner` (its credential was revoked:
    /// what it started ends with its access); returns how many.
    pub fn cancel_owned_by(&self, owner: &str) -> usize {
        let inner = self.lock();
        let mine: Vec<&Arc<Job>> = inner
            .jobs
            .values()
            .filter(|j| j.owner == owner && j.running())
            .collect();
        for job in &mine {
            job.cancel.cancel();
        }
        mine.len()
    }

    /// Running jobs, for the count Shutdown and Restart report.
    pub fn running(&self) -> u32 {
        self.lock().jobs.values().filter(|j| j.running()).count() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> JobLimits {
        JobLimits {
            running: 3,
            admin_reserved: 0,
            per_identity: 2,
            finished: 1,
            finished_per_identity: 1,
            retention: Duration::from_secs(60),
            log: LogLimits {
                memory: 1024,
                retained: 1 << 20,
            },
        }
    }

    fn jobs() -> Jobs {
        Jobs::new(limits(), LogSpace::new(None, 1 << 20, 1 << 20))
    }

    fn exit() -> Exit {
        Exit {
            exit_code: 0,
            signal: None,
            core_dumped: false,
            timed_out: false,
            truncated: false,
            duration: Duration::ZERO,
            stdout_bytes: 0,
            stderr_bytes: 0,
            reason: crate::command::EndReason::Exited,
        }
    }

    fn start(jobs: &Jobs, who: &Identity) -> Result<Arc<Job>, JobError> {
        let reservation = jobs.reserve(who)?;
        Ok(jobs.insert(reservation, ("true".into(), vec![], 1), None))
    }

    #[tokio::test]
    async fn jobs_are_limited_per_identity_and_in_all_and_seen_by_their_owner_or_an_admin() {
        let jobs = jobs();
        let alice = Identity::for_tests("alice", Role::Operator);
        let bob = Identity::for_tests("bob", Role::Operator);
        let root = Identity::for_tests("root", Role::Admin);
        let first = start(&jobs, &alice).unwrap();
        let _second = start(&jobs, &alice).unwrap();
        assert!(matches!(
            start(&jobs, &alice),
            Err(JobError::TooManyForIdentity { limit: 2, .. })
        ));
        let _third = start(&jobs, &bob).unwrap();
        assert_eq!(start(&jobs, &root).unwrap_err(), JobError::TooMany(3));
        assert_eq!(
            jobs.get(&first.id, &bob).unwrap_err(),
            JobError::NotYours(first.id.clone())
        );
        assert!(jobs.get(&first.id, &root).is_ok());
        assert_eq!(jobs.list(&alice).len(), 2);
        assert_eq!(jobs.list(&bob).len(), 1);
        assert_eq!(jobs.list(&root).len(), 3);
        assert!(matches!(
            jobs.get("../x", &root),
            Err(JobError::InvalidId(_))
        ));
        // A finished job frees its room; beyond the count kept, the oldest
        // finished job is forgotten.
        first.finish(exit()).await;
        jobs.ended();
        let fourth = start(&jobs, &alice).unwrap();
        fourth.finish(exit()).await;
        jobs.ended();
        assert!(matches!(
            jobs.get(&first.id, &alice),
            Err(JobError::NotFound(_))
        ));
        assert!(jobs.get(&fourth.id, &alice).is_ok());
    }

    #[test]
    fn a_reservation_not_used_gives_its_room_back() {
        let jobs = jobs();
        let alice = Identity::for_tests("alice", Role::Operator);
        drop(jobs.reserve(&alice).unwrap());
        drop(jobs.reserve(&alice).unwrap());
        let a = jobs.reserve(&alice).unwrap();
        let b = jobs.reserve(&alice).unwrap();
        assert!(jobs.reserve(&alice).is_err());
        drop((a, b));
    }
}
