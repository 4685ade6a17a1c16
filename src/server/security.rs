//! The agent's security settings, loaded and checked before it serves:
//! TLS material, the access list, the audit log and the exec policy, and
//! the rule that decides which addresses the agent may listen on.
//!
//! The rule: plaintext only on loopback (unless `insecure_plaintext` says
//! otherwise, loudly), and no anonymous access beyond loopback, ever.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use super::{
    audit::AuditLog,
    auth::{self, AccessList},
    config::AgentConfig,
    enroll::{FleetDir, FleetError, FleetState},
    layer::{AccessMode, Gate},
    policy::{ExecPolicy, PolicyError},
    tls::{ClientAuth, ServerTls},
};

/// Why the security settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// Plaintext beyond loopback was not explicitly allowed.
    #[error(
        "refusing to listen on {0} without TLS: plaintext is only allowed on loopback \
         (127.0.0.0/8, ::1); set tls_cert and tls_key (see `vigie-agent init`), or pass \
         --insecure-plaintext on an isolated network"
    )]
    NotLoopback(SocketAddr),
    /// Anonymous access beyond loopback.
    #[error(
        "refusing to listen on {0} without authentication: set access_file (see `vigie-agent init`)"
    )]
    NoAuthentication(SocketAddr),
    /// A setting needs another one.
    #[error("{0}")]
    Incomplete(&'static str),
    /// A file cannot be read or parsed.
    #[error("cannot load {what} from {path}: {reason}")]
    File {
        /// What the file holds.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The access file is unusable.
    #[error(transparent)]
    Access(#[from] auth::AccessFileError),
    /// The exec allow-list is unusable.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The fleet directory is unusable.
    #[error("the fleet directory: {0}")]
    Fleet(#[from] FleetError),
}

/// Checks, from the settings alone, that the agent may listen on `addr`.
pub fn check_exposure(addr: SocketAddr, config: &AgentConfig) -> Result<(), SecurityError> {
    let fleet = config.fleet_dir.is_some();
    if crate::wire::is_loopback(addr.ip()) {
        if config.access_file.is_none() && !fleet {
            tracing::warn!(
                "no access file: every local user can call this agent with its privileges"
            );
        }
        return Ok(());
    }
    if fleet {
        // A fleet agent always serves TLS and always authenticates.
        return Ok(());
    }
    if config.tls_cert.is_none() && !config.insecure_plaintext {
        return Err(SecurityError::NotLoopback(addr));
    }
    if config.access_file.is_none() {
        return Err(SecurityError::NoAuthentication(addr));
    }
    if config.tls_cert.is_none() {
        tracing::warn!(
            address = %addr,
            "INSECURE: serving PLAINTEXT beyond loopback (--insecure-plaintext); anyone on the \
             network path can read commands, their output and the tokens that authorize them"
        );
    }
    Ok(())
}

/// Everything security-related the agent serves with.
#[derive(Debug, Clone)]
pub struct Security {
    /// TLS for the server, when TLS is on.
    pub tls: Option<Arc<ServerTls>>,
    /// The agent's fleet identity, for an agent with a fleet directory.
    pub fleet: Option<Arc<FleetState>>,
    /// Authentication, authorization and audit of every call.
    pub gate: Arc<Gate>,
    /// Where the handlers write their audit records.
    pub audit: Arc<AuditLog>,
    /// Which commands may run.
    pub exec_policy: Arc<ExecPolicy>,
}

impl Security {
    /// Loads and checks the TLS material, the access file and the audit log.
    pub fn load(config: &AgentConfig) -> Result<Self, SecurityError> {
        let fleet = match &config.fleet_dir {
            Some(dir) => {
                if config.tls_cert.is_some()
                    || config.tls_key.is_some()
                    || config.client_ca.is_some()
                {
                    return Err(SecurityError::Incomplete(
                        "fleet_dir replaces tls_cert, tls_key and client_ca: remove them",
                    ));
                }
                Some(Arc::new(FleetState::load(FleetDir::new(dir.clone()))?))
            }
            None => None,
        };
        let tls = match (&config.tls_cert, &config.tls_key) {
            _ if fleet.is_some() => fleet.as_ref().map(|f| f.tls().clone()),
            (Some(cert), Some(key)) => {
                Some(Arc::new(load_tls(cert, key, config.client_ca.as_deref())?))
            }
            (None, None) => {
                if config.client_ca.is_some() {
                    return Err(SecurityError::Incomplete(
                        "client_ca needs TLS: set tls_cert and tls_key too",
                    ));
                }
                None
            }
            _ => {
                return Err(SecurityError::Incomplete(
                    "tls_cert and tls_key go together: set both or neither",
                ));
            }
        };
        if config.client_ca.is_some() && config.access_file.is_none() {
            return Err(SecurityError::Incomplete(
                "client_ca needs an access_file that maps certificate subjects to roles",
            ));
        }
        let access = match &config.access_file {
            Some(path) => AccessMode::Checked(AccessList::load(path)?),
            None if fleet.is_some() => AccessMode::Checked(AccessList::empty()),
            None => AccessMode::Anonymous,
        };
        let audit = Arc::new(match &config.audit_log {
            Some(path) => AuditLog::open(path).map_err(|e| SecurityError::File {
                what: "the audit log",
                path: path.clone(),
                reason: e.to_string(),
            })?,
            None => AuditLog::disabled(),
        });
        Ok(Self {
            tls,
            fleet: fleet.clone(),
            gate: Arc::new(Gate {
                access,
                fleet,
                audit: audit.clone(),
                max_request_bytes: config.max_request_bytes,
                public_streams: Arc::new(tokio::sync::Semaphore::new(config.max_public_streams)),
                denials: super::audit::RateLimit::new(200, 50),
            }),
            audit,
            exec_policy: Arc::new(
                ExecPolicy::new(
                    config.no_exec,
                    config.exec_allow.clone(),
                    config.signal_any_process,
                )?
                .with_scripts(config.allow_scripts.iter().copied()),
            ),
        })
    }
}

/// Reads and checks the certificate and key (and client CA), so that a bad
/// file is reported at start with its name, not at the first connection.
fn load_tls(
    cert_path: &Path,
    key_path: &Path,
    client_ca: Option<&Path>,
) -> Result<ServerTls, SecurityError> {
    let read = |what: &'static str, path: &Path| {
        std::fs::read(path).map_err(|e| SecurityError::File {
            what,
            path: path.to_owned(),
            reason: e.to_string(),
        })
    };
    let bad = |what: &'static str, path: &Path, reason: String| SecurityError::File {
        what,
        path: path.to_owned(),
        reason,
    };
    let cert_pem = read("the TLS certificate", cert_path)?;
    let key_pem = read("the TLS key", key_path)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| bad("the TLS certificate", cert_path, e.to_string()))?;
    let leaf = chain.first().ok_or_else(|| {
        bad(
            "the TLS certificate",
            cert_path,
            "no certificate in the file".into(),
        )
    })?;
    check_validity(leaf).map_err(|reason| bad("the TLS certificate", cert_path, reason))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| bad("the TLS key", key_path, e.to_string()))?;
    let client_auth = match client_ca {
        Some(ca_path) => {
            let ca_pem = read("the client CA", ca_path)?;
            let cas = CertificateDer::pem_slice_iter(&ca_pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad("the client CA", ca_path, e.to_string()))?;
            if cas.is_empty() {
                return Err(bad(
                    "the client CA",
                    ca_path,
                    "no certificate in the file".into(),
                ));
            }
            ClientAuth::Required(cas)
        }
        None => ClientAuth::Off,
    };
    ServerTls::new(chain, key, client_auth).map_err(|e| {
        if e.starts_with("the client CA") {
            bad("the client CA", client_ca.unwrap_or(cert_path), e)
        } else {
            bad("the TLS key", key_path, e)
        }
    })
}

/// Refuses a certificate that is not valid now.
fn check_validity(cert: &CertificateDer<'_>) -> Result<(), String> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| e.to_string())?;
    let validity = parsed.validity();
    if !validity.is_valid() {
        return Err(format!(
            "the certificate is valid from {} to {}, not now",
            validity.not_before, validity.not_after
        ));
    }
    Ok(())
}
