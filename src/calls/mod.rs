//! Calls: the events the SIP side publishes, and the call log they are written to (R-LINE-3).
//!
//! The proxy publishes [`CallEvent`]s and moves on; it never waits for a subscriber. The call
//! log writer is one subscriber; the screen-pop hub and live stats are others.

pub mod callbacks;
pub mod callerid;
mod codes;
mod events;
mod line;
pub mod live_tally;
mod log;
pub mod script;
pub mod stats;
pub mod tally;

pub use codes::{
    CallPhase, CallbackResult, CallbackStatus, CallerKind, EndCode, LineState, Outcome, Party,
    PresenceState, TalkPath, Topic,
};
pub use events::{CallEvent, CallEvents, CallInfo, EndCause};
pub use line::LineProfile;
pub use log::{clean, is_transient, BACKLOG_HIGH, NOTE_MAX_CHARS};
pub use log::{
    spawn_writer, CallFilter, CallLog, CallRow, CallerView, DayTotals, OutcomeError, OutcomeInput,
    StoredEvents, WriterCounters,
};

/// Failures of the calls domain.
#[derive(Debug, thiserror::Error)]
pub enum CallsError {
    /// A database failure.
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}
