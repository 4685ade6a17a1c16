//! The operator's side of enrollment, renewal and policy pushes.
//!
//! Enrolling checks the agent before anything is sent: its proof must
//! match the join code and the certificate this very connection saw, and
//! its certificate request must be for the key of that certificate. Only
//! then does the fleet CA sign (with the operator's names for the host, not
//! the agent's), and the client's proof, bound to what it signed, goes out.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{AgentClient, Error, connect::Address, pki::FleetCa};
use crate::{
    pki::{self, CertFacts},
    proto::{self, remote_agent_client::RemoteAgentClient},
    types::CertificateSummary,
};

/// How long one exchange may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an enrollment or a renewal failed, on the operator's side.
#[derive(Debug, thiserror::Error)]
pub enum EnrollFailure {
    /// The agent or the connection failed.
    #[error(transparent)]
    Client(#[from] Error),
    /// The agent's proof does not match: wrong code, or not the agent.
    #[error(
        "the agent's proof does not match the join code: wrong code, or something between \
         here and the agent; nothing was signed"
    )]
    AgentProof,
    /// The agent's request does not hold up.
    #[error("the agent's certificate request: {0}")]
    BadRequest(String),
    /// The CA failed.
    #[error(transparent)]
    Pki(#[from] super::pki::PkiError),
    /// The agent asks for a fleet certificate: it is enrolled already.
    #[error(
        "the agent is enrolled already (it asks for a fleet certificate); to renew its certificate use `vigie pki renew`"
    )]
    Enrolled,
    /// The text given is not a join code.
    #[error(
        "this is not a join code: it starts with {} and 32 hexadecimal digits follow",
        pki::JOIN_PREFIX
    )]
    BadCode,
    /// The exchange did not finish in time.
    #[error("the agent did not finish the exchange within 30 s")]
    Timeout,
}

/// Enrolls the agent at `address` as `host` with the join code `code`.
pub async fn enroll(
    ca: &FleetCa,
    host: &str,
    address: &Address,
    code: &str,
    validity: Duration,
) -> Result<CertificateSummary, EnrollFailure> {
    let key = pki::join_key(code).ok_or(EnrollFailure::BadCode)?;
    let (channel, captured) = super::connect::enrollment_channel(address)
        .await
        .map_err(|e| {
            // An enrolled agent asks every client for a certificate, which
            // the enrollment connection does not have.
            if e.to_string().contains("requires a client certificate") {
                EnrollFailure::Enrolled
            } else {
                EnrollFailure::Client(e)
            }
        })?;
    let mut client = RemoteAgentClient::new(channel);
    let client_nonce = pki::nonce().map_err(|e| EnrollFailure::BadRequest(e.to_string()))?;
    let run = async {
        let (sender, receiver) = mpsc::channel(2);
        let _ = sender.send(start(client_nonce.to_vec())).await;
        let fail = |s: tonic::Status| {
            EnrollFailure::Client(Error::from_status(s, &address.to_string(), true))
        };
        let mut responses = client
            .enroll(ReceiverStream::new(receiver))
            .await
            .map_err(fail)?
            .into_inner();
        let challenge = next_challenge(&mut responses).await.map_err(fail)?;
        let seen = captured
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(EnrollFailure::AgentProof)?;
        let expected = pki::agent_proof(&key, &seen, &client_nonce, &challenge.agent_nonce);
        if !pki::proof_matches(&expected, &challenge.agent_proof) {
            return Err(EnrollFailure::AgentProof);
        }
        let seen_key = CertFacts::parse(&seen)
            .map_err(EnrollFailure::BadRequest)?
            .public_key;
        check_request_key(&challenge.csr_der, &seen_key)?;
        let (certificate_der, _) =
            ca.sign_agent(&challenge.csr_der, host, &address.host, validity)?;
        let client_proof = pki::client_proof(
            &key,
            &seen,
            &client_nonce,
            &challenge.agent_nonce,
            &certificate_der,
        );
        let tokens = fleet_tokens(ca)?;
        let finish = proto::EnrollFinish {
            client_proof,
            certificate_der,
            ca_der: ca.ca_der()?,
            crl_der: ca.crl_der()?,
            tokens,
        };
        let _ = sender.send(finish_message(finish)).await;
        next_done(&mut responses).await.map_err(fail)
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, run)
        .await
        .map_err(|_| EnrollFailure::Timeout)?
}

/// Renews the certificate of an enrolled agent (the caller must be an
/// admin), for its own key and the operator's names for it.
///
/// `served_key` is the key of the certificate this connection verified
/// (`Host::certificate`): the request must be for it, so that whoever
/// answers cannot get the host's names for another key.
pub async fn renew(
    ca: &FleetCa,
    client: &AgentClient,
    host: &str,
    address: &Address,
    served_key: &[u8],
    validity: Duration,
) -> Result<CertificateSummary, EnrollFailure> {
    let mut raw = client.raw();
    let run = async {
        let (sender, receiver) = mpsc::channel(2);
        let _ = sender.send(start(Vec::new())).await;
        let fail =
            |s: tonic::Status| EnrollFailure::Client(Error::from_status(s, client.address(), true));
        let mut responses = raw
            .renew_certificate(ReceiverStream::new(receiver))
            .await
            .map_err(fail)?
            .into_inner();
        let challenge = next_challenge(&mut responses).await.map_err(fail)?;
        check_request_key(&challenge.csr_der, served_key)?;
        let (certificate_der, _) =
            ca.sign_agent(&challenge.csr_der, host, &address.host, validity)?;
        let finish = proto::EnrollFinish {
            certificate_der,
            ca_der: ca.ca_der()?,
            ..proto::EnrollFinish::default()
        };
        let _ = sender.send(finish_message(finish)).await;
        next_done(&mut responses).await.map_err(fail)
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, run)
        .await
        .map_err(|_| EnrollFailure::Timeout)?
}

/// What a policy push left on an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    /// The revocation list now in force.
    pub number: u64,
    /// How many certificates it revokes.
    pub revoked: u32,
    /// How many fleet tokens the agent knows.
    pub tokens: u32,
}

/// The request that pushes the CA's current revocation list and tokens.
pub fn policy_of(ca: &FleetCa) -> Result<proto::PushPolicyRequest, super::pki::PkiError> {
    Ok(proto::PushPolicyRequest {
        crl_der: ca.crl_der()?,
        tokens: fleet_tokens(ca)?,
    })
}

/// The fleet's tokens as the agents get them: names, roles and hashes.
fn fleet_tokens(ca: &FleetCa) -> Result<Vec<proto::FleetToken>, super::pki::PkiError> {
    Ok(ca
        .ledger()?
        .tokens
        .into_iter()
        .map(|t| proto::FleetToken {
            name: t.name,
            role: t.role.as_str().to_owned(),
            sha256: t.sha256,
        })
        .collect())
}

/// Pushes `policy` to one agent (the caller must be an admin).
pub async fn push(client: &AgentClient, policy: proto::PushPolicyRequest) -> Result<Pushed, Error> {
    let answer = client
        .raw()
        .push_policy(policy)
        .await
        .map_err(|s| Error::from_status(s, client.address(), true))?
        .into_inner();
    Ok(Pushed {
        number: answer.revocation_list_number,
        revoked: answer.revoked_count,
        tokens: answer.token_count,
    })
}

fn start(client_nonce: Vec<u8>) -> proto::EnrollRequest {
    proto::EnrollRequest {
        step: Some(proto::enroll_request::Step::Start(proto::EnrollStart {
            client_nonce,
        })),
    }
}

fn finish_message(finish: proto::EnrollFinish) -> proto::EnrollRequest {
    proto::EnrollRequest {
        step: Some(proto::enroll_request::Step::Finish(finish)),
    }
}

async fn next_challenge(
    responses: &mut tonic::Streaming<proto::EnrollResponse>,
) -> Result<proto::EnrollChallenge, tonic::Status> {
    match responses.message().await? {
        Some(proto::EnrollResponse {
            step: Some(proto::enroll_response::Step::Challenge(challenge)),
        }) => Ok(challenge),
        _ => Err(tonic::Status::internal(
            "the agent did not answer with a challenge",
        )),
    }
}

async fn next_done(
    responses: &mut tonic::Streaming<proto::EnrollResponse>,
) -> Result<CertificateSummary, tonic::Status> {
    match responses.message().await? {
        Some(proto::EnrollResponse {
            step:
                Some(proto::enroll_response::Step::Done(proto::EnrollDone {
                    certificate: Some(certificate),
                })),
        }) => Ok(certificate.into()),
        _ => Err(tonic::Status::internal(
            "the agent did not confirm the certificate",
        )),
    }
}

/// The request must be for the key of the certificate the agent served
/// on this connection (whose handshake proved the agent holds it).
fn check_request_key(csr_der: &[u8], served_key: &[u8]) -> Result<(), EnrollFailure> {
    use x509_parser::prelude::FromDer;
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(csr_der)
        .map_err(|e| EnrollFailure::BadRequest(e.to_string()))?;
    if csr.certification_request_info.subject_pki.raw != served_key {
        return Err(EnrollFailure::BadRequest(
            "it is for another key than the one the agent serves".into(),
        ));
    }
    Ok(())
}
