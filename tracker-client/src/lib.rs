//! The tracker's HTTP API as types: request and response bodies and the one error shape,
//! shared by the tracker and every client so that both agree by construction. With the
//! default `client` feature, also a typed async client over reqwest.

mod types;

#[cfg(feature = "client")]
mod client;
#[cfg(feature = "client")]
mod link;

pub use types::*;

#[cfg(feature = "client")]
pub use client::{ClientError, HeartbeatOutbox, RELOGIN_BACKOFF, TrackerClient};
#[cfg(feature = "client")]
pub use link::Link;
