//! One host's output in a run, as both front-ends keep it: the beginning
//! up to a head limit (for `-b`, the Grouped view and the history), the
//! total size, a SHA-256 digest of each stream (what grouping compares),
//! and a line splitter that hands out complete lines, cutting a line that
//! never ends into pieces so that memory stays bounded.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::command::OutputStream;

/// The longest line kept whole; a longer one is handed out in pieces of
/// this size (a progress bar, binary output).
pub const LONGEST_LINE: usize = 64 * 1024;

/// What grouping compares of an output: its size and the digests of its
/// two streams. Two hosts that wrote the same stdout and the same stderr
/// are identical even if the two interleaved differently; a collision
/// resistant digest, since a hostile host must not be able to make its
/// output group with another's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OutputKey {
    total: u64,
    digests: [[u8; 32]; 2],
}

/// One host's output so far.
#[derive(Debug, Clone)]
pub struct HostOutput {
    head: Vec<u8>,
    head_limit: usize,
    total: u64,
    digests: [Sha256; 2],
}

impl HostOutput {
    /// Nothing yet; the first `head_limit` bytes will be kept.
    pub fn new(head_limit: usize) -> Self {
        Self {
            head: Vec::new(),
            head_limit,
            total: 0,
            digests: [Sha256::new(), Sha256::new()],
        }
    }

    /// Counts and digests a chunk, and keeps what fits in the head.
    pub fn record(&mut self, stream: OutputStream, data: &[u8]) {
        self.total += data.len() as u64;
        self.digests[index(stream)].update(data);
        let room = self.head_limit.saturating_sub(self.head.len());
        self.head.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// The beginning of the output (both streams, as they came).
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Bytes written in all.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// True when the head holds less than all of it.
    pub fn is_cut(&self) -> bool {
        self.total > self.head.len() as u64
    }

    /// What grouping compares.
    pub fn key(&self) -> OutputKey {
        OutputKey {
            total: self.total,
            digests: [
                self.digests[0].clone().finalize().into(),
                self.digests[1].clone().finalize().into(),
            ],
        }
    }
}

/// Splits each stream's output into lines, as the bytes arrive in chunks
/// that carry no meaning.
#[derive(Debug, Default, Clone)]
pub struct LineSplitter {
    partial: [Vec<u8>; 2],
}

impl LineSplitter {
    /// Hands `emit` each line `data` completes (without its newline, and
    /// without the carriage return of a CRLF ending), and pieces of
    /// [`LONGEST_LINE`] bytes of a line that goes on. A line that lies in
    /// one chunk is a slice of it, not a copy.
    pub fn push(&mut self, stream: OutputStream, data: &Bytes, mut emit: impl FnMut(Bytes)) {
        let partial = &mut self.partial[index(stream)];
        let mut rest = data.clone();
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            let line = rest.split_to(end + 1).slice(..end);
            let line = if partial.is_empty() {
                line
            } else {
                partial.extend_from_slice(&line);
                Bytes::from(std::mem::take(partial))
            };
            emit(strip_cr(line));
        }
        partial.extend_from_slice(&rest);
        while partial.len() >= LONGEST_LINE {
            let piece: Vec<u8> = partial.drain(..LONGEST_LINE).collect();
            emit(Bytes::from(piece));
        }
    }

    /// Hands out what is left of each stream's last line, stdout first.
    pub fn finish(&mut self, mut emit: impl FnMut(OutputStream, Bytes)) {
        for stream in [OutputStream::Stdout, OutputStream::Stderr] {
            let rest = std::mem::take(&mut self.partial[index(stream)]);
            if !rest.is_empty() {
                emit(stream, strip_cr(Bytes::from(rest)));
            }
        }
    }
}

fn strip_cr(line: Bytes) -> Bytes {
    if line.ends_with(b"\r") {
        line.slice(..line.len() - 1)
    } else {
        line
    }
}

fn index(stream: OutputStream) -> usize {
    match stream {
        OutputStream::Stdout => 0,
        OutputStream::Stderr => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(splitter: &mut LineSplitter, stream: OutputStream, data: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        splitter.push(stream, &Bytes::copy_from_slice(data), |l| {
            out.push(l.to_vec())
        });
        out
    }

    #[test]
    fn lines_arrive_split_anywhere_and_keep_their_stream() {
        let mut s = LineSplitter::default();
        assert!(lines(&mut s, OutputStream::Stdout, b"hel").is_empty());
        assert_eq!(
            lines(&mut s, OutputStream::Stderr, b"oops\r\n"),
            [b"oops".to_vec()]
        );
        assert_eq!(
            lines(&mut s, OutputStream::Stdout, b"lo\nworld\nand"),
            [b"hello".to_vec(), b"world".to_vec()]
        );
        let mut rest = Vec::new();
        s.finish(|stream, l| rest.push((stream, l.to_vec())));
        assert_eq!(rest, [(OutputStream::Stdout, b"and".to_vec())]);
    }

    #[test]
    fn a_line_that_never_ends_comes_in_bounded_pieces() {
        let mut s = LineSplitter::default();
        let pieces = lines(
            &mut s,
            OutputStream::Stdout,
            &vec![b'x'; LONGEST_LINE * 2 + 5],
        );
        assert_eq!(pieces.len(), 2);
        assert!(pieces.iter().all(|p| p.len() == LONGEST_LINE));
        let mut rest = Vec::new();
        s.finish(|_, l| rest.push(l.len()));
        assert_eq!(rest, [5]);
    }

    #[test]
    fn the_head_is_bounded_and_the_key_sees_all_of_each_stream() {
        let mut a = HostOutput::new(4);
        a.record(OutputStream::Stdout, b"out1");
        a.record(OutputStream::Stderr, b"err");
        a.record(OutputStream::Stdout, b"out2");
        assert_eq!(a.head(), b"out1");
        assert_eq!(a.total(), 11);
        assert!(a.is_cut());
        // The same streams interleaved otherwise: the same key.
        let mut b = HostOutput::new(1 << 20);
        b.record(OutputStream::Stderr, b"err");
        b.record(OutputStream::Stdout, b"out1out2");
        assert_eq!(a.key(), b.key());
        // The same bytes on the other stream: another key.
        let mut c = HostOutput::new(1 << 20);
        c.record(OutputStream::Stdout, b"out1out2err");
        assert_ne!(a.key(), c.key());
    }
}
