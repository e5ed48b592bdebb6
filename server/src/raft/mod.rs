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
//! ```text
//!   node task ──send──▶ Transport (one queue + task per peer) ──h2 modkvpb.Peer/Stream──▶ peer's port
//!   peer port (api::peer) ──▶ transport::Receiver (checks) ──step──▶ RaftHandle ──▶ node task
//! ```
//!
//! The log and hard state live in [`log::RaftLog`]: entries and hard states in the write-ahead log of
//! [`wal`] (preallocated segments under `<data-dir>/wal`, one fdatasync per Ready), the configuration and
//! the point the log was cut at in the storage backend beside the state machine. A peer too far behind
//! gets a snapshot: the state machine read from one RocksDB snapshot (`storage::snapshot`), installed by
//! the apply layer on the receiving side before the log is reset to it.

pub mod advance;
pub mod check;
pub mod conn;
pub mod dial;
pub mod log;
mod logger;
mod node;
pub mod wal;

pub mod transport;

pub use dial::{AskError, PeerDialer, PeerMembers};
pub use node::{
    channel, Inbox, NodeConfig, PeerProgress, Progress, RaftHandle, RaftNode, RaftStatus, ToApply, REMOVED,
};
pub use transport::{Receiver, Refusal, Transport, MAX_PEER_MESSAGE};
