//! vigie: remote management of many hosts over gRPC.
//!
//! - [`server`]: the agent that runs on every managed host.
//! - [`client`]: the library that drives agents; the `vigie` CLI and the
//!   desktop client are built on it.
//! - [`command`], [`types`]: the domain vocabulary both sides share;
//!   [`convert`] maps it to and from the wire types in [`proto`].
//! - [`wire`] (port, header, HTTP/2 settings, loopback), [`clock`] and
//!   [`atomic_file`]: small items both sides use, so that the client never
//!   reaches into the server for them.

pub mod atomic_file;
pub mod client;
pub mod clock;
pub mod command;
pub mod convert;
pub mod pki;
pub mod proto;
pub mod rlimit;
pub mod server;
pub mod tls;
pub mod types;
pub mod wire;
