//! The digest client the test phones use: the product's own (`sip::wire::auth`), one
//! implementation for the carrier registration and the tests.

pub use madoguchi::sip::wire::auth::authorization;
