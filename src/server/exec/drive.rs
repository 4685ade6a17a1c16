//! Driving a spawned command to its end: the loop that forwards its output
//! through a bounded channel, feeds its input, watches its time limit,
//! its session, the agent and its client, and ends it group and all; the
//! readers of its pipes, within the agent-wide output budget and the
//! command's own cap.

use std::io;

use bytes::{BufMut, Bytes, BytesMut};
use rustix::process::Signal;
use tokio::{io::AsyncWriteExt, net::unix::pipe, sync::mpsc, time::sleep_until};

use super::{
    ExecTuning, Stops,
    spawn::{DropGuard, Spawned, clean_group, signal_group},
};
use crate::command::{EndReason, Event, Exit, OutputStream};

/// Runs a spawned command to its end, sending its events on `events`.
///
/// Returns how it ended, also when the client is gone and nothing could be
/// sent. When this returns, the command's process group is empty and its
/// leader reaped.
pub async fn drive(
    spawned: Spawned,
    events: mpsc::Sender<Event>,
    stops: Stops,
    tuning: ExecTuning,
) -> Exit {
    let started_event = (!spawned.announced).then(|| spawned.started_event());
    let Spawned {
        pid,
        exit,
        stdin,
        stdout,
        stderr,
        spec,
        started,
        ..
    } = spawned;
    // If this future is dropped before the end (the runtime shuts down, the
    // task is aborted), the guard still kills and reaps the command.
    let mut guard = DropGuard { pid, armed: true };
    let mut client_gone = match started_event {
        Some(event) => events.send(event).await.is_err(),
        None => false,
    };

    let mut stdout = Some(Reader::new(stdout, OutputStream::Stdout));
    let mut stderr = Some(Reader::new(stderr, OutputStream::Stderr));
    let mut stdin = stdin.map(|pipe| (pipe, spec.stdin.clone()));
    let mut budget = Budget::new(spec.output_limit);
    let deadline = spec
        .timeout
        .map(|t| tokio::time::Instant::from_std(started + t));
    let mut ending: Option<EndReason> = None;
    let mut leader_exited = false;
    let mut status = None;
    let mut kill_at: Option<tokio::time::Instant> = None;
    let mut abandon_at: Option<tokio::time::Instant> = None;
    let mut permit: Option<mpsc::Permit<'_, Event>> = None;

    // Begins ending the command: TERM to the group now, KILL after the grace.
    let terminate = |reason: EndReason,
                     ending: &mut Option<EndReason>,
                     kill_at: &mut Option<tokio::time::Instant>| {
        if ending.is_none() {
            *ending = Some(reason);
            signal_group(pid, Signal::TERM);
            *kill_at = Some(tokio::time::Instant::now() + tuning.kill_grace);
        }
    };

    // Made once: without a pidfd, waiting takes a blocking thread, and a
    // new one per turn of the loop would soon take them all.
    let exit_wait = exit.wait();
    tokio::pin!(exit_wait);
    while !(leader_exited && stdout.is_none() && stderr.is_none()) {
        let discarding = budget.exhausted() || client_gone;
        let may_read = permit.is_some() || discarding;
        let reading = stdout.is_some() || stderr.is_some();
        tokio::select! {
            biased;
            () = stops.session.cancelled(), if ending.is_none() => {
                terminate(EndReason::SessionEnded, &mut ending, &mut kill_at);
            }
            () = stops.agent.cancelled(), if ending.is_none() => {
                terminate(EndReason::AgentStopping, &mut ending, &mut kill_at);
            }
            () = stops.cancel.cancelled(), if ending.is_none() => {
                terminate(EndReason::Cancelled, &mut ending, &mut kill_at);
            }
            () = events.closed(), if !client_gone => {
                client_gone = true;
                permit = None;
                terminate(EndReason::ClientGone, &mut ending, &mut kill_at);
            }
            () = sleep_until_some(deadline), if ending.is_none() => {
                terminate(EndReason::TimedOut, &mut ending, &mut kill_at);
            }
            () = sleep_until_some(kill_at) => {
                signal_group(pid, Signal::KILL);
                kill_at = None;
                // A process that left the group (setsid) may still hold the
                // pipes; stop waiting for it after a while.
                abandon_at = Some(tokio::time::Instant::now() + tuning.kill_grace);
            }
            () = sleep_until_some(abandon_at) => {
                stdout = None;
                stderr = None;
                abandon_at = None;
            }
            result = &mut exit_wait, if !leader_exited => {
                leader_exited = true;
                match result {
                    Ok(s) => status = Some(s),
                    Err(e) => tracing::warn!(pid = pid.as_raw_nonzero().get(), error = %e, "cannot read exit status"),
                }
            }
            done = write_stdin(&mut stdin) => {
                // Whether all bytes went in or the command closed its input
                // early (EPIPE), the pipe is closed and the command sees EOF.
                let _ = done;
                stdin = None;
            }
            reserved = events.reserve(), if permit.is_none() && !discarding && reading => {
                match reserved {
                    Ok(p) => permit = Some(p),
                    Err(_) => {
                        client_gone = true;
                        terminate(EndReason::ClientGone, &mut ending, &mut kill_at);
                    }
                }
            }
            chunk = read_some(&mut stdout, &tuning), if may_read => {
                forward(chunk, &mut stdout, &mut budget, &mut permit);
            }
            chunk = read_some(&mut stderr, &tuning), if may_read => {
                forward(chunk, &mut stderr, &mut budget, &mut permit);
            }
        }
    }
    drop(permit);

    // The leader is a zombie and the pipes are closed: reap it, then make
    // sure nothing it started is left in its group.
    if status.is_none() {
        // The exit status could not be read, so the leader may still run:
        // make sure it is dead before the blocking reap.
        signal_group(pid, Signal::KILL);
    }
    let status = exit.reap().ok().flatten().or(status);
    guard.armed = false;
    clean_group(pid, tuning.kill_grace).await;

    let (exit_code, signal, core_dumped) = match status {
        Some(s) => match (s.exit_status(), s.terminating_signal()) {
            (Some(code), _) => (code, None, false),
            (None, Some(sig)) => (128 + sig, Some(sig), s.dumped()),
            (None, None) => (-1, None, false),
        },
        None => (-1, None, false),
    };
    let exit = Exit {
        exit_code,
        signal,
        core_dumped,
        timed_out: ending == Some(EndReason::TimedOut),
        truncated: budget.truncated,
        duration: started.elapsed(),
        stdout_bytes: budget.counted(OutputStream::Stdout),
        stderr_bytes: budget.counted(OutputStream::Stderr),
        reason: ending.unwrap_or(EndReason::Exited),
    };
    if !client_gone {
        let _ = events.send(Event::Exited(exit.clone())).await;
    }
    exit
}

async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn write_stdin(stdin: &mut Option<(pipe::Sender, Bytes)>) -> io::Result<()> {
    let Some((pipe, data)) = stdin else {
        return std::future::pending().await;
    };
    while !data.is_empty() {
        // `write` is cancel-safe: bytes count as written only once it returns.
        let n = pipe.write(data).await?;
        let _ = data.split_to(n);
    }
    Ok(())
}

/// One output pipe and the buffer it is read into.
struct Reader {
    pipe: pipe::Receiver,
    stream: OutputStream,
    buffer: BytesMut,
    /// How much the next read asks for: it grows while reads fill it, so bulk
    /// output travels in large chunks, and shrinks back for chatty commands,
    /// so many idle commands hold little memory.
    want: usize,
}

pub(super) const MIN_CHUNK: usize = 16 * 1024;

impl Reader {
    fn new(pipe: pipe::Receiver, stream: OutputStream) -> Self {
        Self {
            pipe,
            stream,
            buffer: BytesMut::new(),
            want: MIN_CHUNK,
        }
    }
}

/// Reads what the pipe has, up to the current chunk size. `Ok(None)` is EOF.
async fn read_some(
    reader: &mut Option<Reader>,
    tuning: &ExecTuning,
) -> io::Result<Option<(OutputStream, Bytes)>> {
    let Some(reader) = reader else {
        return std::future::pending().await;
    };
    let (n, held) = loop {
        // Wait until the pipe has something, without holding any budget.
        reader.pipe.readable().await?;
        // A large read needs room in the shared budget; without it, a small
        // one. The budget is taken for the whole buffer the read goes into,
        // since a chunk sent as it is pins all of that buffer.
        let mut held = None;
        let mut size = MIN_CHUNK;
        if reader.want > MIN_CHUNK {
            if reader.buffer.capacity() < reader.want || reader.buffer.capacity() > 2 * reader.want
            {
                reader.buffer = BytesMut::with_capacity(reader.want);
            }
            if let Some(permit) = tuning.budget.try_take(reader.buffer.capacity()) {
                held = Some(permit);
                size = reader.want;
            }
        }
        // A small read never keeps a large buffer alive.
        if held.is_none()
            && (reader.buffer.capacity() < size || reader.buffer.capacity() > 2 * size)
        {
            reader.buffer = BytesMut::with_capacity(size);
        }
        match reader
            .pipe
            .try_read_buf(&mut (&mut reader.buffer).limit(size))
        {
            Ok(n) => break (n, held),
            // The readiness was stale: wait again (the budget goes back).
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    };
    if n == 0 {
        return Ok(None);
    }
    if n >= reader.want {
        reader.want = (reader.want * 2).min(tuning.max_chunk);
    } else if n < reader.want / 4 {
        reader.want = (reader.want / 2).max(MIN_CHUNK);
    }
    let (data, counted) = if n <= reader.buffer.capacity() / 2 {
        // A read that filled less than half the buffer is copied out, and
        // the buffer kept for the next read.
        let data = Bytes::copy_from_slice(&reader.buffer);
        reader.buffer.clear();
        (data, n)
    } else {
        // A fuller one is sent as it is; the allocation goes with it.
        let capacity = reader.buffer.capacity();
        let data = std::mem::take(&mut reader.buffer).freeze();
        (data, capacity)
    };
    let data = match held {
        // The budget comes back when the last copy of the chunk is dropped,
        // that is once it is encoded for the client. A chunk that came back
        // small fits in the allowance every command has, and holds nothing.
        // The permit covers the whole buffer, so `counted` always fits in it.
        Some(mut permit) if counted > MIN_CHUNK => {
            let used = permit.split(counted).unwrap_or(permit);
            Bytes::from_owner(Budgeted { data, _used: used })
        }
        _ => data,
    };
    Ok(Some((reader.stream, data)))
}

/// A chunk of output and the part of the shared budget it holds.
struct Budgeted {
    data: Bytes,
    _used: tokio::sync::OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Budgeted {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

fn forward(
    chunk: io::Result<Option<(OutputStream, Bytes)>>,
    reader: &mut Option<Reader>,
    budget: &mut Budget,
    permit: &mut Option<mpsc::Permit<'_, Event>>,
) {
    match chunk {
        Ok(Some((stream, data))) => {
            if let Some(data) = budget.take(stream, data)
                && let Some(permit) = permit.take()
            {
                permit.send(Event::Output { stream, data });
            }
        }
        Ok(None) => *reader = None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read command output");
            *reader = None;
        }
    }
}

/// Counts output and enforces the cap.
struct Budget {
    limit: u64,
    sent: u64,
    stdout: u64,
    stderr: u64,
    truncated: bool,
}

impl Budget {
    fn new(limit: u64) -> Self {
        Self {
            limit,
            sent: 0,
            stdout: 0,
            stderr: 0,
            truncated: false,
        }
    }

    fn exhausted(&self) -> bool {
        self.sent >= self.limit
    }

    fn counted(&self, stream: OutputStream) -> u64 {
        match stream {
            OutputStream::Stdout => self.stdout,
            OutputStream::Stderr => self.stderr,
        }
    }

    /// Counts a chunk and returns the part of it that may still be sent.
    fn take(&mut self, stream: OutputStream, mut data: Bytes) -> Option<Bytes> {
        let len = data.len() as u64;
        match stream {
            OutputStream::Stdout => self.stdout += len,
            OutputStream::Stderr => self.stderr += len,
        }
        let room = self.limit.saturating_sub(self.sent);
        if len > room {
            self.truncated = true;
            data.truncate(usize::try_from(room).unwrap_or(usize::MAX));
        }
        self.sent += data.len() as u64;
        (!data.is_empty()).then_some(data)
    }
}

#[cfg(test)]
mod tests {
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::server::exec::{
        OutputBudget, plan,
        plan::tests::{host, request},
        spawn,
    };

    #[test]
    fn the_budget_truncates_at_the_limit() {
        let mut budget = Budget::new(5);
        assert_eq!(
            budget.take(OutputStream::Stdout, Bytes::from_static(b"abc")),
            Some(Bytes::from_static(b"abc"))
        );
        assert_eq!(
            budget.take(OutputStream::Stderr, Bytes::from_static(b"defg")),
            Some(Bytes::from_static(b"de"))
        );
        assert!(budget.truncated && budget.exhausted());
        assert_eq!(
            budget.take(OutputStream::Stdout, Bytes::from_static(b"x")),
            None
        );
        assert_eq!(budget.counted(OutputStream::Stdout), 4);
        assert_eq!(budget.counted(OutputStream::Stderr), 4);
    }

    /// Runs `command` to the end with the given shared budget; returns the
    /// output chunks, still held, and the exit.
    async fn run_with_budget(command: &str, budget: &OutputBudget) -> (Vec<Bytes>, Exit) {
        let mut host = host();
        host.output_cap = 1 << 30;
        let mut r = request(command);
        r.output_limit = Some(1 << 30);
        let spawned =
            spawn(plan(&r, &host, crate::server::policy::ExecScope::Unrestricted).unwrap())
                .unwrap();
        let tuning = ExecTuning {
            budget: budget.clone(),
            ..ExecTuning::default()
        };
        let (tx, mut rx) = mpsc::channel(tuning.channel_capacity);
        let stops = Stops {
            session: CancellationToken::new(),
            agent: CancellationToken::new(),
            cancel: CancellationToken::new(),
        };
        let driver = tokio::spawn(drive(spawned, tx, stops, tuning));
        let mut chunks = Vec::new();
        while let Some(event) = rx.recv().await {
            if let Event::Output { data, .. } = event {
                chunks.push(data);
            }
        }
        (chunks, driver.await.unwrap())
    }

    #[tokio::test]
    async fn bulk_output_uses_the_shared_budget_and_gives_it_back() {
        let budget = OutputBudget::new(1 << 20);
        let (chunks, exit) = run_with_budget("head -c 3000000 /dev/zero", &budget).await;
        assert!(exit.success(), "{exit:?}");
        assert_eq!(chunks.iter().map(Bytes::len).sum::<usize>(), 3_000_000);
        assert!(
            chunks.iter().any(|c| c.len() > MIN_CHUNK),
            "bulk output travels in large chunks"
        );
        // A chunk above the small size holds budget for the allocation it
        // pins: its buffer, which a read filled more than half of (else the
        // bytes were copied out and only their length is held). So what is
        // held lies between the chunks' length and twice that.
        let lengths: usize = chunks
            .iter()
            .filter(|c| c.len() > MIN_CHUNK)
            .map(Bytes::len)
            .sum();
        let held = (1 << 20) - budget.available();
        assert!(held <= 1 << 20, "never more than the budget: {held}");
        assert!(
            lengths <= held && held < 2 * lengths.max(1),
            "held chunks hold their buffers: {lengths} bytes in chunks, {held} held"
        );
        drop(chunks);
        assert_eq!(budget.available(), 1 << 20, "all of it back once sent");
    }

    #[tokio::test]
    async fn a_spent_budget_slows_output_to_small_chunks_but_loses_nothing() {
        let budget = OutputBudget::new(0);
        let (chunks, exit) = run_with_budget("head -c 1000000 /dev/zero; echo end", &budget).await;
        assert!(exit.success(), "{exit:?}");
        assert!(chunks.iter().all(|c| c.len() <= MIN_CHUNK));
        let all: Vec<u8> = chunks.concat();
        assert_eq!(all.len(), 1_000_004);
        assert!(all.ends_with(b"end\n"));
    }
}
