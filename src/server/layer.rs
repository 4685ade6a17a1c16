//! The gate in front of every service the agent serves: a tower layer that
//! authenticates the caller, applies [`auth::POLICY`](super::auth::POLICY),
//! puts the caller's [`Identity`] in the request's extensions for the
//! handlers, and writes the audit records of calls and denials.
//!
//! It also turns tonic's OUT_OF_RANGE for an oversized request into the
//! RESOURCE_EXHAUSTED that the gRPC spec names for it, with a message that
//! says the limit.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use http::HeaderValue;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Code, Status, body::Body, transport::server::TlsConnectInfo};
use tower::{Layer, Service};

use super::{
    audit::{AuditLog, Record},
    auth::{self, AccessList, Denied, Identity},
    net::ConnInfo,
    session::SESSION_HEADER,
};

/// How callers are identified.
#[derive(Debug)]
pub enum AccessMode {
    /// No access control: every caller is the anonymous admin (loopback only).
    Anonymous,
    /// Callers prove who they are with a token or a client certificate.
    Checked(AccessList),
}

/// What the gate knows; shared by every connection.
#[derive(Debug)]
pub struct Gate {
    /// How callers are identified.
    pub access: AccessMode,
    /// Where calls and denials are recorded.
    pub audit: Arc<AuditLog>,
    /// The request size limit, for the message of oversized requests.
    pub max_request_bytes: usize,
    /// Places for public streams (health Watch, reflection), which anyone
    /// who can connect may open: each holds one until its response ends.
    pub public_streams: Arc<Semaphore>,
    /// How often denied calls are logged one by one.
    pub denials: super::audit::RateLimit,
}

/// The public methods that stream, and so stay open as long as the caller
/// likes.
const PUBLIC_STREAMS: &[&str] = &[
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

impl Gate {
    /// Identifies and authorizes a request; on success its identity is in
    /// its extensions (none for public methods).
    fn admit(&self, request: &mut http::Request<Body>) -> Result<(), Status> {
        let path = request.uri().path().to_owned();
        if auth::access_for(&path) == Some(auth::Access::Public) {
            return Ok(());
        }
        let identity = self.identify(request);
        let record = |event: &'static str, reason: Option<String>| Record {
            event,
            rpc: Some(method_name(&path).to_owned()),
            identity: identity.as_ref().map(|i| i.name.clone()),
            peer: peer_of(request),
            session: request
                .headers()
                .get(SESSION_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            reason,
            ..Record::default()
        };
        match auth::authorize(&path, identity.as_ref()) {
            Ok(()) => {
                self.audit.record(&record("call", None));
                if let Some(identity) = identity {
                    request.extensions_mut().insert(identity);
                }
                Ok(())
            }
            Err(denied) => {
                // A flood of refused calls must not become a flood of
                // records: past a burst, they are counted, not written.
                if let Some(left_out) = self.denials.admit() {
                    if left_out > 0 {
                        self.audit.record(&Record {
                            event: "denied_suppressed",
                            count: Some(left_out),
                            ..Record::default()
                        });
                        tracing::warn!(left_out, "denied calls not logged one by one");
                    }
                    self.audit
                        .record(&record("denied", Some(denied.to_string())));
                    tracing::warn!(rpc = %path, peer = ?peer_of(request), reason = ?denied.to_string(), "call denied");
                }
                let code = match denied {
                    Denied::Unauthenticated => Code::Unauthenticated,
                    Denied::Forbidden { .. } | Denied::NoRule(_) => Code::PermissionDenied,
                };
                Err(Status::new(code, denied.to_string()))
            }
        }
    }

    fn identify(&self, request: &http::Request<Body>) -> Option<Identity> {
        let list = match &self.access {
            AccessMode::Anonymous => return Some(Identity::anonymous()),
            AccessMode::Checked(list) => list.get(),
        };
        match request.headers().get(http::header::AUTHORIZATION) {
            // A token that is wrong stays wrong: it never falls back to the
            // certificate, so a bad token is always UNAUTHENTICATED.
            Some(value) => bearer_token(value).and_then(|token| list.identify_token(token)),
            None => certificate_subject(request).and_then(|s| list.identify_certificate(&s)),
        }
    }
}

fn bearer_token(value: &HeaderValue) -> Option<&str> {
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The subject of the client's TLS certificate, e.g. "CN=vigie-admin".
fn certificate_subject(request: &http::Request<Body>) -> Option<String> {
    let certs = request
        .extensions()
        .get::<TlsConnectInfo<ConnInfo>>()?
        .peer_certs()?;
    let (_, cert) = x509_parser::parse_x509_certificate(certs.first()?.as_ref()).ok()?;
    Some(cert.subject().to_string())
}

fn peer_of(request: &http::Request<Body>) -> Option<String> {
    let ext = request.extensions();
    ext.get::<TlsConnectInfo<ConnInfo>>()
        .map(|t| t.get_ref())
        .or_else(|| ext.get::<ConnInfo>())
        .and_then(|info| info.peer)
        .map(|peer| peer.to_string())
}

fn method_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The layer to add to the server.
#[derive(Debug, Clone)]
pub struct GateLayer {
    gate: Arc<Gate>,
}

impl GateLayer {
    /// A layer applying `gate`.
    pub fn new(gate: Arc<Gate>) -> Self {
        Self { gate }
    }
}

impl<S> Layer<S> for GateLayer {
    type Service = GateService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GateService {
            inner,
            gate: self.gate.clone(),
        }
    }
}

/// The gate around one connection's services.
#[derive(Debug, Clone)]
pub struct GateService<S> {
    inner: S,
    gate: Arc<Gate>,
}

impl<S> Service<http::Request<Body>> for GateService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Send,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        if let Err(status) = self.gate.admit(&mut request) {
            return Box::pin(std::future::ready(Ok(status.into_http())));
        }
        let place = if PUBLIC_STREAMS.contains(&request.uri().path()) {
            match self.gate.public_streams.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    let status = Status::resource_exhausted(
                        "too many open health and reflection streams on this agent; try again later",
                    );
                    return Box::pin(std::future::ready(Ok(status.into_http())));
                }
            }
        } else {
            None
        };
        let limit = self.gate.max_request_bytes;
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            name_oversized_requests(&mut response, limit);
            Ok(match place {
                Some(permit) => response.map(|body| {
                    Body::new(Holding {
                        inner: body,
                        _permit: permit,
                    })
                }),
                None => response,
            })
        })
    }
}

/// Rewrites tonic's answer to a request over the size limit (OUT_OF_RANGE,
/// in the headers of a trailers-only response) into RESOURCE_EXHAUSTED.
fn name_oversized_requests(response: &mut http::Response<Body>, limit: usize) {
    let Some(status) = Status::from_header_map(response.headers()) else {
        return;
    };
    if status.code() == Code::OutOfRange && status.message().contains("message length too large") {
        let replacement = Status::resource_exhausted(format!(
            "request too large: this agent accepts requests of at most {limit} bytes"
        ));
        let headers = response.headers_mut();
        headers.remove("grpc-status");
        headers.remove("grpc-message");
        let _ = replacement.add_header(headers);
    }
}

/// A response body that keeps a place taken until the response ends (or
/// the client goes away and the body is dropped).
struct Holding {
    inner: Body,
    _permit: OwnedSemaphorePermit,
}

impl http_body::Body for Holding {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
