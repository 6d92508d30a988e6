//! Travel minutes between two visits (R-SLOT-4), behind a trait so a road model or the
//! manager's corrections for a pair of towns can replace the straight-line estimate.

use serde::Serialize;

use super::rules::TravelRules;

/// Where a visit is, as far as travel is concerned: a 町丁目 and its representative point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Place {
    /// The 町丁目 (e.g. `稲穂二丁目`), when the address matched one.
    pub town: Option<String>,
    /// Latitude of its representative point (WGS84).
    pub lat: f64,
    /// Longitude of its representative point (WGS84).
    pub lng: f64,
}

/// What the model decided, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TravelEstimate {
    /// Minutes from one visit to the next, rounded up.
    pub minutes: u32,
    /// The straight-line distance, km, when the model used one.
    pub straight_km: Option<f64>,
    /// How the figure was reached, in Japanese for the screen.
    pub how: String,
}

/// A travel-time model.
pub trait TravelModel: Send + Sync {
    /// Minutes from `a` to `b`.
    fn estimate(&self, a: &Place, b: &Place) -> TravelEstimate;
}

/// Straight-line km × detour factor ÷ speed + a fixed allowance (all from the profile).
#[derive(Debug, Clone)]
pub struct StraightLine {
    rules: TravelRules,
}

impl StraightLine {
    /// The model with the profile's figures.
    pub fn new(rules: TravelRules) -> Self {
        StraightLine { rules }
    }
}

/// Great-circle distance in km (haversine; plenty for a city's few kilometres).
pub fn distance_km(a: &Place, b: &Place) -> f64 {
    const EARTH_KM: f64 = 6371.0;
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlng = (b.lng - a.lng).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlng / 2.0).sin().powi(2);
    2.0 * EARTH_KM * h.sqrt().min(1.0).asin()
}

impl TravelModel for StraightLine {
    fn estimate(&self, a: &Place, b: &Place) -> TravelEstimate {
        let km = distance_km(a, b);
        let r = &self.rules;
        let exact = km * r.detour_factor / r.speed_kmh * 60.0 + r.allowance_minutes;
        let minutes = exact.ceil().max(0.0) as u32;
        TravelEstimate {
            minutes,
            straight_km: Some((km * 100.0).round() / 100.0),
            how: format!(
                "直線距離 {km:.2} km × 迂回係数 {} ÷ 時速 {} km + 固定 {} 分 = {minutes} 分",
                r.detour_factor, r.speed_kmh, r.allowance_minutes
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(lat: f64, lng: f64) -> Place {
        Place {
            town: None,
            lat,
            lng,
        }
    }

    #[test]
    fn same_point_costs_the_allowance_and_distance_adds_up() {
        let m = StraightLine::new(TravelRules::default());
        let p = at(43.19, 141.0);
        assert_eq!(m.estimate(&p, &p).minutes, 5);
        // 0.1° of latitude is about 11.1 km: ×1.4 ÷ 25 km/h = 37.3 min, + 5 = 43.
        let e = m.estimate(&p, &at(43.29, 141.0));
        assert_eq!(e.minutes, 43);
        assert!((e.straight_km.unwrap() - 11.12).abs() < 0.05);
        assert_eq!(m.estimate(&at(43.29, 141.0), &p).minutes, 43, "symmetric");
    }
}
