//! The agent's errors and their gRPC status codes.
//!
//! Every core error converts into [`Error`], and every variant maps to a
//! status code on purpose. Internal failures are logged with their detail
//! and reach the client only as a short message.

use tonic::{Code, Status};

use super::{
    enroll::EnrollError, exec::ExecError, files::FileError, jobs::JobError, processes::SignalError,
    session::SessionError, streams::StreamError, system::ProbeError,
};

/// Any error an rpc can end with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Planning or spawning a command failed.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// Signalling a process failed.
    #[error(transparent)]
    Signal(#[from] SignalError),
    /// The session cannot be joined or has no room.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A stream is over its limits.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The system could not be read.
    #[error(transparent)]
    Probe(#[from] ProbeError),
    /// An enrollment, a renewal or a policy push was refused.
    #[error(transparent)]
    Enroll(#[from] EnrollError),
    /// A job call failed.
    #[error(transparent)]
    Job(#[from] JobError),
    /// A file transfer was refused or failed.
    #[error(transparent)]
    File(#[from] FileError),
    /// A request field is out of range.
    #[error("{0}")]
    InvalidArgument(String),
    /// The caller may not do this (exec policy).
    #[error("{0}")]
    PermissionDenied(String),
    /// The agent is stopping or restarting.
    #[error("the agent is {0}")]
    Stopping(&'static str),
    /// A blocking task died (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let code = match &error {
            Error::Exec(e) => match e {
                ExecError::EmptyCommand | ExecError::InvalidArgument(_) => Code::InvalidArgument,
                ExecError::Incompatible(_)
                | ExecError::WorkingDirectory { .. }
                | ExecError::NotExecutable { .. } => Code::FailedPrecondition,
                ExecError::ProgramNotFound(_) => Code::NotFound,
                ExecError::Spawn(_) => Code::ResourceExhausted,
                ExecError::NotAllowed(_) => Code::PermissionDenied,
            },
            Error::Signal(e) => match e {
                SignalError::InvalidPid(_) | SignalError::IsThread { .. } => Code::InvalidArgument,
                SignalError::IsAgent(_) => Code::FailedPrecondition,
                SignalError::Protected { .. } | SignalError::NotOwnCommand(_) => {
                    Code::PermissionDenied
                }
                SignalError::NotFound(_) => Code::NotFound,
                SignalError::NotPermitted(_) => Code::PermissionDenied,
                SignalError::Other { .. } => Code::Internal,
            },
            Error::Session(e) => match e {
                SessionError::InvalidId => Code::InvalidArgument,
                SessionError::TooMany(_)
                | SessionError::TooManyForIdentity { .. }
                | SessionError::TooManyForConnection(_)
                | SessionError::TooManyCommands(_)
                | SessionError::TooManyCommandsForIdentity { .. }
                | SessionError::TooManyCommandsTotal(_) => Code::ResourceExhausted,
                SessionError::Ended => Code::FailedPrecondition,
            },
            Error::Enroll(e) => match e {
                EnrollError::AlreadyEnrolled
                | EnrollError::NotEnrolled
                | EnrollError::NoJoinCode
                | EnrollError::Expired
                | EnrollError::StaleList { .. }
                | EnrollError::Lost => Code::FailedPrecondition,
                EnrollError::WrongProof => Code::PermissionDenied,
                EnrollError::BadCertificate(_)
                | EnrollError::BadPolicy(_)
                | EnrollError::Protocol(_) => Code::InvalidArgument,
                EnrollError::Internal(_) => Code::Internal,
            },
            Error::Job(e) => match e {
                JobError::NotFound(_) => Code::NotFound,
                JobError::NotYours(_) => Code::PermissionDenied,
                JobError::InvalidId(_) => Code::InvalidArgument,
                JobError::TooManyForIdentity { .. } | JobError::TooMany(_) => {
                    Code::ResourceExhausted
                }
                JobError::PastEnd { .. } => Code::OutOfRange,
            },
            Error::File(e) => match e {
                FileError::Off
                | FileError::WriteRestricted(_)
                | FileError::Outside(..)
                | FileError::Link(_)
                | FileError::TooLarge { .. } => Code::PermissionDenied,
                FileError::BadPath(..) | FileError::BadMode(_) | FileError::Protocol(_) => {
                    Code::InvalidArgument
                }
                FileError::NoDirectory(_) | FileError::NotFound(_) => Code::NotFound,
                FileError::Exists(_) => Code::AlreadyExists,
                FileError::NotAFile(_)
                | FileError::NotADirectory(_)
                | FileError::Untrusted(..)
                | FileError::Busy(_)
                | FileError::Tampered(_) => Code::FailedPrecondition,
                FileError::Mismatch(_) => Code::DataLoss,
                FileError::Io(_, io) => match io.kind() {
                    std::io::ErrorKind::PermissionDenied => Code::PermissionDenied,
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                        Code::ResourceExhausted
                    }
                    _ => Code::Internal,
                },
            },
            Error::Stream(_) => Code::ResourceExhausted,
            Error::Probe(_) | Error::Internal(_) => Code::Internal,
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::Stopping(_) => Code::Unavailable,
        };
        if code == Code::Internal {
            tracing::error!(error = %error, "internal error");
            return Status::new(code, "internal error in the agent (see its log)");
        }
        Status::new(code, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_stay_in_the_log() {
        let status = Status::from(Error::Internal("a secret path /etc/x".into()));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("/etc/x"));
    }

    #[test]
    fn client_errors_keep_their_message() {
        let status = Status::from(Error::Signal(SignalError::NotFound(77)));
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "no process with pid 77");
    }
}
