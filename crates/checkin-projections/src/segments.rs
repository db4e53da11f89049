//! Customer segments (客群), judged from a customer's frequency summary as
//! of a reference time, so customers move between segments as time passes
//! without new check-ins.
//!
//! A customer is in exactly one segment, the first whose rule holds, in this
//! order: dormant, at-risk, VIP, active, new, occasional.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::frequency::CustomerSummary;

/// A customer segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Segment {
    /// No visit for `dormant_days`.
    Dormant,
    /// No visit for `at_risk_days`, or, with at least `gap_rule_min_visits`
    /// visits, for more than `gap_factor` times the typical gap.
    AtRisk,
    /// At least `vip_visits` visits in the last `window_days`.
    Vip,
    /// At least `active_visits` visits in the last `window_days`.
    Active,
    /// First visit within the last `new_days`.
    New,
    /// None of the above.
    Occasional,
}

impl Segment {
    /// All segments, in the order their rules are tried.
    pub const ALL: [Segment; 6] = [
        Self::Dormant,
        Self::AtRisk,
        Self::Vip,
        Self::Active,
        Self::New,
        Self::Occasional,
    ];

    /// Returns the stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dormant => "dormant",
            Self::AtRisk => "at_risk",
            Self::Vip => "vip",
            Self::Active => "active",
            Self::New => "new",
            Self::Occasional => "occasional",
        }
    }

    /// Parses a stable name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|segment| segment.as_str() == name)
    }
}

/// Segment thresholds; the defaults are the product's documented rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SegmentRules {
    /// Days the activity window looks back for `vip_visits` and `active_visits`.
    pub window_days: i64,
    /// Visits in the window that make a customer VIP.
    pub vip_visits: u64,
    /// Visits in the window that make a customer active.
    pub active_visits: u64,
    /// A first visit this many days ago or less makes a customer new.
    pub new_days: i64,
    /// Days without a visit that make a customer at risk.
    pub at_risk_days: i64,
    /// Multiple of the typical gap that makes a regular customer at risk.
    pub gap_factor: u32,
    /// Visits a customer needs before the gap rule applies.
    pub gap_rule_min_visits: u64,
    /// Days without a visit that make a customer dormant.
    pub dormant_days: i64,
    /// Zone whose calendar dates the reference time falls on.
    pub time_zone: Tz,
}

impl Default for SegmentRules {
    fn default() -> Self {
        Self {
            window_days: 30,
            vip_visits: 12,
            active_visits: 4,
            new_days: 14,
            at_risk_days: 30,
            gap_factor: 2,
            gap_rule_min_visits: 3,
            dormant_days: 90,
            time_zone: checkin_core::sites::DEFAULT_TIME_ZONE,
        }
    }
}

impl SegmentRules {
    /// Returns the customer's segment as of `as_of_us` (UTC microseconds).
    pub fn classify(&self, summary: &CustomerSummary, as_of_us: i64) -> Segment {
        let (Some(first_us), Some(last_us)) = (summary.first_visit_us, summary.last_visit_us)
        else {
            return Segment::Occasional;
        };
        let day_us = 86_400_000_000;
        let idle_days = (as_of_us - last_us).div_euclid(day_us);

        if idle_days >= self.dormant_days {
            return Segment::Dormant;
        }
        let overdue = summary.visits >= self.gap_rule_min_visits
            && summary
                .typical_gap_days
                .is_some_and(|gap| idle_days > i64::from(gap) * i64::from(self.gap_factor));
        if idle_days >= self.at_risk_days || overdue {
            return Segment::AtRisk;
        }

        let today = self.date_of(as_of_us);
        let window_start = today - Duration::days(self.window_days - 1);
        let recent = summary.visits_between(window_start, today);
        if recent >= self.vip_visits {
            return Segment::Vip;
        }
        if recent >= self.active_visits {
            return Segment::Active;
        }
        if (as_of_us - first_us).div_euclid(day_us) <= self.new_days {
            return Segment::New;
        }
        Segment::Occasional
    }

    /// Returns the run of consecutive visit days that is still going on at
    /// `as_of_us`: it must end today or yesterday.
    pub fn current_streak_days(&self, summary: &CustomerSummary, as_of_us: i64) -> u32 {
        let today = self.date_of(as_of_us);
        match summary.last_visit_day() {
            Some(last) if last >= today - Duration::days(1) && last <= today => {
                summary.latest_streak_days
            }
            _ => 0,
        }
    }

    /// Returns the calendar date of an instant in the rules' zone.
    pub fn date_of(&self, at_us: i64) -> NaiveDate {
        let instant = DateTime::<Utc>::from_timestamp_micros(at_us).unwrap_or_default();
        instant.with_timezone(&self.time_zone).date_naive()
    }

    /// Returns the first day after `today` at whose start the customer's
    /// segment can differ from the one at the start of `today`, with no new
    /// check-in in between; `None` when it never changes again. The segment
    /// depends on time only through the thresholds checked here: days idle
    /// (dormant, at risk, overdue), days since the first visit (new), and
    /// visit days entering or leaving the window (VIP, active).
    pub fn next_change_day(
        &self,
        summary: &CustomerSummary,
        today: NaiveDate,
    ) -> Option<NaiveDate> {
        let (Some(first_us), Some(last_us)) = (summary.first_visit_us, summary.last_visit_us)
        else {
            return None;
        };
        let day_us = 86_400_000_000;
        let mut thresholds = vec![
            last_us + self.dormant_days * day_us,
            last_us + self.at_risk_days * day_us,
            first_us + (self.new_days + 1) * day_us,
        ];
        if summary.visits >= self.gap_rule_min_visits
            && let Some(gap) = summary.typical_gap_days
        {
            thresholds.push(last_us + (i64::from(gap) * i64::from(self.gap_factor) + 1) * day_us);
        }
        let mut days: Vec<NaiveDate> = thresholds
            .into_iter()
            .map(|instant| {
                // The first day whose start is at or after the threshold.
                let day = self.date_of(instant);
                if self.start_of(day) < instant {
                    day + Duration::days(1)
                } else {
                    day
                }
            })
            .collect();

        let window_start = today - Duration::days(self.window_days - 1);
        let as_day = |days: i32| NaiveDate::from_num_days_from_ce_opt(days);
        // The earliest visit day still in the window leaves it first.
        if let Some(leaving) = summary
            .visits_per_day
            .range(window_start.num_days_from_ce()..)
            .next()
            .and_then(|(day, _)| as_day(*day))
        {
            days.push(leaving + Duration::days(self.window_days));
        }
        // A visit day after today (a site whose business date runs ahead of
        // the rules' zone) enters the window on that day.
        if let Some(entering) = summary
            .visits_per_day
            .range(today.num_days_from_ce() + 1..)
            .next()
            .and_then(|(day, _)| as_day(*day))
        {
            days.push(entering);
        }
        days.into_iter().filter(|day| *day > today).min()
    }

    /// Returns the instant, in UTC microseconds, at which a date starts in the rules' zone.
    pub fn start_of(&self, date: NaiveDate) -> i64 {
        let site = checkin_core::sites::Site {
            name: None,
            time_zone: self.time_zone,
            day_start_hour: 0,
        };
        site.business_day_start_us(date)
    }
}
