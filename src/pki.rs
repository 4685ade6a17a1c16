//! What the agent and the operator's machine agree on about fleet
//! certificates: where a certificate carries its role, how a certificate
//! and a revocation list are read, and the proofs of the enrollment
//! exchange.
//!
//! A fleet has one CA, on the operator's machine. An operator's client
//! certificate names its role in a URI subject alternative name
//! (`urn:vigie:role:operator`), so adding or removing an operator never
//! needs an edit on the agents: they trust the CA and read the role from
//! the certificate. An agent's certificate names its host the same way
//! (`urn:vigie:host:web1`) beside the DNS names and addresses it is
//! reached by.

use std::collections::HashSet;

use base64::Engine as _;
use ring::hmac;
use sha2::{Digest, Sha256};
use x509_parser::{
    certificate::X509Certificate, extensions::GeneralName, prelude::FromDer,
    revocation_list::CertificateRevocationList,
};

use crate::types::Role;

/// The prefix of the URI name that carries an operator's role.
pub const ROLE_URI_PREFIX: &str = "urn:vigie:role:";
/// The prefix of the URI name that carries an agent's host name.
pub const HOST_URI_PREFIX: &str = "urn:vigie:host:";

/// What vigie reads of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// The subject as vigie prints it, e.g. "CN=alice".
    pub subject: String,
    /// The serial number, normalised (see [`serial_key`]).
    pub serial: Vec<u8>,
    /// Valid from, in ms since the Unix epoch.
    pub not_before_ms: i64,
    /// Valid until, in ms since the Unix epoch.
    pub not_after_ms: i64,
    /// The role it carries, if any (an operator's certificate).
    pub role: Option<Role>,
    /// The host it names, if any (an agent's certificate).
    pub host: Option<String>,
    /// SHA-256 of the DER, as "sha256:" and hex.
    pub fingerprint: String,
    /// The subject public key info (DER): what identifies the key.
    pub public_key: Vec<u8>,
}

impl CertFacts {
    /// Reads a certificate (DER). A certificate that names two roles, or a
    /// role vigie does not know, is refused rather than guessed at.
    pub fn parse(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        let mut role = None;
        let mut host = None;
        if let Ok(Some(names)) = cert.subject_alternative_name() {
            for name in &names.value.general_names {
                if let GeneralName::URI(uri) = name {
                    if let Some(r) = uri.strip_prefix(ROLE_URI_PREFIX) {
                        let parsed: Role = r.parse()?;
                        if role.replace(parsed).is_some() {
                            return Err("the certificate names more than one role".into());
                        }
                    } else if let Some(h) = uri.strip_prefix(HOST_URI_PREFIX) {
                        host = Some(h.to_owned());
                    }
                }
            }
        }
        let validity = cert.validity();
        Ok(Self {
            subject: cert.subject().to_string(),
            serial: serial_key(cert.raw_serial()),
            not_before_ms: validity.not_before.timestamp().saturating_mul(1000),
            not_after_ms: validity.not_after.timestamp().saturating_mul(1000),
            role,
            host,
            fingerprint: crate::tls::fingerprint(der),
            public_key: cert.public_key().raw.to_vec(),
        })
    }

    /// The serial number in hexadecimal, as lists and messages show it.
    pub fn serial_hex(&self) -> String {
        hex::encode(&self.serial)
    }
}

/// A serial number without the leading zero bytes that DER may add, so
/// that the same number always compares equal.
pub fn serial_key(raw: &[u8]) -> Vec<u8> {
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    raw[start..].to_vec()
}

/// A revocation list whose signature has been checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocations {
    /// The CRL number: lists only move forward.
    pub number: u64,
    /// The revoked serial numbers (normalised).
    pub serials: HashSet<Vec<u8>>,
}

impl Revocations {
    /// Reads a CRL (DER) and checks that `ca_der` signed it.
    pub fn parse_verified(crl_der: &[u8], ca_der: &[u8]) -> Result<Self, String> {
        let (_, ca) = X509Certificate::from_der(ca_der).map_err(|e| format!("the CA: {e}"))?;
        let (_, crl) = CertificateRevocationList::from_der(crl_der)
            .map_err(|e| format!("the revocation list: {e}"))?;
        crl.verify_signature(ca.public_key())
            .map_err(|_| "the revocation list is not signed by this fleet's CA".to_owned())?;
        if crl.issuer() != ca.subject() {
            return Err("the revocation list names another issuer than this fleet's CA".into());
        }
        let number = crl
            .crl_number()
            .and_then(|n| u64::try_from(n.clone()).ok())
            .ok_or("the revocation list has no CRL number")?;
        let serials = crl
            .iter_revoked_certificates()
            .map(|r| serial_key(r.raw_serial()))
            .collect();
        Ok(Self { number, serials })
    }

    /// True when the certificate with this (normalised) serial is revoked.
    pub fn is_revoked(&self, serial: &[u8]) -> bool {
        self.serials.contains(serial)
    }
}

/// The prefix of every token vigie generates, so that one found in a file
/// or a log is recognisable.
pub const TOKEN_PREFIX: &str = "vgt_";

/// A new random token: 256 bits from the OS, base64url.
pub fn generate_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The hash the access file stores for a token: SHA-256, in hex. Tokens
/// are 256-bit random values, so a plain hash cannot be brute-forced and
/// needs no salt.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether a name may be a token holder's or an operator's: it becomes an
/// identity (`token:NAME`, `CN=NAME`) and part of file names, so only
/// letters, digits, `.`, `_` and `-`, starting with a letter or a digit,
/// at most 64 of them.
pub fn is_valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// PEM text of one DER object, e.g. `pem("CERTIFICATE", der)`.
pub fn pem(label: &str, der: &[u8]) -> Vec<u8> {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).unwrap_or_default());
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text.into_bytes()
}

/// The prefix of every join code, so that one found in a file or a log is
/// recognisable.
pub const JOIN_PREFIX: &str = "vgj_";

/// A new join code: 128 bits from the OS, in hexadecimal.
pub fn generate_join_code() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{JOIN_PREFIX}{}", hex::encode(bytes)))
}

/// The key both sides derive from a join code: SHA-256 of the code (blanks
/// around it removed, in lower case), or None when the text is not a join
/// code (the prefix and 32 hexadecimal digits).
pub fn join_key(code: &str) -> Option<[u8; 32]> {
    let code = code.trim().to_ascii_lowercase();
    let digits = code.strip_prefix(JOIN_PREFIX)?;
    (digits.len() == 32 && digits.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| Sha256::digest(code.as_bytes()).into())
}

/// The length of an enrollment nonce.
pub const NONCE_LEN: usize = 32;

/// The agent's proof that it knows the join code (see the proto).
pub fn agent_proof(
    key: &[u8; 32],
    tls_cert_der: &[u8],
    client_nonce: &[u8],
    agent_nonce: &[u8],
) -> Vec<u8> {
    proof(
        key,
        b"vigie-enroll-agent",
        &[&Sha256::digest(tls_cert_der), client_nonce, agent_nonce],
    )
}

/// The client's proof that it knows the join code, bound to the
/// certificate it sends (see the proto).
pub fn client_proof(
    key: &[u8; 32],
    tls_cert_der: &[u8],
    client_nonce: &[u8],
    agent_nonce: &[u8],
    certificate_der: &[u8],
) -> Vec<u8> {
    proof(
        key,
        b"vigie-enroll-client",
        &[
            &Sha256::digest(tls_cert_der),
            client_nonce,
            agent_nonce,
            &Sha256::digest(certificate_der),
        ],
    )
}

/// Checks a proof in constant time.
pub fn proof_matches(expected: &[u8], presented: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    expected.len() == presented.len() && bool::from(expected.ct_eq(presented))
}

fn proof(key: &[u8; 32], label: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut context = hmac::Context::with_key(&key);
    context.update(label);
    context.update(&[0]);
    for part in parts {
        context.update(part);
    }
    context.sign().as_ref().to_vec()
}

/// Fresh random bytes for a nonce.
pub fn nonce() -> Result<[u8; NONCE_LEN], getrandom::Error> {
    let mut bytes = [0u8; NONCE_LEN];
    getrandom::fill(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_depend_on_every_input_and_on_the_side() {
        let key = [7u8; 32];
        let base = agent_proof(&key, b"cert", b"n1", b"n2");
        assert_eq!(base, agent_proof(&key, b"cert", b"n1", b"n2"));
        assert_ne!(base, agent_proof(&[8u8; 32], b"cert", b"n1", b"n2"));
        assert_ne!(base, agent_proof(&key, b"other", b"n1", b"n2"));
        assert_ne!(base, agent_proof(&key, b"cert", b"n1", b"n3"));
        let client = client_proof(&key, b"cert", b"n1", b"n2", b"issued");
        assert_ne!(base, client);
        assert_ne!(
            client,
            client_proof(&key, b"cert", b"n1", b"n2", b"swapped")
        );
        assert!(proof_matches(&client, &client));
        assert!(!proof_matches(&client, &base));
        assert!(!proof_matches(&client, &client[..31]));
    }

    #[test]
    fn serials_compare_without_leading_zeros() {
        assert_eq!(serial_key(&[0, 0, 0x80, 1]), vec![0x80, 1]);
        assert_eq!(serial_key(&[0x12]), vec![0x12]);
        assert_eq!(serial_key(&[0]), Vec::<u8>::new());
    }
}
