//! How the client checks an agent's certificate: against the fleet CA (and
//! its revocation list), a pinned fingerprint, or both; or, only while
//! enrolling an agent, not at all but captured, so that the enrollment
//! proofs can be bound to the very certificate this connection saw.

use std::sync::{Arc, Mutex};

use rustls::{
    CertificateError, DigitallySignedStruct, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use sha2::{Digest, Sha256};

/// The certificate an enrollment connection saw, once it has connected.
pub type Captured = Arc<Mutex<Option<CertificateDer<'static>>>>;

/// Checks the agent's certificate against the CA, the pinned fingerprint,
/// or both.
#[derive(Debug)]
pub(super) struct Verifier {
    pub(super) ca: Option<Arc<WebPkiServerVerifier>>,
    pub(super) pin: Option<[u8; 32]>,
    /// Set only for enrollment: any certificate is accepted (the proofs,
    /// bound to the certificate kept in `seen`, decide).
    pub(super) accept_any: bool,
    /// Where the certificate of the last handshake that passed is kept,
    /// if anywhere.
    pub(super) seen: Option<Captured>,
    /// The hosts-file name of the host dialled: a fleet certificate that
    /// names another host (`urn:vigie:host:…`) is refused, so one host's
    /// certificate cannot stand for another's even at the same address.
    pub(super) host: Option<String>,
    pub(super) provider: Arc<CryptoProvider>,
}

impl Verifier {
    /// The pin, the CA (and its revocation list), and the host a fleet
    /// certificate names.
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        if let Some(pin) = &self.pin {
            let actual: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
            if &actual != pin {
                return Err(rustls::Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ));
            }
        }
        // Without a CA the pinned certificate is trusted, whatever its
        // issuer or names (the handshake signature is still checked).
        if let Some(ca) = &self.ca {
            ca.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map_err(|e| awaiting_or(e, end_entity))?;
        }
        if let Some(expected) = &self.host
            && let Ok(facts) = crate::pki::CertFacts::parse(end_entity)
            && let Some(named) = facts.host
            && &named != expected
        {
            return Err(rustls::Error::General(format!(
                "the agent's certificate is for host {named:?}, not {expected:?} (a host answering \
                 for another?)"
            )));
        }
        Ok(())
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !self.accept_any {
            self.check(end_entity, intermediates, server_name, ocsp_response, now)?;
        }
        if let Some(seen) = &self.seen {
            *seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(end_entity.clone().into_owned());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// An agent that awaits enrollment shows a self-signed certificate that no
/// CA knows; say so rather than "unknown CA".
fn awaiting_or(error: rustls::Error, cert: &CertificateDer<'_>) -> rustls::Error {
    let awaiting = matches!(
        error,
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    ) && crate::pki::CertFacts::parse(cert)
        .is_ok_and(|facts| facts.subject.contains("vigie agent awaiting enrollment"));
    if awaiting {
        rustls::Error::General(
            "the agent awaits enrollment: enroll it with `vigie enroll HOST --join-code-stdin`"
                .into(),
        )
    } else {
        error
    }
}
