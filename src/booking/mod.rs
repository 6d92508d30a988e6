//! Bookings (issue 14): the visit calendar, slot rules, travel times, home bookings, facility
//! requests, reception numbers and the reception list (R-CAL, R-SLOT, R-BOOK, R-PREP-3..5).
//!
//! The line's opening hours and the holiday rules the visit calendar shares live in the leaf
//! module [`crate::hours`]. Every number a rule reads comes from the profile ([`BookingRules`],
//! [`TravelRules`]). Every change of personal data writes its 取扱記録 row in its transaction.

pub mod address;
pub mod bookings;
pub mod calendar;
pub mod capacity;
mod codes;
pub mod conflicts;
pub mod facility;
pub mod places;
pub mod purge;
pub mod reception;
pub mod records;
mod rules;
pub mod season;
pub mod slots;
pub mod travel;
pub mod visits;

pub use codes::{
    AddressMatch, ApplicationKind, BookingChange, BookingKind, BookingStatus, CallerRelation,
    FacilityStatus, FormKind, Guidance, HalfDay, IdDocument, VisitDayKind,
};
pub use places::Places;
pub use rules::{AddressRules, BookingRules, TravelRules};

/// Failures of the booking domain that are not a rule's refusal.
#[derive(Debug, thiserror::Error)]
pub enum BookingError {
    /// Bad input; the message says what to fix.
    #[error("{0}")]
    Invalid(String),
    /// The record does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The change conflicts with the current state (e.g. a slot just taken); the message says
    /// why in words an operator can repeat.
    #[error("{0}")]
    Conflict(String),
    /// The slot was taken (or a rule now refuses it) while the caller was on the line: the
    /// reason and fresh alternatives.
    #[error("{}", .0.reason)]
    SlotTaken(bookings::SlotTaken),
    /// A database failure.
    #[error(transparent)]
    Store(#[from] sqlx::Error),
    /// The purge committed but making the old bytes unrecoverable failed (run it again).
    #[error("the purge was committed, but scrubbing the database files failed: {0}")]
    Scrub(String),
    /// The audit row could not be written (the change was rolled back).
    #[error(transparent)]
    Audit(#[from] crate::privacy::PrivacyError),
}
