//! What agent and clients agree on about TLS: certificate fingerprints, as
//! the agent prints them and clients pin them, and the algorithms.

use sha2::{Digest, Sha256};

/// Parses "sha256:AB:CD…" or plain hex into the 32 bytes of a SHA-256.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], String> {
    let hex_digits: String = text
        .trim()
        .trim_start_matches("sha256:")
        .trim_start_matches("SHA256:")
        .chars()
        .filter(|c| *c != ':')
        .collect();
    let bytes =
        hex::decode(&hex_digits).map_err(|_| format!("fingerprint {text:?} is not hexadecimal"))?;
    bytes
        .try_into()
        .map_err(|_| format!("fingerprint {text:?} is not 32 bytes (a SHA-256)"))
}

/// The fingerprint of a certificate as vigie prints it: "sha256:" and hex.
pub fn fingerprint(cert_der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(cert_der)))
}

/// The TLS algorithms both ends use: rustls's ring provider with
/// AES-128-GCM first among the TLS 1.3 suites (rustls puts AES-256 first).
/// AES-128 is the level the key exchange (X25519) and the certificates
/// (ECDSA P-256) give anyway, and its SHA-256 key schedule and ten AES
/// rounds cost less on every handshake and every byte than AES-256's
/// SHA-384 and fourteen: measured at ten thousand handshakes, SHA-384
/// alone was 3 % of the client's CPU.
pub fn crypto_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::cipher_suite;
    let mut provider = rustls::crypto::ring::default_provider();
    let preferred = cipher_suite::TLS13_AES_128_GCM_SHA256;
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != preferred.suite());
    std::sync::Arc::new(provider)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_common_spellings() {
        let hex = "ab".repeat(32);
        let with_colons = (0..32).map(|_| "AB").collect::<Vec<_>>().join(":");
        for text in [
            hex.clone(),
            format!("sha256:{hex}"),
            format!("SHA256:{with_colons}"),
        ] {
            assert_eq!(parse_fingerprint(&text), Ok([0xab; 32]), "{text}");
        }
        assert!(parse_fingerprint("sha256:abcd").is_err());
        assert!(parse_fingerprint("not hex").is_err());
        let printed = fingerprint(b"certificate");
        assert_eq!(
            parse_fingerprint(&printed).map(hex::encode),
            Ok(printed[7..].to_owned())
        );
    }
}
