//! `[booking]` and `[travel]` of the city profile: every number of R-PERIOD, R-CAL, R-SLOT that
//! a rule reads. The shipped defaults are the spec's values (Otaru 2026); another city or year
//! changes the profile, not the code (R-PERIOD-3).

use serde::Deserialize;

/// `[booking]` of the profile.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BookingRules {
    /// Home-visit days in the visit period (R-PERIOD-2: 36).
    pub home_days: u32,
    /// Facility-visit days in the visit period (R-PERIOD-2: 6).
    pub facility_days: u32,
    /// Fewest visit days in every week of the period (R-CAL-1: 1).
    pub min_days_per_week: u32,
    /// Most visit days in a week (R-CAL-1: 2).
    pub max_days_per_week: u32,
    /// Announced windows of the morning home visits, one per slot: the morning capacity
    /// (R-SLOT-1: 2; R-SLOT-3: about 10:00, 10:30–11:30).
    pub home_am_windows: Vec<String>,
    /// Announced windows of the afternoon home visits (R-SLOT-1: 2; R-SLOT-3).
    pub home_pm_windows: Vec<String>,
    /// Window of the extra afternoon visit, offered only on days the manager opens it
    /// (R-SLOT-1 3rd afternoon, R-SLOT-3: 15:00–16:00).
    pub home_pm_extra_window: String,
    /// A household with this many applicants or more takes the whole half-day (R-SLOT-1: 6).
    pub whole_half_day_applicants: u32,
    /// Announced window of the morning facility visit (R-SLOT-2/3: 10:00, one a morning).
    pub facility_am_window: String,
    /// Announced window of the afternoon facility visit (14:00, one an afternoon).
    pub facility_pm_window: String,
    /// A facility visit is for this many applicants or more; fewer go to home slots
    /// (R-SLOT-2: 6).
    pub facility_min_applicants: u32,
    /// More applicants than this need both half-days or another day (R-SLOT-2: 20).
    pub facility_half_day_applicants: u32,
    /// Facilities with this many applicants or more need an on-site pre-meeting (R-CAL-3: 10).
    pub pre_meeting_applicants: u32,
    /// Longest move between consecutive home visits of a half-day, minutes (R-SLOT-4: 30).
    pub travel_limit_minutes: u32,
    /// Longest move from the 2nd to the extra afternoon visit, minutes (R-SLOT-4: 15).
    pub extra_travel_limit_minutes: u32,
    /// Days between today and a home visit (R-SLOT-5: about 2 weeks = 14).
    pub home_lead_days: u32,
    /// Days between today and a facility visit of 6+ (R-SLOT-5: about 1 month = 30).
    pub facility_lead_days: u32,
    /// The season's expected home bookings (R-PERIOD-3: 144).
    pub target_home_bookings: u32,
    /// The season's expected home applications (R-PERIOD-3: 216).
    pub target_home_applicants: u32,
    /// The season's expected facilities (R-PERIOD-3: 6).
    pub target_facilities: u32,
    /// The season's expected facility applications (R-PERIOD-3: 60).
    pub target_facility_applicants: u32,
}

impl Default for BookingRules {
    fn default() -> Self {
        BookingRules {
            home_days: 36,
            facility_days: 6,
            min_days_per_week: 1,
            max_days_per_week: 2,
            home_am_windows: vec!["10:00頃".into(), "10:30〜11:30".into()],
            home_pm_windows: vec!["14:00頃".into(), "14:30〜15:30".into()],
            home_pm_extra_window: "15:00〜16:00".into(),
            whole_half_day_applicants: 6,
            facility_am_window: "10:00".into(),
            facility_pm_window: "14:00".into(),
            facility_min_applicants: 6,
            facility_half_day_applicants: 20,
            pre_meeting_applicants: 10,
            travel_limit_minutes: 30,
            extra_travel_limit_minutes: 15,
            home_lead_days: 14,
            facility_lead_days: 30,
            target_home_bookings: 144,
            target_home_applicants: 216,
            target_facilities: 6,
            target_facility_applicants: 60,
        }
    }
}

impl BookingRules {
    /// Checks the values hang together; the message names the key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let bad = |key, why: &str| Err((key, why.to_string()));
        if self.min_days_per_week == 0 || self.min_days_per_week > self.max_days_per_week {
            return bad(
                "booking.min_days_per_week",
                "must be at least 1 and at most booking.max_days_per_week",
            );
        }
        if self.max_days_per_week > 5 {
            return bad("booking.max_days_per_week", "must be at most 5 (weekdays)");
        }
        if self.home_days + self.facility_days == 0 {
            return bad(
                "booking.home_days",
                "home_days + facility_days must be at least 1",
            );
        }
        if self.home_am_windows.is_empty() && self.home_pm_windows.is_empty() {
            return bad(
                "booking.home_am_windows",
                "a visit day needs at least one home slot",
            );
        }
        if self.home_am_windows.len() > 4 || self.home_pm_windows.len() > 4 {
            return bad("booking.home_pm_windows", "at most 4 slots a half-day");
        }
        if self.whole_half_day_applicants < 2 {
            return bad("booking.whole_half_day_applicants", "must be at least 2");
        }
        if self.facility_min_applicants < 1
            || self.facility_half_day_applicants < self.facility_min_applicants
        {
            return bad(
                "booking.facility_half_day_applicants",
                "must be at least booking.facility_min_applicants (which must be at least 1)",
            );
        }
        if self.travel_limit_minutes == 0 || self.extra_travel_limit_minutes == 0 {
            return bad(
                "booking.travel_limit_minutes",
                "travel limits must be at least 1 minute",
            );
        }
        if self.home_lead_days > 365 || self.facility_lead_days > 365 {
            return bad(
                "booking.home_lead_days",
                "lead times must be at most 365 days",
            );
        }
        Ok(())
    }

    /// The lead time in days for a booking of `kind` with `applicants` (R-SLOT-5): facilities
    /// of 6+ a month, homes and small facilities two weeks.
    pub fn lead_days(&self, facility: bool, applicants: u32) -> u32 {
        if facility && applicants >= self.facility_min_applicants {
            self.facility_lead_days
        } else {
            self.home_lead_days
        }
    }
}

/// `[travel]` of the profile: the straight-line travel model (R-SLOT-4).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TravelRules {
    /// Road distance ÷ straight-line distance.
    pub detour_factor: f64,
    /// Average speed on the road, km/h.
    pub speed_kmh: f64,
    /// Fixed minutes per move (parking, walking to the door).
    pub allowance_minutes: f64,
}

impl Default for TravelRules {
    fn default() -> Self {
        // Otaru: hills, narrow streets and winter roads; a car averages well under 30 km/h
        // door to door, and roads wind around the hills (~1.4× the straight line).
        TravelRules {
            detour_factor: 1.4,
            speed_kmh: 25.0,
            allowance_minutes: 5.0,
        }
    }
}

impl TravelRules {
    /// Checks the values are usable.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(1.0..=5.0).contains(&self.detour_factor) {
            return Err(("travel.detour_factor", "must be between 1.0 and 5.0".into()));
        }
        if !(1.0..=120.0).contains(&self.speed_kmh) {
            return Err(("travel.speed_kmh", "must be between 1 and 120".into()));
        }
        if !(0.0..=120.0).contains(&self.allowance_minutes) {
            return Err((
                "travel.allowance_minutes",
                "must be between 0 and 120".into(),
            ));
        }
        Ok(())
    }
}

/// `[address]` of the profile: where the city's reference data is and what names the city's
/// addresses may start with (R-BOOK-3 a). The city's own name is `[city] name_ja`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AddressRules {
    /// The prefecture the city is in (`北海道`); optional in an address.
    pub prefecture_ja: String,
    /// The 町丁目 list with representative points, beside `profile.toml`.
    pub towns_file: String,
    /// The city's postal codes, beside `profile.toml`.
    pub postcodes_file: String,
    /// Other municipalities a caller may name without prefecture or 郡 whose names a shape
    /// rule cannot tell from the city's own towns (a `…町` like the city's 相生町).
    pub other_municipalities: Vec<String>,
}

impl Default for AddressRules {
    fn default() -> Self {
        AddressRules {
            prefecture_ja: "北海道".into(),
            towns_file: "towns.csv".into(),
            postcodes_file: "postcodes.csv".into(),
            other_municipalities: Vec::new(),
        }
    }
}

impl AddressRules {
    /// Checks the values are usable.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.prefecture_ja.trim().is_empty() {
            return Err(("address.prefecture_ja", "must not be empty".into()));
        }
        for (key, f) in [
            ("address.towns_file", &self.towns_file),
            ("address.postcodes_file", &self.postcodes_file),
        ] {
            if f.trim().is_empty() || f.contains('/') || f.contains('\\') {
                return Err((key, "must be a file name beside profile.toml".into()));
            }
        }
        if self
            .other_municipalities
            .iter()
            .any(|m| m.trim().is_empty())
        {
            return Err((
                "address.other_municipalities",
                "names must not be empty".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_defaults_are_the_specs_numbers() {
        let r = BookingRules::default();
        assert_eq!((r.home_days, r.facility_days), (36, 6));
        assert_eq!((r.home_am_windows.len(), r.home_pm_windows.len()), (2, 2));
        assert_eq!(
            (r.travel_limit_minutes, r.extra_travel_limit_minutes),
            (30, 15)
        );
        assert_eq!(r.lead_days(false, 3), 14);
        assert_eq!(r.lead_days(true, 5), 14);
        assert_eq!(r.lead_days(true, 6), 30);
        assert!(r.validate().is_ok());
        assert!(TravelRules::default().validate().is_ok());
    }

    #[test]
    fn inconsistent_values_name_their_key() {
        let r = BookingRules {
            min_days_per_week: 3,
            ..BookingRules::default()
        };
        assert_eq!(r.validate().unwrap_err().0, "booking.min_days_per_week");
        let t = TravelRules {
            speed_kmh: 0.0,
            ..TravelRules::default()
        };
        assert_eq!(t.validate().unwrap_err().0, "travel.speed_kmh");
    }
}
