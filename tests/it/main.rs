//! madoguchi's integration tests, one binary: the real server, real peers (sipp, Chromium)
//! and both database backends. One binary links once and lets every module share the rig in
//! `common` (zero-to-production's layout). Run one area with `cargo test --test it hub::`.

mod common;

mod accounts;
mod addresses;
mod alarm;
mod architecture;
mod auth_api;
mod backup;
mod booking;
mod browser;
mod calendar;
mod call_log_durability;
mod cli;
mod codes;
mod console;
mod demo_call;
mod deploy;
mod fuzz_seeds;
mod http_server;
mod hub;
mod instances;
mod japanese_ui;
mod live_stats_incremental;
mod metrics;
mod pg_restart;
mod purge;
mod reports;
mod route_table;
mod screens;
mod screens_browser;
mod season;
mod sharing;
mod shutdown;
mod sip_announcement;
mod sip_digest;
mod sip_flood;
mod sip_hardening;
mod sip_interop;
mod sip_leaks;
mod sip_limits;
mod sip_logs;
mod sip_loss;
mod sip_malformed;
mod sip_presence;
mod sip_reach;
mod sip_silent_phone;
mod storage;
mod test_databases;
mod trunk_registration;
mod visits;
