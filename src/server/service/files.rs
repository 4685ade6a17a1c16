//! The gRPC adapter of file transfers (PutFile, GetFile, MakeDirectory): it carries
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

/// The client's next upload message; None when it went away, idled past
/// [`IDLE`], or the session or the agent stopped. Every wait on the client
/// is bounded and watches the stops.
async fn next_message(
    inbound: &mut Streaming<proto::PutFileRequest>,
    stop: &(
        tokio_util::sync::CancellationToken,
        tokio_util::sync::CancellationToken,
    ),
) -> Option<Option<proto::PutFileRequest>> {
    tokio::select! {
        biased;
        () = stop.0.cancelled() => None,
        () = stop.1.cancelled() => None,
        waited = tokio::time::timeout(IDLE, inbound.message()) => match waited {
            Ok(Ok(message)) => Some(message),
            _ => None,
        },
    }
}

/// The stream PutFile answers with.
pub type PutStream = Pin<Box<dyn Stream<Item = Result<proto::PutFileResponse, Status>> + Send>>;
/// The stream GetFile answers with.
pub type GetStream = Pin<Box<dyn Stream<Item = Result<proto::GetFileResponse, Status>> + Send>>;

/// Bytes of a download's chunk.
const CHUNK: usize = 256 * 1024;

/// The longest an upload waits for its client's next message.
const IDLE: std::time::Duration = std::time::Duration::from_secs(60);

impl Service {
    pub(super) fn put_file(
        &self,
        ctx: CallContext,
        mut inbound: Streaming<proto::PutFileRequest>,
    ) -> Result<Response<PutStream>, Status> {
        // A file written as the agent's user can be run: a caller whose
        // Execute is restricted may upload only when the configuration
        // says so for its role.
        if !self.may_write_files(&ctx) {
            return Err(
                Error::File(FileError::WriteRestricted(ctx.identity.role.to_string())).into(),
            );
        }
        // Transfers are long-lived streams, counted as such per identity
        // and in all, and keep their session busy.
        let room = self.stream_room(&ctx)?;
        let (tx, rx) = mpsc::channel(2);
        let state = self.state.clone();
        let service = self.clone();
        self.state.tracker.spawn(async move {
            let _room = room;
            let stop = (ctx.session.token.clone(), state.agent_token.clone());
            let header = match next_message(&mut inbound, &stop).await {
                Some(Some(proto::PutFileRequest {
                    step: Some(proto::put_file_request::Step::Header(header)),
                })) => header,
                Some(_) => {
                    let _ = tx
                        .send(Err(Status::invalid_argument(
                            "an upload opens with its header",
                        )))
                        .await;
                    return;
                }
                None => return,
            };
            let digest = files::digest(&header.sha256);
            let record = Record {
                path: Some(header.path.chars().take(4096).collect()),
                size: Some(header.size),
                sha256: Some(
                    digest
                        .as_ref()
                        .map_or_else(|_| "(malformed)".to_owned(), hex::encode),
                ),
                reason: Some(format!("mode {:o}", header.mode)),
                ..service.call_record(&ctx, "PutFile", "file_put")
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
            let sha256 = match digest {
                Ok(sha256) => sha256,
                Err(e) => {
                    let _ = tx.send(Err(refuse(Error::File(e), record))).await;
                    return;
                }
            };
            let roots = state.files.roots(ctx.identity.role);
            let max = state.files.max_bytes;
            let identity = ctx.identity.name.clone();
            // The file system work runs in short blocking calls, one per
            // chunk, so that no thread waits on the network.
            let begun = tokio::task::spawn_blocking(move || {
                let request = UploadRequest {
                    path: &header.path,
                    mode: header.mode,
                    size: header.size,
                    sha256,
                    replace: header.replace,
                    identity: &identity,
                };
                // Content already there is not sent again.
                match Upload::unchanged(&roots, max, &request) {
                    Ok(Some(done)) => Ok(Err(done)),
                    Ok(None) => Upload::begin(&roots, max, &request).map(Ok),
                    Err(e) => Err(e),
                }
            })
            .await;
            let mut upload = match begun {
                Ok(Ok(Ok(upload))) => upload,
                Ok(Ok(Err(done))) => {
                    state.audit.record(&Record {
                        path: Some(done.path.clone()),
                        sha256: Some(hex::encode(done.sha256)),
                        reason: Some(format!(
                            "mode {:o}, unchanged: the target had this content",
                            done.mode
                        )),
                        ..record
                    });
                    let answer = proto::PutFileResponse {
                        step: Some(proto::put_file_response::Step::Done(proto::PutFileDone {
                            path: done.path,
                            size: done.size,
                            sha256: done.sha256.to_vec(),
                            replaced: false,
                            unchanged: true,
                        })),
                    };
                    let _ = tx.send(Ok(answer)).await;
                    return;
                }
                Ok(Err(e)) => {
                    let _ = tx.send(Err(refuse(Error::File(e), record))).await;
                    return;
                }
                Err(e) => {
                    let _ = tx
                        .send(Err(refuse(Error::Internal(e.to_string()), record)))
                        .await;
                    return;
                }
            };
            let offset = upload.offset();
            let answer = proto::PutFileResponse {
                step: Some(proto::put_file_response::Step::Accepted(
                    proto::PutFileAccepted { offset },
                )),
            };
            if tx.send(Ok(answer)).await.is_err() {
                return;
            }
            // Chunks until the client has sent everything. A cut (the
            // client stops, goes away or idles) keeps what was written for
            // a resume; the target is untouched.
            let outcome = loop {
                match next_message(&mut inbound, &stop).await {
                    Some(Some(proto::PutFileRequest {
                        step: Some(proto::put_file_request::Step::Chunk(chunk)),
                    })) => {
                        let written = tokio::task::spawn_blocking(move || {
                            let result = upload.write(&chunk);
                            (upload, result)
                        })
                        .await;
                        match written {
                            Ok((back, Ok(()))) => upload = back,
                            Ok((_, Err(e))) => break Err(Error::File(e)),
                            Err(e) => break Err(Error::Internal(e.to_string())),
                        }
                    }
                    Some(None) => {
                        break tokio::task::spawn_blocking(move || upload.finish())
                            .await
                            .map_err(|e| Error::Internal(e.to_string()))
                            .and_then(|r| r.map_err(Error::File));
                    }
                    Some(Some(_)) | None => {
                        break Err(Error::File(FileError::Protocol(
                            "the upload was cut; what arrived is kept for a resume".into(),
                        )));
                    }
                }
            };
            match outcome {
                Ok(done) => {
                    state.audit.record(&Record {
                        path: Some(done.path.clone()),
                        sha256: Some(hex::encode(done.sha256)),
                        offset: (offset > 0).then_some(offset),
                        reason: Some(format!(
                            "mode {:o}{}",
                            done.mode,
                            if done.replaced { ", replaced" } else { "" }
                        )),
                        ..record
                    });
                    tracing::info!(path = %done.path, size = done.size, "file uploaded");
                    let answer = proto::PutFileResponse {
                        step: Some(proto::put_file_response::Step::Done(proto::PutFileDone {
                            path: done.path,
                            size: done.size,
                            sha256: done.sha256.to_vec(),
                            replaced: done.replaced,
                            unchanged: false,
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

    pub(super) async fn make_directory(
        &self,
        ctx: CallContext,
        request: proto::MakeDirectoryRequest,
    ) -> Result<Response<proto::MakeDirectoryResponse>, Status> {
        let record = Record {
            path: Some(request.path.chars().take(4096).collect()),
            reason: Some(format!("mode {:o} asked", request.mode)),
            ..self.call_record(&ctx, "MakeDirectory", "dir_make")
        };
        let refuse = |error: Error, record: Record| {
            let status = Status::from(error);
            self.state.audit.record(&Record {
                event: "dir_make_refused",
                reason: Some(status.message().to_owned()),
                ..record
            });
            status
        };
        if !self.may_write_files(&ctx) {
            return Err(refuse(
                Error::File(FileError::WriteRestricted(ctx.identity.role.to_string())),
                record,
            ));
        }
        let roots = self.state.files.roots(ctx.identity.role);
        let (path, mode) = (request.path, request.mode);
        let made = tokio::task::spawn_blocking(move || files::make_directory(&roots, &path, mode))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        match made {
            Ok(done) => {
                // The mode it has, which for one that was there is not
                // the mode asked.
                self.state.audit.record(&Record {
                    path: Some(done.path.clone()),
                    reason: Some(format!(
                        "mode {:o}{}",
                        done.mode,
                        if done.created { "" } else { ", there already" }
                    )),
                    ..record
                });
                Ok(Response::new(proto::MakeDirectoryResponse {
                    path: done.path,
                    created: done.created,
                }))
            }
            Err(e) => Err(refuse(Error::File(e), record)),
        }
    }

    /// True when the caller may write files: its Execute is not restricted,
    /// or the configuration lets its role write all the same.
    fn may_write_files(&self, ctx: &CallContext) -> bool {
        let restricted = !matches!(
            self.state.exec_policy.scope(&ctx.identity),
            Ok(crate::server::policy::ExecScope::Unrestricted)
        );
        !restricted
            || self
                .state
                .files
                .writes_despite_restrictions(ctx.identity.role)
    }

    pub(super) async fn get_file(
        &self,
        ctx: CallContext,
        request: proto::GetFileRequest,
    ) -> Result<Response<GetStream>, Status> {
        let record = Record {
            path: Some(request.path.chars().take(4096).collect()),
            offset: (request.offset > 0).then_some(request.offset),
            ..self.call_record(&ctx, "GetFile", "file_get")
        };
        let roots = self.state.files.roots(ctx.identity.role);
        let max = self.state.files.max_bytes;
        let (path, offset) = (request.path.clone(), request.offset);
        let opened =
            tokio::task::spawn_blocking(move || Download::open(&roots, max, &path, offset))
                .await
                .map_err(|e| Error::Internal(e.to_string()))?;
        let download = match opened {
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
        let room = self.stream_room(&ctx)?;
        let size = download.size;
        // Recorded when the file is opened, so that a download cut short
        // is in the log too; its end has a record of its own.
        self.state.audit.record(&Record {
            path: Some(download.path.clone()),
            size: Some(size),
            ..record.clone()
        });
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
        let mut download = download;
        self.state.tracker.spawn(async move {
            let _room = room;
            // Sends that wait on a slow client watch the stops; reads are
            // short blocking calls, one per chunk.
            let send = |message: Result<proto::GetFileResponse, Status>| {
                let (tx, stops) = (tx.clone(), stops.clone());
                async move {
                    tokio::select! {
                        biased;
                        () = stops.0.cancelled() => false,
                        () = stops.1.cancelled() => false,
                        sent = tx.send(message) => sent.is_ok(),
                    }
                }
            };
            let end = |outcome: String| Record {
                event: "file_get_end",
                path: Some(path.clone()),
                size: Some(size),
                reason: Some(outcome),
                ..record.clone()
            };
            if !send(Ok(info)).await {
                audit.record(&end("cut before the first chunk".into()));
                return;
            }
            loop {
                let read = tokio::task::spawn_blocking(move || {
                    let chunk = download.next_chunk(CHUNK);
                    (download, chunk)
                })
                .await;
                let (back, chunk) = match read {
                    Ok(read) => read,
                    Err(e) => {
                        send(Err(Status::from(Error::Internal(e.to_string())))).await;
                        return;
                    }
                };
                download = back;
                match chunk {
                    Ok(chunk) if chunk.is_empty() => break,
                    Ok(chunk) => {
                        let message = proto::GetFileResponse {
                            step: Some(proto::get_file_response::Step::Chunk(chunk.into())),
                        };
                        if !send(Ok(message)).await {
                            audit.record(&end(format!("cut after {} bytes", download.sent())));
                            return;
                        }
                    }
                    Err(e) => {
                        audit.record(&end(e.to_string()));
                        send(Err(Status::from(Error::File(e)))).await;
                        return;
                    }
                }
            }
            let sha256 = download.finish();
            audit.record(&Record {
                sha256: Some(hex::encode(sha256)),
                ..end("sent whole".into())
            });
            tracing::info!(%path, size, "file downloaded");
            let done = proto::GetFileResponse {
                step: Some(proto::get_file_response::Step::Done(proto::FileDigest {
                    sha256: sha256.to_vec(),
                })),
            };
            send(Ok(done)).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
