//! The weekly share to the city (issue 15 items 2 and 3; R-PREP-1, R-PREP-2): the due date of
//! each visit week, the bundle of its slips (受付票) as one XLSX inside an AES-256 ZIP with a
//! new random password, the allow-list of recipients an admin keeps, the four-eyes approval,
//! and the send (two mails over SMTP, or two downloads without SMTP).
//!
//! The archive and its password live in the database only between preparation and the send
//! (or the withdrawal of the share); the send empties both in the transaction that records
//! it, sets `bookings.shared_at` and writes the audit rows. Every refusal (an address not on
//! the list, a self-approval, a send before approval, a second send) changes nothing and
//! leaves a `share.refused` row.

mod bundle;
mod config;
mod facility;
mod mail;

pub use mail::send_notice;
mod recipients;
mod shares;
mod slips;

pub use bundle::{new_password, PASSWORD_LEN};
pub use config::{SharingConfig, SmtpTls};
pub use facility::{FacilityList, ListedApplicant, DAYS_BEFORE_VISIT};
pub use recipients::Recipient;
pub use shares::{
    due_date, week_start, DueWeek, FacilityDue, PrepareInput, Prepared, Secret, SecretKind,
    SendOutcome, ShareView, Sharing,
};
pub use slips::{Slip, SlipApplicant};

crate::code_enum! {
    /// What a share holds.
    pub enum ShareKind: "share_kind" {
        /// The slips of every home visit in a visit week (R-PREP-1).
        HomeWeek = "home_week" / "自宅訪問の受付票（週）",
        /// A facility's applicant list, before its first visit (R-PREP-4).
        FacilityList = "facility_list" / "施設の申請者一覧",
    }
}

crate::code_enum! {
    /// Where one share stands.
    pub enum ShareStatus: "share_status" {
        /// Bundle built, waiting for a second person's approval.
        Prepared = "prepared" / "準備済（承認待ち）",
        /// Approved by a second person; may be sent.
        Approved = "approved" / "承認済（送付待ち）",
        /// Sent to the city; archive and password deleted.
        Sent = "sent" / "送付済",
        /// Replaced by a newer preparation of the same week; archive and password deleted.
        Withdrawn = "withdrawn" / "取下げ",
    }
}

crate::code_enum! {
    /// Where a visit week's share stands against its due date (R-PREP-1).
    pub enum DueState: "share_due_state" {
        /// More than a week before the due date.
        NotDue = "not_due" / "期限前",
        /// Within the week before the due date (a facility list: from the list's first
        /// day of lead), nothing prepared yet.
        Due = "due" / "要送付",
        /// Past the due date and not sent.
        Late = "late" / "期限超過",
        /// Prepared, waiting for approval.
        Prepared = "prepared" / "承認待ち",
        /// Approved, waiting to be sent.
        Approved = "approved" / "送付待ち",
        /// Sent by the due date.
        SentOnTime = "sent_on_time" / "送付済（期限内）",
        /// Sent after the due date.
        SentLate = "sent_late" / "送付済（期限後）",
    }
}

crate::code_enum! {
    /// How a share reached the city.
    pub enum SentVia: "share_sent_via" {
        /// Two mails through the configured SMTP server.
        Smtp = "smtp" / "メール送信",
        /// Downloaded by staff and passed on by them.
        Download = "download" / "ダウンロード",
    }
}

/// Failures and refusals of the sharing domain.
#[derive(Debug, thiserror::Error)]
pub enum SharingError {
    /// Bad input; the message says what to fix.
    #[error("{0}")]
    Invalid(String),
    /// No such share or recipient.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A refusal by the rules of R-PREP-2 (recorded as `share.refused`): the code says which.
    #[error("{message}")]
    Refused {
        /// Stable code, e.g. `recipient_not_allowed`, `self_approval`.
        code: &'static str,
        /// Why, in Japanese.
        message: String,
        /// Whether it is a question of who acts (403) rather than of the share's state (409/422).
        forbidden: bool,
    },
    /// The mail server refused or could not be reached; nothing was marked as sent.
    #[error("{0}")]
    Mail(String),
    /// The archive could not be built.
    #[error("building the archive failed: {0}")]
    Bundle(String),
    /// A database failure.
    #[error(transparent)]
    Store(#[from] sqlx::Error),
    /// The audit row could not be written (the change was rolled back).
    #[error(transparent)]
    Audit(#[from] crate::privacy::PrivacyError),
}
