//! Read models against a real ledger: figures equal an independent count
//! over what was published, and a projector killed again and again ends
//! byte-identical to a clean rebuild.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_nats::jetstream;
use checkin_core::EventId;
use checkin_core::sites::{Site, SiteRegistry};
use checkin_ledger::sequencer::{Sequencer, SequencerConfig};
use checkin_ledger::topology::{INTAKE_IMPORT, INTAKE_LIVE, INTAKE_VOID, intake_message_id};
use checkin_projections::activity::{self, Activity, SiteDay};
use checkin_projections::runner::{Runner, Until};
use checkin_projections::store::ModelStore;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use common::*;
use rand::{Rng, SeedableRng};
use serde_json::json;
use uuid::Uuid;

fn sites() -> SiteRegistry {
    let mut sites = SiteRegistry::default();
    sites.sites.insert("sh-jingan".into(), Site::default());
    let new_york = Site {
        time_zone: chrono_tz::America::New_York,
        ..Site::default()
    };
    sites.sites.insert("ny-soho".into(), new_york);
    sites
}

struct Published {
    id: EventId,
    customer: String,
    site: &'static str,
    at: DateTime<Utc>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_days_match_independent_count() {
    let seed: u64 = rand::rng().random();
    println!("seed: {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let server = NatsServer::start();
    let config = SequencerConfig {
        sites: sites(),
        ..SequencerConfig::default()
    };
    let sequencer = Sequencer::start(server.client().await, config, &server.scratch("index"))
        .await
        .expect("sequencer starts");
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sequencer.run(async {
        let _ = stopped.await;
    }));
    let js = jetstream::new(server.client().await);

    // Around New York's fall-back night and Shanghai's midnight, in 2026.
    let window_start = Utc
        .with_ymd_and_hms(2026, 10, 30, 12, 0, 0)
        .unwrap()
        .timestamp();
    let mut published = Vec::new();
    let mut payloads = Vec::new();
    for index in 0..800 {
        let site = if index % 2 == 0 {
            "sh-jingan"
        } else {
            "ny-soho"
        };
        let customer = format!("c-{}", rng.random_range(0..40));
        let mut at =
            DateTime::from_timestamp(window_start + rng.random_range(0..4 * 86_400), 0).unwrap();
        // A fifth are repeat scans 0-15 minutes after an earlier one, inside or outside the visit window.
        let earlier = published
            .iter()
            .rev()
            .find(|entry: &&Published| entry.site == site && entry.customer == customer);
        if let Some(earlier) = earlier.filter(|_| rng.random_bool(0.2)) {
            at = earlier.at + chrono::Duration::seconds(rng.random_range(0..900));
        }
        let offset = if site == "sh-jingan" {
            8 * 3600
        } else {
            -4 * 3600
        };
        let at_text = at
            .with_timezone(&chrono::FixedOffset::east_opt(offset).unwrap())
            .to_rfc3339();
        let id = EventId::from(Uuid::new_v4());
        let body = json!({"id": id.to_string(), "customer": customer, "site": site, "device": "d", "at": at_text, "method": "qr"});
        let bytes = serde_json::to_vec(&body).unwrap();
        payloads.push((Some(intake_message_id(&id.to_string(), &bytes)), bytes));
        published.push(Published {
            id,
            customer,
            site,
            at,
        });
    }
    publish_all(&js, INTAKE_IMPORT, &payloads).await;
    wait_for_ledger(&js, 801, Duration::from_secs(60)).await;

    let voided: Vec<EventId> = published.iter().step_by(7).map(|entry| entry.id).collect();
    let voids: Vec<_> = voided
        .iter()
        .map(|target| {
            let body = json!({"id": Uuid::new_v4().to_string(), "target": target.to_string(), "reason": "test", "requested_by": "qa"});
            (None, serde_json::to_vec(&body).unwrap())
        })
        .collect();
    publish_all(&js, INTAKE_VOID, &voids).await;
    wait_for_ledger(&js, 801 + voids.len() as u64, Duration::from_secs(60)).await;

    let store = ModelStore::open(&server.scratch("models"), Activity::NAME).expect("store opens");
    let mut runner = Runner::new(&js, store, Activity::new(sites()))
        .await
        .expect("runner");
    let head = runner.ledger_head().await.expect("head");
    runner
        .run(Until::Seq(head), std::future::pending())
        .await
        .expect("projection runs");

    // The independent count: local dates straight from the zone database.
    let voided: HashSet<EventId> = voided.into_iter().collect();
    let local_date = |site: &str, at: DateTime<Utc>| match site {
        "sh-jingan" => at.with_timezone(&chrono_tz::Asia::Shanghai).date_naive(),
        _ => at.with_timezone(&chrono_tz::America::New_York).date_naive(),
    };
    let kept: Vec<&Published> = published
        .iter()
        .filter(|entry| !voided.contains(&entry.id))
        .collect();
    let mut expected: HashMap<(&str, NaiveDate), (u64, HashSet<&str>)> = HashMap::new();
    for entry in &kept {
        let figures = expected
            .entry((entry.site, local_date(entry.site, entry.at)))
            .or_default();
        figures.0 += 1;
        figures.1.insert(&entry.customer);
    }
    // Visits: per customer and site, a scan more than 600 s after the previous one starts a visit.
    let mut scans: HashMap<(&str, &str), Vec<DateTime<Utc>>> = HashMap::new();
    for entry in &kept {
        scans
            .entry((entry.site, entry.customer.as_str()))
            .or_default()
            .push(entry.at);
    }
    let mut expected_visits: HashMap<(&str, NaiveDate), u64> = HashMap::new();
    for ((site, _), mut times) in scans {
        times.sort();
        let mut previous: Option<DateTime<Utc>> = None;
        for at in times {
            if previous.is_none_or(|previous| (at - previous).num_seconds() > 600) {
                *expected_visits
                    .entry((site, local_date(site, at)))
                    .or_default() += 1;
            }
            previous = Some(at);
        }
    }

    let from = NaiveDate::from_ymd_opt(2026, 10, 29).unwrap();
    let to = NaiveDate::from_ymd_opt(2026, 11, 5).unwrap();
    for site in ["sh-jingan", "ny-soho"] {
        let days = activity::site_days(runner.store(), site, from, to).expect("site days");
        for (date, figures) in days {
            let (check_ins, customers) = expected.get(&(site, date)).cloned().unwrap_or_default();
            let wanted = SiteDay {
                check_ins,
                visits: expected_visits
                    .get(&(site, date))
                    .copied()
                    .unwrap_or_default(),
                unique_customers: customers.len() as u64,
            };
            assert_eq!(figures, wanted, "{site} on {date}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_projector_matches_clean_rebuild() {
    const RECORDS: usize = 50_000;
    const KILLS: usize = 20;
    let seed: u64 = rand::rng().random();
    println!("kill schedule seed: {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let server = NatsServer::start();
    let sequencer_dir = server.scratch("sequencer");
    let config = write_config(&sequencer_dir, "");
    let _sequencer = CheckinProcess::spawn(&server, &sequencer_dir, &config, &["sequencer"]);
    let js = jetstream::new(server.client().await);
    wait_for_genesis(&js).await;

    let payloads: Vec<_> = (0..RECORDS)
        .map(|index| {
            let id = EventId::from(Uuid::new_v4());
            let at = now_shanghai() - chrono::Duration::minutes((index % 20_000) as i64);
            let bytes =
                serde_json::to_vec(&check_in(&id, &format!("c-{}", index % 3000), at)).unwrap();
            (Some(intake_message_id(&id.to_string(), &bytes)), bytes)
        })
        .collect();
    publish_all(&js, INTAKE_LIVE, &payloads).await;
    wait_for_ledger(&js, RECORDS as u64 + 1, Duration::from_secs(180)).await;

    // The kills run against each storage engine; both must end with the
    // bytes of a clean sled rebuild.
    let live = kill_projector_then_finish(&server, "live", "", &mut rng, KILLS);
    let fjall_live = kill_projector_then_finish(
        &server,
        "live-fjall",
        "[projections]\nstore = \"fjall\"",
        &mut rng,
        KILLS,
    );

    let clean_dir = server.scratch("clean");
    checkin_output(&server, &clean_dir, &config, &["project", "--until-head"]);
    let clean = checkin_output(
        &server,
        &clean_dir,
        &config,
        &["project", "digest", "--json"],
    );

    let parse = |output: &str| -> Vec<serde_json::Value> {
        output
            .lines()
            .map(|line| serde_json::from_str(line).expect("digest JSON"))
            .collect()
    };
    let clean = parse(&clean);
    for live in [parse(&live), parse(&fjall_live)] {
        assert_eq!(live.len(), 2, "one digest per model: {live:?}");
        for (live, clean) in live.iter().zip(&clean) {
            let model = &live["model"];
            assert_eq!(live["model"], clean["model"]);
            assert_eq!(
                live["seq"],
                RECORDS as u64 + 1,
                "live {model} reached the head"
            );
            assert_eq!(
                clean["seq"],
                RECORDS as u64 + 1,
                "rebuilt {model} reached the head"
            );
            assert_eq!(
                live["digest"], clean["digest"],
                "killed {model} projector differs from a clean rebuild"
            );
        }
    }
}

/// Starts and SIGKILLs a projector `kills` times at random moments in a
/// fresh data directory, then lets one finish to the head, and returns
/// `checkin project digest --json`.
fn kill_projector_then_finish(
    server: &NatsServer,
    name: &str,
    config_extra: &str,
    rng: &mut rand::rngs::StdRng,
    kills: usize,
) -> String {
    let dir = server.scratch(name);
    let config = write_config(&dir, config_extra);
    let mut projector = CheckinProcess::spawn(server, &dir, &config, &["project"]);
    for _ in 0..kills {
        std::thread::sleep(Duration::from_millis(rng.random_range(50..400)));
        projector.kill_hard();
        projector = CheckinProcess::spawn(server, &dir, &config, &["project"]);
    }
    projector.kill_hard();
    let interrupted = checkin_output(server, &dir, &config, &["project", "digest", "--json"]);
    println!("{name} after the kills: {}", interrupted.trim());
    checkin_output(server, &dir, &config, &["project", "--until-head"]);
    checkin_output(server, &dir, &config, &["project", "digest", "--json"])
}
