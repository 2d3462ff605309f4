//! The IPC between `peddlenetd` and its front ends.
//!
//! Transport: a Unix stream socket private to its user (mode 0600 in a 0700
//! folder). Framing ([`frame`]): `version (1 byte) | length (u32 BE) | JSON`.
//! A client sends [`ClientFrame`]s, each with an id; the daemon answers each
//! with a [`ServerFrame::Reply`] carrying the same id, in any order, and after a
//! `subscribe` request also sends [`ServerFrame::Event`]s. Requests may be
//! pipelined. The schema is in [`schema`]; [`Client`] is the typed client that
//! every front end uses.

pub mod client;
pub mod frame;
pub mod paths;
pub mod schema;
pub mod text;

pub use client::{Client, ClientError, EventStream};
pub use frame::{FrameError, MAX_FRAME_LEN, PROTOCOL_VERSION};
pub use schema::*;
