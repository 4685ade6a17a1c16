//! Enrollment: how a fresh agent gets its place in a fleet without a
//! private key or a plain token ever travelling.
//!
//! An agent configured with a `fleet_dir` keeps its whole fleet identity
//! there. On first start it makes its own key (which never leaves the
//! host); until an operator enrolls it, it is *awaiting enrollment*: it
//! serves TLS with a self-signed certificate of that key and answers
//! nothing but the Enroll rpc. Enrolling proves, in both directions, that
//! each side knows the one-time join code (HMACs bound to the certificate
//! the client saw, so a man in the middle learns nothing it can replay),
//! then the operator's machine signs the agent's certificate request with
//! the fleet CA and sends back the certificate, the CA certificate and the
//! revocation list. From then on the agent serves mutual TLS with the
//! fleet CA as the only client CA, and roles come from the operators'
//! certificates.

pub mod exchange;
pub mod join;
pub mod offline;
pub mod state;

pub use exchange::{Challenge, EnrollError, Finish};
pub use state::{FleetError, FleetState};

use std::path::{Path, PathBuf};

/// The files of a fleet directory, by name.
pub mod files {
    /// The agent's private key, made on this host (secret, 0600).
    pub const KEY: &str = "agent-key.pem";
    /// The agent's certificate, signed by the fleet CA (absent until
    /// enrolled).
    pub const CERT: &str = "agent.pem";
    /// The fleet CA's certificate (public; absent until enrolled).
    pub const CA: &str = "ca.pem";
    /// The fleet's revocation list (a CRL signed by the fleet CA, DER).
    pub const CRL: &str = "revoked.crl";
    /// The pending join code, as a hash with its expiry (secret, 0600).
    pub const JOIN: &str = "join.toml";
    /// The fleet's tokens for scripts and grpcurl, as hashes, as the
    /// operator last pushed them.
    pub const TOKENS: &str = "tokens.toml";
}

/// The paths of one fleet directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetDir {
    root: PathBuf,
}

impl FleetDir {
    /// The fleet directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A file of the directory, by its name in [`files`].
    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Creates the directory if it is missing, readable by its owner only
    /// (it holds the agent's key); an existing one is left as it is.
    pub fn create(&self) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
    }

    /// True once the agent holds a certificate from the fleet CA.
    pub fn is_enrolled(&self) -> bool {
        self.file(files::CERT).exists() && self.file(files::CA).exists()
    }
}
