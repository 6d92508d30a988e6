//! Made-up seasons (issue 14 acceptance): a seeded generator of households and facilities
//! calling in over the season with their wishes, for the season simulation test and
//! `scripts/bench-slots`. Every name and address is invented; towns are real 町丁目 so the
//! travel rule meets real distances.

use chrono::{Datelike, Duration, NaiveDate, Weekday};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::slots::Wish;
use super::{ApplicationKind, HalfDay};

/// What to generate.
#[derive(Debug, Clone)]
pub struct SeasonSpec {
    /// The seed: the same seed gives the same season.
    pub seed: u64,
    /// Households booking a home visit.
    pub households: u32,
    /// Their applicants in all (≥ households).
    pub home_applicants: u32,
    /// Facilities.
    pub facilities: u32,
    /// Their applicants in all.
    pub facility_applicants: u32,
    /// First and last day calls come in.
    pub calls: (NaiveDate, NaiveDate),
    /// Households of 6+ (each takes a whole half-day).
    pub large_households: u32,
}

/// One made-up household's call.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MadeUpHousehold {
    /// The day they call.
    pub call_on: NaiveDate,
    /// Their (invented) address in a real 町丁目.
    pub address: String,
    /// The 町丁目.
    pub town: String,
    /// Application kind per applicant.
    pub kinds: Vec<ApplicationKind>,
    /// What they wish.
    pub wish: Wish,
}

/// One made-up facility's call.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MadeUpFacility {
    /// The day they call.
    pub call_on: NaiveDate,
    /// Name.
    pub name: String,
    /// Address.
    pub address: String,
    /// Applicants.
    pub applicants: u32,
}

/// Splits `total` into `parts` numbers each in `min..=max` (as even as the random draw makes
/// them); `None` when impossible.
fn split(rng: &mut StdRng, total: u32, parts: u32, min: u32, max: u32) -> Option<Vec<u32>> {
    if parts == 0 || total < parts * min || total > parts * max {
        return None;
    }
    let mut v = vec![min; parts as usize];
    let mut left = total - parts * min;
    while left > 0 {
        let i = rng.gen_range(0..v.len());
        if v[i] < max {
            v[i] += 1;
            left -= 1;
        }
    }
    Some(v)
}

/// The season: households and facilities in call order.
pub fn generate(
    spec: &SeasonSpec,
    towns: &[String],
) -> (Vec<MadeUpHousehold>, Vec<MadeUpFacility>) {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let span = (spec.calls.1 - spec.calls.0).num_days().max(0);
    let call_day = |rng: &mut StdRng| loop {
        let d = spec.calls.0 + Duration::days(rng.gen_range(0..=span));
        if d.weekday().num_days_from_monday() < 5 {
            return d;
        }
    };
    let large = spec.large_households.min(spec.households);
    let small = spec.households - large;
    let large_total = large * 6;
    let small_total = spec.home_applicants.saturating_sub(large_total);
    let mut sizes =
        split(&mut rng, small_total, small, 1, 5).unwrap_or_else(|| vec![1; small as usize]);
    sizes.extend(std::iter::repeat_n(6, large as usize));
    sizes.shuffle(&mut rng);
    let mut households: Vec<MadeUpHousehold> = sizes
        .into_iter()
        .map(|n| {
            let call_on = call_day(&mut rng);
            let town = towns[rng.gen_range(0..towns.len())].clone();
            let from = call_on + Duration::days(rng.gen_range(14..=35));
            let to = from + Duration::days(rng.gen_range(7..=28));
            let weekdays = if rng.gen_bool(0.3) {
                let mut all = vec![
                    Weekday::Mon,
                    Weekday::Tue,
                    Weekday::Wed,
                    Weekday::Thu,
                    Weekday::Fri,
                ];
                all.shuffle(&mut rng);
                all.truncate(2);
                all
            } else {
                Vec::new()
            };
            let half_day = if rng.gen_bool(0.3) {
                Some(if rng.gen_bool(0.5) {
                    HalfDay::Am
                } else {
                    HalfDay::Pm
                })
            } else {
                None
            };
            let kinds = (0..n)
                .map(|_| match rng.gen_range(0..10) {
                    0..=5 => ApplicationKind::New,
                    6..=7 => ApplicationKind::Renewal,
                    8 => ApplicationKind::Loss,
                    _ => ApplicationKind::Damage,
                })
                .collect();
            MadeUpHousehold {
                call_on,
                address: format!(
                    "小樽市{town}{}-{}",
                    rng.gen_range(1..=30),
                    rng.gen_range(1..=20)
                ),
                town,
                kinds,
                wish: Wish {
                    from: Some(from),
                    to: Some(to),
                    weekdays,
                    half_day,
                },
            }
        })
        .collect();
    households.sort_by_key(|h| h.call_on);
    let sizes = split(&mut rng, spec.facility_applicants, spec.facilities, 6, 20)
        .unwrap_or_else(|| vec![10; spec.facilities as usize]);
    let mut facilities: Vec<MadeUpFacility> = sizes
        .into_iter()
        .enumerate()
        .map(|(i, applicants)| {
            let town = towns[rng.gen_range(0..towns.len())].clone();
            // Facilities plan ahead (a month's lead, six facility days): they call in the
            // first half of the season.
            let mut call_on = call_day(&mut rng);
            while (call_on - spec.calls.0).num_days() > span / 2 {
                call_on = call_day(&mut rng);
            }
            MadeUpFacility {
                call_on,
                name: format!("試験ケアホーム{}", i + 1),
                address: format!(
                    "小樽市{town}{}-{}",
                    rng.gen_range(1..=30),
                    rng.gen_range(1..=20)
                ),
                applicants,
            }
        })
        .collect();
    facilities.sort_by_key(|f| f.call_on);
    (households, facilities)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_numbers_come_out_and_the_seed_repeats() {
        let spec = SeasonSpec {
            seed: 7,
            households: 144,
            home_applicants: 216,
            facilities: 6,
            facility_applicants: 60,
            calls: ("2026-06-01".parse().unwrap(), "2026-12-04".parse().unwrap()),
            large_households: 2,
        };
        let towns = vec!["稲穂二丁目".to_string(), "花園一丁目".to_string()];
        let (h, f) = generate(&spec, &towns);
        assert_eq!(h.len(), 144);
        assert_eq!(h.iter().map(|x| x.kinds.len()).sum::<usize>(), 216);
        assert_eq!(h.iter().filter(|x| x.kinds.len() >= 6).count(), 2);
        assert_eq!(f.iter().map(|x| x.applicants).sum::<u32>(), 60);
        assert!(h.windows(2).all(|w| w[0].call_on <= w[1].call_on));
        assert_eq!(generate(&spec, &towns).0, h, "same seed, same season");
    }
}
