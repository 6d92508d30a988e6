//! Bookings: the visit calendar, slot rules, travel times and reception numbers.
//!
//! The booking core follows in its own issue; the line's opening hours and the holiday rules
//! it will share with the visit calendar live in the leaf module [`crate::hours`].
