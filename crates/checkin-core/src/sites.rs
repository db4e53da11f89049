//! Sites and their calendars: the time zone and business-day start of each site.

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
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

impl Site {
    /// Returns the site's local business date of a UTC instant in microseconds.
    pub fn business_date(&self, at_us: i64) -> NaiveDate {
        let instant = DateTime::<Utc>::from_timestamp_micros(at_us).unwrap_or_default();
        let local = instant.with_timezone(&self.time_zone).naive_local();
        (local - Duration::hours(i64::from(self.day_start_hour))).date()
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
