//! What both ends of a connection agree on: the default port, the session
//! header, the HTTP/2 settings, the keepalive range, and which addresses count as loopback (the
//! agent allows plaintext and anonymous callers there only; the client
//! sends a token in plaintext there only).

use std::net::IpAddr;

/// The port an agent listens on when none is given.
pub const DEFAULT_PORT: u16 = 7421;

/// The metadata header that carries the session id.
pub const SESSION_HEADER: &str = "x-vigie-session";

/// HTTP/2 flow-control window of one stream. Larger than the defaults
/// (64 KiB windows, 16 KiB frames) so that bulk output is not throttled by
/// window updates on fast links; agent and client use the same values.
pub const STREAM_WINDOW: u32 = 4 << 20;
/// HTTP/2 flow-control window of a connection; see [`STREAM_WINDOW`].
pub const CONNECTION_WINDOW: u32 = 8 << 20;
/// Largest HTTP/2 frame; see [`STREAM_WINDOW`].
pub const MAX_FRAME: u32 = 1 << 20;

/// Keepalive settings both sides accept, in ms: below half a second a
/// loaded machine would drop healthy connections; above an hour a dead peer
/// would hold commands (or an operator's terminal) for too long.
pub const KEEPALIVE_RANGE_MS: std::ops::RangeInclusive<u64> = 500..=3_600_000;

/// A keepalive setting out of [`KEEPALIVE_RANGE_MS`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{name} = {value} is out of range: use {min} to {max}")]
pub struct SettingError {
    /// The setting's name in the config file.
    pub name: &'static str,
    /// The value given.
    pub value: u64,
    /// The smallest value accepted.
    pub min: u64,
    /// The largest value accepted.
    pub max: u64,
}

/// Checks a keepalive setting (in ms) against the range both sides accept.
pub fn check_keepalive_ms(name: &'static str, value: u64) -> Result<u64, SettingError> {
    if KEEPALIVE_RANGE_MS.contains(&value) {
        Ok(value)
    } else {
        Err(SettingError {
            name,
            value,
            min: *KEEPALIVE_RANGE_MS.start(),
            max: *KEEPALIVE_RANGE_MS.end(),
        })
    }
}

/// True for 127.0.0.0/8, ::1 and IPv4-mapped loopback addresses.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_addresses() {
        for ip in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.1", "::", "fe80::1", "::ffff:10.0.0.1"] {
            assert!(!is_loopback(ip.parse().unwrap()), "{ip}");
        }
    }
}
