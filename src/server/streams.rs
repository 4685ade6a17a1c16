//! Limits on long-lived streams (WatchMetrics): each samples the host on
//! its own timer, so how many there are bounds the agent's CPU.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use super::auth::Identity;

/// Limits on long-lived streams (WatchMetrics): per identity and in all,
/// so that a viewer cannot make the agent sample thousands of times a
/// second.
#[derive(Debug)]
pub struct Streams {
    open: Mutex<(usize, HashMap<String, usize>)>,
    per_identity: usize,
    total: usize,
}

/// One open stream, counted until dropped.
#[derive(Debug)]
pub struct StreamPermit {
    streams: Arc<Streams>,
    identity: String,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.streams.lock();
        open.0 = open.0.saturating_sub(1);
        decrement(&mut open.1, &self.identity);
    }
}

/// Why a stream was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StreamError {
    /// This identity has as many streams open as it may.
    #[error("too many open streams for {identity}: the agent allows {limit} per identity")]
    TooManyForIdentity {
        /// The identity.
        identity: String,
        /// The limit.
        limit: usize,
    },
    /// The agent has as many streams open as it allows.
    #[error("too many open streams: the agent allows {0}")]
    TooMany(usize),
}

impl Streams {
    /// No stream open yet; these limits.
    pub fn new(per_identity: usize, total: usize) -> Arc<Self> {
        Arc::new(Self {
            open: Mutex::new((0, HashMap::new())),
            per_identity,
            total,
        })
    }

    /// Counts one more stream of `identity`, within the limits.
    pub fn open(self: &Arc<Self>, identity: &Identity) -> Result<StreamPermit, StreamError> {
        let mut open = self.lock();
        if open.0 >= self.total {
            return Err(StreamError::TooMany(self.total));
        }
        let mine = open.1.entry(identity.name.clone()).or_default();
        if *mine >= self.per_identity {
            return Err(StreamError::TooManyForIdentity {
                identity: identity.name.clone(),
                limit: self.per_identity,
            });
        }
        *mine += 1;
        open.0 += 1;
        Ok(StreamPermit {
            streams: self.clone(),
            identity: identity.name.clone(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, HashMap<String, usize>)> {
        // Counts updated together under the lock; nothing there panics.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn decrement(counts: &mut HashMap<String, usize>, key: &str) {
    if let Some(count) = counts.get_mut(key) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            counts.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::auth::Role;

    fn who(name: &str, role: Role) -> Identity {
        Identity::for_tests(name, role)
    }

    fn viewer() -> Identity {
        who("token:v", Role::Viewer)
    }

    #[test]
    fn streams_are_limited_per_identity_and_in_all() {
        let streams = Streams::new(2, 3);
        let v = viewer();
        let a = streams.open(&v).unwrap();
        let _b = streams.open(&v).unwrap();
        assert!(matches!(
            streams.open(&v),
            Err(StreamError::TooManyForIdentity { limit: 2, .. })
        ));
        let o = who("token:o", Role::Operator);
        let _c = streams.open(&o).unwrap();
        assert_eq!(streams.open(&o).unwrap_err(), StreamError::TooMany(3));
        drop(a);
        assert!(
            streams.open(&o).is_ok(),
            "a closed stream gives its place back"
        );
    }
}
