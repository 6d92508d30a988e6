//! RFC 3261 branches that carry our transaction slot, so a reply finds its branch in O(1).
//!
//! Like Kamailio's `tm`: the branch names the table slot, a per-use generation (so a reply to
//! a reused slot's previous tenant does not match) and the fork branch number.

/// The RFC 3261 magic cookie every compliant branch starts with (§8.1.1.7).
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// Our marker after the cookie; the `1` is the encoding version.
const OURS: &str = "z9hG4bKmdg1.";

/// What we encode in a branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BranchId {
    /// Transaction table slot.
    pub slot: u32,
    /// Generation of the slot's current tenant (start it from `random_generation()`).
    pub generation: u32,
    /// Fork branch number within the transaction.
    pub branch: u16,
}

/// Encode, e.g. `z9hG4bKmdg1.2a.5f3e9c01.0`.
pub fn encode(id: BranchId) -> String {
    format!("{OURS}{:x}.{:x}.{:x}", id.slot, id.generation, id.branch)
}

/// Decode one of our branches; `None` for anyone else's (or a tampered one).
pub fn decode(branch: &str) -> Option<BranchId> {
    let rest = branch.strip_prefix(OURS)?;
    let mut it = rest.split('.');
    let slot = hex32(it.next()?)?;
    let generation = hex32(it.next()?)?;
    let branch = u16::try_from(hex32(it.next()?)?).ok()?;
    if it.next().is_some() {
        return None;
    }
    Some(BranchId {
        slot,
        generation,
        branch,
    })
}

/// Whether a branch has the RFC 3261 magic cookie.
pub fn is_rfc3261(branch: &str) -> bool {
    branch.starts_with(MAGIC_COOKIE)
}

/// A random starting generation, so branches stay unique across restarts (§8.1.1.7).
pub fn random_generation() -> u32 {
    (super::random_u64() >> 32) as u32
}

// `from_str_radix` accepts a leading `+`; a branch from the network must be plain hex.
fn hex32(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}
