//! Bookings: the visit calendar, slot rules, travel times and reception numbers.
//!
//! So far only the calendar of the line (opening hours, holidays) is here; the booking core
//! follows in its own issue.

pub mod calendar;
