//! An agent's fleet identity in memory: its key, whether it is enrolled,
//! the TLS it serves, and the revocation list and fleet tokens it checks
//! every call against.

use std::{
    path::Path,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use super::{FleetDir, files};
use crate::{
    pki::Revocations,
    server::{
        auth::AccessFile,
        tls::{ClientAuth, ServerTls},
    },
};

/// Why the fleet directory cannot be used at start.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A file cannot be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// Key generation failed.
    #[error("cannot make the agent's key: {0}")]
    Key(String),
}

fn file_error(path: &Path) -> impl FnOnce(String) -> FleetError + '_ {
    move |reason| FleetError::File {
        path: path.to_owned(),
        reason,
    }
}

/// What an agent knows of its fleet.
pub struct FleetState {
    dir: FleetDir,
    key_pem: String,
    awaiting: AtomicBool,
    tls: Arc<ServerTls>,
    ca: RwLock<Option<CertificateDer<'static>>>,
    revocations: RwLock<Revocations>,
    tokens: RwLock<AccessFile>,
    /// Held while an enrollment, a renewal or a policy push writes the
    /// directory, so that two of them never interleave.
    pub(super) writing: tokio::sync::Mutex<()>,
    /// How often refused enrollments are audited one by one: they come
    /// from callers without credentials.
    pub refusals: crate::server::audit::RateLimit,
    /// The identities client certificates carried, by serial (bounded).
    carried: RwLock<Carried>,
}

/// The identities certificates carried, by serial.
type Carried = std::collections::HashMap<Vec<u8>, std::collections::HashSet<String>>;

/// Most certificates whose identities are remembered; past it the memory
/// starts again (a revocation then ends only what is noted since).
const MOST_NOTED: usize = 4096;

impl std::fmt::Debug for FleetState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetState")
            .field("dir", &self.dir)
            .field("awaiting", &self.is_awaiting())
            .finish_non_exhaustive()
    }
}

impl FleetState {
    /// Loads the fleet directory, making the agent's key on first start.
    /// An enrolled agent serves its certificate and asks clients for one
    /// signed by the fleet CA; one awaiting enrollment serves a
    /// self-signed certificate of its key and asks for none.
    pub fn load(dir: FleetDir) -> Result<Self, FleetError> {
        dir.create()
            .map_err(|e| file_error(dir.root())(e.to_string()))?;
        let key_pem = load_or_make_key(&dir.file(files::KEY))?;
        let enrolled = dir.is_enrolled();
        if enrolled {
            // An enrollment that stopped between writing the certificate
            // and removing the code must not leave a usable code behind.
            super::join::consume(&dir).map_err(|e| file_error(dir.root())(e.to_string()))?;
        }
        let (tls, ca, revocations, tokens) = if enrolled {
            let cert_path = dir.file(files::CERT);
            let ca_path = dir.file(files::CA);
            let chain = read_chain(&cert_path)?;
            let ca = read_chain(&ca_path)?.remove(0);
            let tls = ServerTls::new(
                chain,
                key_der(&key_pem)?,
                ClientAuth::Required(vec![ca.clone()]),
            )
            .map_err(file_error(&cert_path))?;
            let crl_path = dir.file(files::CRL);
            let revocations = match std::fs::read(&crl_path) {
                Ok(der) => Revocations::parse_verified(&der, &ca).map_err(file_error(&crl_path))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Revocations::default(),
                Err(e) => return Err(file_error(&crl_path)(e.to_string())),
            };
            let tokens_path = dir.file(files::TOKENS);
            let tokens = if tokens_path.exists() {
                AccessFile::load(&tokens_path)
                    .map_err(|e| file_error(&tokens_path)(e.to_string()))?
            } else {
                AccessFile::default()
            };
            (tls, Some(ca), revocations, tokens)
        } else {
            let (chain, key) = awaiting_certificate(&key_pem)?;
            let tls = ServerTls::new(chain, key, ClientAuth::Off).map_err(FleetError::Key)?;
            (tls, None, Revocations::default(), AccessFile::default())
        };
        Ok(Self {
            dir,
            key_pem,
            awaiting: AtomicBool::new(!enrolled),
            tls: Arc::new(tls),
            ca: RwLock::new(ca),
            revocations: RwLock::new(revocations),
            tokens: RwLock::new(tokens),
            writing: tokio::sync::Mutex::new(()),
            refusals: crate::server::audit::RateLimit::new(50, 5),
            carried: RwLock::default(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &FleetDir {
        &self.dir
    }

    /// True until the agent is enrolled.
    pub fn is_awaiting(&self) -> bool {
        self.awaiting.load(Ordering::Acquire)
    }

    /// The TLS the agent serves.
    pub fn tls(&self) -> &Arc<ServerTls> {
        &self.tls
    }

    /// The fleet CA, once enrolled.
    pub fn ca(&self) -> Option<CertificateDer<'static>> {
        self.ca.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The agent's key pair (for certificate requests).
    pub(super) fn key_pair(&self) -> Result<KeyPair, String> {
        KeyPair::from_pem(&self.key_pem).map_err(|e| e.to_string())
    }

    /// The agent's key, for TLS.
    pub(super) fn key_der(&self) -> Result<PrivateKeyDer<'static>, String> {
        key_der(&self.key_pem).map_err(|e| e.to_string())
    }

    /// True when the certificate with this serial has been revoked.
    pub fn is_revoked(&self, serial: &[u8]) -> bool {
        self.revocations
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_revoked(serial)
    }

    /// Notes that the certificate `serial` carried `identity` on a call.
    /// Every call notes it, so the usual case (known already) takes only a
    /// read lock.
    pub fn note_certificate(&self, serial: &[u8], identity: &str) {
        let known = |carried: &Carried| {
            carried
                .get(serial)
                .is_some_and(|names| names.contains(identity))
        };
        if known(&self.carried.read().unwrap_or_else(|e| e.into_inner())) {
            return;
        }
        let mut carried = self.carried.write().unwrap_or_else(|e| e.into_inner());
        if known(&carried) {
            return;
        }
        if carried.len() >= MOST_NOTED {
            carried.clear();
        }
        carried
            .entry(serial.to_vec())
            .or_default()
            .insert(identity.to_owned());
    }

    /// The identities that certificates revoked by `list` carried.
    pub fn identities_revoked_by(&self, list: &Revocations) -> Vec<String> {
        let carried = self.carried.read().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<String> = carried
            .iter()
            .filter(|(serial, _)| list.is_revoked(serial))
            .flat_map(|(_, names)| names.iter().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The revocation list in force.
    pub fn revocations(&self) -> Revocations {
        self.revocations
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The identity a fleet token proves, if any (see
    /// [`AccessFile::identify_token`]), without copying the token list.
    pub fn identify_token(&self, token: &str) -> Option<crate::server::auth::Identity> {
        self.tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .identify_token(token)
    }

    /// The number of the revocation list in force (0: none).
    pub fn revocation_number(&self) -> u64 {
        self.revocations
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .number
    }

    /// Takes a new revocation list and token set into use (already written).
    pub(super) fn set_policy(&self, revocations: Revocations, tokens: AccessFile) {
        *self.revocations.write().unwrap_or_else(|e| e.into_inner()) = revocations;
        *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = tokens;
    }

    /// Marks the agent enrolled under `ca` (its files already written).
    pub(super) fn set_enrolled(&self, ca: CertificateDer<'static>) {
        *self.ca.write().unwrap_or_else(|e| e.into_inner()) = Some(ca);
        self.awaiting.store(false, Ordering::Release);
    }
}

/// Reads the agent's key, or makes one (P-256, mode 0600) on first start.
/// The key never leaves this file and this process.
pub(super) fn load_or_make_key(path: &Path) -> Result<String, FleetError> {
    match std::fs::read_to_string(path) {
        Ok(pem) => {
            KeyPair::from_pem(&pem).map_err(|e| file_error(path)(e.to_string()))?;
            Ok(pem)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = KeyPair::generate().map_err(|e| FleetError::Key(e.to_string()))?;
            let pem = key.serialize_pem();
            crate::atomic_file::write_new(path, pem.as_bytes(), 0o600)
                .map_err(|e| file_error(path)(e.to_string()))?;
            tracing::info!(path = %path.display(), "made this agent's key");
            Ok(pem)
        }
        Err(e) => Err(file_error(path)(e.to_string())),
    }
}

/// The key pair of a PEM key.
pub(super) fn key_pair_of(pem: &str) -> Result<KeyPair, FleetError> {
    KeyPair::from_pem(pem).map_err(|e| FleetError::Key(e.to_string()))
}

fn key_der(pem: &str) -> Result<PrivateKeyDer<'static>, FleetError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| FleetError::Key(e.to_string()))
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, FleetError> {
    let pem = std::fs::read(path).map_err(|e| file_error(path)(e.to_string()))?;
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(path)(e.to_string()))?;
    if chain.is_empty() {
        return Err(file_error(path)("no certificate in the file".into()));
    }
    Ok(chain)
}

/// The certificate an agent serves while it awaits enrollment: self-signed
/// with its own key, made at each start. The client does not trust it; it
/// binds the enrollment proofs to it, so that a man in the middle, who
/// would have to show another certificate, cannot take part.
fn awaiting_certificate(
    key_pem: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), FleetError> {
    let key = KeyPair::from_pem(key_pem).map_err(|e| FleetError::Key(e.to_string()))?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(
        DnType::CommonName,
        format!(
            "vigie agent awaiting enrollment ({})",
            crate::server::system::hostname()
        ),
    );
    params.distinguished_name = name;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(30);
    let cert = params
        .self_signed(&key)
        .map_err(|e| FleetError::Key(e.to_string()))?;
    Ok((vec![cert.der().clone()], key_der(key_pem)?))
}
