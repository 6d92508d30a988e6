//! Capacity for the manager (issue 14 item 9): slots left per week and half-day, the PM-3rd
//! switch per day, and the season's forecast against the targets (R-PERIOD-3). 144 homes on
//! 36 days is exactly 4 a day: the manager must see early when the season will not fit.

use chrono::{Datelike, Duration, NaiveDate};
use serde::Serialize;

use super::bookings::Bookings;
use super::slots::DayState;
use super::{BookingError, BookingKind, HalfDay, VisitDayKind};

/// One visit day's capacity.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DayCapacity {
    /// The date.
    pub date: NaiveDate,
    /// Home or facility.
    pub kind: VisitDayKind,
    /// The 3rd afternoon visit is open.
    pub pm_extra_open: bool,
    /// Free morning slots.
    pub am_free: u32,
    /// Free afternoon slots (the 3rd counted when open and the first two are taken).
    pub pm_free: u32,
    /// Visits booked.
    pub booked: u32,
    /// Applicants booked.
    pub applicants: u32,
}

/// One week (Monday–Sunday).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WeekCapacity {
    /// Its Monday.
    pub monday: NaiveDate,
    /// Its visit days.
    pub days: Vec<DayCapacity>,
    /// Free home slots in the week.
    pub home_free: u32,
    /// Home visits booked in the week.
    pub home_booked: u32,
}

/// The season's figures against the targets.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Forecast {
    /// Home visits booked so far (live).
    pub home_booked: u32,
    /// Home applicants booked so far.
    pub home_applicants: u32,
    /// Facility visits booked so far.
    pub facility_booked: u32,
    /// Target home bookings (144).
    pub target_home_bookings: u32,
    /// Target facilities (6).
    pub target_facilities: u32,
    /// Free regular home slots on days still ahead.
    pub home_free_ahead: u32,
    /// Home bookings still expected (target − booked).
    pub home_still_expected: u32,
    /// Expected bookings beyond the free slots (0 when they fit): how many 3rd-afternoon
    /// visits or extra days the season needs.
    pub home_shortfall: u32,
    /// Plain words for the dashboard.
    pub verdict: String,
}

/// The manager's view.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Capacity {
    /// Week by week.
    pub weeks: Vec<WeekCapacity>,
    /// The season.
    pub forecast: Forecast,
}

fn day_capacity(b: &Bookings, d: &DayState) -> DayCapacity {
    let rules = b.rules();
    let half = |h: HalfDay| -> u32 {
        let occ = d.half(h);
        if occ.iter().any(|o| o.whole) {
            return 0;
        }
        match d.kind {
            VisitDayKind::Facility => u32::from(occ.is_empty()),
            VisitDayKind::Home => {
                let regular = match h {
                    HalfDay::Am => rules.home_am_windows.len(),
                    HalfDay::Pm => rules.home_pm_windows.len(),
                } as u32;
                let extra = u32::from(h == HalfDay::Pm && d.pm_extra_open);
                (regular + extra).saturating_sub(occ.len() as u32)
            }
        }
    };
    let all = d.am.iter().chain(d.pm.iter());
    let visits: Vec<_> = all.filter(|o| o.kind != BookingKind::PreMeeting).collect();
    DayCapacity {
        date: d.date,
        kind: d.kind,
        pm_extra_open: d.pm_extra_open,
        am_free: half(HalfDay::Am),
        pm_free: half(HalfDay::Pm),
        booked: visits.len() as u32,
        applicants: visits.iter().map(|o| o.applicants).sum(),
    }
}

impl Bookings {
    /// Capacity week by week and the season's forecast, as of `today`.
    pub async fn capacity(&self, today: NaiveDate) -> Result<Capacity, BookingError> {
        let days = self.days_from(NaiveDate::MIN).await?;
        let mut weeks: Vec<WeekCapacity> = Vec::new();
        let (mut home_booked, mut home_applicants, mut facility_booked, mut free_ahead) =
            (0, 0, 0, 0);
        for d in &days {
            let c = day_capacity(self, d);
            let monday =
                d.date - Duration::days(i64::from(d.date.weekday().num_days_from_monday()));
            if weeks.last().map(|w| w.monday) != Some(monday) {
                weeks.push(WeekCapacity {
                    monday,
                    days: Vec::new(),
                    home_free: 0,
                    home_booked: 0,
                });
            }
            let w = weeks.last_mut().expect("pushed above");
            match c.kind {
                VisitDayKind::Home => {
                    home_booked += c.booked;
                    home_applicants += c.applicants;
                    w.home_booked += c.booked;
                    w.home_free += c.am_free + c.pm_free;
                    if d.date >= today {
                        free_ahead += c.am_free + c.pm_free;
                    }
                }
                VisitDayKind::Facility => facility_booked += c.booked,
            }
            w.days.push(c);
        }
        let rules = self.rules();
        let still = rules.target_home_bookings.saturating_sub(home_booked);
        let shortfall = still.saturating_sub(free_ahead);
        let verdict = if shortfall > 0 {
            format!(
                "残りの見込み{still}件に対し空き枠は{free_ahead}件です。{shortfall}件分、午後3件目の開放か訪問日の追加が必要です。"
            )
        } else if free_ahead - still <= 4 {
            format!(
                "残りの見込み{still}件に対し空き枠は{free_ahead}件で、余裕がほとんどありません。"
            )
        } else {
            format!("残りの見込み{still}件に対し空き枠は{free_ahead}件です。")
        };
        Ok(Capacity {
            weeks,
            forecast: Forecast {
                home_booked,
                home_applicants,
                facility_booked,
                target_home_bookings: rules.target_home_bookings,
                target_facilities: rules.target_facilities,
                home_free_ahead: free_ahead,
                home_still_expected: still,
                home_shortfall: shortfall,
                verdict,
            },
        })
    }
}
