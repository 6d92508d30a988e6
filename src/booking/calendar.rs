//! The visit calendar (R-CAL-1..3): proposal, import/export, the manager's edits and fixing.
//!
//! Being written (issue 14 item 2).
