//! The completion report (委託業務完了報告書, R-REP-2): the whole contract in figures — calls
//! per week and in total, outcomes, bookings, visits done and their applicants, facilities,
//! shares with the city on time or late, deletions done, opinions and complaints.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;
use sqlx::Row;

use crate::clock::from_db_time;
use crate::store::Db;

use super::weekly::{self, Figures, IsoWeek, WeekPoint};
use super::{ReportSettings, ReportsError};

/// The bookings' side of the contract.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BookingFacts {
    /// Home visits booked (not cancelled).
    pub home_booked: u32,
    /// Facility visits booked (not cancelled).
    pub facility_booked: u32,
    /// Pre-meetings with facilities booked.
    pub pre_meetings: u32,
    /// Bookings cancelled.
    pub cancelled: u32,
    /// Home visits done.
    pub home_done: u32,
    /// Facility visits done.
    pub facility_done: u32,
    /// Applicants of the home visits done (as booked).
    pub home_applicants_done: u32,
    /// Applicants of the facility visits done (as booked).
    pub facility_applicants_done: u32,
    /// Facility requests recorded.
    pub facility_requests: u32,
    /// Facilities with a visit done.
    pub facilities_visited: u32,
    /// Visits whose slip was shared with the city by the due date.
    pub shared_on_time: u32,
    /// Visits whose slip was shared after the due date.
    pub shared_late: u32,
    /// Visits not shared (yet).
    pub not_shared: u32,
    /// Bookings whose personal data was deleted.
    pub purged: u32,
}

/// The completion report.
#[derive(Debug, Clone, Serialize)]
pub struct CompletionReport {
    /// 小樽市.
    pub city_ja: String,
    /// The service's name.
    pub service_ja: String,
    /// The call-center period's first day.
    pub period_from: NaiveDate,
    /// Its last day.
    pub period_to: NaiveDate,
    /// Calls of the whole period.
    pub calls: Figures,
    /// Calls per week.
    pub weeks: Vec<WeekPoint>,
    /// Bookings, visits, shares and deletions.
    pub bookings: BookingFacts,
    /// How each figure is counted, in Japanese.
    pub formulas: BTreeMap<String, String>,
    /// When it was computed.
    pub computed_at: DateTime<Utc>,
}

/// The formulas of the completion report's own figures.
pub const COMPLETION_FORMULAS: &[(&str, &str)] = &[
    ("calls", "受付期間の全通話を週報と同じ定義で集計（受付件数・応答件数・時間外・対応区分など）"),
    ("booked", "予約件数 = 取消されていない予約（自宅訪問・施設訪問・事前打合せ）"),
    ("visits_done", "訪問完了 = 訪問完了日が記録された予約（bookings.visit_done_at）"),
    ("applicants_done", "訪問完了分の申請者数 = 訪問完了した予約の予約時の申請者数の合計"),
    ("facilities_visited", "訪問した施設数 = 訪問完了した施設訪問の施設申込の数"),
    ("shares", "受付票の共有期限 = 訪問日の属する週の前週の火曜日。共有日（日本時間）が期限以前なら期限内、以後なら期限後、未記録なら未共有"),
    ("purged", "個人情報削除済み = 削除日が記録された予約（bookings.purged_at）"),
];

/// The due date of a visit's slip: Tuesday of the week before the visit's week.
pub fn share_due(visit: NaiveDate) -> NaiveDate {
    IsoWeek::of(visit).monday() - Duration::days(6)
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

async fn booking_facts(db: &Db) -> Result<BookingFacts, ReportsError> {
    let rows = sqlx::query(
        "SELECT kind, status, visit_date, shared_at, visit_done_at, purged_at, applicant_count, facility_request_id \
         FROM bookings",
    )
    .fetch_all(db.pool())
    .await?;
    let requests: i64 = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) FROM facility_requests")
        .fetch_one(db.pool())
        .await?
        .try_get(0)?;
    let mut f = BookingFacts {
        facility_requests: u32::try_from(requests).unwrap_or(0),
        ..Default::default()
    };
    let mut facilities = BTreeSet::new();
    for r in &rows {
        let kind: String = r.try_get(0)?;
        let status: String = r.try_get(1)?;
        let visit: Option<NaiveDate> = r.try_get::<String, _>(2)?.parse().ok();
        let shared = r
            .try_get::<Option<String>, _>(3)?
            .as_deref()
            .and_then(from_db_time);
        let done = r.try_get::<Option<String>, _>(4)?.is_some();
        let purged = r.try_get::<Option<String>, _>(5)?.is_some();
        let applicants = u32::try_from(r.try_get::<i64, _>(6)?).unwrap_or(0);
        let facility: Option<i64> = r.try_get(7)?;
        f.purged += u32::from(purged);
        if status == "cancelled" {
            f.cancelled += 1;
            continue;
        }
        match kind.as_str() {
            "home" => {
                f.home_booked += 1;
                if done {
                    f.home_done += 1;
                    f.home_applicants_done += applicants;
                }
            }
            "facility" => {
                f.facility_booked += 1;
                if done {
                    f.facility_done += 1;
                    f.facility_applicants_done += applicants;
                    facilities.extend(facility);
                }
            }
            _ => {
                f.pre_meetings += 1;
                continue;
            }
        }
        match (shared, visit) {
            (Some(at), Some(visit)) => {
                let day = at.with_timezone(&chrono_tz::Asia::Tokyo).date_naive();
                if day <= share_due(visit) {
                    f.shared_on_time += 1;
                } else {
                    f.shared_late += 1;
                }
            }
            _ => f.not_shared += 1,
        }
    }
    f.facilities_visited = count(facilities.len());
    Ok(f)
}

/// The completion report of the whole call-center period as the data has it now.
pub async fn completion(
    db: &Db,
    settings: &ReportSettings,
    now: DateTime<Utc>,
) -> Result<CompletionReport, ReportsError> {
    let (from, to) = (settings.season_start, settings.season_end);
    let calls = weekly::range_total(db, settings, from, to, "期間計", now).await?;
    let weeks = weekly::season_series(db, settings, IsoWeek::of(to)).await?;
    let bookings = booking_facts(db).await?;
    let formulas = weekly::formulas()
        .into_iter()
        .chain(
            COMPLETION_FORMULAS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .collect();
    Ok(CompletionReport {
        city_ja: settings.city_ja.clone(),
        service_ja: settings.service_ja.clone(),
        period_from: from,
        period_to: to,
        calls,
        weeks,
        bookings,
        formulas,
        computed_at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slip_is_due_on_tuesday_of_the_week_before_the_visit() {
        let d = |m, day| NaiveDate::from_ymd_opt(2026, m, day).unwrap();
        // A visit on Wednesday 17 June: its week starts Monday 15 June; due Tuesday 9 June.
        assert_eq!(share_due(d(6, 17)), d(6, 9));
        assert_eq!(share_due(d(6, 15)), d(6, 9));
        assert_eq!(share_due(d(6, 21)), d(6, 9));
    }
}
