use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::calls::callerid::CallerId;
use crate::hours::ClosedReason;

use super::{EndCode, Party};

/// What is known about a call from its first INVITE.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CallInfo {
    /// Our id for the call, unique across restarts.
    pub key: String,
    /// The SIP Call-ID as the carrier sent it.
    pub sip_call_id: String,
    /// Who is calling.
    pub caller: Option<CallerId>,
    /// Which of our numbers was dialled.
    pub line_number: Option<String>,
    /// The peer the INVITE came from (`ip:port`), for rejected calls.
    pub source: String,
    /// When the INVITE arrived.
    pub arrived_at: DateTime<Utc>,
}

/// How a call ended, with the detail the proxy knows ([`EndCode`] is the stored code).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EndCause {
    /// Answered and then hung up by one side.
    Completed,
    /// The caller hung up while it rang.
    Abandoned,
    /// The line was already in use (R-LINE-2).
    Busy,
    /// Outside the opening hours; the reason code says which rule (R-HOURS-1).
    Closed(ClosedReason),
    /// No operator phone was registered.
    Unstaffed,
    /// Nobody answered before the ring timeout.
    NoAnswer,
    /// Every operator phone refused it (e.g. all declined).
    Refused(u16),
    /// Not from the trunk: refused before any routing.
    Rejected,
    /// The adapter restarted while the call was open.
    Interrupted,
    /// Answered, but no BYE came within `line.max_call_minutes`.
    Expired,
}

impl EndCause {
    /// The stored code.
    pub fn code(&self) -> EndCode {
        match self {
            EndCause::Completed => EndCode::Completed,
            EndCause::Abandoned => EndCode::Abandoned,
            EndCause::Busy => EndCode::Busy,
            EndCause::Closed(_) => EndCode::Closed,
            EndCause::Unstaffed => EndCode::Unstaffed,
            EndCause::NoAnswer => EndCode::NoAnswer,
            EndCause::Refused(_) => EndCode::Refused,
            EndCause::Rejected => EndCode::Rejected,
            EndCause::Interrupted => EndCode::Interrupted,
            EndCause::Expired => EndCode::Expired,
        }
    }

    /// The stored code's name.
    pub fn as_str(&self) -> &'static str {
        self.code().as_str()
    }

    /// Extra detail stored beside the code (closing reason, refusing status).
    pub fn detail(&self) -> Option<String> {
        match self {
            EndCause::Closed(reason) => Some(reason.as_str().to_string()),
            EndCause::Refused(status) => Some(status.to_string()),
            _ => None,
        }
    }
}

/// Something that happened to a call. Each carries the call's [`CallInfo`], so a subscriber
/// that joins late or missed an event still has the whole picture. Serialisable: instances
/// sharing PostgreSQL pass them to each other (issue 16 item 1).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum CallEvent {
    /// Offered to the operators' phones.
    Ringing {
        /// The call.
        call: CallInfo,
        /// When the first phone was asked to ring.
        at: DateTime<Utc>,
    },
    /// An operator's phone answered.
    Answered {
        /// The call.
        call: CallInfo,
        /// When the 2xx came.
        at: DateTime<Utc>,
        /// The operator account the phone belongs to.
        operator: Option<String>,
        /// The phone (its SIP username / extension).
        extension: String,
    },
    /// The call is over, whichever way.
    Ended {
        /// The call.
        call: CallInfo,
        /// When it ended.
        at: DateTime<Utc>,
        /// How.
        cause: EndCause,
        /// Who hung up, for completed calls.
        hangup_by: Option<Party>,
        /// When it rang, if it did.
        rang_at: Option<DateTime<Utc>>,
        /// When it was answered, if it was.
        answered_at: Option<DateTime<Utc>>,
    },
}

impl CallEvent {
    /// The call this event is about.
    pub fn call(&self) -> &CallInfo {
        match self {
            CallEvent::Ringing { call, .. }
            | CallEvent::Answered { call, .. }
            | CallEvent::Ended { call, .. } => call,
        }
    }
}

/// The in-process channel of call events: many subscribers, a publisher that never waits.
///
/// Each subscriber has its own unbounded queue: the SIP side must never block on a slow
/// database or browser, and the call log must never lose an event, so memory is the buffer.
#[derive(Clone, Default)]
pub struct CallEvents {
    subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<Arc<CallEvent>>>>>,
    stored: super::StoredEvents,
}

impl CallEvents {
    /// A channel whose call-log writer counts as far behind from `backlog_max` waiting events.
    pub fn with_backlog_max(backlog_max: u64) -> Self {
        CallEvents {
            subscribers: Arc::default(),
            stored: super::StoredEvents::with_backlog_max(backlog_max),
        }
    }

    /// A channel with no subscribers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The other end: events the call-log writer has committed, for whoever must not run
    /// ahead of the log (the hub's figures; the final answer to a BYE).
    pub fn stored(&self) -> &super::StoredEvents {
        &self.stored
    }

    /// A new subscriber's receiving end; it sees events published from now on.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Arc<CallEvent>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
        rx
    }

    /// Hands `event` to every subscriber without waiting; gone subscribers are forgotten.
    pub fn publish(&self, event: CallEvent) {
        self.stored.published();
        let event = Arc::new(event);
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.retain(|s| s.send(event.clone()).is_ok());
    }
}
