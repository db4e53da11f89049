//! Synthetic check-in traffic: a seeded, deterministic plan of submissions
//! from gyms in Asia/Shanghai, which the `checkin simulate` command sends
//! through device outboxes.
//!
//! Customers have habits (a preferred site, weekdays and hour). About one in
//! five drifts away, visiting less as the simulated weeks pass. Some devices
//! go offline for part of the run and upload what they captured when they
//! come back. About one check-in in twenty is followed by a double scan
//! (the same customer again a few minutes later, under its own id). A fixed
//! share of submissions is invalid on purpose and must end in the rejected
//! stream.
//!
//! Check-in times fall in the last [`SimulationConfig::history_days`] days
//! before `now`, in send order, so live intake accepts them. The same seed,
//! `now` and settings always yield byte-identical submissions.

use std::time::Duration;

use chrono::{DateTime, Datelike, FixedOffset, NaiveTime, SecondsFormat, TimeZone, Utc};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

/// A site the simulator sends check-ins for.
#[derive(Clone, Copy, Debug)]
pub struct SimulatedSite {
    /// Site id; it must be configured for the sequencer.
    pub id: &'static str,
    /// Display name.
    pub name: &'static str,
    /// Local opening hour (Asia/Shanghai).
    pub opens: u32,
    /// Local closing hour; no check-in is at or after it.
    pub closes: u32,
    /// Latitude of the entrance in degrees.
    pub lat: f64,
    /// Longitude of the entrance in degrees.
    pub lon: f64,
}

/// The simulated sites: the demo sites of `checkin.toml`.
pub const SITES: [SimulatedSite; 3] = [
    SimulatedSite {
        id: "sh-jingan",
        name: "静安店",
        opens: 6,
        closes: 22,
        lat: 31.229_0,
        lon: 121.448_0,
    },
    SimulatedSite {
        id: "sh-xuhui",
        name: "徐汇店",
        opens: 7,
        closes: 23,
        lat: 31.188_4,
        lon: 121.436_5,
    },
    SimulatedSite {
        id: "bj-chaoyang",
        name: "朝阳健身中心",
        opens: 6,
        closes: 21,
        lat: 39.921_9,
        lon: 116.443_6,
    },
];

const ACTIVITIES: [&str; 6] = ["瑜伽课", "动感单车", "普拉提", "力量训练", "游泳", "团体操"];
const METHODS: [(&str, u32); 3] = [("qr", 60), ("nfc", 25), ("face", 15)];
/// Share of customers who visit less and less over the simulated weeks.
const DRIFTER_SHARE: f64 = 0.2;
/// Share of valid check-ins followed by a double scan.
const DOUBLE_SCAN_SHARE: f64 = 0.05;
/// Share of devices that go offline during the run.
const OFFLINE_DEVICE_SHARE: f64 = 0.25;

/// Settings of one simulation.
#[derive(Clone, Debug)]
pub struct SimulationConfig {
    /// Number of devices, spread round-robin over the sites.
    pub devices: usize,
    /// Number of customers.
    pub customers: usize,
    /// Submissions per second.
    pub rate: f64,
    /// Length of the run.
    pub duration: Duration,
    /// Seed of every random choice.
    pub seed: u64,
    /// Reference time: check-ins fall in the days before it.
    pub now: DateTime<Utc>,
    /// Days of history the check-in times span; at most the live horizon (35 days).
    pub history_days: u32,
    /// Share of submissions that are invalid on purpose.
    pub invalid_share: f64,
}

/// The kind of a deliberately invalid submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Defect {
    /// Latitude and longitude swapped: latitude 121.47 is out of range.
    SwappedCoordinates,
    /// `method` is not a known capture method.
    UnknownMethod,
    /// `site` is not configured.
    UnknownSite,
}

/// One planned submission.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedSubmission {
    /// When to hand it to the device, from the start of the run.
    pub send_after: Duration,
    /// Index of the capturing device.
    pub device: usize,
    /// Event id.
    pub id: String,
    /// The submission JSON.
    pub payload: Vec<u8>,
    /// Set when the submission is invalid on purpose.
    pub defect: Option<Defect>,
    /// Set for the second scan of a double scan.
    pub double_scan: bool,
}

/// One simulated device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimulatedDevice {
    /// Device id written into submissions.
    pub id: String,
    /// Index into [`SITES`].
    pub site: usize,
    /// Part of the run, from its start, during which the device has no network.
    pub offline: Option<(Duration, Duration)>,
}

impl SimulatedDevice {
    /// Tells whether the device is offline at `elapsed` into the run.
    pub fn is_offline_at(&self, elapsed: Duration) -> bool {
        self.offline
            .is_some_and(|(from, until)| (from..until).contains(&elapsed))
    }
}

/// A whole run: the devices and every submission in send order.
#[derive(Clone, Debug, PartialEq)]
pub struct SimulationPlan {
    /// Devices by index.
    pub devices: Vec<SimulatedDevice>,
    /// Submissions ordered by `send_after`.
    pub submissions: Vec<PlannedSubmission>,
}

impl SimulationPlan {
    /// Returns how many submissions are invalid on purpose.
    pub fn invalid(&self) -> usize {
        self.submissions
            .iter()
            .filter(|s| s.defect.is_some())
            .count()
    }

    /// Returns how many submissions are second scans of a double scan.
    pub fn double_scans(&self) -> usize {
        self.submissions.iter().filter(|s| s.double_scan).count()
    }

    /// Returns how many submissions are captured while their device is offline.
    pub fn late_uploads(&self) -> usize {
        self.submissions
            .iter()
            .filter(|s| self.devices[s.device].is_offline_at(s.send_after))
            .count()
    }
}

struct Customer {
    id: String,
    site: usize,
    weekdays: [bool; 7],
    hour: u32,
    drifter: bool,
}

/// Builds the plan of a run.
///
/// The number of submissions is `rate × duration` rounded to the nearest
/// whole number, of which `invalid_share` (rounded) are invalid.
///
/// # Panics
///
/// When `devices` or `customers` is zero.
pub fn plan(config: &SimulationConfig) -> SimulationPlan {
    assert!(config.devices > 0, "a simulation needs at least one device");
    assert!(
        config.customers > 0,
        "a simulation needs at least one customer"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let devices = make_devices(config, &mut rng);
    let customers = make_customers(config, devices.len(), &mut rng);

    let total = (config.rate * config.duration.as_secs_f64()).round() as usize;
    let invalid_count = ((total as f64) * config.invalid_share).round() as usize;
    let mut defects: Vec<bool> = (0..total).map(|index| index < invalid_count).collect();
    defects.shuffle(&mut rng);

    let shanghai = FixedOffset::east_opt(8 * 3600).expect("valid offset");
    let history = chrono::Duration::days(i64::from(config.history_days.max(1)));
    let first_day = (config.now - history).with_timezone(&shanghai).date_naive();
    let latest_at = config.now - chrono::Duration::minutes(1);
    let step = config.duration.as_secs_f64() / total.max(1) as f64;

    let mut submissions = Vec::with_capacity(total);
    let mut index = 0;
    while index < total {
        let progress = index as f64 / total as f64;
        let send_after = Duration::from_secs_f64(index as f64 * step);
        let day = first_day + chrono::Duration::days((progress * history.num_days() as f64) as i64);

        if defects[index] {
            let customer = &customers[rng.random_range(0..customers.len())];
            let at = visit_time(&mut rng, customer, day, shanghai, latest_at);
            let device = device_for(&devices, customer.site, &mut rng);
            let defect = [
                Defect::SwappedCoordinates,
                Defect::UnknownMethod,
                Defect::UnknownSite,
            ][rng.random_range(0..3)];
            let (id, payload) = submission(&mut rng, customer, &devices[device], at, Some(defect));
            submissions.push(PlannedSubmission {
                send_after,
                device,
                id,
                payload,
                defect: Some(defect),
                double_scan: false,
            });
            index += 1;
            continue;
        }

        let customer = pick_customer(
            &mut rng,
            &customers,
            day.weekday().num_days_from_monday(),
            progress,
        );
        let at = visit_time(&mut rng, customer, day, shanghai, latest_at);
        let device = device_for(&devices, customer.site, &mut rng);
        let (id, payload) = submission(&mut rng, customer, &devices[device], at, None);
        submissions.push(PlannedSubmission {
            send_after,
            device,
            id,
            payload,
            defect: None,
            double_scan: false,
        });
        index += 1;

        // A double scan takes the next slot, unless that slot is reserved for an invalid one.
        if index < total && !defects[index] && rng.random_bool(DOUBLE_SCAN_SHARE) {
            let again = (at + chrono::Duration::seconds(rng.random_range(20..300)))
                .min(latest_at.with_timezone(&shanghai));
            let (id, payload) = submission(&mut rng, customer, &devices[device], again, None);
            submissions.push(PlannedSubmission {
                send_after: Duration::from_secs_f64(index as f64 * step),
                device,
                id,
                payload,
                defect: None,
                double_scan: true,
            });
            index += 1;
        }
    }

    SimulationPlan {
        devices,
        submissions,
    }
}

fn make_devices(config: &SimulationConfig, rng: &mut ChaCha8Rng) -> Vec<SimulatedDevice> {
    let run = config.duration.as_secs_f64();
    (0..config.devices)
        .map(|index| {
            let site = index % SITES.len();
            let offline = rng.random_bool(OFFLINE_DEVICE_SHARE).then(|| {
                let from = run * rng.random_range(0.1..0.5);
                let length = run * rng.random_range(0.2..0.4);
                (
                    Duration::from_secs_f64(from),
                    Duration::from_secs_f64(from + length),
                )
            });
            SimulatedDevice {
                id: format!("{}-gate-{:02}", SITES[site].id, index / SITES.len() + 1),
                site,
                offline,
            }
        })
        .collect()
}

fn make_customers(
    config: &SimulationConfig,
    devices: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<Customer> {
    // Only sites with a device can receive check-ins.
    let sites_in_use = devices.min(SITES.len());
    (0..config.customers)
        .map(|index| {
            let site = rng.random_range(0..sites_in_use);
            let mut weekdays = [false; 7];
            for _ in 0..rng.random_range(2..=4) {
                weekdays[rng.random_range(0..7)] = true;
            }
            let hours = SITES[site].opens..SITES[site].closes;
            Customer {
                id: format!("c-{index:05}"),
                site,
                weekdays,
                hour: rng.random_range(hours),
                drifter: rng.random_bool(DRIFTER_SHARE),
            }
        })
        .collect()
}

/// Picks a customer whose habits include `weekday`; a drifter is taken with
/// a chance that falls from 1 to 0 over the simulated weeks.
fn pick_customer<'a>(
    rng: &mut ChaCha8Rng,
    customers: &'a [Customer],
    weekday: u32,
    progress: f64,
) -> &'a Customer {
    let mut fallback = &customers[rng.random_range(0..customers.len())];
    for _ in 0..32 {
        let candidate = &customers[rng.random_range(0..customers.len())];
        if !candidate.weekdays[weekday as usize] {
            continue;
        }
        fallback = candidate;
        let keep = if candidate.drifter {
            (1.0 - progress).powi(2)
        } else {
            1.0
        };
        if rng.random_bool(keep) {
            return candidate;
        }
    }
    fallback
}

/// Returns the customer's usual hour on `day`, moved by up to 40 minutes and
/// kept inside opening hours. A time after `latest` moves to the day before.
fn visit_time(
    rng: &mut ChaCha8Rng,
    customer: &Customer,
    day: chrono::NaiveDate,
    zone: FixedOffset,
    latest: DateTime<Utc>,
) -> DateTime<FixedOffset> {
    let site = SITES[customer.site];
    let base = i64::from(customer.hour) * 3600 + rng.random_range(-2400..2400);
    let seconds = base.clamp(
        i64::from(site.opens) * 3600,
        i64::from(site.closes) * 3600 - 1,
    );
    let time =
        NaiveTime::from_num_seconds_from_midnight_opt(seconds as u32, 0).expect("within a day");
    let at = zone
        .from_local_datetime(&day.and_time(time))
        .single()
        .expect("a fixed offset has no gaps");
    if at > latest {
        at - chrono::Duration::days(1)
    } else {
        at
    }
}

fn device_for(devices: &[SimulatedDevice], site: usize, rng: &mut ChaCha8Rng) -> usize {
    let at_site: Vec<usize> = (0..devices.len())
        .filter(|index| devices[*index].site == site)
        .collect();
    at_site[rng.random_range(0..at_site.len())]
}

fn submission(
    rng: &mut ChaCha8Rng,
    customer: &Customer,
    device: &SimulatedDevice,
    at: DateTime<FixedOffset>,
    defect: Option<Defect>,
) -> (String, Vec<u8>) {
    let id = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
    let site = SITES[device.site];
    let mut lat = site.lat + rng.random_range(-0.0005..0.0005);
    let mut lon = site.lon + rng.random_range(-0.0005..0.0005);
    let mut method = weighted_method(rng);
    let mut site_id = site.id;
    match defect {
        Some(Defect::SwappedCoordinates) => std::mem::swap(&mut lat, &mut lon),
        Some(Defect::UnknownMethod) => method = "bluetooth",
        Some(Defect::UnknownSite) => site_id = "sh-closed-store",
        None => {}
    }

    let body = json!({
        "id": id.hyphenated().to_string(),
        "customer": customer.id,
        "site": site_id,
        "device": device.id,
        "at": at.to_rfc3339_opts(SecondsFormat::Secs, false),
        "method": method,
        "location": {
            "lat": (lat * 1e6).round() / 1e6,
            "lon": (lon * 1e6).round() / 1e6,
            "accuracy_m": rng.random_range(3..30),
        },
        "activity": ACTIVITIES[rng.random_range(0..ACTIVITIES.len())],
    });
    let payload = serde_json::to_vec(&body).expect("a submission always serialises");
    (id.hyphenated().to_string(), payload)
}

fn weighted_method(rng: &mut ChaCha8Rng) -> &'static str {
    let total: u32 = METHODS.iter().map(|(_, weight)| weight).sum();
    let mut roll = rng.random_range(0..total);
    for (method, weight) in METHODS {
        if roll < weight {
            return method;
        }
        roll -= weight;
    }
    METHODS[0].0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(seed: u64) -> SimulationConfig {
        SimulationConfig {
            devices: 5,
            customers: 40,
            rate: 100.0,
            duration: Duration::from_secs(6),
            seed,
            now: DateTime::parse_from_rfc3339("2026-05-01T12:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            history_days: 28,
            invalid_share: 0.02,
        }
    }

    #[test]
    fn same_seed_same_plan() {
        assert_eq!(plan(&config(7)), plan(&config(7)));
        assert_ne!(plan(&config(7)).submissions, plan(&config(8)).submissions);
    }

    #[test]
    fn counts_follow_rate_and_share() {
        let plan = plan(&config(7));
        assert_eq!(plan.submissions.len(), 600);
        assert_eq!(plan.invalid(), 12);
        let ids: std::collections::HashSet<&str> =
            plan.submissions.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids.len(), 600, "every submission has its own id");
    }

    #[test]
    fn check_ins_fall_in_window_and_hours() {
        let config = config(3);
        let plan = plan(&config);
        let earliest = config.now - chrono::Duration::days(29);
        for submission in plan.submissions.iter().filter(|s| s.defect.is_none()) {
            let json: serde_json::Value = serde_json::from_slice(&submission.payload).unwrap();
            let at = DateTime::parse_from_rfc3339(json["at"].as_str().unwrap()).unwrap();
            assert!(at <= config.now, "{at} is after now");
            assert!(at >= earliest, "{at} is too old");
            let site = SITES.iter().find(|site| site.id == json["site"]).unwrap();
            let hour = chrono::Timelike::hour(&at);
            assert!(
                (site.opens..site.closes).contains(&hour),
                "{at} outside opening hours of {}",
                site.id
            );
        }
    }

    #[test]
    fn defects_make_expected_fields_invalid() {
        let plan = plan(&config(11));
        for submission in &plan.submissions {
            let json: serde_json::Value = serde_json::from_slice(&submission.payload).unwrap();
            match submission.defect {
                Some(Defect::SwappedCoordinates) => {
                    assert!(json["location"]["lat"].as_f64().unwrap() > 90.0)
                }
                Some(Defect::UnknownMethod) => assert_eq!(json["method"], "bluetooth"),
                Some(Defect::UnknownSite) => assert_eq!(json["site"], "sh-closed-store"),
                None => assert!(SITES.iter().any(|site| site.id == json["site"])),
            }
        }
    }

    #[test]
    fn double_scans_repeat_customer_within_minutes() {
        let plan = plan(&config(5));
        assert!(plan.double_scans() > 0);
        for pair in plan.submissions.windows(2) {
            if !pair[1].double_scan {
                continue;
            }
            let first: serde_json::Value = serde_json::from_slice(&pair[0].payload).unwrap();
            let second: serde_json::Value = serde_json::from_slice(&pair[1].payload).unwrap();
            assert_eq!(first["customer"], second["customer"]);
            assert_eq!(first["site"], second["site"]);
            assert_ne!(first["id"], second["id"]);
            let gap = DateTime::parse_from_rfc3339(second["at"].as_str().unwrap()).unwrap()
                - DateTime::parse_from_rfc3339(first["at"].as_str().unwrap()).unwrap();
            assert!(
                gap.num_seconds() >= 0 && gap.num_seconds() < 300,
                "gap {gap}"
            );
        }
    }
}
