//! `scripts/bench-slots`: p50/p99 of one slot search and of one booking write on a full season
//! (issue 14; goals: search p99 ≤ 1 ms, booking write p99 ≤ 10 ms on SQLite). The domain is
//! driven directly (no HTTP) on a fresh SQLite file with the shipped profile: the proposed
//! calendar, a made-up season (seed 7: 144 households / 216 applicants) booked in call order,
//! then searches on the full season. Prints figures; never pass/fail.

use std::sync::Arc;
use std::time::Instant;

use chrono::{NaiveDate, TimeZone, Utc};
use madoguchi::booking::bookings::guidance_for;
use madoguchi::booking::bookings::{ApplicantInput, Bookings, HomeBookingInput};
use madoguchi::booking::calendar::{self, ReplaceSource, Season};
use madoguchi::booking::season::{generate, SeasonSpec};
use madoguchi::booking::slots::Request;
use madoguchi::booking::{BookingKind, CallerRelation, IdDocument, Places};
use madoguchi::config::Profile;
use madoguchi::hours::OpeningHours;
use madoguchi::privacy::Actor;
use madoguchi::store::Db;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn report(what: &str, v: &mut [f64]) {
    if v.is_empty() {
        println!("{what}: no samples");
        return;
    }
    println!(
        "{what}: n={} p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        v.len(),
        pct(v, 0.5),
        pct(v, 0.99),
        pct(v, 1.0)
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db =
        Db::connect_and_migrate(&format!("sqlite://{}/bench.db", dir.path().display()), 4).await?;
    let profile = Profile::load(std::path::Path::new("profiles/otaru-2026"))?;
    let hours = OpeningHours::new(&profile.hours)?;
    let season = Season {
        rules: profile.booking.clone(),
        start: profile.period.visits_start,
        end: profile.period.visits_end,
        hours: OpeningHours::new(&profile.hours)?,
    };
    let days = season.propose()?;
    let actor = Actor::system("(bench)");
    calendar::replace(
        &db,
        &actor,
        &season,
        &days,
        ReplaceSource::Proposal,
        Utc::now(),
    )
    .await?;
    let places = Places::new(profile.gazetteer.clone(), profile.travel.clone());
    let bookings = Bookings::new(
        db.clone(),
        profile.booking.clone(),
        Arc::new(places.travel().clone()),
        hours.timezone(),
    );
    let towns: Vec<String> = profile
        .gazetteer
        .towns()
        .iter()
        .map(|t| t.town.clone())
        .collect();
    let spec = SeasonSpec {
        seed: 7,
        households: 144,
        home_applicants: 216,
        facilities: 0,
        facility_applicants: 0,
        calls: (
            NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(),
            NaiveDate::from_ymd_opt(2026, 12, 4).unwrap(),
        ),
        large_households: 2,
    };
    let (households, _) = generate(&spec, &towns);
    let ten = |d: NaiveDate| {
        chrono_tz::Asia::Tokyo
            .from_local_datetime(&d.and_hms_opt(10, 0, 0).unwrap())
            .unwrap()
            .with_timezone(&Utc)
    };
    let (mut searches, mut writes, mut placed) = (Vec::new(), Vec::new(), 0);
    for h in &households {
        let now = ten(h.call_on);
        let lookup = places.lookup(&h.address)?;
        let req = Request {
            kind: BookingKind::Home,
            applicants: h.kinds.len() as u32,
            place: lookup.place(),
            manual_minutes: Some(20),
            wish: h.wish.clone(),
            moving: None,
        };
        let t = Instant::now();
        let found = bookings.search(now, &req).await?;
        searches.push(t.elapsed().as_secs_f64() * 1000.0);
        let Some(offer) = found.offers.first() else {
            continue;
        };
        let input = HomeBookingInput {
            slot: offer.slot,
            call_id: None,
            address: h.address.clone(),
            manual_travel_minutes: Some(20),
            contact_phone: "0134-22-0001".into(),
            caller_relation: CallerRelation::Applicant,
            caller_name: String::new(),
            going_out_difficulty: "歩行困難".into(),
            wished: String::new(),
            parking: None,
            care_notes: String::new(),
            other: String::new(),
            applicants: h
                .kinds
                .iter()
                .map(|k| ApplicantInput {
                    name: "試験 太郎".into(),
                    name_kana: String::new(),
                    birth_date: NaiveDate::from_ymd_opt(1944, 4, 4).unwrap(),
                    application_kind: *k,
                    id_documents: vec![IdDocument::InsuranceCertificate],
                    id_documents_note: String::new(),
                    can_photo: true,
                    can_write: true,
                    helper_present: false,
                    condition_note: String::new(),
                    face_auth_only: false,
                    insurance_use: false,
                    holds_juki_card: false,
                    notice_card_lost: false,
                })
                .collect(),
            guidance_given: guidance_for(&h.kinds),
        };
        let at = madoguchi::booking::bookings::Located {
            town: lookup.town.as_ref().map(|t| t.town.clone()),
            place: lookup.place(),
        };
        let t = Instant::now();
        bookings.create_home(&actor, now, &input, &at).await?;
        writes.push(t.elapsed().as_secs_f64() * 1000.0);
        placed += 1;
    }
    println!(
        "season (seed 7, 144 households / 216 applicants, {} visit days): {placed} placed",
        days.len()
    );
    report(
        "slot search while the season fills (DB read + rules)",
        &mut searches,
    );
    report(
        "booking write (lock, re-check, number, insert, audit, commit)",
        &mut writes,
    );
    // Searches on the full season, from early in the season (every day still ahead).
    let mut full = Vec::new();
    for h in households.iter().cycle().take(1000) {
        let lookup = places.lookup(&h.address)?;
        let req = Request {
            kind: BookingKind::Home,
            applicants: h.kinds.len() as u32,
            place: lookup.place(),
            manual_minutes: Some(20),
            wish: h.wish.clone(),
            moving: None,
        };
        let t = Instant::now();
        let _ = bookings.search(ten(spec.calls.0), &req).await?;
        full.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    report(
        "slot search on the full season (all 42 days ahead)",
        &mut full,
    );
    // The rules alone, without the database read.
    let state = bookings.days_from(spec.calls.0).await?;
    let mut pure = Vec::new();
    for h in households.iter().cycle().take(1000) {
        let req = Request {
            kind: BookingKind::Home,
            applicants: h.kinds.len() as u32,
            place: places.lookup(&h.address)?.place(),
            manual_minutes: Some(20),
            wish: h.wish.clone(),
            moving: None,
        };
        let t = Instant::now();
        let _ = madoguchi::booking::slots::search(
            bookings.rules(),
            bookings.model(),
            spec.calls.0,
            &state,
            &req,
        );
        pure.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    report("slot rules alone on the full season (no DB)", &mut pure);
    println!("bench-slots: done");
    Ok(())
}
