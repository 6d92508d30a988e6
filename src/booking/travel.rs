//! Travel minutes between two visits (R-SLOT-4), behind a trait so a road model or the
//! manager's corrections for a pair of towns can replace the straight-line estimate.
//!
//! The corrections ([`TravelOverrides`], table `travel_overrides`) are held in memory, read
//! from the database at start and updated by every change, so [`TravelModel::estimate`] stays
//! a cheap synchronous call for the slot search. Each instance reads them at its start: a
//! second instance sees another's change after its restart.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use crate::clock::{from_db_time, to_db_time};
use crate::privacy::{append_audit, Actor, AuditAction, AuditEntry};
use crate::store::Db;

use super::rules::TravelRules;
use super::BookingError;

/// The largest correction the manager may set, minutes.
pub const MAX_OVERRIDE_MINUTES: u32 = 240;

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

/// The manager's correction of the travel time between two 町丁目 (either order).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TravelOverride {
    /// One town of the pair (the smaller name; the pair has no direction).
    pub town_a: String,
    /// The other town.
    pub town_b: String,
    /// Minutes between them, whatever the model says.
    pub minutes: u32,
    /// When it was last set.
    pub updated_at: DateTime<Utc>,
}

/// The pair in its stored order.
fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

#[derive(Default)]
struct OverridesInner {
    map: RwLock<HashMap<(String, String), TravelOverride>>,
    /// One change at a time, so the memory ends in the order the database committed.
    writes: tokio::sync::Mutex<()>,
}

/// The manager's corrections, in memory and in `travel_overrides`. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct TravelOverrides(Arc<OverridesInner>);

impl std::fmt::Debug for TravelOverrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TravelOverrides({})", self.read().len())
    }
}

impl TravelOverrides {
    /// None yet (read them with [`TravelOverrides::reload`]).
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<(String, String), TravelOverride>> {
        self.0.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<(String, String), TravelOverride>> {
        self.0.map.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads every correction from the database, replacing what is in memory.
    pub async fn reload(&self, db: &Db) -> Result<(), BookingError> {
        let _gate = self.0.writes.lock().await;
        let rows = sqlx::query("SELECT town_a, town_b, minutes, updated_at FROM travel_overrides")
            .fetch_all(db.pool())
            .await?;
        let mut map = HashMap::new();
        for r in rows {
            let (a, b): (String, String) = (r.try_get("town_a")?, r.try_get("town_b")?);
            let minutes: i64 = r.try_get("minutes")?;
            let o = TravelOverride {
                minutes: u32::try_from(minutes).unwrap_or(MAX_OVERRIDE_MINUTES),
                updated_at: from_db_time(&r.try_get::<String, _>("updated_at")?)
                    .unwrap_or_default(),
                town_a: a.clone(),
                town_b: b.clone(),
            };
            map.insert(pair(&a, &b), o);
        }
        *self.write() = map;
        Ok(())
    }

    /// The corrected minutes between two towns, either order.
    pub fn get(&self, a: &str, b: &str) -> Option<u32> {
        self.read().get(&pair(a, b)).map(|o| o.minutes)
    }

    /// Every correction, by town pair.
    pub fn list(&self) -> Vec<TravelOverride> {
        let mut v: Vec<TravelOverride> = self.read().values().cloned().collect();
        v.sort_by(|x, y| (&x.town_a, &x.town_b).cmp(&(&y.town_a, &y.town_b)));
        v
    }

    /// Sets the minutes between towns `a` and `b` (exact 町丁目 names; the caller checks them
    /// against the town list), audited (`travel.override`) in the same transaction.
    pub async fn set(
        &self,
        db: &Db,
        actor: &Actor,
        a: &str,
        b: &str,
        minutes: u32,
        at: DateTime<Utc>,
    ) -> Result<TravelOverride, BookingError> {
        if !(1..=MAX_OVERRIDE_MINUTES).contains(&minutes) {
            return Err(BookingError::Invalid(format!(
                "移動時間の補正は1〜{MAX_OVERRIDE_MINUTES}分で指定してください。"
            )));
        }
        let (town_a, town_b) = pair(a, b);
        let _gate = self.0.writes.lock().await;
        let mut tx = db.pool().begin().await?;
        let previous: Option<i64> =
            sqlx::query("SELECT minutes FROM travel_overrides WHERE town_a = $1 AND town_b = $2")
                .bind(&town_a)
                .bind(&town_b)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get("minutes"))
                .transpose()?;
        sqlx::query(
            "INSERT INTO travel_overrides (town_a, town_b, minutes, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (town_a, town_b) DO UPDATE SET minutes = excluded.minutes, updated_at = excluded.updated_at",
        )
        .bind(&town_a)
        .bind(&town_b)
        .bind(i64::from(minutes))
        .bind(to_db_time(at))
        .execute(&mut *tx)
        .await?;
        // Town names are reference data, not personal data.
        let entry = AuditEntry::new(AuditAction::TravelOverride).detail(serde_json::json!({
            "town_a": town_a,
            "town_b": town_b,
            "minutes": minutes,
            "previous_minutes": previous,
        }));
        append_audit(&mut tx, at, actor, &entry).await?;
        tx.commit().await?;
        let o = TravelOverride {
            town_a,
            town_b,
            minutes,
            updated_at: at,
        };
        self.write().insert(pair(&o.town_a, &o.town_b), o.clone());
        Ok(o)
    }

    /// Removes the correction between `a` and `b` (either order), audited in the same
    /// transaction; the model's estimate applies again.
    pub async fn delete(
        &self,
        db: &Db,
        actor: &Actor,
        a: &str,
        b: &str,
        at: DateTime<Utc>,
    ) -> Result<TravelOverride, BookingError> {
        let (town_a, town_b) = pair(a, b);
        let _gate = self.0.writes.lock().await;
        let mut tx = db.pool().begin().await?;
        let row = sqlx::query(
            "SELECT minutes, updated_at FROM travel_overrides WHERE town_a = $1 AND town_b = $2",
        )
        .bind(&town_a)
        .bind(&town_b)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(BookingError::NotFound("travel override"))?;
        let minutes: i64 = row.try_get("minutes")?;
        let updated_at = from_db_time(&row.try_get::<String, _>("updated_at")?).unwrap_or_default();
        sqlx::query("DELETE FROM travel_overrides WHERE town_a = $1 AND town_b = $2")
            .bind(&town_a)
            .bind(&town_b)
            .execute(&mut *tx)
            .await?;
        let entry = AuditEntry::new(AuditAction::TravelOverride).detail(serde_json::json!({
            "town_a": town_a,
            "town_b": town_b,
            "minutes": null,
            "previous_minutes": minutes,
        }));
        append_audit(&mut tx, at, actor, &entry).await?;
        tx.commit().await?;
        self.write().remove(&pair(&town_a, &town_b));
        Ok(TravelOverride {
            town_a,
            town_b,
            minutes: u32::try_from(minutes).unwrap_or(MAX_OVERRIDE_MINUTES),
            updated_at,
        })
    }
}

/// A model with the manager's corrections on top: a corrected pair of towns (either order)
/// takes the correction, anything else the inner model.
#[derive(Debug, Clone)]
pub struct WithOverrides<M> {
    inner: M,
    overrides: TravelOverrides,
}

impl<M: TravelModel> WithOverrides<M> {
    /// `inner` corrected by `overrides` (shared: later changes apply at once).
    pub fn new(inner: M, overrides: TravelOverrides) -> Self {
        WithOverrides { inner, overrides }
    }

    /// The model under the corrections.
    pub fn inner(&self) -> &M {
        &self.inner
    }

    /// The corrections.
    pub fn overrides(&self) -> &TravelOverrides {
        &self.overrides
    }

    /// The correction that applies between `a` and `b`, if any.
    pub fn override_for(&self, a: &Place, b: &Place) -> Option<u32> {
        match (&a.town, &b.town) {
            (Some(ta), Some(tb)) => self.overrides.get(ta, tb),
            _ => None,
        }
    }
}

impl<M: TravelModel> TravelModel for WithOverrides<M> {
    fn estimate(&self, a: &Place, b: &Place) -> TravelEstimate {
        let Some(minutes) = self.override_for(a, b) else {
            return self.inner.estimate(a, b);
        };
        let model = self.inner.estimate(a, b);
        TravelEstimate {
            minutes,
            straight_km: model.straight_km,
            how: format!(
                "管理者の補正: {} ⇄ {} は {minutes} 分（補正がなければ {} 分: {}）",
                a.town.as_deref().unwrap_or_default(),
                b.town.as_deref().unwrap_or_default(),
                model.minutes,
                model.how
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn town(name: &str, lat: f64, lng: f64) -> Place {
        Place {
            town: Some(name.into()),
            lat,
            lng,
        }
    }

    /// R-SLOT-4: the manager's correction for a pair replaces the estimate, either order;
    /// other pairs and places without a town keep the model's.
    #[test]
    fn a_correction_applies_to_its_pair_in_either_order() {
        let overrides = TravelOverrides::new();
        let m = WithOverrides::new(StraightLine::new(TravelRules::default()), overrides.clone());
        let a = town("稲穂二丁目", 43.19, 141.0);
        let b = town("朝里一丁目", 43.16, 141.05);
        let c = town("緑一丁目", 43.19, 141.0);
        let plain = m.estimate(&a, &b);
        overrides.write().insert(
            pair("朝里一丁目", "稲穂二丁目"),
            TravelOverride {
                town_a: "朝里一丁目".into(),
                town_b: "稲穂二丁目".into(),
                minutes: 12,
                updated_at: Utc::now(),
            },
        );
        for (x, y) in [(&a, &b), (&b, &a)] {
            let e = m.estimate(x, y);
            assert_eq!(e.minutes, 12);
            assert!(e.how.starts_with("管理者の補正"), "{}", e.how);
            assert_eq!(e.straight_km, plain.straight_km);
        }
        assert_eq!(m.estimate(&a, &c), m.inner().estimate(&a, &c));
        let unnamed = at(43.19, 141.0);
        assert_eq!(m.override_for(&unnamed, &b), None);
        assert_eq!(overrides.list().len(), 1);
        assert_eq!(overrides.get("稲穂二丁目", "朝里一丁目"), Some(12));
    }

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
