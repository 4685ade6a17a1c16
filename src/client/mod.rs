//! The client library: everything the CLI and the desktop client use to
//! talk to agents. It returns domain types (`crate::types`,
//! `crate::command`) and [`Error`], never raw proto types.

pub mod agent;
pub mod cli;
pub mod config;
pub mod connect;
pub mod dashboard;
pub mod deploy;
pub mod enroll;
pub mod fleet;
pub mod format;
#[cfg(feature = "gui")]
pub mod gui;
pub mod history;
pub mod hosts;
pub mod jobs;
pub mod keepalive;
pub mod lifecycle;
pub mod pki;
pub mod present;
pub mod ranges;
pub mod run;
pub mod text;
pub mod top;
pub mod transfer;
mod verify;

pub use agent::{AgentClient, Collected, EventStream, MetricsStream};
pub use config::{ClientConfig, ConnectionSettings, Secret};
pub use connect::Address;

/// Why a call to an agent failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The address cannot be used as an endpoint.
    #[error("invalid address {address}: {reason}")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// Why.
        reason: String,
    },
    /// The connection settings cannot be used for this agent.
    #[error("{address}: {reason}")]
    Settings {
        /// The agent.
        address: String,
        /// What is wrong.
        reason: String,
    },
    /// The agent cannot be reached.
    #[error("cannot connect to {address}: {reason}")]
    Connect {
        /// The address.
        address: String,
        /// Why, with the underlying causes.
        reason: String,
    },
    /// The agent answered with an error status.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Status(tonic::Status),
    /// The connection failed during the call (reset, closed, timed out).
    #[error("connection to {address} failed: {reason}")]
    Transport {
        /// The agent.
        address: String,
        /// Why, with the TLS explanation when there is one.
        reason: String,
    },
    /// The agent answered something this client does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl Error {
    /// The error of a call to the agent at `address`. A status that tonic
    /// made up on this side for a broken connection (it carries the error
    /// as its source; statuses the agent sends never do) is a transport
    /// failure, not an answer of the agent.
    pub fn from_status(status: tonic::Status, address: &str, tls: bool) -> Self {
        use std::error::Error as _;
        if let Some(source) = status.source() {
            let mut reason = reworded(connect::explain_chain(source));
            // A plaintext client talking to a TLS agent sees the connection
            // torn down or garbage frames, never a refusal: hint only then.
            let torn = ["broken pipe", "reset", "closed", "protocol error", "frame"]
                .iter()
                .any(|word| reason.contains(word));
            if !tls && torn {
                reason.push_str(" (if the agent uses TLS, configure `ca` or `fingerprint`)");
            }
            return Self::Transport {
                address: address.to_owned(),
                reason,
            };
        }
        Self::Status(status)
    }
}

/// A connection torn under a call reads, depending on whether HTTP/2 was
/// writing or reading when it broke, as "connection reset by peer" or as
/// h2's "stream closed because of a broken pipe": both say the same thing
/// to an operator, so both are worded as a reset.
fn reworded(reason: String) -> String {
    const BROKEN_PIPE: &str = "stream closed because of a broken pipe";
    if reason.contains(BROKEN_PIPE) {
        reason.replace(
            BROKEN_PIPE,
            "the connection was reset or closed under the call (broken pipe)",
        )
    } else {
        reason
    }
}

/// A status code as a short phrase, e.g. "permission denied".
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown error",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal error",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// An error and its causes, joined with ": ", leaving out tonic's bare
/// "transport error" and causes whose text an outer one already shows.
pub(crate) fn causes(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if text != "transport error" && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    if parts.is_empty() {
        error.to_string()
    } else {
        parts.join(": ")
    }
}

impl Error {
    /// A connection error with every cause of `error`, since tonic's
    /// top-level message ("transport error") says little on its own.
    pub fn connect(address: &str, error: &dyn std::error::Error) -> Self {
        Self::Connect {
            address: address.to_owned(),
            reason: causes(error),
        }
    }

    /// The gRPC status code, when the agent answered with one.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Self::Status(status) => Some(status.code()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_torn_under_a_call_reads_as_a_reset_either_way() {
        let pipe = reworded("connection error: stream closed because of a broken pipe".into());
        assert_eq!(
            pipe,
            "connection error: the connection was reset or closed under the call (broken pipe)"
        );
        let reset = "error reading a body: Connection reset by peer (os error 104)";
        assert_eq!(reworded(reset.into()), reset);
    }
}
