//! The open-file limit. Desktop distributions start programs with a soft
//! limit of 1,024 descriptors, below what a fan-out to a thousand hosts
//! needs (one connection each, plus the history and the terminal); the
//! hard limit is usually far higher, and raising the soft limit up to it
//! needs no privilege. The CLI and the desktop client do it at start. The
//! agent does not: the commands it runs would inherit the raised limit
//! (programs built on select() misbehave above 1,024); as a service, its
//! unit sets its limit instead.

use rustix::process::{Resource, getrlimit, setrlimit};

/// What the limit was and is: `(before, after)` soft limits, `None` for
/// unlimited.
pub type Raised = (Option<u64>, Option<u64>);

/// Raises the soft limit on open files to the hard limit. Fails only if
/// the kernel refuses, which leaves the limit as it was.
pub fn raise_open_files() -> std::io::Result<Raised> {
    let mut limit = getrlimit(Resource::Nofile);
    let before = limit.current;
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        setrlimit(Resource::Nofile, limit)?;
    }
    Ok((before, getrlimit(Resource::Nofile).current))
}

/// The soft limit on open files now (`None`: unlimited).
pub fn open_files() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}
