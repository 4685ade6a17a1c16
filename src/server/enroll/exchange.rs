//! The agent's side of enrollment, renewal and policy pushes, as plain
//! Rust: the gRPC adapter in `service.rs` only carries the messages.
//!
//! Whatever the agent takes in is checked before anything is written: the
//! client's proof (Enroll), that the certificate is for the agent's own key
//! and signed by the CA it comes with (or, on renewal, by the agent's CA),
//! and that a revocation list is signed by that CA and not older than the
//! one it replaces. Files are replaced atomically, the certificate last,
//! so a crash at any point leaves either the old state or the new one.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PublicKeyData};
use rustls::pki_types::CertificateDer;
use x509_parser::{certificate::X509Certificate, prelude::FromDer};

use super::{FleetState, files, join};
use crate::{
    pki::{self, CertFacts, Revocations},
    server::{
        auth::{AccessFile, TokenEntry},
        tls::ClientAuth,
    },
};

/// Why an enrollment, a renewal or a policy push was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// Enroll on an agent that has a certificate already.
    #[error(
        "this agent is enrolled already; to enroll it again, remove its fleet directory's agent.pem on the host"
    )]
    AlreadyEnrolled,
    /// Renewal or a push on an agent that is not enrolled.
    #[error("this agent is not enrolled yet")]
    NotEnrolled,
    /// No join code is pending.
    #[error(
        "no join code is pending on this agent: make one on the host with `vigie-agent join-code`"
    )]
    NoJoinCode,
    /// The pending code has expired.
    #[error("the join code has expired: make a new one on the host with `vigie-agent join-code`")]
    Expired,
    /// The client's proof does not match the pending code.
    #[error("wrong join code (or the connection is not the one the agent answered)")]
    WrongProof,
    /// The certificate or CA sent is unusable.
    #[error("refused certificate: {0}")]
    BadCertificate(String),
    /// The revocation list or the tokens sent are unusable.
    #[error("refused policy: {0}")]
    BadPolicy(String),
    /// The revocation list is older than the one in force.
    #[error("revocation list number {got} is older than the one in force ({have})")]
    StaleList {
        /// In force.
        have: u64,
        /// Sent.
        got: u64,
    },
    /// Another enrollment completed first.
    #[error("another enrollment of this agent completed first")]
    Lost,
    /// The messages came in the wrong order or were incomplete.
    #[error("{0}")]
    Protocol(String),
    /// A file could not be written, or randomness failed.
    #[error("{0}")]
    Internal(String),
}

/// What the agent answers to `start`, and what it keeps for `finish`.
#[derive(Debug)]
pub struct Challenge {
    /// The agent's nonce.
    pub agent_nonce: Vec<u8>,
    /// The agent's proof (empty for renewal).
    pub agent_proof: Vec<u8>,
    /// The certificate request for the agent's key (DER).
    pub csr_der: Vec<u8>,
    /// The agent's host name.
    pub hostname: String,
    client_nonce: Vec<u8>,
    /// The join code's key and hash, kept to check the client's proof and
    /// that the same code is still pending when it arrives.
    code: Option<([u8; 32], String)>,
    tls_cert: CertificateDer<'static>,
}

/// The client's completion.
#[derive(Debug, Default)]
pub struct Finish {
    /// The client's proof (Enroll only).
    pub client_proof: Vec<u8>,
    /// The agent's new certificate (DER).
    pub certificate_der: Vec<u8>,
    /// The fleet CA (DER).
    pub ca_der: Vec<u8>,
    /// The fleet's revocation list (DER), if any.
    pub crl_der: Option<Vec<u8>>,
    /// The fleet's tokens (Enroll only).
    pub tokens: Vec<TokenEntry>,
}

impl FleetState {
    /// Answers an Enroll `start`: the agent's proof that it knows the
    /// pending join code, and a request for its certificate.
    pub fn challenge(&self, client_nonce: &[u8]) -> Result<Challenge, EnrollError> {
        if !self.is_awaiting() {
            return Err(EnrollError::AlreadyEnrolled);
        }
        if client_nonce.len() != pki::NONCE_LEN {
            return Err(EnrollError::Protocol(format!(
                "client_nonce must be {} bytes",
                pki::NONCE_LEN
            )));
        }
        let pending = join::load(self.dir())
            .map_err(|e| EnrollError::Internal(e.to_string()))?
            .ok_or(EnrollError::NoJoinCode)?;
        if !pending.is_live(crate::clock::now_ms()) {
            return Err(EnrollError::Expired);
        }
        let key = pending.key().ok_or(EnrollError::NoJoinCode)?;
        let agent_nonce = pki::nonce()
            .map_err(|e| EnrollError::Internal(e.to_string()))?
            .to_vec();
        let tls_cert = self.tls().certificate();
        Ok(Challenge {
            agent_proof: pki::agent_proof(&key, &tls_cert, client_nonce, &agent_nonce),
            agent_nonce,
            csr_der: self.csr()?,
            hostname: crate::server::system::hostname(),
            client_nonce: client_nonce.to_vec(),
            code: Some((key, pending.sha256)),
            tls_cert,
        })
    }

    /// Completes an enrollment: checks the client's proof and what it
    /// sent, writes the fleet directory, uses the join code up, and serves
    /// the new certificate with the fleet CA as the client CA.
    pub async fn finish(
        &self,
        challenge: &Challenge,
        finish: Finish,
    ) -> Result<CertFacts, EnrollError> {
        let (key, code_hash) = challenge
            .code
            .as_ref()
            .ok_or_else(|| EnrollError::Protocol("finish without a start".into()))?;
        let expected = pki::client_proof(
            key,
            &challenge.tls_cert,
            &challenge.client_nonce,
            &challenge.agent_nonce,
            &finish.certificate_der,
        );
        if !pki::proof_matches(&expected, &finish.client_proof) {
            return Err(EnrollError::WrongProof);
        }
        let facts = self.check_issued(&finish.certificate_der, &finish.ca_der)?;
        let revocations = match &finish.crl_der {
            Some(der) => {
                Revocations::parse_verified(der, &finish.ca_der).map_err(EnrollError::BadPolicy)?
            }
            None => Revocations::default(),
        };
        let tokens = checked_tokens(finish.tokens)?;

        // Whoever gets here first with a valid proof wins; the code is
        // checked again under the lock, so a second client that proved the
        // same code finds it used.
        let _writing = self.writing.lock().await;
        let still_pending = join::load(self.dir())
            .ok()
            .flatten()
            .is_some_and(|p| &p.sha256 == code_hash && p.is_live(crate::clock::now_ms()));
        if !self.is_awaiting() || !still_pending {
            return Err(EnrollError::Lost);
        }
        let ca = CertificateDer::from(finish.ca_der.clone());
        let chain = vec![CertificateDer::from(finish.certificate_der.clone())];
        self.write_policy(finish.crl_der.as_deref(), &tokens)?;
        self.write(files::CA, &pki::pem("CERTIFICATE", &finish.ca_der), 0o644)?;
        self.write(
            files::CERT,
            &pki::pem("CERTIFICATE", &finish.certificate_der),
            0o644,
        )?;
        join::consume(self.dir()).map_err(|e| EnrollError::Internal(e.to_string()))?;
        let key = self.key_der().map_err(EnrollError::Internal)?;
        self.tls()
            .replace(chain, key, ClientAuth::Required(vec![ca.clone()]))
            .map_err(EnrollError::BadCertificate)?;
        self.set_policy(revocations, tokens);
        self.set_enrolled(ca);
        Ok(facts)
    }

    /// Answers a RenewCertificate `start`: a request for a certificate of
    /// the same key.
    pub fn renew_challenge(&self) -> Result<Challenge, EnrollError> {
        if self.is_awaiting() {
            return Err(EnrollError::NotEnrolled);
        }
        Ok(Challenge {
            agent_nonce: Vec::new(),
            agent_proof: Vec::new(),
            csr_der: self.csr()?,
            hostname: crate::server::system::hostname(),
            client_nonce: Vec::new(),
            code: None,
            tls_cert: self.tls().certificate(),
        })
    }

    /// Takes a renewed certificate, which must come from the agent's own
    /// CA, into use for new connections.
    pub async fn renew_finish(&self, finish: Finish) -> Result<CertFacts, EnrollError> {
        let ca = self.ca().ok_or(EnrollError::NotEnrolled)?;
        if finish.ca_der != ca.as_ref() {
            return Err(EnrollError::BadCertificate(
                "it comes from another CA than this agent's fleet CA".into(),
            ));
        }
        let facts = self.check_issued(&finish.certificate_der, &ca)?;
        let _writing = self.writing.lock().await;
        let chain = vec![CertificateDer::from(finish.certificate_der.clone())];
        let key = self.key_der().map_err(EnrollError::Internal)?;
        self.tls()
            .replace(chain, key, ClientAuth::Required(vec![ca]))
            .map_err(EnrollError::BadCertificate)?;
        self.write(
            files::CERT,
            &pki::pem("CERTIFICATE", &finish.certificate_der),
            0o644,
        )?;
        Ok(facts)
    }

    /// Replaces the revocation list and the fleet tokens.
    pub async fn push_policy(
        &self,
        crl_der: &[u8],
        tokens: Vec<TokenEntry>,
    ) -> Result<(Revocations, usize), EnrollError> {
        let ca = self.ca().ok_or(EnrollError::NotEnrolled)?;
        let revocations =
            Revocations::parse_verified(crl_der, &ca).map_err(EnrollError::BadPolicy)?;
        let tokens = checked_tokens(tokens)?;
        let _writing = self.writing.lock().await;
        let current = self.revocations();
        let have = current.number;
        // Numbers only move forward; the same number must be the same list
        // (two copies of a CA directory that drifted apart could otherwise
        // un-revoke each other).
        if revocations.number < have
            || (revocations.number == have && have > 0 && revocations.serials != current.serials)
        {
            return Err(EnrollError::StaleList {
                have,
                got: revocations.number,
            });
        }
        self.write_policy(Some(crl_der), &tokens)?;
        let count = tokens.tokens.len();
        self.set_policy(revocations.clone(), tokens);
        Ok((revocations, count))
    }

    fn csr(&self) -> Result<Vec<u8>, EnrollError> {
        request_der(&self.key_pair().map_err(EnrollError::Internal)?)
    }

    fn check_issued(&self, cert_der: &[u8], ca_der: &[u8]) -> Result<CertFacts, EnrollError> {
        check_issued(
            &self.key_pair().map_err(EnrollError::Internal)?,
            cert_der,
            ca_der,
        )
    }

    fn write_policy(&self, crl_der: Option<&[u8]>, tokens: &AccessFile) -> Result<(), EnrollError> {
        write_policy(self.dir(), crl_der, tokens)
    }

    fn write(&self, name: &str, contents: &[u8], mode: u32) -> Result<(), EnrollError> {
        write(self.dir(), name, contents, mode)
    }
}

/// The fleet's tokens after the access file's own checks (names, hashes,
/// no identity twice).
pub(super) fn checked_tokens(tokens: Vec<TokenEntry>) -> Result<AccessFile, EnrollError> {
    let file = AccessFile {
        tokens,
        certificates: Vec::new(),
    };
    let text = toml::to_string(&file).map_err(|e| EnrollError::BadPolicy(e.to_string()))?;
    AccessFile::parse(&text).map_err(|e| EnrollError::BadPolicy(format!("tokens: {e}")))
}

/// Checks that `cert_der` is for this agent's key, signed by `ca_der`
/// (a CA), valid now, and usable to serve TLS.
pub(super) fn check_issued(
    key: &KeyPair,
    cert_der: &[u8],
    ca_der: &[u8],
) -> Result<CertFacts, EnrollError> {
    let bad = |reason: &str| EnrollError::BadCertificate(reason.to_owned());
    let (_, cert) = X509Certificate::from_der(cert_der).map_err(|_| bad("not a certificate"))?;
    let (_, ca) =
        X509Certificate::from_der(ca_der).map_err(|_| bad("the CA is not a certificate"))?;
    if !ca.is_ca() {
        return Err(bad("the CA certificate is not a CA"));
    }
    let own = key.subject_public_key_info();
    if cert.public_key().raw != own.as_slice() {
        return Err(bad("it is for another key than this agent's"));
    }
    if cert.issuer() != ca.subject() || cert.verify_signature(Some(ca.public_key())).is_err() {
        return Err(bad("it is not signed by the CA sent with it"));
    }
    if !cert.validity().is_valid() {
        return Err(bad("it is not valid now (check the clocks)"));
    }
    let serves = cert
        .extended_key_usage()
        .ok()
        .flatten()
        .is_none_or(|eku| eku.value.server_auth || eku.value.any);
    if !serves {
        return Err(bad("it may not be used to serve TLS"));
    }
    CertFacts::parse(cert_der).map_err(EnrollError::BadCertificate)
}

/// A certificate request (PKCS #10, DER) for `key`, naming this host.
pub(super) fn request_der(key: &KeyPair) -> Result<Vec<u8>, EnrollError> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, crate::server::system::hostname());
    params.distinguished_name = name;
    let csr = params
        .serialize_request(key)
        .map_err(|e| EnrollError::Internal(e.to_string()))?;
    Ok(csr.der().to_vec())
}

/// Writes the revocation list (if any) and the fleet tokens.
pub(super) fn write_policy(
    dir: &super::FleetDir,
    crl_der: Option<&[u8]>,
    tokens: &AccessFile,
) -> Result<(), EnrollError> {
    if let Some(der) = crl_der {
        write(dir, files::CRL, der, 0o644)?;
    }
    let body = toml::to_string(tokens).map_err(|e| EnrollError::Internal(e.to_string()))?;
    let text = format!(
        "# The fleet's tokens, as SHA-256 hashes, as the operator last pushed them\n\
         # (vigie pki push). Written by the agent: changes here are overwritten.\n{body}"
    );
    write(dir, files::TOKENS, text.as_bytes(), 0o600)
}

pub(super) fn write(
    dir: &super::FleetDir,
    name: &str,
    contents: &[u8],
    mode: u32,
) -> Result<(), EnrollError> {
    let path = dir.file(name);
    crate::atomic_file::replace(&path, contents, mode)
        .map_err(|e| EnrollError::Internal(format!("{}: {e}", path.display())))
}
