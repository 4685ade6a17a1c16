//! How the client notices an agent that went silent while a call is open
//! (a partition, a frozen or powered-off host): its HTTP/2 keepalive,
//! from the connection settings, checked against the range both sides
//! accept (`wire::KEEPALIVE_RANGE_MS`).

use std::time::Duration;

use super::{Error, config::ConnectionSettings, connect::Address};

/// How the client notices an agent that stopped answering while a call is
/// open: after `interval` without a frame from it, a ping; after `timeout`
/// without the answer, the connection is dropped and its calls fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Time without a frame before a ping.
    pub interval: Duration,
    /// Time a ping may go unanswered.
    pub timeout: Duration,
}

impl Keepalive {
    /// The default: a lost agent is noticed within 8 s of its last frame,
    /// sooner than the agent's own 10 s, so that the operator hears of it
    /// first. Idle connections are not pinged at all.
    pub const DEFAULT: Self = Self {
        interval: Duration::from_secs(4),
        timeout: Duration::from_secs(4),
    };

    /// The keepalive these settings ask for, checked against the range
    /// both sides accept.
    pub fn from_settings(address: &Address, settings: &ConnectionSettings) -> Result<Self, Error> {
        let pick = |name: &'static str, value: Option<u64>, default: Duration| match value {
            None => Ok(default),
            Some(ms) => crate::wire::check_keepalive_ms(name, ms)
                .map(Duration::from_millis)
                .map_err(|e| Error::Settings {
                    address: address.to_string(),
                    reason: e.to_string(),
                }),
        };
        Ok(Self {
            interval: pick(
                "keepalive_interval_ms",
                settings.keepalive_interval_ms,
                Self::DEFAULT.interval,
            )?,
            timeout: pick(
                "keepalive_timeout_ms",
                settings.keepalive_timeout_ms,
                Self::DEFAULT.timeout,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address() -> Address {
        Address {
            host: "192.0.2.1".into(),
            port: 7421,
        }
    }

    #[test]
    fn the_default_gives_a_silent_agent_up_within_8_s() {
        let keepalive = Keepalive::from_settings(&address(), &ConnectionSettings::default());
        let keepalive = keepalive.expect("the defaults are valid");
        assert_eq!(keepalive, Keepalive::DEFAULT);
        assert_eq!(
            keepalive.interval + keepalive.timeout,
            Duration::from_secs(8)
        );
    }

    #[test]
    fn settings_are_taken_in_range_and_refused_outside_by_name() {
        let settings = ConnectionSettings {
            keepalive_interval_ms: Some(15_000),
            keepalive_timeout_ms: Some(500),
            ..ConnectionSettings::default()
        };
        let keepalive = Keepalive::from_settings(&address(), &settings).expect("in range");
        assert_eq!(keepalive.interval, Duration::from_secs(15));
        assert_eq!(keepalive.timeout, Duration::from_millis(500));
        for (interval, timeout, name) in [
            (Some(499), None, "keepalive_interval_ms = 499"),
            (None, Some(3_600_001), "keepalive_timeout_ms = 3600001"),
        ] {
            let settings = ConnectionSettings {
                keepalive_interval_ms: interval,
                keepalive_timeout_ms: timeout,
                ..ConnectionSettings::default()
            };
            let error = Keepalive::from_settings(&address(), &settings).expect_err("refused");
            let text = error.to_string();
            assert!(
                text.contains(name) && text.contains("500 to 3600000"),
                "{text}"
            );
        }
    }
}
