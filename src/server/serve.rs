//! Serving accepted connections over HTTP/2, with hyper directly.
//!
//! tonic's `Server` does the same, but it keeps hyper's per-stream send
//! buffer at its default of 400 KiB and has no setting for it. A stream's
//! encoded output waits there while the connection's writes are behind, so
//! with 100 commands streaming at once through one connection those buffers
//! held a share of the agent's memory. Here the buffer is [`SEND_BUFFER`];
//! one stream alone still fills the socket, since each of its chunks is
//! handed over whole once the buffer has room.
//!
//! The rest is what tonic's server did for the agent: each request carries
//! its connection's [`ConnInfo`](super::net::ConnInfo) in its extensions;
//! a stop ends accepting, then asks every connection to finish gracefully
//! (streams in flight end, new ones are refused). Unlike tonic's, the
//! connections belong to the future that serves them: when the caller gives
//! up waiting and drops it, they are closed, not left running into the next
//! generation. Not kept: tonic's server-side enforcement of a client's
//! `grpc-timeout` header. vigie's client sends none, and a client that
//! gives up resets its stream, which drops the call's handler.

use std::{convert::Infallible, io, time::Duration};

use futures::{Stream, StreamExt};
use hyper::{body::Incoming, server::conn::http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::{body::Body, transport::server::Connected};
use tower::{Service, ServiceExt};

use super::net::Conn;

/// Encoded output one stream may have waiting in HTTP/2 before its body is
/// polled again. Small next to hyper's 400 KiB, so that many streams at
/// once hold little; a chunk larger than this is still handed over whole,
/// so one stream alone keeps the socket as busy as with the default.
pub const SEND_BUFFER: usize = 16 * 1024;

/// The HTTP/2 settings of every connection the agent serves.
#[derive(Debug, Clone)]
pub struct Http2Settings {
    /// Time between pings on an idle connection.
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
    /// Calls one connection may have in flight at once.
    pub max_concurrent_streams: u32,
}

/// Largest header block a request may send, made explicit (hyper's
/// default is 16 KiB, h2's own 16 MiB); vigie's requests carry a few
/// hundred bytes of metadata.
const MAX_HEADER_LIST: u32 = 64 * 1024;
/// Streams a client may open and reset before the server has accepted
/// them, after which the connection is closed (hyper's default, 20, made
/// explicit so that it cannot be lost).
const MAX_PENDING_RESETS: usize = 20;
/// Streams the server may reset because of a client's errors before it
/// closes the connection.
const MAX_LOCAL_ERROR_RESETS: usize = 256;

fn builder(settings: &Http2Settings) -> http2::Builder<TokioExecutor> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(settings.keepalive_interval))
        .keep_alive_timeout(settings.keepalive_timeout)
        // Bounded work per connection: calls at once, header sizes, and
        // hyper's guards against rapid-reset floods (streams opened and
        // reset before they are served, or reset by errors) kept on.
        .max_concurrent_streams(settings.max_concurrent_streams)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESETS)
        .initial_stream_window_size(crate::wire::STREAM_WINDOW)
        .initial_connection_window_size(crate::wire::CONNECTION_WINDOW)
        .max_frame_size(crate::wire::MAX_FRAME)
        .max_send_buf_size(SEND_BUFFER);
    builder
}

/// Serves every connection `incoming` yields with `service` until `stop`
/// fires (or `incoming` ends), then until every connection has finished
/// gracefully.
///
/// `incoming` is dropped as soon as accepting ends. Dropping the returned
/// future closes every connection still open.
pub async fn serve<S, I>(service: S, incoming: I, settings: &Http2Settings, stop: CancellationToken)
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    I: Stream<Item = io::Result<Conn>>,
{
    let builder = builder(settings);
    let mut connections = JoinSet::new();
    // What the connections watch: `stop`, or the end of accepting for any
    // other reason, so that they always finish gracefully.
    let finishing = stop.child_token();
    {
        let mut incoming = std::pin::pin!(incoming);
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                // Finished connections are collected as they end, so that
                // a long-lived agent does not keep one entry per connection
                // it ever served.
                Some(ended) = connections.join_next(), if !connections.is_empty() => {
                    if let Err(error) = ended {
                        tracing::error!(%error, "a connection's task failed");
                    }
                }
                accepted = incoming.next() => match accepted {
                    Some(Ok(conn)) => {
                        connections.spawn(connection(
                            builder.clone(),
                            conn,
                            service.clone(),
                            finishing.clone(),
                        ));
                    }
                    Some(Err(error)) => tracing::debug!(%error, "a connection failed before it was served"),
                    None => break,
                },
            }
        }
    }
    finishing.cancel();
    while let Some(ended) = connections.join_next().await {
        if let Err(error) = ended {
            tracing::error!(%error, "a connection's task failed");
        }
    }
}

/// Serves one connection until it closes, or until `stop` fires and its
/// streams in flight have ended.
async fn connection<S>(
    builder: http2::Builder<TokioExecutor>,
    conn: Conn,
    service: S,
    stop: CancellationToken,
) where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let info = conn.connect_info();
    let service = hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
        request.extensions_mut().insert(info.clone());
        service.clone().oneshot(request.map(Body::new))
    });
    let serving = builder.serve_connection(TokioIo::new(conn), service);
    tokio::pin!(serving);
    let result = tokio::select! {
        result = serving.as_mut() => result,
        () = stop.cancelled() => {
            serving.as_mut().graceful_shutdown();
            serving.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}
