//! The listening socket and the connections it accepts.
//!
//! Each accepted connection gets an id, which requests see through
//! [`ConnInfo`], and a guard that tells the session registry when the
//! connection closes (hyper drops the IO object then). That is how a client
//! that simply goes away gets the same cleanup as one that disconnects.

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, SocketAddr},
    os::fd::{AsFd, FromRawFd, OwnedFd},
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures::Stream;
use rustls::pki_types::CertificateDer;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream, UnixListener, UnixStream},
};
use tokio_util::either::Either;
use tonic::transport::server::Connected;

use super::{session::Sessions, tls::ServerTls};

/// A connection before TLS: TCP, or the private Unix socket.
type Plain = Either<TcpStream, UnixStream>;

/// The environment variable through which a restarting agent hands its
/// listening socket to its successor; commands never inherit it.
pub const LISTEN_FD_ENV: &str = "VIGIE_LISTEN_FD";

/// What a request knows of its connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Unique within this agent process.
    pub id: u64,
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// The session of requests on this connection that name none: an
    /// unguessable id, so that no other connection can name it.
    pub implicit_session: Arc<str>,
    /// True when TLS protects the connection.
    pub tls: bool,
    /// The certificate the client presented in the TLS handshake (DER),
    /// already verified against the client CA.
    pub peer_certificate: Option<Arc<CertificateDer<'static>>>,
}

/// Where the agent listens: a TCP socket, or a Unix socket that only its
/// owner can reach (the embedded agent of the CLI and the desktop client).
#[derive(Debug)]
pub enum Listener {
    /// A TCP socket.
    Tcp(TcpListener),
    /// A Unix socket in a directory only the agent's user can enter.
    Unix(UnixListener, std::path::PathBuf),
}

/// The address of a [`Listener`], as answers and logs show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// The path of a Unix socket.
    Unix(std::path::PathBuf),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl Listener {
    /// Its address.
    pub fn address(&self) -> io::Result<ListenAddr> {
        Ok(match self {
            Self::Tcp(listener) => ListenAddr::Tcp(listener.local_addr()?),
            Self::Unix(_, path) => ListenAddr::Unix(path.clone()),
        })
    }

    /// Waits for the next connection, with the client's address (none for
    /// a Unix socket).
    async fn accept(&self) -> io::Result<(Plain, Option<SocketAddr>)> {
        match self {
            Self::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                // Small requests and replies must not wait for Nagle's
                // algorithm: it costs tens of milliseconds per round trip.
                let _ = stream.set_nodelay(true);
                Ok((Either::Left(stream), Some(peer)))
            }
            Self::Unix(listener, _) => loop {
                let (stream, _) = listener.accept().await?;
                // The directory already keeps others out; the peer's user
                // is checked too, so that a socket passed on by mistake
                // still serves nobody else.
                match stream.peer_cred() {
                    Ok(cred) if cred.uid() == rustix::process::geteuid().as_raw() => {
                        return Ok((Either::Right(stream), None));
                    }
                    Ok(cred) => tracing::warn!(
                        uid = cred.uid(),
                        "refused a connection from another user on the private socket"
                    ),
                    Err(e) => tracing::warn!(error = %e, "cannot read a connection's credentials"),
                }
            },
        }
    }
}

/// An accepted connection.
#[derive(Debug)]
pub struct Conn {
    stream: Either<Plain, Box<tokio_rustls::server::TlsStream<Plain>>>,
    info: ConnInfo,
    _guard: CloseGuard,
}

#[derive(Debug)]
struct CloseGuard {
    id: u64,
    sessions: Arc<Sessions>,
    _counted: Counted,
}

impl Drop for CloseGuard {
    fn drop(&mut self) {
        self.sessions.connection_closed(self.id);
    }
}

/// How many connections the agent keeps at once, in all and per client
/// address, so that one client cannot take every descriptor.
#[derive(Debug)]
pub struct ConnLimits {
    total: usize,
    per_ip: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One open connection, counted until dropped.
#[derive(Debug)]
struct Counted {
    limits: Arc<ConnLimits>,
    /// The client's address; none on a Unix socket.
    ip: Option<IpAddr>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut open = self.limits.lock();
        open.0 = open.0.saturating_sub(1);
        if let Some(ip) = self.ip
            && let Some(n) = open.1.get_mut(&ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.1.remove(&ip);
            }
        }
    }
}

impl ConnLimits {
    /// Limits of `total` connections, `per_ip` of them from one address.
    pub fn new(total: usize, per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            total,
            per_ip,
            open: Mutex::new((0, HashMap::new())),
        })
    }

    fn admit(self: &Arc<Self>, ip: Option<IpAddr>) -> Option<Counted> {
        let ip = ip.map(client_network);
        let mut open = self.lock();
        let from_ip = ip.map_or(0, |ip| open.1.get(&ip).copied().unwrap_or(0));
        if open.0 >= self.total || from_ip >= self.per_ip {
            return None;
        }
        open.0 += 1;
        if let Some(ip) = ip {
            *open.1.entry(ip).or_default() += 1;
        }
        Some(Counted {
            limits: self.clone(),
            ip,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, HashMap<IpAddr, usize>)> {
        // Counts updated together under the lock; nothing there panics.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the per-address limit counts a client as: its IPv4 address, or the
/// /64 network of its IPv6 address, since one host can use a whole /64.
fn client_network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Connection ids are unique for the whole process, across restarts in
/// place, so a late close from an old generation never matches a new one.
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// The stream of accepted connections for one generation of the server,
/// after their TLS handshake when `tls` is set.
///
/// Accept errors that concern one connection are skipped; running out of
/// file descriptors or memory pauses accepting briefly instead of spinning.
pub fn incoming(
    listener: Arc<Listener>,
    sessions: Arc<Sessions>,
    limits: Arc<ConnLimits>,
    tls: Option<Arc<ServerTls>>,
) -> Pin<Box<dyn Stream<Item = io::Result<Conn>> + Send + 'static>> {
    match tls {
        None => {
            let state = (listener, sessions, limits);
            Box::pin(futures::stream::unfold(
                state,
                |(listener, sessions, limits)| async move {
                    let conn = accept_one(&listener, &sessions, &limits).await;
                    Some((Ok(conn), (listener, sessions, limits)))
                },
            ))
        }
        Some(tls) => Box::pin(with_tls(listener, sessions, limits, tls)),
    }
}

/// Accepted connections after their handshake. Handshakes run in tasks of
/// their own, so that a client that connects and says nothing holds up
/// nobody; each has [`super::tls::HANDSHAKE_TIMEOUT`] to finish. The
/// accepting task ends when the server drops the stream.
fn with_tls(
    listener: Arc<Listener>,
    sessions: Arc<Sessions>,
    limits: Arc<ConnLimits>,
    tls: Arc<ServerTls>,
) -> impl Stream<Item = io::Result<Conn>> + Send + 'static {
    let (sender, receiver) = tokio::sync::mpsc::channel::<io::Result<Conn>>(64);
    tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                conn = accept_one(&listener, &sessions, &limits) => conn,
                () = sender.closed() => return,
            };
            let sender = sender.clone();
            let acceptor = tls.acceptor();
            tokio::spawn(async move {
                let Conn {
                    stream,
                    mut info,
                    _guard,
                } = conn;
                let Either::Left(plain) = stream else {
                    return;
                };
                let handshake =
                    tokio::time::timeout(super::tls::HANDSHAKE_TIMEOUT, acceptor.accept(plain));
                match handshake.await {
                    Ok(Ok(stream)) => {
                        info.tls = true;
                        info.peer_certificate = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|certs| certs.first())
                            .map(|cert| Arc::new(cert.clone().into_owned()));
                        let conn = Conn {
                            stream: Either::Right(Box::new(stream)),
                            info,
                            _guard,
                        };
                        let _ = sender.send(Ok(conn)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(peer = ?info.peer, error = %e, "TLS handshake failed");
                    }
                    Err(_) => tracing::debug!(peer = ?info.peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(receiver)
}

/// Waits for the next connection the limits admit.
async fn accept_one(
    listener: &Listener,
    sessions: &Arc<Sessions>,
    limits: &Arc<ConnLimits>,
) -> Conn {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Some(counted) = limits.admit(peer.map(|p| p.ip())) else {
                    // Closed at once: the client sees a reset, and the
                    // descriptor is free again.
                    refused_connection(peer);
                    continue;
                };
                let id = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
                sessions.connection_opened(id);
                return Conn {
                    stream: Either::Left(stream),
                    info: ConnInfo {
                        id,
                        peer,
                        implicit_session: super::session::implicit_id().into(),
                        tls: false,
                        peer_certificate: None,
                    },
                    _guard: CloseGuard {
                        id,
                        sessions: sessions.clone(),
                        _counted: counted,
                    },
                };
            }
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept connections; retrying shortly");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Logs a connection refused for the limits, at most every ten seconds, so
/// that a flood of them cannot flood the log.
fn refused_connection(peer: Option<SocketAddr>) {
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
        *last = Some(Instant::now());
        tracing::warn!(
            ?peer,
            "connection refused: too many connections (max_connections, max_connections_per_ip)"
        );
    }
}

fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
    )
}

/// Binds the listening socket, or adopts the one a restarting agent handed
/// over through `VIGIE_LISTEN_FD`; says which.
pub fn bind(addr: SocketAddr) -> io::Result<(std::net::TcpListener, bool)> {
    if let Some(listener) = inherited_listener()? {
        return Ok((listener, true));
    }
    // std's bind sets SO_REUSEADDR, so a restart can bind again at once even
    // with connections of the old process in TIME_WAIT.
    let listener = std::net::TcpListener::bind(addr)?;
    Ok((listener, false))
}

/// Binds a Unix socket in a new directory that only this user may enter,
/// under `$XDG_RUNTIME_DIR` (or the temporary directory). The directory
/// goes when the returned guard is dropped.
pub fn bind_private() -> io::Result<(tempfile::TempDir, std::os::unix::net::UnixListener)> {
    use std::os::unix::fs::PermissionsExt;
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(std::path::PathBuf::from)
        .filter(|dir| dir.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("vigie-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(base)?;
    let listener = std::os::unix::net::UnixListener::bind(dir.path().join("agent.sock"))?;
    listener.set_nonblocking(true)?;
    Ok((dir, listener))
}

fn inherited_listener() -> io::Result<Option<std::net::TcpListener>> {
    let Some(raw) = std::env::var_os(LISTEN_FD_ENV) else {
        return Ok(None);
    };
    let fd: i32 = raw
        .to_str()
        .and_then(|s| s.parse().ok())
        .filter(|fd| *fd > 2)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{LISTEN_FD_ENV} is not a file descriptor number"),
            )
        })?;
    // SAFETY: the previous agent process put a listening socket at this
    // descriptor and exec'ed us; nothing else in this process owns it yet.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // Our own commands must not inherit the listening socket.
    rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC)?;
    Ok(Some(std::net::TcpListener::from(owned)))
}

/// Makes a copy of the listening socket that survives `exec`, for a restart
/// in place. Returns the descriptor number to pass in `VIGIE_LISTEN_FD`.
pub fn inheritable_copy(listener: &TcpListener) -> io::Result<OwnedFd> {
    let copy = listener.as_fd().try_clone_to_owned()?;
    rustix::io::fcntl_setfd(&copy, rustix::io::FdFlags::empty())?;
    Ok(copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_per_address_and_per_ipv6_network() {
        let limits = ConnLimits::new(3, 2);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let a = limits.admit(ip("2001:db8::1")).unwrap();
        let _b = limits.admit(ip("2001:db8::ffff")).unwrap();
        assert!(
            limits.admit(ip("2001:db8::2")).is_none(),
            "one /64 is one client"
        );
        let _c = limits.admit(ip("192.0.2.1")).unwrap();
        assert!(limits.admit(ip("192.0.2.2")).is_none(), "three in all");
        drop(a);
        let _d = limits
            .admit(ip("::ffff:192.0.2.1"))
            .expect("a place came back");
        assert!(
            limits.admit(None).is_none(),
            "the total counts Unix connections too"
        );
    }
}
