//! The code generated from `proto/remote.proto` (package `vigie.v1`), and
//! the encoded file descriptor set that server reflection serves.
//!
//! This is the only module that includes generated code; everything else
//! names these types through `crate::proto`.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

tonic::include_proto!("vigie.v1");

/// The file descriptor set of `proto/remote.proto`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("vigie_descriptor");

/// The fully qualified name of the service, as health checks and
/// reflection name it.
pub const SERVICE_NAME: &str = "vigie.v1.RemoteAgent";
