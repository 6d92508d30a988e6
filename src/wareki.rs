//! Dates as the city's documents write them: 和暦 (the Japanese era calendar) with the weekday,
//! e.g. 令和8年6月17日（水）. A leaf module: every document for the city (reports, slips, the
//! completion report) formats its dates here, with the ISO date beside it in data exports.

use chrono::{Datelike, NaiveDate};

/// The eras from their first day, newest first (the Gregorian calendar from 明治6年).
const ERAS: [(&str, i32, u32, u32); 5] = [
    ("令和", 2019, 5, 1),
    ("平成", 1989, 1, 8),
    ("昭和", 1926, 12, 25),
    ("大正", 1912, 7, 30),
    ("明治", 1868, 10, 23),
];

const WEEKDAYS: [&str; 7] = ["月", "火", "水", "木", "金", "土", "日"];

/// The era name and the year in it (1 = 元年), or `None` before 明治.
pub fn era(date: NaiveDate) -> Option<(&'static str, i32)> {
    ERAS.iter().find_map(|&(name, y, m, d)| {
        let first = NaiveDate::from_ymd_opt(y, m, d)?;
        (date >= first).then_some((name, date.year() - y + 1))
    })
}

/// 令和8年6月17日 (元年 for the first year); the Gregorian date before 明治.
pub fn date(date: NaiveDate) -> String {
    match era(date) {
        Some((name, 1)) => format!("{name}元年{}月{}日", date.month(), date.day()),
        Some((name, year)) => format!("{name}{year}年{}月{}日", date.month(), date.day()),
        None => format!("{}年{}月{}日", date.year(), date.month(), date.day()),
    }
}

/// The weekday's kanji: 月 … 日.
pub fn weekday(date: NaiveDate) -> &'static str {
    WEEKDAYS[date.weekday().num_days_from_monday() as usize]
}

/// 令和8年6月17日（水） — the form the city's specification uses (full-width brackets).
pub fn date_with_weekday(d: NaiveDate) -> String {
    format!("{}（{}）", date(d), weekday(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn the_specifications_own_examples() {
        // seed-ja.md writes the season's dates this way.
        assert_eq!(date_with_weekday(d(2026, 6, 17)), "令和8年6月17日（水）");
        assert_eq!(date_with_weekday(d(2027, 1, 8)), "令和9年1月8日（金）");
        assert_eq!(date_with_weekday(d(2026, 12, 24)), "令和8年12月24日（木）");
        assert_eq!(date_with_weekday(d(2026, 6, 1)), "令和8年6月1日（月）");
    }

    #[test]
    fn era_boundaries_and_first_years() {
        assert_eq!(date(d(2019, 4, 30)), "平成31年4月30日");
        assert_eq!(date(d(2019, 5, 1)), "令和元年5月1日");
        assert_eq!(date(d(1989, 1, 7)), "昭和64年1月7日");
        assert_eq!(date(d(1989, 1, 8)), "平成元年1月8日");
        assert_eq!(date(d(1926, 12, 24)), "大正15年12月24日");
        assert_eq!(date(d(1926, 12, 25)), "昭和元年12月25日");
        // A birth date on a slip.
        assert_eq!(date_with_weekday(d(1945, 5, 5)), "昭和20年5月5日（土）");
        assert_eq!(date(d(1800, 1, 1)), "1800年1月1日");
    }
}
