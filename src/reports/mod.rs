//! Reports for the city (R-REP): the weekly call counts (受電件数) with their chart, frozen
//! once sent; the opinions and complaints with their follow-up; the completion report.
//!
//! The weekly figures are the live statistics' sums ([`crate::calls::tally`]) added up per
//! Japanese day, so a day of the report and the dashboard of that day agree. Renderings
//! (CSV for Excel, XLSX, SVG, printable HTML) live in `render`.

pub mod completion;
mod frozen;
pub mod opinions;
mod render;
pub mod weekly;

use chrono::NaiveDate;

pub use completion::{completion, CompletionReport};
pub use frozen::{mark_sent, weekly_view};
pub use frozen::{SentInfo, VersionChoice, WeeklyView};
pub use opinions::{FollowUpInput, OpinionRow};
pub use render::{
    completion_html, completion_xlsx, opinions_csv, opinions_xlsx, weekly_csv, weekly_html,
    weekly_svg, weekly_xlsx, REPORT_CSS,
};
pub use weekly::{IsoWeek, WeeklyReport};

/// What the reports need to know of the profile.
#[derive(Debug, Clone)]
pub struct ReportSettings {
    /// The city's name (小樽市).
    pub city_ja: String,
    /// The service's name.
    pub service_ja: String,
    /// The first day of the call-center period.
    pub season_start: NaiveDate,
    /// Its last day.
    pub season_end: NaiveDate,
    /// The service-level threshold of the live statistics, seconds.
    pub service_level_secs: u32,
}

/// Failures of the reports domain.
#[derive(Debug, thiserror::Error)]
pub enum ReportsError {
    /// Bad input (a week, a date range, a format, a follow-up text).
    #[error("{0}")]
    Invalid(String),
    /// No such record.
    #[error("no such {0}")]
    NotFound(&'static str),
    /// The report was already sent with these figures.
    #[error("version {0} was sent with these very figures; nothing new to send")]
    Unchanged(i64),
    /// The call is not tagged opinion or complaint.
    #[error("call {0} is not tagged opinion or complaint")]
    NotAnOpinion(i64),
    /// Writing the XLSX failed.
    #[error("xlsx: {0}")]
    Xlsx(String),
    /// The call log failed.
    #[error(transparent)]
    Calls(#[from] crate::calls::CallsError),
    /// A database failure.
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

impl From<rust_xlsxwriter::XlsxError> for ReportsError {
    fn from(e: rust_xlsxwriter::XlsxError) -> Self {
        ReportsError::Xlsx(e.to_string())
    }
}
