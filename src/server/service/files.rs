//! The gRPC adapter of file transfers (PutFile, GetFile): it carries
//! messages between the wire and [`files`](crate::server::files), where the
//! file system work happens on blocking threads, audits, and maps errors.

use std::pin::Pin;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Response, Status, Streaming};

use super::{CallContext, Service};
use crate::{
    proto,
    server::{
        audit::Record,
        error::Error,
        files::{self, Download, FileError, Upload, put::UploadRequest},
    },
};

/// The stream PutFile answers with.
pub type PutStream = Pin<Box<dyn Stream<Item = Result<proto::PutFileResponse, Status>> + Send>>;
/// The stream GetFile answers with.
pub type GetStream = Pin<Box<dyn Stream<Item = Result<proto::GetFileResponse, Status>> + Send>>;

/// Bytes of a download's chunk.
const CHUNK: usize = 256 * 1024;

impl Service {
    fn file_record(&self, ctx: &CallContext, rpc: &str, event: &'static str) -> Record {
        Record {
            event,
            rpc: Some(rpc.to_owned()),
            identity: Some(ctx.identity.name.clone()),
            peer: ctx.conn.peer.map(|p| p.to_string()),
            session: Some(ctx.session.id.clone()),
            ..Record::default()
        }
    }

    pub(super) fn put_file(
        &self,
        ctx: CallContext,
        mut inbound: Streaming<proto::PutFileRequest>,
    ) -> Result<Response<PutStream>, Status> {
        let hold = self
            .state
            .sessions
            .hold(&ctx.session)
            .map_err(Error::Session)?;
        let (tx, rx) = mpsc::channel(2);
        let state = self.state.clone();
        let service = self.clone();
        self.state.tracker.spawn(async move {
            let _hold = hold;
            let stop = (ctx.session.token.clone(), state.agent_token.clone());
            let header = match inbound.message().await {
                Ok(Some(proto::PutFileRequest {
                    step: Some(proto::put_file_request::Step::Header(header)),
                })) => header,
                Ok(_) => {
                    let _ = tx
                        .send(Err(Status::invalid_argument(
                            "an upload opens with its header",
                        )))
                        .await;
                    return;
                }
                Err(_) => return,
            };
            let record = Record {
                path: Some(header.path.chars().take(4096).collect()),
                size: Some(header.size),
                sha256: Some(hex::encode(&header.sha256)),
                ..service.file_record(&ctx, "PutFile", "file_put")
            };
            let refuse = |error: Error, record: Record| {
                let status = Status::from(error);
                state.audit.record(&Record {
                    event: "file_put_refused",
                    reason: Some(status.message().to_owned()),
                    ..record
                });
                status
            };
            // The file system work runs on one blocking thread, fed chunks
            // through a bounded channel: a slow disk slows the client.
            let (chunks, mut from_client) = mpsc::channel::<bytes::Bytes>(4);
            let (started, mut accepted) = tokio::sync::oneshot::channel();
            let roots = state.files.roots(ctx.identity.role);
            let max = state.files.max_bytes;
            let identity = ctx.identity.name.clone();
            let writer = tokio::task::spawn_blocking(move || {
                let sha256 = files::digest(&header.sha256)?;
                let request = UploadRequest {
                    path: &header.path,
                    mode: header.mode,
                    size: header.size,
                    sha256,
                    replace: header.replace,
                    identity: &identity,
                };
                let mut upload = match Upload::begin(&roots, max, &request) {
                    Ok(upload) => upload,
                    Err(e) => {
                        let _ = started.send(None);
                        return Err(e);
                    }
                };
                let _ = started.send(Some(upload.offset()));
                while let Some(chunk) = from_client.blocking_recv() {
                    upload.write(&chunk)?;
                }
                upload.finish()
            });
            let offset = match (&mut accepted).await {
                Ok(Some(offset)) => offset,
                _ => {
                    let error = match writer.await {
                        Ok(Err(e)) => Error::File(e),
                        _ => Error::Internal("the upload's writer died".into()),
                    };
                    let _ = tx.send(Err(refuse(error, record))).await;
                    return;
                }
            };
            let answer = proto::PutFileResponse {
                step: Some(proto::put_file_response::Step::Accepted(
                    proto::PutFileAccepted { offset },
                )),
            };
            if tx.send(Ok(answer)).await.is_err() {
                return;
            }
            // Chunks until the client has sent everything (or stops: what
            // was written then stays for a resume, and the target is
            // untouched).
            let cut = loop {
                let message = tokio::select! {
                    biased;
                    () = stop.0.cancelled() => break true,
                    () = stop.1.cancelled() => break true,
                    message = inbound.message() => message,
                };
                match message {
                    Ok(Some(proto::PutFileRequest {
                        step: Some(proto::put_file_request::Step::Chunk(chunk)),
                    })) => {
                        if chunks.send(chunk).await.is_err() {
                            // The writer failed: its error is below.
                            break false;
                        }
                    }
                    Ok(None) => break false,
                    Ok(Some(_)) => break true,
                    Err(_) => break true,
                }
            };
            drop(chunks);
            let result = writer.await;
            let outcome = match (cut, result) {
                (_, Ok(Ok(done))) => Ok(done),
                (true, _) => Err(Error::File(FileError::Protocol(
                    "the upload was cut; what arrived is kept for a resume".into(),
                ))),
                (false, Ok(Err(e))) => Err(Error::File(e)),
                (false, Err(e)) => Err(Error::Internal(e.to_string())),
            };
            match outcome {
                Ok(done) => {
                    state.audit.record(&Record {
                        path: Some(done.path.clone()),
                        sha256: Some(hex::encode(done.sha256)),
                        offset: (offset > 0).then_some(offset),
                        reason: done.replaced.then(|| "replaced".to_owned()),
                        ..record
                    });
                    tracing::info!(path = %done.path, size = done.size, "file uploaded");
                    let answer = proto::PutFileResponse {
                        step: Some(proto::put_file_response::Step::Done(proto::PutFileDone {
                            path: done.path,
                            size: done.size,
                            sha256: done.sha256.to_vec(),
                            replaced: done.replaced,
                        })),
                    };
                    let _ = tx.send(Ok(answer)).await;
                }
                Err(error) => {
                    let _ = tx.send(Err(refuse(error, record))).await;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    pub(super) async fn get_file(
        &self,
        ctx: CallContext,
        request: proto::GetFileRequest,
    ) -> Result<Response<GetStream>, Status> {
        let record = Record {
            path: Some(request.path.chars().take(4096).collect()),
            offset: (request.offset > 0).then_some(request.offset),
            ..self.file_record(&ctx, "GetFile", "file_get")
        };
        let roots = self.state.files.roots(ctx.identity.role);
        let max = self.state.files.max_bytes;
        let (path, offset) = (request.path.clone(), request.offset);
        let opened =
            tokio::task::spawn_blocking(move || Download::open(&roots, max, &path, offset))
                .await
                .map_err(|e| Error::Internal(e.to_string()))?;
        let mut download = match opened {
            Ok(download) => download,
            Err(e) => {
                let status = Status::from(Error::File(e));
                self.state.audit.record(&Record {
                    event: "file_get_refused",
                    reason: Some(status.message().to_owned()),
                    ..record
                });
                return Err(status);
            }
        };
        let hold = self
            .state
            .sessions
            .hold(&ctx.session)
            .map_err(Error::Session)?;
        let size = download.size;
        let info = proto::GetFileResponse {
            step: Some(proto::get_file_response::Step::Info(proto::FileInfo {
                size,
                mode: download.mode,
                modified_ms: download.modified_ms,
            })),
        };
        let (tx, rx) = mpsc::channel(4);
        let stops = (ctx.session.token.clone(), self.state.agent_token.clone());
        let audit = self.state.audit.clone();
        let path = download.path.clone();
        // One blocking thread reads and sends; it stops with the session,
        // the agent, or the client (its channel closes).
        self.state.tracker.spawn_blocking(move || {
            let _hold = hold;
            if tx.blocking_send(Ok(info)).is_err() {
                return;
            }
            loop {
                if stops.0.is_cancelled() || stops.1.is_cancelled() {
                    return;
                }
                match download.next_chunk(CHUNK) {
                    Ok(chunk) if chunk.is_empty() => break,
                    Ok(chunk) => {
                        let message = proto::GetFileResponse {
                            step: Some(proto::get_file_response::Step::Chunk(chunk.into())),
                        };
                        if tx.blocking_send(Ok(message)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Err(Status::from(Error::File(e))));
                        return;
                    }
                }
            }
            let sha256 = download.finish();
            audit.record(&Record {
                path: Some(path.clone()),
                size: Some(size),
                sha256: Some(hex::encode(sha256)),
                ..record
            });
            tracing::info!(%path, size, "file downloaded");
            let done = proto::GetFileResponse {
                step: Some(proto::get_file_response::Step::Done(proto::FileDigest {
                    sha256: sha256.to_vec(),
                })),
            };
            let _ = tx.blocking_send(Ok(done));
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
