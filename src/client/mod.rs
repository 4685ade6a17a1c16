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
    Status(#[from] tonic::Status),
    /// The agent answered something this client does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl Error {
    /// A connection error with every cause of `error`, since tonic's
    /// top-level message ("transport error") says little on its own.
    pub fn connect(address: &str, error: &dyn std::error::Error) -> Self {
        let mut reason = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            reason.push_str(": ");
            reason.push_str(&cause.to_string());
            source = cause.source();
        }
        Self::Connect {
            address: address.to_owned(),
            reason,
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
