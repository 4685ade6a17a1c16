//! Opening channels to agents: TCP with `TCP_NODELAY`, then TLS through
//! rustls when the settings ask for it (a CA file, a client certificate, a
//! pinned certificate fingerprint), and HTTP/2 settings that match the
//! agent's.
//!
//! TLS is done here rather than by tonic so that the client can pin
//! fingerprints and, above all, say precisely why a handshake failed:
//! unknown CA, expired certificate, wrong name, missing client certificate.

use std::{
    io,
    net::IpAddr,
    path::Path,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use hyper_util::rt::TokioIo;
use rustls::{
    CertificateError, SignatureScheme,
    client::{ResolvesClientCert, WebPkiServerVerifier},
    pki_types::{
        CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, pem::PemObject,
    },
    sign::CertifiedKey,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream};
use tonic::transport::{Channel, Endpoint, Uri};

pub use super::keepalive::Keepalive;
pub use super::verify::Captured;
use super::{Error, config::ConnectionSettings, verify::Verifier};
use crate::wire::{CONNECTION_WINDOW, MAX_FRAME, STREAM_WINDOW};

/// Where an agent is: host (name or address) and port, or the path of a
/// Unix socket (a host that starts with `/`; the port is then unused).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    /// A DNS name, an IP address (IPv6 without brackets), or an absolute
    /// socket path.
    pub host: String,
    /// The port.
    pub port: u16,
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(path) = self.socket_path() {
            write!(f, "unix:{}", path.display())
        } else if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Address {
    /// The Unix socket's path, when the agent listens on one.
    pub fn socket_path(&self) -> Option<&Path> {
        self.host.starts_with('/').then(|| Path::new(&self.host))
    }

    /// True when the host is a loopback address or `localhost`, or a Unix
    /// socket (which never leaves the machine).
    pub fn is_loopback(&self) -> bool {
        self.socket_path().is_some()
            || self.host.eq_ignore_ascii_case("localhost")
            || self
                .host
                .parse::<IpAddr>()
                .is_ok_and(crate::wire::is_loopback)
    }
}

/// Client-side settings resolved for one agent: what the connector needs.
#[derive(Clone)]
struct Prepared {
    address: Address,
    tls: Option<PreparedTls>,
}

#[derive(Clone)]
struct PreparedTls {
    config: rustls::ClientConfig,
    client_key: Option<Arc<CertifiedKey>>,
    server_name: ServerName<'static>,
}

/// Hands rustls the client certificate, if any, and notes whether the agent
/// asked for one: that is how a missing or refused client certificate is
/// told apart from other failures.
#[derive(Debug)]
struct ClientCert {
    key: Option<Arc<CertifiedKey>>,
    asked: AtomicBool,
}

impl ResolvesClientCert for ClientCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.asked.store(true, Ordering::Relaxed);
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        // Always true, so that rustls consults `resolve` when asked.
        true
    }
}

/// Opens a channel to the agent at `address`. With `lazy`, nothing is
/// dialled until the first call (and the channel reconnects by itself
/// after the agent restarts).
pub async fn channel(
    address: &Address,
    settings: &ConnectionSettings,
    lazy: bool,
) -> Result<Channel, Error> {
    channel_seeing(address, settings, lazy, None, None).await
}

/// Like [`channel`]; each certificate the agent shows, once verified, is
/// kept in `seen` (what `vigie hosts check` reports the expiry of), and a
/// fleet certificate must name `host` (the hosts-file name).
pub async fn channel_seeing(
    address: &Address,
    settings: &ConnectionSettings,
    lazy: bool,
    seen: Option<Captured>,
    host: Option<&str>,
) -> Result<Channel, Error> {
    let dialer = Dialer::new(address, settings, seen, host)?;
    if lazy {
        Ok(dialer.lazy_channel(None))
    } else {
        dialer
            .endpoint
            .connect_with_connector(dialer.connector(None))
            .await
            .map_err(|e| Error::connect(&address.to_string(), &e))
    }
}

/// Everything a host's channels are made from, read once: the address,
/// the TLS settings with their files parsed and their resumption tickets,
/// the HTTP/2 endpoint. A fleet host keeps one for its life, so that each
/// new channel (a leased connection taken again) costs no file reading and
/// resumes the TLS session of the last.
#[derive(Clone)]
pub struct Dialer {
    prepared: Prepared,
    endpoint: Endpoint,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("address", &self.prepared.address)
            .field("tls", &self.prepared.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Dialer {
    /// Reads the settings' files and checks them.
    pub fn new(
        address: &Address,
        settings: &ConnectionSettings,
        seen: Option<Captured>,
        host: Option<&str>,
    ) -> Result<Self, Error> {
        let prepared = prepare(address, settings, seen, host)?;
        // The connector dials the address itself; the URL only has to be one.
        let url = if address.socket_path().is_some() {
            "http://localhost".to_owned()
        } else {
            format!("http://{address}")
        };
        let endpoint = endpoint(&url, Keepalive::from_settings(address, settings)?)?;
        Ok(Self { prepared, endpoint })
    }

    /// A new channel that dials on its first call and again after its
    /// connection is lost. Each connection it dials keeps `hold` alive
    /// until its socket is closed (a fleet's connection permit: given back
    /// only once the descriptor is).
    pub fn lazy_channel(&self, hold: Option<Hold>) -> Channel {
        self.endpoint
            .connect_with_connector_lazy(self.connector(hold))
    }

    fn connector(
        &self,
        hold: Option<Hold>,
    ) -> impl tower::Service<
        Uri,
        Response = TokioIo<Held>,
        Error = DialError,
        Future = impl Future<Output = Result<TokioIo<Held>, DialError>> + Send,
    > + Clone
    + Send
    + 'static {
        let prepared = self.prepared.clone();
        tower::service_fn(move |_: Uri| {
            let (prepared, hold) = (prepared.clone(), hold.clone());
            async move {
                let stream = dial(&prepared).await?;
                Ok(TokioIo::new(Held {
                    stream,
                    _hold: hold,
                }))
            }
        })
    }
}

/// Something a connection keeps alive for as long as its socket is open.
pub type Hold = Arc<dyn std::any::Any + Send + Sync>;

/// A dialled connection and what it keeps alive.
struct Held {
    stream: Stream,
    _hold: Option<Hold>,
}

impl AsyncRead for Held {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Held {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// A channel for enrolling the agent at `address`: TLS that accepts any
/// certificate and captures it, so that the enrollment proofs, which bind
/// the certificate the client saw, decide whether the agent is the one
/// that holds the join code. Never used for anything but Enroll.
pub async fn enrollment_channel(address: &Address) -> Result<(Channel, Captured), Error> {
    let captured = Captured::default();
    let provider = crate::tls::crypto_provider();
    let verifier = Arc::new(Verifier {
        ca: None,
        pin: None,
        accept_any: true,
        seen: Some(captured.clone()),
        host: None,
        provider: provider.clone(),
    });
    let invalid = |reason: String| Error::Settings {
        address: address.to_string(),
        reason,
    };
    let mut config = tls_config(provider, verifier).map_err(invalid)?;
    // The proofs bind the certificate the verifier captured: a resumed
    // session would skip it.
    config.resumption = rustls::client::Resumption::disabled();
    let server_name = ServerName::try_from(address.host.clone())
        .unwrap_or_else(|_| ServerName::try_from("vigie-agent").expect("a valid name"));
    let prepared = Prepared {
        address: address.clone(),
        tls: Some(PreparedTls {
            config,
            client_key: None,
            server_name,
        }),
    };
    let endpoint = endpoint(&format!("http://{address}"), Keepalive::DEFAULT)?;
    let connector = tower::service_fn(move |_: Uri| {
        let prepared = prepared.clone();
        async move { dial(&prepared).await.map(TokioIo::new) }
    });
    let channel = endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| Error::connect(&address.to_string(), &e))?;
    Ok((channel, captured))
}

/// HTTP/2 settings shared with the agent (see `wire::STREAM_WINDOW`), and
/// the keepalive: pings only while a call is open, so that idle channels
/// to thousands of agents cost nothing.
pub fn endpoint(url: &str, keepalive: Keepalive) -> Result<Endpoint, Error> {
    Ok(Endpoint::from_shared(url.to_owned())
        .map_err(|e| Error::InvalidAddress {
            address: url.to_owned(),
            reason: e.to_string(),
        })?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(keepalive.interval)
        .keep_alive_timeout(keepalive.timeout)
        .keep_alive_while_idle(false)
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(CONNECTION_WINDOW))
        .max_frame_size(Some(MAX_FRAME)))
}

fn prepare(
    address: &Address,
    settings: &ConnectionSettings,
    seen: Option<Captured>,
    host: Option<&str>,
) -> Result<Prepared, Error> {
    let invalid = |reason: String| Error::Settings {
        address: address.to_string(),
        reason,
    };
    if !settings.uses_tls() {
        if settings.token.is_some()
            && !address.is_loopback()
            && settings.insecure_plaintext != Some(true)
        {
            return Err(invalid(
                "refusing to send a token in plaintext beyond loopback: configure TLS \
                 (ca, or fingerprint), or set insecure_plaintext = true for this host"
                    .into(),
            ));
        }
        return Ok(Prepared {
            address: address.clone(),
            tls: None,
        });
    }

    let provider = crate::tls::crypto_provider();
    let pin = settings
        .fingerprint
        .as_deref()
        .map(crate::tls::parse_fingerprint)
        .transpose()
        .map_err(invalid)?;
    let ca = match &settings.ca {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(path).map_err(invalid)? {
                roots
                    .add(cert)
                    .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
            }
            let mut builder =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            // The fleet's revocation list: a revoked agent certificate (a
            // host whose key was stolen) is refused like an expired one.
            if let Some(crl) = &settings.crl {
                let der =
                    std::fs::read(crl).map_err(|e| invalid(format!("{}: {e}", crl.display())))?;
                builder = builder
                    .with_crls(vec![CertificateRevocationListDer::from(der)])
                    .only_check_end_entity_revocation()
                    .allow_unknown_revocation_status();
            }
            Some(builder.build().map_err(|e| invalid(e.to_string()))?)
        }
        None => None,
    };
    if ca.is_none() && pin.is_none() {
        return Err(invalid(
            "TLS needs a CA (ca = FILE) or the agent's certificate fingerprint (fingerprint = \"sha256:…\")"
                .into(),
        ));
    }
    let verifier = Arc::new(Verifier {
        ca,
        pin,
        accept_any: false,
        seen,
        host: host.map(str::to_owned),
        provider: provider.clone(),
    });
    let client_key = match (&settings.cert, &settings.key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert).map_err(invalid)?;
            let key_der = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| invalid(format!("{}: {e}", key.display())))?;
            Some(Arc::new(
                CertifiedKey::from_der(chain, key_der, &provider)
                    .map_err(|e| invalid(format!("client certificate: {e}")))?,
            ))
        }
        (None, None) => None,
        _ => {
            return Err(invalid(
                "cert and key go together: set both or neither".into(),
            ));
        }
    };
    let config = tls_config(provider, verifier).map_err(invalid)?;
    let name = settings
        .server_name
        .clone()
        .unwrap_or_else(|| address.host.clone());
    let server_name = ServerName::try_from(name.clone())
        .map_err(|_| invalid(format!("{name:?} is not a valid server name")))?;
    Ok(Prepared {
        address: address.clone(),
        tls: Some(PreparedTls {
            config,
            client_key,
            server_name,
        }),
    })
}

/// The rustls client settings every connection uses: our verifier, the
/// client certificate handed out by the connector, HTTP/2 by ALPN.
fn tls_config(
    provider: Arc<rustls::crypto::CryptoProvider>,
    verifier: Arc<Verifier>,
) -> Result<rustls::ClientConfig, String> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    // Each host's connections have settings of their own, so each keeps
    // its own resumption tickets: a reconnection (after an agent restart,
    // a dropped connection, a leased connection taken again) resumes
    // instead of repeating the full handshake. rustls's default store has
    // room for 256 server names, some 70 KiB allocated up front: ten
    // thousand hosts would spend most of their memory on empty caches. One
    // agent answers on a host's channel; two names leave room for a
    // server name changed under a running fleet.
    config.resumption = rustls::client::Resumption::in_memory_sessions(2);
    Ok(config)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", path.display()));
    }
    Ok(certs)
}

async fn dial(prepared: &Prepared) -> Result<Stream, DialError> {
    let address = &prepared.address;
    if let Some(path) = address.socket_path() {
        let unix = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|e| DialError::Tcp(address.to_string(), e))?;
        // Credentials go only to a socket served by this user (or root):
        // another local user could have put one at a path we were given.
        let owner = unix
            .peer_cred()
            .map_err(|e| DialError::Tcp(address.to_string(), e))?
            .uid();
        let me = rustix::process::geteuid().as_raw();
        if owner != me && owner != 0 {
            return Err(DialError::Tcp(
                address.to_string(),
                io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("the socket is served by another user (uid {owner})"),
                ),
            ));
        }
        return Ok(Stream::Unix(unix));
    }
    let tcp = TcpStream::connect((address.host.as_str(), address.port))
        .await
        .map_err(|e| DialError::Tcp(address.to_string(), e))?;
    // Round trips of small calls must not wait for Nagle's algorithm.
    let _ = tcp.set_nodelay(true);
    let Some(tls) = &prepared.tls else {
        return Ok(Stream::Plain(tcp));
    };
    let fail = |reason: String| DialError::Tls(address.to_string(), reason);
    let resolver = Arc::new(ClientCert {
        key: tls.client_key.clone(),
        asked: AtomicBool::new(false),
    });
    let mut config = tls.config.clone();
    config.client_auth_cert_resolver = resolver.clone();
    let mut stream = TlsConnector::from(Arc::new(config))
        .connect(tls.server_name.clone(), tcp)
        .await
        .map_err(|e| fail(explain_tls(&e)))?;
    let mut prefetched = Bytes::new();
    if resolver.asked.load(Ordering::Relaxed) {
        if tls.client_key.is_none() {
            return Err(fail(
                "the agent requires a client certificate (set cert and key)".into(),
            ));
        }
        // With TLS 1.3 the agent judges the certificate after the client's
        // side of the handshake is done, and says so in its first record.
        // Its HTTP/2 settings come at once; read them now so a refusal is
        // reported here, as what it is. The bytes are replayed to HTTP/2.
        let mut buffer = vec![0u8; 16 * 1024];
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await {
            Ok(Ok(0)) => {
                return Err(fail(
                    "the agent closed the connection after the handshake (client certificate refused?)"
                        .into(),
                ));
            }
            Ok(Ok(n)) => prefetched = Bytes::copy_from_slice(&buffer[..n]),
            Ok(Err(e)) => return Err(fail(explain_tls(&e))),
            Err(_) => {}
        }
    }
    Ok(Stream::Tls(Box::new(stream), prefetched))
}

/// Why dialling an agent failed, in words a user can act on.
/// The address is not repeated here: the errors that carry these name it.
#[derive(Debug, thiserror::Error)]
enum DialError {
    #[error("{1}")]
    Tcp(String, io::Error),
    #[error("TLS handshake failed: {1}")]
    Tls(String, String),
}

/// Turns a handshake error into an explanation.
pub fn explain_tls(error: &io::Error) -> String {
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return error.to_string();
    };
    explain_rustls(tls)
}

/// Explains a transport failure: the TLS reason when one is in the chain
/// (TLS 1.3 reports a refused client certificate only at the first read,
/// after the handshake), else every cause.
pub fn explain_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return explain_rustls(tls);
        }
        if let Some(io) = e.downcast_ref::<io::Error>()
            && let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return explain_rustls(tls);
        }
        current = e.source();
    }
    super::causes(error)
}

fn explain_rustls(error: &rustls::Error) -> String {
    use rustls::{AlertDescription, Error as E};
    match error {
        E::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => {
                "the agent's certificate is signed by a CA this client does not trust (check `ca`)"
                    .into()
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!("the agent's certificate has expired ({cert})")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                format!("the agent's certificate is not valid yet ({cert})")
            }
            CertificateError::NotValidForName => {
                "the agent's certificate is not valid for the name dialled (set server_name?)".into()
            }
            CertificateError::NotValidForNameContext { expected, presented } => format!(
                "the agent's certificate is not valid for {expected:?}: it names {} (set server_name?)",
                presented.join(", ")
            ),
            CertificateError::ApplicationVerificationFailure => {
                "the agent's certificate does not match the pinned fingerprint".into()
            }
            CertificateError::BadSignature => {
                "the agent's certificate does not verify against the trusted CA (signed by another CA of the same name?)".into()
            }
            CertificateError::BadEncoding => {
                format!("the agent's certificate is damaged ({cert})")
            }
            CertificateError::Revoked => {
                "the agent's certificate has been revoked (it is on the fleet's revocation list)".into()
            }
            other => format!("the agent's certificate was rejected: {other}"),
        },
        E::AlertReceived(AlertDescription::CertificateRequired) => {
            "the agent requires a client certificate (set cert and key)".into()
        }
        E::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown,
        ) => "the agent rejected this client's certificate (not signed by its client CA?)".into(),
        E::AlertReceived(AlertDescription::CertificateExpired) => {
            "the agent rejected this client's certificate: it has expired".into()
        }
        E::NoApplicationProtocol => "the server does not speak HTTP/2: is it a vigie agent?".into(),
        E::InvalidMessage(_) => {
            "the server did not answer with TLS: is the agent running without TLS?".into()
        }
        // The verifier's own words (an agent awaiting enrollment).
        E::General(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A connection with or without TLS, or over a Unix socket; a TLS one may
/// start with bytes read while connecting, which are handed out first.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>, Bytes),
    Unix(tokio::net::UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(_, prefetched) if !prefetched.is_empty() => {
                let n = prefetched.len().min(buf.remaining());
                buf.put_slice(&prefetched.split_to(n));
                Poll::Ready(Ok(()))
            }
            Stream::Tls(s, _) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s, _) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s, _) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s, _) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s, _) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s, _) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_not_sent_in_plaintext_beyond_loopback() {
        let settings = ConnectionSettings {
            token: Some(super::super::config::Secret::new("vgt_x")),
            ..ConnectionSettings::default()
        };
        let remote = Address {
            host: "192.0.2.10".into(),
            port: 7421,
        };
        let local = Address {
            host: "127.0.0.1".into(),
            port: 7421,
        };
        assert!(matches!(
            prepare(&remote, &settings, None, None),
            Err(Error::Settings { .. })
        ));
        assert!(prepare(&local, &settings, None, None).is_ok());
        let allowed = ConnectionSettings {
            insecure_plaintext: Some(true),
            ..settings
        };
        assert!(prepare(&remote, &allowed, None, None).is_ok());
    }

    #[test]
    fn addresses_print_ipv6_in_brackets() {
        let v6 = Address {
            host: "::1".into(),
            port: 7421,
        };
        assert_eq!(v6.to_string(), "[::1]:7421");
        assert!(v6.is_loopback());
    }
}
