//! The listening socket and the connections it accepts.
//!
//! Each accepted connection gets an id, which requests see through
//! [`ConnInfo`], and a guard that tells the session registry when the
//! connection closes (hyper drops the IO object then). That is how a client
//! that simply goes away gets the same cleanup as one that disconnects.

use std::{
    io,
    net::SocketAddr,
    os::fd::{AsFd, FromRawFd, OwnedFd},
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use futures::Stream;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};
use tonic::transport::server::Connected;

use super::{exec::LISTEN_FD_ENV, session::Sessions};

/// What a request knows of its connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Unique within this agent process.
    pub id: u64,
    /// The client's address.
    pub peer: Option<SocketAddr>,
}

/// An accepted connection.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    info: ConnInfo,
    _guard: CloseGuard,
}

#[derive(Debug)]
struct CloseGuard {
    id: u64,
    sessions: Arc<Sessions>,
}

impl Drop for CloseGuard {
    fn drop(&mut self) {
        self.sessions.connection_closed(self.id);
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

/// The stream of accepted connections for one generation of the server.
///
/// Accept errors that concern one connection are skipped; running out of
/// file descriptors or memory pauses accepting briefly instead of spinning.
pub fn incoming(
    listener: Arc<TcpListener>,
    sessions: Arc<Sessions>,
) -> impl Stream<Item = io::Result<Conn>> + Send + 'static {
    futures::stream::unfold((listener, sessions), |(listener, sessions)| async move {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    // Small requests and replies must not wait for Nagle's
                    // algorithm: it costs tens of milliseconds per round trip.
                    let _ = stream.set_nodelay(true);
                    let id = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
                    let conn = Conn {
                        stream,
                        info: ConnInfo {
                            id,
                            peer: Some(peer),
                        },
                        _guard: CloseGuard {
                            id,
                            sessions: sessions.clone(),
                        },
                    };
                    return Some((Ok(conn), (listener, sessions)));
                }
                Err(e) if is_per_connection(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept connections; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    })
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
/// over through `VIGIE_LISTEN_FD`.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    if let Some(listener) = inherited_listener()? {
        return Ok(listener);
    }
    // std's bind sets SO_REUSEADDR, so a restart can bind again at once even
    // with connections of the old process in TIME_WAIT.
    let listener = std::net::TcpListener::bind(addr)?;
    Ok(listener)
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
