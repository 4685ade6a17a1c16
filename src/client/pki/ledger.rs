//! The fleet CA's ledger (`fleet.toml`): what it issued and revoked, the
//! fleet tokens' hashes, and the revocation list made from it. Every
//! read-change-write of it holds the CA's ledger guard.

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use serde::{Deserialize, Serialize};

use super::{FleetCa, PkiError, cert_error, check_name, file_error, replace};
use crate::types::Role;

/// What the CA has issued, revoked, and the fleet's tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ledger {
    /// The number of the last revocation list made.
    pub crl_number: u64,
    /// Every certificate issued.
    pub issued: Vec<Issued>,
    /// The fleet's tokens, as hashes.
    pub tokens: Vec<LedgerToken>,
}

/// One certificate the CA issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Issued {
    /// The host's or operator's name.
    pub name: String,
    /// "agent" or "operator".
    pub kind: String,
    /// The operator's role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The serial number, in hex.
    pub serial: String,
    /// Valid until, ms since the epoch.
    pub not_after_ms: i64,
    /// When it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at_ms: Option<i64>,
}

/// A fleet token, by hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerToken {
    /// Who holds it.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// SHA-256 of the token, hex.
    pub sha256: String,
}

impl FleetCa {
    /// What was issued and revoked, and the tokens.
    pub fn ledger(&self) -> Result<Ledger, PkiError> {
        let path = self.dir.join("fleet.toml");
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| file_error(&path)(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ledger::default()),
            Err(e) => Err(file_error(&path)(e.to_string())),
        }
    }

    pub(super) fn save(&self, ledger: &Ledger) -> Result<(), PkiError> {
        let path = self.dir.join("fleet.toml");
        let body = toml::to_string(ledger).map_err(|e| file_error(&path)(e.to_string()))?;
        let text = format!(
            "# What this fleet CA issued and revoked, and the fleet's tokens (hashes only).\n\
             # Written by `vigie pki`; edit with it, not by hand.\n{body}"
        );
        crate::atomic_file::replace(&path, text.as_bytes(), 0o600)
            .map_err(|e| file_error(&path)(e.to_string()))
    }

    /// Revokes the host's earlier certificates once a new one is issued
    /// (enrolled again, or renewed): an old certificate, or its key, must
    /// not keep standing for the host.
    pub(super) fn supersede(&self, host: &str, current: &str) -> Result<(), PkiError> {
        let _guard = self.guard();
        let mut ledger = self.ledger()?;
        let now = crate::clock::now_ms();
        let mut changed = false;
        for issued in &mut ledger.issued {
            if issued.kind == "agent"
                && issued.name == host
                && issued.serial != current
                && issued.revoked_at_ms.is_none()
                && issued.not_after_ms > now
            {
                issued.revoked_at_ms = Some(now);
                changed = true;
            }
        }
        if changed {
            self.write_crl(&mut ledger)?;
        }
        Ok(())
    }

    /// Revokes every unexpired certificate issued to `name_or_serial` (a
    /// host, an operator, or one serial number) and writes a new list;
    /// returns what it revoked. Push it with `vigie pki push`.
    pub fn revoke(&self, name_or_serial: &str) -> Result<Vec<Issued>, PkiError> {
        let _guard = self.guard();
        let mut ledger = self.ledger()?;
        let now = crate::clock::now_ms();
        let target = name_or_serial.trim().to_ascii_lowercase();
        // `host:NAME` or `operator:NAME` when a host and an operator share
        // a name; a bare name that is both is refused as ambiguous.
        let (kind, name) = match name_or_serial.split_once(':') {
            Some(("host", name)) => (Some("agent"), name),
            Some(("operator", name)) => (Some("operator"), name),
            _ => (None, name_or_serial),
        };
        let kinds: std::collections::HashSet<&str> = ledger
            .issued
            .iter()
            .filter(|i| i.name == name)
            .map(|i| i.kind.as_str())
            .collect();
        if kind.is_none() && kinds.len() > 1 {
            return Err(PkiError::Ambiguous(name.to_owned()));
        }
        let mut revoked = Vec::new();
        for issued in &mut ledger.issued {
            let matches = (issued.name == name && kind.is_none_or(|k| k == issued.kind))
                || issued.serial == target;
            if matches && issued.revoked_at_ms.is_none() && issued.not_after_ms > now {
                issued.revoked_at_ms = Some(now);
                revoked.push(issued.clone());
            }
        }
        if revoked.is_empty() {
            return Err(PkiError::Unknown(name_or_serial.to_owned()));
        }
        self.write_crl(&mut ledger)?;
        Ok(revoked)
    }

    /// Adds a fleet token (only its hash is kept) and returns the token.
    pub fn add_token(&self, name: &str, role: Role) -> Result<String, PkiError> {
        check_name(name)?;
        let _guard = self.guard();
        let mut ledger = self.ledger()?;
        if ledger.tokens.iter().any(|t| t.name == name) {
            return Err(PkiError::Duplicate(format!("token {name}")));
        }
        let token = crate::pki::generate_token().map_err(cert_error)?;
        ledger.tokens.push(LedgerToken {
            name: name.to_owned(),
            role,
            sha256: crate::pki::hash_token(&token),
        });
        self.save(&ledger)?;
        Ok(token)
    }

    /// Removes a fleet token.
    pub fn remove_token(&self, name: &str) -> Result<(), PkiError> {
        let _guard = self.guard();
        let mut ledger = self.ledger()?;
        let before = ledger.tokens.len();
        ledger.tokens.retain(|t| t.name != name);
        if ledger.tokens.len() == before {
            return Err(PkiError::Unknown(format!("token {name}")));
        }
        self.save(&ledger)
    }

    /// Writes a new revocation list (with the next number) from the ledger.
    pub(super) fn write_crl(&self, ledger: &mut Ledger) -> Result<(), PkiError> {
        ledger.crl_number += 1;
        let now = time::OffsetDateTime::now_utc();
        let revoked_certs = ledger
            .issued
            .iter()
            // An expired certificate is refused anyway: it need not stay
            // on the list, which then stays as small as what is live.
            .filter(|i| i.not_after_ms > crate::clock::now_ms())
            .filter_map(|i| {
                let at = i.revoked_at_ms?;
                Some(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&hex::decode(&i.serial).ok()?),
                    revocation_time: time::OffsetDateTime::from_unix_timestamp(at / 1000)
                        .unwrap_or(now),
                    reason_code: None,
                    invalidity_date: None,
                })
            })
            .collect();
        let params = CertificateRevocationListParams {
            this_update: now - time::Duration::minutes(5),
            next_update: now + time::Duration::days(365),
            crl_number: SerialNumber::from(ledger.crl_number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer()?).map_err(cert_error)?;
        replace(&self.dir.join("revoked.crl"), crl.der().as_ref(), 0o644)?;
        self.save(ledger)
    }
}
