//! Times the folds alone, without NATS: builds a month of in-order
//! check-ins in memory (2,000 customers over 20 sites, 3% double scans, 1%
//! two days late, as `checkin bench project` does) and applies them in
//! batches of 1,000 to fresh stores, one model at a time.
//!
//! `cargo run --release -p checkin-projections --example fold_speed -- [EVENTS] [sled|fjall] [activity|frequency]`

use std::time::Instant;

use checkin_core::record::{CheckIn, Method, RecordBody, Source};
use checkin_core::sites::SiteRegistry;
use checkin_core::{ChainHash, ChainHead, EventId, Record};
use checkin_projections::activity::Activity;
use checkin_projections::frequency::Frequency;
use checkin_projections::runner::{LedgerEntry, Projection};
use checkin_projections::store::{Backend, ModelStore, Overlay};

fn history(events: usize) -> Vec<LedgerEntry> {
    const MONTH_US: i64 = 30 * 86_400 * 1_000_000;
    let end_us = 1_796_000_000 * 1_000_000;
    let step_us = MONTH_US / events.max(1) as i64;
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut previous: Option<(u64, i64)> = None;
    (0..events)
        .map(|index| {
            let roll = next() % 100;
            let mut at_us = end_us - MONTH_US + index as i64 * step_us;
            let customer = match previous {
                Some((customer, at)) if roll < 3 => {
                    at_us = at + 60_000_000;
                    customer
                }
                _ => next() % 2000,
            };
            previous = Some((customer, at_us));
            let site = if roll >= 95 {
                next() % 20
            } else {
                customer % 20
            };
            if roll == 50 {
                at_us -= 2 * 86_400_000_000;
            }
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(index as u64).to_be_bytes());
            LedgerEntry {
                seq: index as u64 + 2,
                record: Record {
                    recorded_at_us: 0,
                    body: RecordBody::CheckIn(CheckIn {
                        event_id: EventId(id),
                        customer: format!("customer-{customer:05}"),
                        site: format!("site-{site:02}"),
                        device: "kiosk".into(),
                        at_us,
                        utc_offset_s: 8 * 3600,
                        method: Method::Qr,
                        location: None,
                        activity: None,
                        staff: None,
                        attributes: Vec::new(),
                        source: Source::Live,
                    }),
                },
            }
        })
        .collect()
}

fn fold(name: &str, projection: &dyn Projection, store: &ModelStore, entries: &[LedgerEntry]) {
    let start = Instant::now();
    for batch in entries.chunks(1000) {
        let mut model = Overlay::new(store);
        projection.apply_batch(batch, &mut model).expect("fold");
        let head = ChainHead {
            seq: batch.last().expect("batch").seq,
            hash: ChainHash::ZERO,
        };
        store.commit(model.into_writes(), head).expect("commit");
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{name}: {} records in {seconds:.2} s, {:.0} records/s",
        entries.len(),
        entries.len() as f64 / seconds
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let events: usize = args
        .next()
        .map_or(100_000, |text| text.parse().expect("EVENTS is a number"));
    let backend: Backend = args
        .next()
        .map_or(Backend::Fjall, |text| text.parse().expect("sled or fjall"));
    let only = args.next();
    let selected = |name: &str| only.as_deref().is_none_or(|only| only == name);
    let entries = history(events);
    let sites = SiteRegistry {
        allow_unknown_sites: true,
        ..SiteRegistry::default()
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    if selected(Activity::NAME) {
        let store = ModelStore::open_with(backend, &dir.path().join("activity"), Activity::NAME)
            .expect("open");
        fold("activity", &Activity::new(sites.clone()), &store, &entries);
    }
    if selected(Frequency::NAME) {
        let store = ModelStore::open_with(backend, &dir.path().join("frequency"), Frequency::NAME)
            .expect("open");
        fold("frequency", &Frequency::new(sites), &store, &entries);
    }
}
