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
use tonic::{Code, Status, body::Body};
use tower::{Layer, Service};

use super::{
    audit::{AuditLog, Record},
    auth::{self, AccessList, Denied, Identity},
    enroll::FleetState,
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
    /// The agent's fleet identity: whether it awaits enrollment, the
    /// revocation list and the fleet's tokens.
    pub fleet: Option<Arc<FleetState>>,
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
        let awaiting = self.fleet.as_ref().is_some_and(|f| f.is_awaiting());
        if awaiting && path != auth::ENROLL_PATH {
            return Err(Status::failed_precondition(Denied::Awaiting.to_string()));
        }
        if auth::access_for(&path) == Some(auth::Access::Public) {
            return Ok(());
        }
        let identified = self.identify(request);
        let identity = identified.as_ref().ok().cloned().flatten();
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
        let decision = match identified {
            Err(denied) => Err(denied),
            Ok(identity) => auth::authorize(&path, identity.as_ref()),
        };
        match decision {
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
                    Denied::Unauthenticated | Denied::Revoked | Denied::Expired => {
                        Code::Unauthenticated
                    }
                    Denied::Forbidden { .. } | Denied::NoRule(_) => Code::PermissionDenied,
                    Denied::Awaiting => Code::FailedPrecondition,
                };
                Err(Status::new(code, denied.to_string()))
            }
        }
    }

    /// Who is calling: `Ok(None)` when the credentials prove nothing, an
    /// error when they prove a certificate that may no longer be used.
    ///
    /// A client certificate has passed the TLS verifier (signed by the
    /// client CA, valid when the connection was made); it is checked again
    /// here on every call, against the revocation list in force and its
    /// expiry, so that neither outlives a long connection. Its role is the
    /// one the access file gives its subject, else the one it carries.
    fn identify(&self, request: &http::Request<Body>) -> Result<Option<Identity>, Denied> {
        let list = match &self.access {
            AccessMode::Anonymous => return Ok(Some(Identity::anonymous())),
            AccessMode::Checked(list) => list.get(),
        };
        // The client certificate first, whether or not a token comes with
        // it: a revoked or expired certificate is refused even when the
        // call also carries a token.
        let certificate = connection_of(request)
            .and_then(|info| info.peer_certificate.clone())
            .and_then(|der| crate::pki::CertFacts::parse(der.as_ref()).ok());
        if let Some(facts) = &certificate {
            if self
                .fleet
                .as_ref()
                .is_some_and(|fleet| fleet.is_revoked(&facts.serial))
            {
                return Err(Denied::Revoked);
            }
            if crate::clock::now_ms() > facts.not_after_ms {
                return Err(Denied::Expired);
            }
        } else if self.fleet.is_some() {
            // A fleet agent serves only connections that showed a fleet
            // certificate. A connection opened while it awaited enrollment
            // (when none was asked for) stays open afterwards: without
            // this, a token alone would be enough on it.
            return Ok(None);
        }
        let identity = if let Some(value) = request.headers().get(http::header::AUTHORIZATION) {
            // A token that is wrong stays wrong: it never falls back to the
            // certificate, so a bad token is always UNAUTHENTICATED.
            let Some(token) = bearer_token(value) else {
                return Ok(None);
            };
            list.identify_token(token).or_else(|| {
                self.fleet
                    .as_ref()
                    .and_then(|fleet| fleet.identify_token(token))
            })
        } else {
            certificate.as_ref().and_then(|facts| {
                list.identify_certificate(&facts.subject).or_else(|| {
                    facts.role.map(|role| Identity {
                        name: format!("cert:{}", facts.subject),
                        role,
                    })
                })
            })
        };
        // Remember which identity a certificate carried, so that revoking
        // the certificate can end what that identity has open.
        if let (Some(fleet), Some(facts), Some(identity)) = (&self.fleet, &certificate, &identity) {
            fleet.note_certificate(&facts.serial, &identity.name);
        }
        Ok(identity)
    }
}

/// The connection a request came on.
fn connection_of(request: &http::Request<Body>) -> Option<&ConnInfo> {
    request.extensions().get::<ConnInfo>()
}

fn bearer_token(value: &HeaderValue) -> Option<&str> {
    let value = value.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn peer_of(request: &http::Request<Body>) -> Option<String> {
    connection_of(request)
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
