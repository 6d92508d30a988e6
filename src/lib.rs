//! madoguchi (窓口): the phone line of a municipal outreach call center, end to end.
//!
//! See `design.md` in the shared folder for the architecture; each module is a domain.

pub mod alarm;
pub mod app;
pub mod booking;
pub mod calls;
pub mod clock;
pub mod codes;
pub mod config;
pub mod hours;
pub mod hub;
pub mod instances;
pub mod metrics;
pub mod privacy;
pub mod reports;
pub mod sharing;
pub mod sip;
pub mod store;
pub mod wareki;
pub mod web;
