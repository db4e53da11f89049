//! Site calendars: business dates, hour buckets and day lengths, with the
//! expected values worked out by hand from the zone rules.

use checkin_core::sites::Site;
use chrono::{DateTime, NaiveDate, Weekday};

fn us(rfc3339: &str) -> i64 {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("valid test time")
        .timestamp_micros()
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid test date")
}

fn shanghai() -> Site {
    Site::default()
}

fn new_york() -> Site {
    Site {
        time_zone: chrono_tz::America::New_York,
        ..Site::default()
    }
}

#[test]
fn shanghai_late_utc_evening_is_next_day() {
    // 22:59:51Z + 8 h = 06:59:51 on June 1.
    assert_eq!(
        shanghai().business_date(us("2026-05-31T22:59:51Z")),
        date(2026, 6, 1)
    );
}

#[test]
fn shanghai_midnight_boundary() {
    assert_eq!(
        shanghai().business_date(us("2026-07-01T16:00:00Z")),
        date(2026, 7, 2)
    );
    assert_eq!(
        shanghai().business_date(us("2026-07-01T15:59:59Z")),
        date(2026, 7, 1)
    );
}

#[test]
fn early_scan_before_day_start_hour() {
    let site = Site {
        day_start_hour: 5,
        ..Site::default()
    };
    // 20:30Z = 04:30 local on June 2, before the 05:00 day start.
    assert_eq!(
        site.business_date(us("2026-06-01T20:30:00Z")),
        date(2026, 6, 1)
    );
    // 21:00Z = 05:00 local: the new business day has begun.
    assert_eq!(
        site.business_date(us("2026-06-01T21:00:00Z")),
        date(2026, 6, 2)
    );
}

#[test]
fn new_york_fall_back_day_has_25_hours() {
    // Clocks went back from 02:00 EDT to 01:00 EST on Sunday 2026-11-01.
    assert_eq!(new_york().business_day_hours(date(2026, 11, 1)), 25);
    assert_eq!(new_york().business_day_hours(date(2026, 10, 31)), 24);
    // Clocks went forward from 02:00 EST to 03:00 EDT on Sunday 2026-03-08.
    assert_eq!(new_york().business_day_hours(date(2026, 3, 8)), 23);
}

#[test]
fn repeated_hour_scans_share_day_not_bucket() {
    let site = new_york();
    // 01:30 EDT (-04:00) is 05:30Z; 01:30 EST (-05:00) is 06:30Z.
    let first = site.place(us("2026-11-01T05:30:00Z"));
    let second = site.place(us("2026-11-01T06:30:00Z"));

    assert_eq!(first.business_date, date(2026, 11, 1));
    assert_eq!(second.business_date, date(2026, 11, 1));
    assert_eq!(first.local_hour, 1);
    assert_eq!(second.local_hour, 1);
    assert_eq!(first.utc_offset_s, -4 * 3600);
    assert_eq!(second.utc_offset_s, -5 * 3600);
    assert_eq!(first.hour_start_us, us("2026-11-01T05:00:00Z"));
    assert_eq!(second.hour_start_us, us("2026-11-01T06:00:00Z"));
}

#[test]
fn iso_week_and_month_of_business_date() {
    // Thursday 2026-12-31 in Shanghai belongs to ISO week 53 of 2026.
    let placement = shanghai().place(us("2026-12-31T04:00:00Z"));
    assert_eq!(placement.iso_week, (2026, 53));
    assert_eq!(placement.month, (2026, 12));
    assert_eq!(placement.weekday, Weekday::Thu);

    // Friday 2027-01-01 is still in ISO week 53 of 2026, but in January 2027.
    let placement = shanghai().place(us("2026-12-31T20:00:00Z"));
    assert_eq!(placement.business_date, date(2027, 1, 1));
    assert_eq!(placement.iso_week, (2026, 53));
    assert_eq!(placement.month, (2027, 1));
}
