//! The fleet CA, on the operator's machine: it signs agents' certificate
//! requests, issues operators' certificates with their role, keeps the
//! revocation list and the fleet's tokens (as hashes).
//!
//! Everything lives in one directory (`$XDG_CONFIG_HOME/vigie/pki` unless
//! told otherwise): `ca.pem`, `ca-key.pem` (0600, the only file that can
//! mint certificates; see docs/SECURITY.md for keeping it offline),
//! `revoked.crl`, `fleet.toml` (what was issued and revoked, and the
//! tokens' hashes) and `operators/NAME.{pem,-key.pem,toml}`. The directory
//! is locked while it changes, so two commands never interleave.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, CertificateSigningRequestDer, pem::PemObject};
use serde::Serialize;

use crate::{
    pki::{CertFacts, HOST_URI_PREFIX, ROLE_URI_PREFIX},
    types::Role,
};

mod ledger;

pub use ledger::{Issued, Ledger, LedgerToken};

/// How long the fleet owner's own certificate (made by `pki init`) is valid.
pub const OWNER_VALIDITY: Duration = Duration::from_secs(30 * 86_400);

/// Why a PKI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file cannot be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// `init` on a directory that has a CA already.
    #[error("{0} holds a fleet CA already: init never replaces one")]
    Exists(PathBuf),
    /// No CA where one was expected.
    #[error("no fleet CA in {0}: create one with `vigie pki init`")]
    Missing(PathBuf),
    /// Certificate work failed.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A name cannot be used.
    #[error(
        "invalid name {0:?}: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or a digit"
    )]
    BadName(String),
    /// An operator with this name has a valid certificate already.
    #[error("{0} has a certificate already: pass --force to issue a new one")]
    Duplicate(String),
    /// A host and an operator share the name.
    #[error("{0:?} is both a host and an operator: say host:{0} or operator:{0}")]
    Ambiguous(String),
    /// Nothing issued goes by this name or serial.
    #[error("nothing issued by this CA is called {0:?} (see `vigie pki list`)")]
    Unknown(String),
}

fn file_error(path: &Path) -> impl FnOnce(String) -> PkiError + '_ {
    move |reason| PkiError::File {
        path: path.to_owned(),
        reason,
    }
}

fn cert_error(e: impl std::fmt::Display) -> PkiError {
    PkiError::Certificate(e.to_string())
}

/// An operator's certificate and key, and the client config that uses them.
#[derive(Debug)]
pub struct OperatorBundle {
    /// The certificate file.
    pub cert: PathBuf,
    /// The key file (0600).
    pub key: PathBuf,
    /// A client config naming the CA, the revocation list, cert and key.
    pub config: PathBuf,
    /// What was issued.
    pub facts: CertFacts,
}

/// The fleet CA in its directory.
pub struct FleetCa {
    dir: PathBuf,
    ca_pem: String,
    key: KeyPair,
    _lock: std::fs::File,
    /// Held across each read-change-write of the ledger: the directory
    /// lock keeps other processes out, this keeps this process's tasks
    /// (a deployment enrolls many hosts at once) from losing an update.
    ledger_guard: std::sync::Mutex<()>,
}

impl std::fmt::Debug for FleetCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetCa")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The default PKI directory: `$VIGIE_PKI`, else `$XDG_CONFIG_HOME/vigie/pki`.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("VIGIE_PKI").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    super::config::default_path().and_then(|p| p.parent().map(|d| d.join("pki")))
}

impl FleetCa {
    /// Creates a new fleet CA in `dir` (made 0700 if missing).
    pub fn init(dir: &Path) -> Result<Self, PkiError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| file_error(dir)(e.to_string()))?;
        let lock = lock(dir)?;
        if dir.join("ca-key.pem").exists() || dir.join("ca.pem").exists() {
            return Err(PkiError::Exists(dir.to_owned()));
        }
        let key = KeyPair::generate().map_err(cert_error)?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(
            DnType::CommonName,
            format!("vigie fleet CA {}", hex::encode(random::<4>()?)),
        );
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut params, Duration::from_secs(10 * 365 * 86_400));
        let cert = params.self_signed(&key).map_err(cert_error)?;
        write_new(
            &dir.join("ca-key.pem"),
            key.serialize_pem().as_bytes(),
            0o600,
        )?;
        write_new(&dir.join("ca.pem"), cert.pem().as_bytes(), 0o644)?;
        let ca = Self {
            dir: dir.to_owned(),
            ca_pem: cert.pem(),
            key,
            _lock: lock,
            ledger_guard: std::sync::Mutex::new(()),
        };
        ca.save(&Ledger::default())?;
        ca.write_crl(&mut Ledger::default())?;
        Ok(ca)
    }

    /// Opens the fleet CA of `dir`, locking it until dropped.
    pub fn open(dir: &Path) -> Result<Self, PkiError> {
        let key_path = dir.join("ca-key.pem");
        if !key_path.exists() {
            return Err(PkiError::Missing(dir.to_owned()));
        }
        let lock = lock(dir)?;
        let key_pem =
            std::fs::read_to_string(&key_path).map_err(|e| file_error(&key_path)(e.to_string()))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| file_error(&key_path)(e.to_string()))?;
        let ca_path = dir.join("ca.pem");
        let ca_pem =
            std::fs::read_to_string(&ca_path).map_err(|e| file_error(&ca_path)(e.to_string()))?;
        Ok(Self {
            dir: dir.to_owned(),
            ca_pem,
            key,
            _lock: lock,
            ledger_guard: std::sync::Mutex::new(()),
        })
    }

    pub(super) fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.ledger_guard.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate (DER).
    pub fn ca_der(&self) -> Result<Vec<u8>, PkiError> {
        CertificateDer::from_pem_slice(self.ca_pem.as_bytes())
            .map(|c| c.to_vec())
            .map_err(cert_error)
    }

    /// The revocation list as last written (DER).
    pub fn crl_der(&self) -> Result<Vec<u8>, PkiError> {
        let path = self.dir.join("revoked.crl");
        std::fs::read(&path).map_err(|e| file_error(&path)(e.to_string()))
    }

    pub(super) fn issuer(&self) -> Result<Issuer<'_, &KeyPair>, PkiError> {
        Issuer::from_ca_cert_pem(&self.ca_pem, &self.key).map_err(cert_error)
    }

    /// Signs an agent's certificate request. Only the key comes from the
    /// request (whose signature proves the agent holds it): the names are
    /// the operator's, `host` (the hosts file's name) and `address` (what
    /// the client dials), never what the agent asked for, so an agent
    /// cannot get a certificate for another host's name.
    pub fn sign_agent(
        &self,
        csr_der: &[u8],
        host: &str,
        address: &str,
        validity: Duration,
    ) -> Result<(Vec<u8>, CertFacts), PkiError> {
        let csr =
            CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr_der))
                .map_err(|e| {
                    PkiError::Certificate(format!("the agent's certificate request: {e}"))
                })?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        params.distinguished_name = dn;
        let mut names = vec![SanType::URI(
            format!("{HOST_URI_PREFIX}{host}")
                .try_into()
                .map_err(cert_error)?,
        )];
        for name in [address, host] {
            let san = match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) if is_dns_name(name) => {
                    SanType::DnsName(name.to_owned().try_into().map_err(cert_error)?)
                }
                Err(_) => continue,
            };
            if !names.contains(&san) {
                names.push(san);
            }
        }
        params.subject_alt_names = names;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let issued = self.issue(params, &csr.public_key, validity, host, "agent", None)?;
        self.supersede(host, &issued.1.serial_hex())?;
        Ok(issued)
    }

    /// Signs an agent's certificate request for an air-gapped host and
    /// writes a bundle for it into `out`: its certificate, the CA, the
    /// revocation list and the fleet tokens (public data and hashes only),
    /// for `vigie-agent import`.
    pub fn sign_host_bundle(
        &self,
        csr: &[u8],
        host: &str,
        address: &str,
        validity: Duration,
        out: &Path,
    ) -> Result<CertFacts, PkiError> {
        let der = if csr.starts_with(b"-----") {
            CertificateSigningRequestDer::from_pem_slice(csr)
                .map_err(|e| PkiError::Certificate(format!("the request: {e}")))?
                .as_ref()
                .to_vec()
        } else {
            csr.to_vec()
        };
        let (cert, facts) = self.sign_agent(&der, host, address, validity)?;
        std::fs::create_dir_all(out).map_err(|e| file_error(out)(e.to_string()))?;
        replace(
            &out.join("agent.pem"),
            &crate::pki::pem("CERTIFICATE", &cert),
            0o644,
        )?;
        replace(&out.join("ca.pem"), self.ca_pem.as_bytes(), 0o644)?;
        replace(&out.join("revoked.crl"), &self.crl_der()?, 0o644)?;
        #[derive(Serialize)]
        struct Tokens {
            token: Vec<LedgerToken>,
        }
        let tokens = Tokens {
            token: self.ledger()?.tokens,
        };
        let text = toml::to_string(&tokens).map_err(cert_error)?;
        replace(&out.join("tokens.toml"), text.as_bytes(), 0o600)?;
        Ok(facts)
    }

    /// Issues an operator's certificate carrying `role`, with a new key,
    /// into `operators/` with a client config beside it.
    pub fn add_operator(
        &self,
        name: &str,
        role: Role,
        validity: Duration,
        force: bool,
    ) -> Result<OperatorBundle, PkiError> {
        check_name(name)?;
        let ledger = self.ledger()?;
        let now = crate::clock::now_ms();
        let live = ledger.issued.iter().any(|i| {
            i.kind == "operator"
                && i.name == name
                && i.revoked_at_ms.is_none()
                && i.not_after_ms > now
        });
        if live && !force {
            return Err(PkiError::Duplicate(name.to_owned()));
        }
        let key = KeyPair::generate().map_err(cert_error)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::URI(
            format!("{ROLE_URI_PREFIX}{role}")
                .try_into()
                .map_err(cert_error)?,
        )];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let (der, facts) = self.issue(params, &key, validity, name, "operator", Some(role))?;
        let operators = self.dir.join("operators");
        std::fs::create_dir_all(&operators).map_err(|e| file_error(&operators)(e.to_string()))?;
        let cert = operators.join(format!("{name}.pem"));
        let key_path = operators.join(format!("{name}-key.pem"));
        let config = operators.join(format!("{name}.toml"));
        replace(&cert, &crate::pki::pem("CERTIFICATE", &der), 0o644)?;
        replace(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
        replace(
            &config,
            client_config(&self.dir, &cert, &key_path)?.as_bytes(),
            0o600,
        )?;
        Ok(OperatorBundle {
            cert,
            key: key_path,
            config,
            facts,
        })
    }

    fn issue(
        &self,
        mut params: CertificateParams,
        public_key: &impl rcgen::PublicKeyData,
        validity: Duration,
        name: &str,
        kind: &str,
        role: Option<Role>,
    ) -> Result<(Vec<u8>, CertFacts), PkiError> {
        let mut serial = random::<16>()?;
        serial[0] &= 0x7f;
        serial[0] |= 0x01;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        set_validity(&mut params, validity);
        let cert = params
            .signed_by(public_key, &self.issuer()?)
            .map_err(cert_error)?;
        let der = cert.der().to_vec();
        let facts = CertFacts::parse(&der).map_err(PkiError::Certificate)?;
        let _guard = self.guard();
        let mut ledger = self.ledger()?;
        ledger.issued.push(Issued {
            name: name.to_owned(),
            kind: kind.to_owned(),
            role,
            serial: facts.serial_hex(),
            not_after_ms: facts.not_after_ms,
            revoked_at_ms: None,
        });
        self.save(&ledger)?;
        Ok((der, facts))
    }
}

/// A client config for an operator bundle: the fleet CA, the revocation
/// list (so that a revoked agent certificate is refused too), the
/// certificate and the key, by absolute path.
pub fn client_config(pki: &Path, cert: &Path, key: &Path) -> Result<String, PkiError> {
    let mut defaults = toml::Table::new();
    for (k, v) in [
        ("ca", pki.join("ca.pem")),
        ("crl", pki.join("revoked.crl")),
        ("cert", cert.to_owned()),
        ("key", key.to_owned()),
    ] {
        defaults.insert(k.into(), v.display().to_string().into());
    }
    let mut table = toml::Table::new();
    table.insert("defaults".into(), defaults.into());
    let body = toml::to_string(&table).map_err(cert_error)?;
    Ok(format!(
        "# vigie client configuration for a fleet operator, written by `vigie pki`.\n\
         # The key it names is a credential: keep this file and the key private.\n{body}"
    ))
}

fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Checks an operator's or token holder's name (it becomes a subject, an
/// identity and a file name).
pub fn check_name(name: &str) -> Result<(), PkiError> {
    // `vigie-…` subjects are what `vigie-agent init` maps in access files
    // (CN=vigie-admin): a fleet operator must not be mistaken for one.
    if crate::pki::is_valid_name(name) && !name.starts_with("vigie-") {
        Ok(())
    } else {
        Err(PkiError::BadName(name.to_owned()))
    }
}

fn random<const N: usize>() -> Result<[u8; N], PkiError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(cert_error)?;
    Ok(bytes)
}

/// Valid from five minutes ago (clocks differ a little) for `validity`.
fn set_validity(params: &mut CertificateParams, validity: Duration) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after =
        now + time::Duration::seconds(i64::try_from(validity.as_secs()).unwrap_or(i64::MAX / 2));
}

fn lock(dir: &Path) -> Result<std::fs::File, PkiError> {
    crate::atomic_file::lock_directory(dir).map_err(|e| file_error(dir)(e.to_string()))
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    crate::atomic_file::write_new(path, contents, mode).map_err(|e| file_error(path)(e.to_string()))
}

fn replace(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    crate::atomic_file::replace(path, contents, mode).map_err(|e| file_error(path)(e.to_string()))
}
