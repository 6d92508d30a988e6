//! Addresses: matching what the caller says to a 町丁目 of the city (R-BOOK-3 a), with the
//! reference data shipped in the profile (towns with representative points, postal codes).
//!
//! Being written (issue 14 item 3).
