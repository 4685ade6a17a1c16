//! The agent's TLS, built on rustls directly rather than through tonic's
//! TLS settings, for three things those settings cannot do: serve a
//! renewed certificate to new connections without a restart (the
//! certificate is read for every handshake from [`ServerTls`]), serve an
//! agent awaiting enrollment (a self-signed certificate of its own key, no
//! client certificate asked), and hand the handshake's client certificate
//! to the gate through the connection's own info.

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use rustls::{
    RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer},
    server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
    sign::CertifiedKey,
};

/// How long a client may take to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether clients must present a certificate.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// They need not (tokens, or an agent awaiting enrollment).
    Off,
    /// They must, signed by one of these CAs.
    Required(Vec<CertificateDer<'static>>),
}

/// The server side of TLS: what new connections are accepted with. It is
/// replaced as a whole when an agent is enrolled (its client CA changes)
/// or renewed (its certificate changes); connections already open keep
/// the session they made.
pub struct ServerTls {
    current: RwLock<(tokio_rustls::TlsAcceptor, CertificateDer<'static>)>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

/// Serves one certificate; a resolver rather than a single certificate so
/// that the key check happens once, in [`certified`].
#[derive(Debug)]
struct One(Arc<CertifiedKey>);

impl ResolvesServerCert for One {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn provider() -> Arc<CryptoProvider> {
    crate::tls::crypto_provider()
}

impl ServerTls {
    /// TLS serving `chain` (leaf first) with `key`; the error says what is
    /// wrong (a key that does not match, an unusable CA).
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        client_auth: ClientAuth,
    ) -> Result<Self, String> {
        Ok(Self {
            current: RwLock::new(build(chain, key, client_auth)?),
        })
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        self.read().0.clone()
    }

    /// The leaf certificate served now (DER).
    pub fn certificate(&self) -> CertificateDer<'static> {
        self.read().1.clone()
    }

    /// Accepts every connection made from now on with `chain`, `key` and
    /// `client_auth`; on error nothing changes.
    pub fn replace(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        client_auth: ClientAuth,
    ) -> Result<(), String> {
        let next = build(chain, key, client_auth)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }

    fn read(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, (tokio_rustls::TlsAcceptor, CertificateDer<'static>)> {
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }
}

fn build(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_auth: ClientAuth,
) -> Result<(tokio_rustls::TlsAcceptor, CertificateDer<'static>), String> {
    let provider = provider();
    let certified = certified(chain, key, &provider)?;
    let leaf = certified.cert[0].clone();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_auth {
        ClientAuth::Off => builder.with_no_client_auth(),
        ClientAuth::Required(cas) => {
            let mut roots = RootCertStore::empty();
            for ca in cas {
                roots.add(ca).map_err(|e| format!("the client CA: {e}"))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("the client CA: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(One(Arc::new(certified))));
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), leaf))
}

fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, String> {
    if chain.is_empty() {
        return Err("no certificate".into());
    }
    CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| format!("{e} (does the key match the certificate?)"))
}
