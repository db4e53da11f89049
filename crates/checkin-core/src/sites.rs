//! Sites and their calendars: the time zone and business-day start of each site.

use std::collections::HashMap;

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveTime, Offset, TimeZone, Timelike,
    Utc, Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// Time zone of sites that name none.
pub const DEFAULT_TIME_ZONE: Tz = chrono_tz::Asia::Shanghai;

/// One configured site.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// Display name, such as 静安店.
    #[serde(default)]
    pub name: Option<String>,
    /// IANA time zone of the site's local day.
    #[serde(default = "default_time_zone")]
    pub time_zone: Tz,
    /// Hour (0-23) at which the site's business day starts; a 04:30 scan at a
    /// site whose day starts at 05:00 belongs to the previous day.
    #[serde(default)]
    pub day_start_hour: u8,
}

fn default_time_zone() -> Tz {
    DEFAULT_TIME_ZONE
}

impl Default for Site {
    fn default() -> Self {
        Self {
            name: None,
            time_zone: DEFAULT_TIME_ZONE,
            day_start_hour: 0,
        }
    }
}

/// Position of an instant in a site's calendar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalPlacement {
    /// The site's business date: the local date, moved back one day before
    /// the site's day-start hour.
    pub business_date: NaiveDate,
    /// ISO week of the business date: (ISO year, week 1-53), weeks start on Monday.
    pub iso_week: (i32, u32),
    /// Calendar month of the business date: (year, month 1-12).
    pub month: (i32, u32),
    /// Weekday of the business date.
    pub weekday: Weekday,
    /// Local wall-clock hour, 0-23.
    pub local_hour: u32,
    /// The site's UTC offset at that instant, in seconds east of UTC.
    pub utc_offset_s: i32,
    /// Start of the local clock hour as UTC microseconds. Distinct for the two
    /// occurrences of a repeated hour when clocks fall back, so per-hour
    /// figures of such a day have 25 buckets.
    pub hour_start_us: i64,
}

impl Site {
    /// Returns the site's local business date of a UTC instant in microseconds.
    pub fn business_date(&self, at_us: i64) -> NaiveDate {
        self.place(at_us).business_date
    }

    /// Places a UTC instant in microseconds in the site's calendar.
    pub fn place(&self, at_us: i64) -> LocalPlacement {
        let instant = DateTime::<Utc>::from_timestamp_micros(at_us).unwrap_or_default();
        let local = instant.with_timezone(&self.time_zone);
        let business_date =
            (local.naive_local() - Duration::hours(i64::from(self.day_start_hour))).date();
        let utc_offset_s = local.offset().fix().local_minus_utc();
        let into_hour_us = i64::from(local.minute()) * 60_000_000
            + i64::from(local.second()) * 1_000_000
            + i64::from(local.timestamp_subsec_micros());
        let week = business_date.iso_week();

        LocalPlacement {
            business_date,
            iso_week: (week.year(), week.week()),
            month: (business_date.year(), business_date.month()),
            weekday: business_date.weekday(),
            local_hour: local.hour(),
            utc_offset_s,
            hour_start_us: at_us - into_hour_us,
        }
    }

    /// Returns the UTC instant, in microseconds, at which a business date starts.
    ///
    /// When the day-start hour does not exist that day (clocks jump forward
    /// over it) the day starts at the first local instant after the gap; when
    /// it occurs twice, at the first occurrence.
    pub fn business_day_start_us(&self, date: NaiveDate) -> i64 {
        let start = date.and_time(NaiveTime::MIN) + Duration::hours(i64::from(self.day_start_hour));
        let mut candidate = start;
        // Gaps last at most a few hours; step forward a minute at a time until the time exists.
        for _ in 0..(24 * 60) {
            match self.time_zone.from_local_datetime(&candidate) {
                LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => {
                    return at.timestamp_micros();
                }
                LocalResult::None => candidate += Duration::minutes(1),
            }
        }
        start.and_utc().timestamp_micros()
    }

    /// Returns how many hours a business date lasts: 24, or 23 and 25 on the
    /// days clocks change.
    pub fn business_day_hours(&self, date: NaiveDate) -> i64 {
        let next = date.succ_opt().unwrap_or(date);
        (self.business_day_start_us(next) - self.business_day_start_us(date)) / 3_600_000_000
    }
}

/// Source of a site's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteLookup<'a> {
    /// The site is configured.
    Configured(&'a Site),
    /// The site is not configured, and unknown sites are taken with the default zone.
    Unconfigured,
}

/// The configured sites and the policy for sites not configured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SiteRegistry {
    /// Configured sites by id.
    #[serde(default)]
    pub sites: HashMap<String, Site>,
    /// Accept check-ins for unconfigured sites, with the default time zone.
    #[serde(default)]
    pub allow_unknown_sites: bool,
}

impl SiteRegistry {
    /// Looks a site up; `None` means the site is unknown and not allowed.
    pub fn lookup(&self, id: &str) -> Option<SiteLookup<'_>> {
        match self.sites.get(id) {
            Some(site) => Some(SiteLookup::Configured(site)),
            None if self.allow_unknown_sites => Some(SiteLookup::Unconfigured),
            None => None,
        }
    }

    /// Returns the settings that apply to a site, the defaults when it is not configured.
    pub fn site_or_default(&self, id: &str) -> Site {
        self.sites.get(id).cloned().unwrap_or_default()
    }
}
