//! The raft layer: one task owns raft-rs's `RawNode` and drives it; everyone else talks to it through a
//! [`RaftHandle`].
//!
//! ```text
//!   server ──propose / read_index──▶ RaftHandle ──channel──▶ node task (own thread)
//!                                                            │ tick, step, Ready:
//!                                                            │   send messages, persist (fsync),
//!                                                            │   send persisted messages, advance
//!                                                            └──committed entries──▶ apply
//! ```
//!
//! The log and hard state live in [`log::RaftLog`] on the shared storage backend.

pub mod log;
mod logger;
mod node;

pub use node::{NodeConfig, RaftHandle, RaftNode, RaftStatus};
