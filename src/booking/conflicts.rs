//! Booking conflicts since the start, for `/metrics`: each time a booking, a move or a
//! cancellation was refused because the state had changed under the operator (the 409s).

use std::sync::atomic::{AtomicU64, Ordering};

use super::BookingError;

/// The booking operations counted.
pub const OPERATIONS: [&str; 3] = ["create", "reschedule", "cancel"];
/// How the conflict showed: the slot taken meanwhile (with alternatives), or another change.
pub const KINDS: [&str; 2] = ["slot_taken", "conflict"];

/// Conflicts by operation and kind.
#[derive(Debug, Default)]
pub struct ConflictCounts([[AtomicU64; KINDS.len()]; OPERATIONS.len()]);

impl ConflictCounts {
    /// Counts `result` if it is a conflict of operation `op` (an index into [`OPERATIONS`]).
    pub(super) fn seen<T>(
        &self,
        op: usize,
        result: Result<T, BookingError>,
    ) -> Result<T, BookingError> {
        let kind = match &result {
            Err(BookingError::SlotTaken(_)) => Some(0),
            Err(BookingError::Conflict(_)) => Some(1),
            _ => None,
        };
        if let Some(kind) = kind {
            self.0[op][kind].fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// `(operation, kind, count)` for every pair, zero included.
    pub fn snapshot(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut out = Vec::with_capacity(OPERATIONS.len() * KINDS.len());
        for (op, row) in OPERATIONS.iter().zip(&self.0) {
            for (kind, n) in KINDS.iter().zip(row) {
                out.push((*op, *kind, n.load(Ordering::Relaxed)));
            }
        }
        out
    }
}
