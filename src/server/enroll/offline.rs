//! Enrollment without a network path between the operator's machine and
//! the host: the host prints a certificate request for its key, the
//! operator signs it into a bundle of public files, and the host imports
//! the bundle after the same checks an online enrollment makes. No private
//! key and no join code travels.

use std::path::Path;

use rustls::pki_types::{CertificateDer, pem::PemObject};

use super::{
    EnrollError, FleetDir, FleetError, exchange, files, join,
    state::{key_pair_of, load_or_make_key},
};
use crate::{
    pki::{CertFacts, Revocations},
    server::auth::AccessFile,
};

/// The certificate request for this host's key (PEM), making the key on
/// first use.
pub fn request(dir: &FleetDir) -> Result<String, FleetError> {
    dir.create().map_err(|e| FleetError::File {
        path: dir.root().to_owned(),
        reason: e.to_string(),
    })?;
    let key = key_pair_of(&load_or_make_key(&dir.file(files::KEY))?)?;
    let der = exchange::request_der(&key).map_err(|e| FleetError::Key(e.to_string()))?;
    Ok(String::from_utf8_lossy(&crate::pki::pem("CERTIFICATE REQUEST", &der)).into_owned())
}

/// Imports a bundle made by `vigie pki sign-host`: checks the certificate
/// (this host's key, signed by the bundle's CA, valid now), the revocation
/// list and the tokens, then writes them, the certificate last, and
/// removes any pending join code. The agent serves them from its next
/// start.
pub fn import(dir: &FleetDir, bundle: &Path) -> Result<CertFacts, EnrollError> {
    let read = |name: &str| {
        std::fs::read(bundle.join(name)).map_err(|e| {
            EnrollError::BadCertificate(format!("{}: {e}", bundle.join(name).display()))
        })
    };
    let one = |name: &str| -> Result<Vec<u8>, EnrollError> {
        let pem = read(name)?;
        CertificateDer::from_pem_slice(&pem)
            .map(|c| c.to_vec())
            .map_err(|e| EnrollError::BadCertificate(format!("{name}: {e}")))
    };
    let cert = one(files::CERT)?;
    let ca = one(files::CA)?;
    let key = key_pair_of(
        &load_or_make_key(&dir.file(files::KEY))
            .map_err(|e| EnrollError::Internal(e.to_string()))?,
    )
    .map_err(|e| EnrollError::Internal(e.to_string()))?;
    let facts = exchange::check_issued(&key, &cert, &ca)?;
    let crl = match std::fs::read(bundle.join(files::CRL)) {
        Ok(der) => {
            Revocations::parse_verified(&der, &ca).map_err(EnrollError::BadPolicy)?;
            Some(der)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(EnrollError::BadPolicy(e.to_string())),
    };
    let tokens = match std::fs::read_to_string(bundle.join(files::TOKENS)) {
        Ok(text) => {
            let file = AccessFile::parse(&text)
                .map_err(|e| EnrollError::BadPolicy(format!("tokens: {e}")))?;
            exchange::checked_tokens(file.tokens)?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => AccessFile::default(),
        Err(e) => return Err(EnrollError::BadPolicy(e.to_string())),
    };
    exchange::write_policy(dir, crl.as_deref(), &tokens)?;
    exchange::write(dir, files::CA, &crate::pki::pem("CERTIFICATE", &ca), 0o644)?;
    exchange::write(
        dir,
        files::CERT,
        &crate::pki::pem("CERTIFICATE", &cert),
        0o644,
    )?;
    join::consume(dir).map_err(|e| EnrollError::Internal(e.to_string()))?;
    Ok(facts)
}
