//! The gRPC adapter of the fleet rpcs (Enroll, RenewCertificate,
//! PushPolicy): it carries messages between the wire and
//! [`FleetState`](super::enroll::FleetState), audits, and maps errors. The
//! checks themselves live in `enroll::exchange`.

use std::{pin::Pin, sync::Arc, time::Duration};

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{
    AgentState,
    audit::Record,
    auth::{Identity, TokenEntry},
    enroll::{EnrollError, Finish, FleetState},
    error::Error,
    net::ConnInfo,
};
use crate::{pki::CertFacts, proto, types::CertificateSummary};

/// The stream an Enroll or RenewCertificate call answers with.
pub type EnrollStream = Pin<Box<dyn Stream<Item = Result<proto::EnrollResponse, Status>> + Send>>;

/// How long one exchange may take from `start` to `done`: a client that
/// opens one and stalls must not hold anything for long.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Enroll (`renew` false) or RenewCertificate (`renew` true).
pub fn exchange(
    state: &Arc<AgentState>,
    request: Request<Streaming<proto::EnrollRequest>>,
    renew: bool,
) -> Result<Response<EnrollStream>, Status> {
    let fleet = fleet_of(state)?;
    let (peer, identity) = caller_of(&request);
    let mut inbound = request.into_inner();
    let (sender, receiver) = mpsc::channel(2);
    let audit = state.audit.clone();
    state.tracker.spawn(async move {
        let run = async {
            let start = match next_step(&mut inbound).await? {
                proto::enroll_request::Step::Start(start) => start,
                proto::enroll_request::Step::Finish(_) => {
                    return Err(protocol("the exchange opens with `start`"));
                }
            };
            let challenge = if renew {
                fleet.renew_challenge()?
            } else {
                fleet.challenge(&start.client_nonce)?
            };
            let answer = proto::EnrollResponse {
                step: Some(proto::enroll_response::Step::Challenge(
                    proto::EnrollChallenge {
                        agent_nonce: challenge.agent_nonce.clone(),
                        agent_proof: challenge.agent_proof.clone(),
                        csr_der: challenge.csr_der.clone(),
                        hostname: challenge.hostname.clone(),
                    },
                )),
            };
            if sender.send(Ok(answer)).await.is_err() {
                return Err(protocol("the client went away"));
            }
            let finish = match next_step(&mut inbound).await? {
                proto::enroll_request::Step::Finish(finish) => finish_of(finish, renew)?,
                proto::enroll_request::Step::Start(_) => {
                    return Err(protocol("`start` was sent twice"));
                }
            };
            if renew {
                Ok(fleet.renew_finish(finish).await?)
            } else {
                Ok(fleet.finish(&challenge, finish).await?)
            }
        };
        let result = match tokio::time::timeout(EXCHANGE_TIMEOUT, run).await {
            Ok(result) => result,
            Err(_) => Err(protocol("the exchange took longer than 60 s")),
        };
        let event = match (&result, renew) {
            (Ok(_), false) => "enrolled",
            (Ok(_), true) => "renewed",
            (Err(_), false) => "enroll_refused",
            (Err(_), true) => "renew_refused",
        };
        // Refusals of Enroll come from callers without credentials: they
        // are recorded and logged within a rate, like the gate's denials,
        // and what was left out is counted in the next record.
        let admitted = if result.is_ok() || renew {
            Some(0)
        } else {
            fleet.refusals.admit()
        };
        if let Some(left_out) = admitted {
            if left_out > 0 {
                audit.record(&Record {
                    event: "enroll_refused_suppressed",
                    count: Some(left_out),
                    ..Record::default()
                });
            }
            audit.record(&Record {
                event,
                rpc: Some(if renew { "RenewCertificate" } else { "Enroll" }.into()),
                identity: identity.clone(),
                peer: peer.clone(),
                reason: result.as_ref().err().map(ToString::to_string),
                certificate: result.as_ref().ok().map(describe),
                ..Record::default()
            });
        }
        let reply = result.map(|facts| proto::EnrollResponse {
            step: Some(proto::enroll_response::Step::Done(proto::EnrollDone {
                certificate: Some(CertificateSummary::from(&facts).into()),
            })),
        });
        match &reply {
            Ok(_) => tracing::info!(event, ?peer, "fleet certificate taken into use"),
            Err(e) if admitted.is_some() => {
                tracing::warn!(event, ?peer, reason = %e, "fleet exchange refused");
            }
            Err(_) => {}
        }
        let _ = sender.send(reply.map_err(Status::from)).await;
    });
    Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
}

/// PushPolicy.
pub async fn push_policy(
    state: &Arc<AgentState>,
    request: Request<proto::PushPolicyRequest>,
) -> Result<Response<proto::PushPolicyResponse>, Status> {
    let fleet = fleet_of(state)?;
    let (peer, identity) = caller_of(&request);
    let request = request.into_inner();
    let tokens = tokens_of(request.tokens)?;
    let names: Vec<String> = tokens.iter().map(|t| t.name.clone()).collect();
    let result = fleet.push_policy(&request.crl_der, tokens).await;
    state.audit.record(&Record {
        event: if result.is_ok() {
            "policy_pushed"
        } else {
            "policy_refused"
        },
        rpc: Some("PushPolicy".into()),
        identity,
        peer,
        reason: match &result {
            Ok((list, _)) => Some(format!(
                "revocation list {} ({} revoked); fleet tokens: {}",
                list.number,
                list.serials.len(),
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            )),
            Err(e) => Some(e.to_string()),
        },
        count: result
            .as_ref()
            .ok()
            .map(|(list, _)| list.serials.len() as u64),
        ..Record::default()
    });
    let (list, token_count) = result.map_err(Error::from)?;
    // What revoked certificates still have open (a metrics stream, a
    // running command) ends now, not at its next call.
    for identity in fleet.identities_revoked_by(&list) {
        // Its detached jobs too: what a revoked credential started ends
        // with its access, as its sessions' commands do.
        let jobs = state.jobs.cancel_owned_by(&identity);
        if jobs > 0 {
            tracing::warn!(%identity, jobs, "jobs of a revoked certificate cancelled");
        }
        let ended = state.sessions.end_identity(&identity);
        if ended > 0 {
            tracing::warn!(%identity, ended, "sessions of a revoked certificate ended");
        }
    }
    Ok(Response::new(proto::PushPolicyResponse {
        revocation_list_number: list.number,
        revoked_count: u32::try_from(list.serials.len()).unwrap_or(u32::MAX),
        token_count: u32::try_from(token_count).unwrap_or(u32::MAX),
    }))
}

fn fleet_of(state: &AgentState) -> Result<Arc<FleetState>, Status> {
    state.fleet.clone().ok_or_else(|| {
        Status::failed_precondition(
            "this agent has no fleet directory (fleet_dir): it does not take part in a fleet",
        )
    })
}

/// Where a request comes from and who sent it, for the audit records.
fn caller_of<T>(request: &Request<T>) -> (Option<String>, Option<String>) {
    let extensions = request.extensions();
    (
        extensions
            .get::<ConnInfo>()
            .and_then(|info| info.peer)
            .map(|peer| peer.to_string()),
        extensions.get::<Identity>().map(|i| i.name.clone()),
    )
}

fn protocol(text: &str) -> Error {
    Error::Enroll(EnrollError::Protocol(text.to_owned()))
}

async fn next_step(
    inbound: &mut Streaming<proto::EnrollRequest>,
) -> Result<proto::enroll_request::Step, Error> {
    match inbound.message().await {
        Ok(Some(proto::EnrollRequest { step: Some(step) })) => Ok(step),
        Ok(Some(_)) => Err(protocol("a message without a step")),
        Ok(None) => Err(protocol("the client ended the exchange early")),
        Err(status) => Err(protocol(&format!(
            "the client's stream failed: {}",
            status.message()
        ))),
    }
}

fn finish_of(finish: proto::EnrollFinish, renew: bool) -> Result<Finish, Error> {
    if renew && !(finish.client_proof.is_empty() && finish.tokens.is_empty()) {
        return Err(protocol("a renewal carries no proof and no tokens"));
    }
    Ok(Finish {
        client_proof: finish.client_proof,
        certificate_der: finish.certificate_der,
        ca_der: finish.ca_der,
        crl_der: (!finish.crl_der.is_empty()).then_some(finish.crl_der),
        tokens: tokens_of(finish.tokens)?,
    })
}

fn tokens_of(tokens: Vec<proto::FleetToken>) -> Result<Vec<TokenEntry>, Error> {
    tokens
        .into_iter()
        .map(|t| {
            Ok(TokenEntry {
                role: t.role.parse().map_err(|e: String| {
                    Error::InvalidArgument(format!("token {:?}: {e}", t.name))
                })?,
                name: t.name,
                sha256: t.sha256,
            })
        })
        .collect()
}

fn describe(facts: &CertFacts) -> String {
    format!(
        "{} serial {} valid until {} UTC",
        facts.subject,
        facts.serial_hex(),
        crate::clock::utc(facts.not_after_ms)
    )
}
