//! Staff accounts, roles, sessions, login policy and the audit log (取扱記録).
//!
//! R-PII-1: only designated staff reach personal data, and the staff list with roles is
//! recorded here. R-PII-4: every handling of personal data leaves an append-only audit row.

mod audit;
mod config;
pub mod handling;
mod password;
mod roles;
mod sessions;
mod throttle;
mod users;

pub use audit::{
    append as append_audit, Actor, AuditAction, AuditEntry, AuditFilter, AuditOutcome, AuditRow,
    AuditTarget, Auditor,
};
pub use config::AuthConfig;
pub use password::{generate_password, hash_password, verify_password};
pub use roles::Role;
pub use sessions::{Session, SessionEnds, SessionStore, SessionWatch};
pub use users::{
    bootstrap_admin, LoginFailure, LoginRefusal, NewUser, User, Users, DISPLAY_NAME_MAX_CHARS,
    PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS, USERNAME_RULE_JA,
};

/// Failures of the accounts and audit domain.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    /// A username is taken.
    #[error("username '{0}' already exists")]
    DuplicateUsername(String),
    /// No such user.
    #[error("no such user")]
    UnknownUser,
    /// An account may not disable itself.
    #[error("an account cannot disable itself")]
    SelfDisable,
    /// Input failed validation.
    #[error("{0}")]
    Invalid(String),
    /// Hashing failed (never for valid input).
    #[error("password hashing failed")]
    Hash,
    /// A database failure.
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}
