//! A job's output log: what a detached command wrote, kept in bounded space
//! so that clients can replay it from any offset and follow it live.
//!
//! The log is a sequence of records (which stream, then the bytes, as read
//! from the pipe) addressed by *offset*: the count of output bytes before
//! them, stdout and stderr together. It grows at its tail, a buffer in
//! memory; when the tail is full (its share of [`LogSpace`]'s memory, or the
//! job's own `memory` limit), it is sealed into a segment and written to a
//! spill file under the agent's state directory. To stay within its cap the
//! log drops its oldest segments, whole; what a reader asks for below the
//! first offset still kept is reported as a gap, never skipped in silence.
//!
//! One task writes (the job's pump); any number read. A reader never waits
//! for the writer's file writes and the writer never waits for readers: a
//! slow reader falls behind and at worst sees a gap.

use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    io::{self, Read, Seek, SeekFrom, Write},
    os::unix::fs::OpenOptionsExt,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::watch;

use super::space::LogSpace;
use crate::command::OutputStream;

/// Bytes of a record's header: the stream, then the length (u32, LE).
const HEADER: usize = 5;
/// A record's position is indexed every this many bytes of a segment, so
/// that a reader finds an offset without reading the segment from its
/// start, while the index stays small whatever the records' sizes.
const INDEX_EVERY: u64 = 64 * 1024;
/// A finished job's tail at most this large stays in memory; a larger one
/// goes to its spill file, so that finished jobs hold little memory.
const KEEP_IN_MEMORY: usize = 4 * 1024;
/// Every log may hold this much of its tail without taking from the shared
/// memory: when the shared memory is spent, output still goes to files in
/// segments of about this size, never one small file per record. It is
/// also the largest record.
pub const FLOOR: usize = 256 * 1024;
/// Most records one read returns, whatever their sizes, so that a reader
/// of output written a byte at a time holds a bounded list.
const MOST_RECORDS: usize = 1024;

/// A job log's own limits.
#[derive(Debug, Clone, Copy)]
pub struct LogLimits {
    /// Most bytes the tail holds before it is spilled.
    pub memory: usize,
    /// Most bytes (records and their headers) the log keeps in all.
    pub retained: u64,
}

/// What a read found.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// Records from the offset asked for: (stream, offset, bytes).
    Records(Vec<(OutputStream, u64, Bytes)>),
    /// The log no longer keeps bytes from the offset asked for: this many
    /// are gone, and the next read should ask from past them.
    Gap(u64),
    /// Nothing yet past this offset; the log goes on.
    Pending,
    /// Nothing past this offset, and the log is closed.
    End,
}

/// A sealed part of the log.
#[derive(Debug)]
struct Segment {
    /// Offset of its first byte.
    start: u64,
    /// Offset past its last byte.
    end: u64,
    /// Its size with headers, as counted against the caps.
    size: u64,
    /// (offset, position) of some record starts, ascending.
    index: Vec<(u64, u64)>,
    store: Store,
}

#[derive(Debug)]
enum Store {
    /// In memory, holding this many bytes of the shared memory space.
    Memory(Bytes, usize),
    /// In a spill file.
    File(PathBuf),
}

/// The growing end of the log.
#[derive(Debug, Default)]
struct Tail {
    start: u64,
    end: u64,
    buffer: BytesMut,
    index: Vec<(u64, u64)>,
    /// Bytes of the shared memory space this tail holds.
    held: usize,
}

impl Tail {
    fn at(offset: u64) -> Self {
        Self {
            start: offset,
            end: offset,
            ..Self::default()
        }
    }

    fn push(&mut self, stream: OutputStream, data: &[u8]) {
        let position = self.buffer.len() as u64;
        if self
            .index
            .last()
            .is_none_or(|&(_, at)| position >= at + INDEX_EVERY)
        {
            self.index.push((self.end, position));
        }
        self.buffer.put_u8(match stream {
            OutputStream::Stdout => 1,
            OutputStream::Stderr => 2,
        });
        self.buffer
            .put_u32_le(u32::try_from(data.len()).expect("records are small"));
        self.buffer.put_slice(data);
        self.end += data.len() as u64;
    }
}

#[derive(Debug)]
struct State {
    /// First offset kept.
    start: u64,
    segments: VecDeque<Segment>,
    tail: Tail,
    closed: bool,
    /// Numbers the spill files.
    files: u64,
    /// Bytes dropped because the spill space was full, for the warning.
    warned_full: bool,
}

/// One job's log.
#[derive(Debug)]
pub struct JobLog {
    name: String,
    limits: LogLimits,
    space: Arc<LogSpace>,
    state: Mutex<State>,
    /// The offset the log ends at, and whether it is closed; readers wait
    /// on it.
    end: watch::Sender<(u64, bool)>,
}

impl JobLog {
    /// An empty log whose spill files are named after `name` (the job id).
    pub fn new(name: &str, limits: LogLimits, space: Arc<LogSpace>) -> Self {
        Self {
            name: name.to_owned(),
            limits: LogLimits {
                // A record must fit in the tail.
                memory: limits.memory.max(HEADER + 1),
                retained: limits.retained,
            },
            space,
            state: Mutex::new(State {
                start: 0,
                segments: VecDeque::new(),
                tail: Tail::default(),
                closed: false,
                files: 0,
                warned_full: false,
            }),
            end: watch::Sender::new((0, false)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows the log's end: changes whenever bytes are added or it closes.
    pub fn watch(&self) -> watch::Receiver<(u64, bool)> {
        self.end.subscribe()
    }

    /// (first offset kept, offset past the last byte).
    pub fn bounds(&self) -> (u64, u64) {
        let state = self.lock();
        (state.start, state.tail.end)
    }

    /// Adds output; spills the tail to a file (blocking work, on the
    /// blocking pool) when it is full. Only the job's pump calls this, so
    /// a disk slower than the command slows the command, through its pipe.
    pub async fn append(&self, stream: OutputStream, data: &[u8]) {
        let most = self.limits.memory.min(FLOOR) - HEADER;
        for piece in data.chunks(most) {
            let needed = HEADER + piece.len();
            let sealed = {
                let mut state = self.lock();
                let mut sealed = None;
                if !state.tail.buffer.is_empty()
                    && state.tail.buffer.len() + needed > self.limits.memory
                {
                    sealed = Some(Self::seal(&mut state));
                }
                // Beyond the floor, the tail's bytes come from the shared
                // memory; without room there, the tail is sealed and the
                // record starts a new one, within the floor.
                let len = state.tail.buffer.len();
                let over = (len + needed).saturating_sub(FLOOR).min(needed);
                if over > 0 {
                    if self.space.take_memory(over) {
                        state.tail.held += over;
                    } else {
                        debug_assert!(sealed.is_none(), "a fresh tail is within the floor");
                        sealed = Some(Self::seal(&mut state));
                    }
                }
                state.tail.push(stream, piece);
                self.end.send_replace((state.tail.end, false));
                sealed
            };
            if let Some(pending) = sealed {
                self.spill(pending).await;
            }
        }
    }

    /// Closes the log: no more output. A small tail stays in memory, a
    /// larger one is spilled.
    pub async fn close(&self) {
        let sealed = {
            let mut state = self.lock();
            state.closed = true;
            if state.tail.buffer.is_empty() {
                None
            } else if state.tail.buffer.len() <= KEEP_IN_MEMORY {
                // Sealed in place, as a memory segment.
                Self::seal(&mut state);
                None
            } else {
                Some(Self::seal(&mut state))
            }
        };
        if let Some(segment) = sealed {
            self.spill(segment).await;
        }
        let end = self.lock().tail.end;
        self.end.send_replace((end, true));
    }

    /// Turns the tail into a memory segment, kept in place for readers
    /// until it is written out; the returned value is what to write.
    fn seal(state: &mut State) -> Sealed {
        let end = state.tail.end;
        let tail = std::mem::replace(&mut state.tail, Tail::at(end));
        let data = tail.buffer.freeze();
        let segment = Segment {
            start: tail.start,
            end: tail.end,
            size: data.len() as u64,
            index: tail.index,
            store: Store::Memory(data.clone(), tail.held),
        };
        state.segments.push_back(segment);
        Sealed {
            start: tail.start,
            data,
        }
    }

    /// Writes a sealed segment to its spill file and lets go of its memory;
    /// then drops the oldest segments beyond the log's cap. When the spill
    /// space is full, the segment is dropped instead (and the reader told,
    /// as a gap).
    async fn spill(&self, pending: Sealed) {
        let size = pending.data.len() as u64;
        // Room in this log first: its own oldest segments go (the one being
        // written is counted already).
        self.trim();
        let path = {
            let mut state = self.lock();
            state.files += 1;
            self.space.file_path(&self.name, state.files)
        };
        let written = match path {
            Some(path) if self.space.reserve(charged(size)) => {
                let data = pending.data.clone();
                let target = path.clone();
                match tokio::task::spawn_blocking(move || write_new(&target, &data)).await {
                    Ok(Ok(())) => Some(path),
                    Ok(Err(e)) => {
                        tracing::warn!(job = %self.name, error = %e, "cannot spill a job's output");
                        let _ = std::fs::remove_file(&path);
                        self.space.release(charged(size));
                        None
                    }
                    Err(e) => {
                        tracing::warn!(job = %self.name, error = %e, "spilling a job's output failed");
                        let _ = std::fs::remove_file(&path);
                        self.space.release(charged(size));
                        None
                    }
                }
            }
            Some(_) => {
                let mut state = self.lock();
                if !state.warned_full {
                    state.warned_full = true;
                    tracing::warn!(
                        job = %self.name,
                        "the jobs' spill space is full: this job's log keeps only its newest output"
                    );
                }
                None
            }
            // No spill directory: said once by the space.
            None => None,
        };
        let mut state = self.lock();
        let Some(position) = state.segments.iter().position(|s| s.start == pending.start) else {
            // Trimmed away while it was written.
            if let Some(path) = written {
                let _ = std::fs::remove_file(path);
                self.space.release(charged(size));
            }
            return;
        };
        match written {
            Some(path) => {
                let segment = &mut state.segments[position];
                let old = std::mem::replace(&mut segment.store, Store::File(path));
                if let Store::Memory(_, held) = old {
                    self.space.give_back(held);
                }
            }
            None => {
                // Cannot be kept: dropped, with everything older (the log
                // keeps a suffix of the output, never a hole in the middle).
                let dropped: Vec<Segment> = state.segments.drain(..=position).collect();
                state.start = state.segments.front().map_or(state.tail.start, |s| s.start);
                drop(state);
                for segment in dropped {
                    self.forget(segment);
                }
            }
        }
    }

    /// Drops the oldest segments until the log fits in its cap.
    fn trim(&self) {
        let dropped = {
            let mut state = self.lock();
            let mut kept: u64 =
                state.segments.iter().map(|s| s.size).sum::<u64>() + state.tail.buffer.len() as u64;
            let mut dropped = Vec::new();
            // The segment being written is the newest, never dropped here.
            while kept > self.limits.retained && state.segments.len() > 1 {
                let segment = state.segments.pop_front().expect("more than one");
                kept -= segment.size;
                dropped.push(segment);
            }
            if !dropped.is_empty() {
                state.start = state.segments.front().map_or(state.tail.start, |s| s.start);
            }
            dropped
        };
        for segment in dropped {
            self.forget(segment);
        }
    }

    fn forget(&self, segment: Segment) {
        match segment.store {
            Store::Memory(_, held) => self.space.give_back(held),
            Store::File(path) => {
                let _ = std::fs::remove_file(path);
                self.space.release(charged(segment.size));
            }
        }
    }

    /// Reads records from `offset`: about `most` bytes of output, at most
    /// [`MOST_RECORDS`] records. What it returns holds no more memory than
    /// the records themselves (and, from a memory segment, shares it).
    pub async fn read(&self, offset: u64, most: usize) -> io::Result<Found> {
        loop {
            let (path, at, position) = {
                let state = self.lock();
                if offset < state.start {
                    return Ok(Found::Gap(state.start - offset));
                }
                if offset >= state.tail.end {
                    return Ok(if state.closed {
                        Found::End
                    } else {
                        Found::Pending
                    });
                }
                let segment = state
                    .segments
                    .iter()
                    .find(|s| s.start <= offset && offset < s.end);
                match segment {
                    Some(s) => {
                        let (at, position) = seek(&s.index, s.start, offset);
                        match &s.store {
                            Store::Memory(data, _) => {
                                let from = usize::try_from(position).unwrap_or(usize::MAX);
                                let data = data.slice(from.min(data.len())..);
                                let (records, _) = decode(&data, at, offset, most);
                                let records = records
                                    .into_iter()
                                    .map(|(stream, at, range)| (stream, at, data.slice(range)))
                                    .collect();
                                return Ok(Found::Records(records));
                            }
                            Store::File(path) => (path.clone(), at, position),
                        }
                    }
                    None => {
                        // Only the records this read returns are copied.
                        let tail = &state.tail;
                        let (at, position) = seek(&tail.index, tail.start, offset);
                        let from = usize::try_from(position).unwrap_or(usize::MAX);
                        let data = &tail.buffer[from.min(tail.buffer.len())..];
                        let (records, _) = decode(data, at, offset, most);
                        let records = records
                            .into_iter()
                            .map(|(stream, at, range)| {
                                (stream, at, Bytes::copy_from_slice(&data[range]))
                            })
                            .collect();
                        return Ok(Found::Records(records));
                    }
                }
            };
            let file = path.clone();
            let read =
                tokio::task::spawn_blocking(move || read_file(&file, position, at, offset, most))
                    .await
                    .map_err(io::Error::other)?;
            match read {
                Ok(records) if records.is_empty() => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("spill file {} ends early", path.display()),
                    ));
                }
                Ok(records) => return Ok(Found::Records(records)),
                // Dropped by the cap between the look and the read: look
                // again, which finds the gap. A file that vanished while the
                // log still names it (removed by hand, a temporary-file
                // cleaner) is dropped with everything older, as the cap
                // would: the reader is told of a gap, and never spins.
                Err(e) if e.kind() == io::ErrorKind::NotFound => self.lost(&path),
                Err(e) => return Err(e),
            }
        }
    }

    /// Drops the segment whose file is `path`, and everything older.
    fn lost(&self, path: &std::path::Path) {
        let dropped: Vec<Segment> = {
            let mut state = self.lock();
            let Some(position) = state
                .segments
                .iter()
                .position(|s| matches!(&s.store, Store::File(p) if p == path))
            else {
                return;
            };
            tracing::warn!(job = %self.name, file = %path.display(), "a spill file vanished");
            let dropped = state.segments.drain(..=position).collect();
            state.start = state.segments.front().map_or(state.tail.start, |s| s.start);
            dropped
        };
        for segment in dropped {
            self.forget(segment);
        }
    }
}

impl Drop for JobLog {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        let held = state.tail.held;
        let segments: Vec<Segment> = state.segments.drain(..).collect();
        self.space.give_back(held);
        for segment in segments {
            self.forget(segment);
        }
    }
}

/// What a spill file of `size` bytes costs the spill space: whole blocks,
/// so that many small files cannot hold more of the disk than counted.
fn charged(size: u64) -> u64 {
    size.div_ceil(4096).max(1) * 4096
}

/// A sealed segment on its way to a file.
struct Sealed {
    start: u64,
    data: Bytes,
}

/// The index entry at or before `offset`: (offset, position).
fn seek(index: &[(u64, u64)], start: u64, offset: u64) -> (u64, u64) {
    let i = index.partition_point(|&(o, _)| o <= offset);
    if i == 0 { (start, 0) } else { index[i - 1] }
}

/// A decoded record: its stream, its offset, where its bytes are.
type Record = (OutputStream, u64, std::ops::Range<usize>);

/// Decodes the records of `data`, whose first record starts at offset
/// `at`, from `offset` on: about `most` bytes, at most [`MOST_RECORDS`]
/// records, only records `data` holds whole. Also returns, when `data` ends
/// inside a record, how many bytes it would take to hold that record.
fn decode(data: &[u8], mut at: u64, offset: u64, most: usize) -> (Vec<Record>, Option<usize>) {
    let mut position = 0;
    let mut records = Vec::new();
    let mut total = 0;
    while total < most && records.len() < MOST_RECORDS {
        if position + HEADER > data.len() {
            let needed = (position < data.len()).then_some(position + HEADER);
            return (records, needed);
        }
        let stream = if data[position] == 1 {
            OutputStream::Stdout
        } else {
            OutputStream::Stderr
        };
        let len = u32::from_le_bytes(
            data[position + 1..position + HEADER]
                .try_into()
                .expect("four bytes"),
        ) as usize;
        let body = position + HEADER;
        if body + len > data.len() {
            return (records, Some(body + len));
        }
        let end = at + len as u64;
        if end > offset {
            let skip = usize::try_from(offset.saturating_sub(at)).unwrap_or(0);
            total += len - skip;
            records.push((stream, at + skip as u64, body + skip..body + len));
        }
        at = end;
        position = body + len;
    }
    (records, None)
}

/// Reads records from a spill file, from `position`, where the record at
/// offset `at` starts, decoded from `offset`. It reads what the records
/// asked for take (one index step before `offset` at most, then `most`
/// bytes), and once more with room for a record larger than that.
fn read_file(
    path: &std::path::Path,
    position: u64,
    at: u64,
    offset: u64,
    most: usize,
) -> io::Result<Vec<(OutputStream, u64, Bytes)>> {
    let mut file = File::open(path)?;
    let mut window = (INDEX_EVERY as usize + HEADER).saturating_add(most.min(4 * FLOOR));
    for _ in 0..2 {
        file.seek(SeekFrom::Start(position))?;
        let mut buffer = Vec::with_capacity(window);
        (&mut file).take(window as u64).read_to_end(&mut buffer)?;
        let data = Bytes::from(buffer);
        match decode(&data, at, offset, most) {
            (records, Some(needed)) if records.is_empty() && needed > window => window = needed,
            (records, _) => {
                return Ok(records
                    .into_iter()
                    .map(|(stream, at, range)| (stream, at, data.slice(range)))
                    .collect());
            }
        }
    }
    Ok(Vec::new())
}

/// Writes a new spill file (0600, never over an existing one) and syncs
/// nothing: spill files do not outlive the agent.
fn write_new(path: &std::path::Path, data: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(memory: usize, spill: u64) -> Arc<LogSpace> {
        Arc::new(LogSpace::new(None, memory, spill))
    }

    async fn all(log: &JobLog, mut offset: u64) -> (Vec<u8>, u64) {
        let mut out = Vec::new();
        let mut gaps = 0;
        loop {
            match log.read(offset, 1000).await.unwrap() {
                Found::Records(records) => {
                    for (_, at, data) in records {
                        assert_eq!(at, offset, "records follow each other");
                        offset += data.len() as u64;
                        out.extend_from_slice(&data);
                    }
                }
                Found::Gap(n) => {
                    gaps += n;
                    offset += n;
                }
                Found::End | Found::Pending => return (out, gaps),
            }
        }
    }

    #[tokio::test]
    async fn a_log_replays_byte_exact_from_any_offset_across_memory_and_files() {
        let space = space(1 << 20, 1 << 30);
        let log = JobLog::new(
            "j1",
            LogLimits {
                memory: 4096,
                retained: 1 << 30,
            },
            space.clone(),
        );
        let mut expected = Vec::new();
        for i in 0..3000u32 {
            let line = format!("line {i}\n");
            let stream = if i % 7 == 0 {
                OutputStream::Stderr
            } else {
                OutputStream::Stdout
            };
            log.append(stream, line.as_bytes()).await;
            expected.extend_from_slice(line.as_bytes());
        }
        log.close().await;
        assert!(space.spilled() > 0, "the log went to files");
        for from in [0, 1, 4095, 4096, 10_000, expected.len() as u64 - 1] {
            let (got, gaps) = all(&log, from).await;
            assert_eq!(gaps, 0);
            assert_eq!(got, expected[from as usize..], "from {from}");
        }
        assert_eq!(
            log.read(expected.len() as u64, 10).await.unwrap(),
            Found::End
        );
        drop(log);
        assert_eq!(space.spilled(), 0, "files removed with the log");
        assert_eq!(space.memory_free(), 1 << 20);
    }

    #[tokio::test]
    async fn a_log_over_its_cap_keeps_its_newest_output_and_reports_the_gap() {
        let space = space(1 << 20, 1 << 30);
        let log = JobLog::new(
            "j2",
            LogLimits {
                memory: 1000,
                retained: 5000,
            },
            space.clone(),
        );
        let mut expected = Vec::new();
        for i in 0..2000u32 {
            let line = format!("{i:08}\n");
            log.append(OutputStream::Stdout, line.as_bytes()).await;
            expected.extend_from_slice(line.as_bytes());
        }
        log.close().await;
        let (start, end) = log.bounds();
        assert_eq!(end, expected.len() as u64);
        assert!(start > 0 && end - start < 5000, "{start}..{end}");
        let (got, gap) = all(&log, 0).await;
        assert_eq!(gap, start);
        assert_eq!(got, expected[start as usize..]);
        let on_disk: u64 = std::fs::read_dir(space.directory().unwrap())
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(on_disk <= 5000, "{on_disk}");
    }

    #[tokio::test]
    async fn a_full_spill_space_keeps_the_tail_and_says_what_is_gone() {
        let space = space(1 << 20, 2000);
        let log = JobLog::new(
            "j3",
            LogLimits {
                memory: 1000,
                retained: 1 << 30,
            },
            space.clone(),
        );
        let mut expected = Vec::new();
        for i in 0..1000u32 {
            let line = format!("{i:08}\n");
            log.append(OutputStream::Stdout, line.as_bytes()).await;
            expected.extend_from_slice(line.as_bytes());
        }
        assert!(space.spilled() <= 2000);
        let (got, gap) = all(&log, 0).await;
        assert!(gap > 0);
        assert_eq!(got, expected[gap as usize..]);
    }

    #[tokio::test]
    async fn without_shared_memory_output_goes_to_files_in_large_segments() {
        let space = space(0, 1 << 30);
        let log = JobLog::new(
            "j4",
            LogLimits {
                memory: 1 << 20,
                retained: 1 << 30,
            },
            space.clone(),
        );
        // Output written a byte at a time, alternating streams: records of
        // one byte, never one file each.
        let mut expected = Vec::new();
        for i in 0..200_000u32 {
            let byte = [b'a' + (i % 26) as u8];
            let stream = if i % 2 == 0 {
                OutputStream::Stdout
            } else {
                OutputStream::Stderr
            };
            log.append(stream, &byte).await;
            expected.push(byte[0]);
        }
        let files = std::fs::read_dir(space.directory().unwrap())
            .unwrap()
            .count();
        assert!(
            (1..=(200_000 * (HEADER + 1)) / (FLOOR / 2)).contains(&files),
            "{files} files"
        );
        let (got, _) = all(&log, 3).await;
        assert_eq!(got, expected[3..]);
        // A read returns a bounded number of records.
        match log.read(0, usize::MAX).await.unwrap() {
            Found::Records(records) => assert_eq!(records.len(), MOST_RECORDS),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_spill_file_that_vanished_reads_as_a_gap_not_a_loop() {
        let space = space(1 << 20, 1 << 30);
        let log = JobLog::new(
            "j5",
            LogLimits {
                memory: 64 << 10,
                retained: 1 << 30,
            },
            space.clone(),
        );
        for _ in 0..10 {
            log.append(OutputStream::Stdout, &[7u8; 60_000]).await;
        }
        log.close().await;
        for entry in std::fs::read_dir(space.directory().unwrap()).unwrap() {
            std::fs::remove_file(entry.unwrap().path()).unwrap();
        }
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), all(&log, 0))
            .await
            .expect("no spinning");
        let (got, gap) = read;
        assert!(gap > 0);
        assert_eq!(gap + got.len() as u64, 600_000);
    }
}
