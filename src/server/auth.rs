//! Who is calling, and what they may do.

use serde::{Deserialize, Serialize};

/// What an identity may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads system information, metrics, processes and connection info.
    Viewer,
    /// Viewer, plus runs commands and signals processes.
    Operator,
    /// Operator, plus stops and restarts the agent.
    Admin,
}

impl Role {
    /// The role's name as config files and answers write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }
}

/// The caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// A readable name, e.g. "token:alice".
    pub name: String,
    /// What it may do.
    pub role: Role,
}

impl Identity {
    /// The caller when the agent runs without access control (loopback
    /// only): everyone who can connect may do everything.
    pub fn anonymous() -> Self {
        Self {
            name: "anonymous".to_owned(),
            role: Role::Admin,
        }
    }
}
