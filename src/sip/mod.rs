//! The SIP trunk adapter: wire facade, transactions, transport, proxy core, registrar.
//!
//! Nothing outside `wire` and `txn` names a type of the SIP crate (see `notes/sip-stack.md`).

pub mod callerid;
pub mod digest;
pub mod settings;
