//! The SIP trunk adapter: wire facade, transactions, transport, proxy core, routing policy,
//! registrar.
//!
//! Nothing outside `wire` and `txn` names a type of the SIP crate (see `notes/sip-stack.md`).

pub mod carrier;
pub mod counts;
pub mod digest;
pub mod limits;
pub mod media;
pub mod policy;
pub mod proxy;
pub mod registrar;
pub mod rtp;
pub mod settings;
pub mod shrink;
pub mod transport;
pub mod txn;
pub mod wire;
