//! The client library: everything the CLI and the desktop client use to
//! talk to agents. It returns domain types (`crate::types`,
//! `crate::command`) and [`Error`], never raw proto types.

pub mod agent;

pub use agent::{AgentClient, Collected, EventStream, MetricsStream};

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
    /// The agent cannot be reached.
    #[error("cannot connect to {address}: {reason}")]
    Connect {
        /// The address.
        address: String,
        /// Why, with the underlying causes.
        reason: String,
    },
    /// The agent answered with an error status.
    #[error("{}: {}", .0.code(), .0.message())]
    Status(tonic::Status),
    /// The connection failed during the call (reset, closed, timed out).
    #[error("connection to the agent failed: {0}")]
    Transport(String),
    /// The agent answered something this client does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl From<tonic::Status> for Error {
    /// A status that tonic made up for a broken connection (code Unknown
    /// with a transport error as its source) is a transport failure, not an
    /// answer of the agent.
    fn from(status: tonic::Status) -> Self {
        use std::error::Error as _;
        if status.code() == tonic::Code::Unknown
            && let Some(source) = status.source()
            && source.is::<tonic::transport::Error>()
        {
            return Self::Transport(causes(source));
        }
        Self::Status(status)
    }
}

/// An error and its causes, joined with ": ".
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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
