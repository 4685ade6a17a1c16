//! Starting a planned command and ending it: the process group it leads,
//! its pipes, the watcher of its leader's exit (without reaping it), and
//! the teardown of whatever is left of its group.

use std::{
    io,
    os::fd::AsFd,
    process::Stdio,
    time::{Duration, Instant, SystemTime},
};

use rustix::process::{Pid, Signal};
use tokio::net::unix::pipe;

use super::{CommandSpec, ExecError};

/// The size asked for each command's stdout and stderr pipes (Linux).
pub const OUTPUT_PIPE: usize = 1 << 20;

/// A spawned command, not yet driven.
#[derive(Debug)]
pub struct Spawned {
    pub(super) pid: Pid,
    pub(super) exit: ExitWatcher,
    pub(super) stdin: Option<pipe::Sender>,
    pub(super) stdout: pipe::Receiver,
    pub(super) stderr: pipe::Receiver,
    pub(super) spec: CommandSpec,
    pub(super) started: Instant,
    pub(super) started_at: SystemTime,
    /// True once [`Spawned::announce`] has queued the `started` event.
    pub(super) announced: bool,
}

impl Spawned {
    /// The command's pid, also its process-group id.
    pub fn pid(&self) -> i32 {
        self.pid.as_raw_nonzero().get()
    }

    /// The plan it runs.
    pub fn spec(&self) -> &CommandSpec {
        &self.spec
    }

    /// The `started` event of this command.
    pub(super) fn started_event(&self) -> super::Event {
        super::Event::Started {
            pid: self.pid(),
            argv: self.spec.display_argv(),
            started_at: self.started_at,
            job_id: None,
        }
    }

    /// Queues the `started` event on a channel that has room (a new one),
    /// so that [`drive`](super::drive) does not send it.
    ///
    /// A call's response headers go out as soon as its handler returns. When
    /// the event is already queued then, the headers and the event leave in
    /// one write, and the client wakes once for both instead of twice.
    pub fn announce(&mut self, events: &tokio::sync::mpsc::Sender<super::Event>) {
        // A full or closed channel only means that drive sends it instead.
        self.announced = events.try_send(self.started_event()).is_ok();
    }
}

/// Spawns the command as the leader of a new process group, with piped
/// output (and input when there are stdin bytes).
pub fn spawn(spec: CommandSpec) -> Result<Spawned, ExecError> {
    let mut command = std::process::Command::new(&spec.program);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    // A script goes to its interpreter as a sealed memory file: nothing is
    // written to disk, no other process sees it (close-on-exec everywhere
    // but in this child), and it is gone when the command ends.
    let script = match &spec.script {
        Some(bytes) => Some(script_file(bytes).map_err(ExecError::Spawn)?),
        None => None,
    };
    let args: Vec<std::ffi::OsString> = match &script {
        Some(fd) => {
            let path = format!("/dev/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd));
            spec.args
                .iter()
                .map(|a| {
                    if a == super::plan::SCRIPT_ARG {
                        path.clone().into()
                    } else {
                        a.clone()
                    }
                })
                .collect()
        }
        None => spec.args.clone(),
    };
    if let Some(fd) = &script {
        let raw = std::os::fd::AsRawFd::as_raw_fd(fd);
        // SAFETY: the closure runs in the child between fork and exec, and
        // only clears a descriptor's close-on-exec flag with one fcntl
        // system call, which is async-signal-safe; it touches no memory of
        // the parent and takes no lock.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                let fd = std::os::fd::BorrowedFd::borrow_raw(raw);
                rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
                Ok(())
            });
        }
    }
    command
        .args(&args)
        .env_remove(crate::server::net::LISTEN_FD_ENV)
        .envs(spec.environment.iter().map(|(k, v)| (k, v)))
        .stdin(if spec.stdin.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = &spec.working_directory {
        command.current_dir(dir);
    }
    let program = spec.program.to_string_lossy().into_owned();
    let mut child = command.spawn().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ExecError::ProgramNotFound(program.clone()),
        io::ErrorKind::PermissionDenied => ExecError::NotExecutable {
            program: program.clone(),
            source: e,
        },
        _ => ExecError::Spawn(e),
    })?;
    let started = Instant::now();
    let started_at = SystemTime::now();
    let raw_pid = i32::try_from(child.id()).expect("pids fit in i32");
    let pid = Pid::from_raw(raw_pid).expect("a spawned child has a positive pid");

    // From here on the child exists: any failure must still kill and reap it.
    let mut setup = || -> io::Result<(ExitWatcher, Option<pipe::Sender>, pipe::Receiver, pipe::Receiver)> {
        let exit = ExitWatcher::new(pid)?;
        let stdin = child
            .stdin
            .take()
            .map(|s| pipe::Sender::from_owned_fd(s.into()))
            .transpose()?;
        let stdout = child.stdout.take().map(OwnedPipe::from).expect("stdout is piped");
        let stderr = child.stderr.take().map(OwnedPipe::from).expect("stderr is piped");
        Ok((exit, stdin, stdout.into_receiver()?, stderr.into_receiver()?))
    };
    match setup() {
        Ok((exit, stdin, stdout, stderr)) => Ok(Spawned {
            pid,
            exit,
            stdin,
            stdout,
            stderr,
            spec,
            started,
            started_at,
            announced: false,
        }),
        Err(e) => {
            let _ = rustix::process::kill_process_group(pid, Signal::KILL);
            let _ = child.wait();
            Err(ExecError::Spawn(e))
        }
    }
}

/// A sealed, close-on-exec memory file holding `bytes`.
fn script_file(bytes: &[u8]) -> io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let fd = rustix::fs::memfd_create(
        "vigie-script",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    let mut file = std::fs::File::from(fd);
    io::Write::write_all(&mut file, bytes)?;
    let fd = std::os::fd::OwnedFd::from(file);
    rustix::fs::fcntl_add_seals(
        &fd,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
    )?;
    Ok(fd)
}

/// A pipe's read end on its way to the async runtime.
struct OwnedPipe(std::os::fd::OwnedFd);

impl<T: Into<std::os::fd::OwnedFd>> From<T> for OwnedPipe {
    fn from(fd: T) -> Self {
        Self(fd.into())
    }
}

impl OwnedPipe {
    fn into_receiver(self) -> io::Result<pipe::Receiver> {
        // A larger pipe means fewer wake-ups per megabyte for bulk output.
        // The kernel may refuse (per-user pipe limits); the default then stays.
        #[cfg(target_os = "linux")]
        let _ = rustix::pipe::fcntl_setpipe_size(&self.0, OUTPUT_PIPE);
        pipe::Receiver::from_owned_fd(self.0)
    }
}

/// Kills and reaps a command whose driver was dropped before the end.
pub(super) struct DropGuard {
    pub(super) pid: Pid,
    pub(super) armed: bool,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if self.armed {
            signal_group(self.pid, Signal::KILL);
            // SIGKILL cannot be caught, so this wait is short.
            let _ = rustix::process::waitid(
                rustix::process::WaitId::Pid(self.pid),
                rustix::process::WaitIdOptions::EXITED,
            );
        }
    }
}

/// Sends a signal to the whole group; a group that is already gone is fine.
pub(super) fn signal_group(pid: Pid, signal: Signal) {
    match rustix::process::kill_process_group(pid, signal) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => {}
        Err(e) => {
            tracing::warn!(pgid = pid.as_raw_nonzero().get(), error = %e, "cannot signal process group")
        }
    }
}

/// Ends whatever is left in the group of a reaped leader: TERM, then KILL
/// after the grace if anything survives.
///
/// The leader is reaped by now, but a group that still has members keeps
/// its id reserved, so a successful signal always reaches our own group.
/// The bounded wait below runs only when something is left.
pub(super) async fn clean_group(pid: Pid, grace: Duration) {
    match rustix::process::kill_process_group(pid, Signal::TERM) {
        Err(rustix::io::Errno::SRCH) => return,
        Err(e) => {
            tracing::warn!(pgid = pid.as_raw_nonzero().get(), error = %e, "cannot signal process group");
            return;
        }
        Ok(()) => {}
    }
    let give_up = Instant::now() + grace;
    while Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if rustix::process::test_kill_process_group(pid) == Err(rustix::io::Errno::SRCH) {
            return;
        }
    }
    signal_group(pid, Signal::KILL);
}

/// Observes the leader's exit without reaping it, and reaps it later.
///
/// On Linux a pidfd makes the exit an ordinary readiness event. Kernels
/// before 5.3 (and sandboxes such as valgrind) refuse `pidfd_open`; there,
/// and on other systems, a blocking thread waits instead.
#[derive(Debug)]
pub(super) enum ExitWatcher {
    #[cfg(target_os = "linux")]
    PidFd(tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>),
    Blocking(Pid),
}

impl ExitWatcher {
    fn new(pid: Pid) -> io::Result<Self> {
        #[cfg(target_os = "linux")]
        match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::NONBLOCK) {
            Ok(fd) => {
                // SAFETY: an OwnedFd is a valid descriptor that stays open,
                // and the same, for as long as the AsyncFd owns it.
                let pidfd = unsafe {
                    tokio::io::unix::AsyncFd::register_with_interest(
                        fd,
                        tokio::io::Interest::READABLE,
                    )
                }
                .map_err(io::Error::from)?;
                return Ok(Self::PidFd(pidfd));
            }
            Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Self::Blocking(pid))
    }

    /// Waits until the leader has exited; it stays a zombie.
    pub(super) async fn wait(&self) -> io::Result<rustix::process::WaitIdStatus> {
        use rustix::process::{WaitId, WaitIdOptions, waitid};
        match self {
            #[cfg(target_os = "linux")]
            Self::PidFd(pidfd) => loop {
                let mut ready = pidfd.readable().await?;
                let options = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT | WaitIdOptions::NOHANG;
                match waitid(WaitId::PidFd(pidfd.get_ref().as_fd()), options)? {
                    Some(status) => return Ok(status),
                    None => ready.clear_ready(),
                }
            },
            Self::Blocking(pid) => {
                let pid = *pid;
                tokio::task::spawn_blocking(move || {
                    loop {
                        if let Some(status) = waitid(
                            WaitId::Pid(pid),
                            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
                        )? {
                            return Ok(status);
                        }
                    }
                })
                .await
                .map_err(io::Error::other)?
            }
        }
    }

    /// Reaps the leader, which must have exited.
    pub(super) fn reap(&self) -> io::Result<Option<rustix::process::WaitIdStatus>> {
        use rustix::process::{WaitId, WaitIdOptions, waitid};
        let id = match self {
            #[cfg(target_os = "linux")]
            Self::PidFd(pidfd) => WaitId::PidFd(pidfd.get_ref().as_fd()),
            Self::Blocking(pid) => WaitId::Pid(*pid),
        };
        Ok(waitid(id, WaitIdOptions::EXITED)?)
    }
}
