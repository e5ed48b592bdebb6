//! The peer transport, both halves: raft messages from this member to the others ([`send`]), and
//! from them into this member's node ([`receive`]), over HTTP/2 (gRPC `modkvpb.Peer`, served on the peer
//! port by `api::peer`).
//!
//! ```text
//!   node task ──Transport::send──▶ per-peer queue and task ──Stream / Send──▶ peer's Receiver::accept
//!   api::peer (Send / Stream) ──▶ Receiver::accept ──checks──▶ RaftHandle::step ──▶ node task
//! ```
//!
//! The sender needs the member list (for URLs) and the raft handle (to report what it could not
//! deliver); the receiver the raft handle and the member list (to refuse strangers).

pub mod receive;
pub mod send;

pub use receive::{Receiver, Refusal};
pub use send::{Transport, MAX_PEER_MESSAGE};
