//! The HTTP query API of `checkin serve` against a real ledger: each
//! endpoint, and bad parameters answered with a 4xx and a stable code.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use async_nats::jetstream;
use checkin_core::EventId;
use checkin_ledger::topology::{INTAKE_LIVE, intake_message_id};
use common::*;
use serde_json::Value;
use uuid::Uuid;

/// Sends a GET with HTTP/1.1 and returns the status and the JSON body.
fn get(address: &str, path: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(address).expect("connect to checkin serve");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");

    let status: u16 = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_and_bad_parameters() {
    let server = NatsServer::start();
    let data = server.scratch("sequencer");
    let config = write_config(&data, "");
    let _sequencer = CheckinProcess::spawn(&server, &data, &config, &["sequencer"]);
    let js = jetstream::new(server.client().await);
    wait_for_genesis(&js).await;

    let now = now_shanghai();
    let payloads: Vec<_> = (0..3)
        .map(|minutes| {
            let id = EventId::from(Uuid::new_v4());
            // Scans 0, 20 and 40 minutes apart: three visits.
            let at = now - chrono::Duration::minutes(40 - minutes * 20);
            let bytes = serde_json::to_vec(&check_in(&id, "c-http", at)).unwrap();
            (Some(intake_message_id(&id.to_string(), &bytes)), bytes)
        })
        .collect();
    publish_all(&js, INTAKE_LIVE, &payloads).await;
    wait_for_ledger(&js, 4, Duration::from_secs(30)).await;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    drop(listener);
    let models = server.scratch("models");
    let _serve = CheckinProcess::spawn(&server, &models, &config, &["serve", "--listen", &address]);
    wait_for(
        Duration::from_secs(30),
        "the API to show the customer",
        || async {
            let address = address.clone();
            tokio::task::spawn_blocking(move || {
                TcpStream::connect(&address).is_ok()
                    && get(&address, "/v1/customers/c-http").1["check_ins"] == 3
            })
            .await
            .unwrap()
        },
    )
    .await;

    let (status, health) = get(&address, "/healthz");
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));

    let (status, head) = get(&address, "/v1/ledger/head");
    assert_eq!(status, 200);
    assert_eq!(head["seq"], 4);
    assert_eq!(head["hash"].as_str().map(str::len), Some(64));

    let (status, customer) = get(&address, "/v1/customers/c-http");
    assert_eq!(status, 200);
    assert_eq!(customer["visits"], 3);
    assert_eq!(customer["segment"], "new");

    let (status, page) = get(&address, "/v1/customers/c-http/timeline?limit=2");
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_string();
    let (_, rest) = get(
        &address,
        &format!("/v1/customers/c-http/timeline?limit=2&cursor={cursor}"),
    );
    assert_eq!(rest["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(rest["next_cursor"], Value::Null);

    let today = now.date_naive().to_string();
    let (status, days) = get(
        &address,
        &format!("/v1/sites/sh-jingan/days?from={today}&to={today}"),
    );
    assert_eq!(status, 200);
    let day = &days["days"][0];
    // The scans may straddle Shanghai midnight, so today may contain fewer of them.
    assert!(day["check_ins"].as_u64().is_some_and(|count| count <= 3));
    assert_eq!(
        day["check_ins"], day["visits"],
        "each scan is its own visit"
    );

    let (status, members) = get(&address, "/v1/segments/new");
    assert_eq!(status, 200);
    assert_eq!(members["items"][0]["customer"], "c-http");

    for (path, expected_status, code) in [
        (
            "/v1/sites/sh-jingan/days?from=2026-13-01&to=2026-12-31",
            400,
            "invalid_parameter",
        ),
        (
            "/v1/sites/sh-jingan/days?from=2026-05-02&to=2026-05-01",
            400,
            "invalid_parameter",
        ),
        (
            "/v1/sites/sh-jingan/days?to=2026-05-01",
            400,
            "invalid_parameter",
        ),
        ("/v1/segments/loyal", 404, "unknown_segment"),
        ("/v1/segments/new?limit=501", 400, "invalid_parameter"),
        ("/v1/segments/new?cursor=abc", 400, "invalid_parameter"),
        ("/v1/customers/nobody", 404, "customer_not_found"),
        (
            "/v1/customers/c-http/timeline?from=yesterday",
            400,
            "invalid_parameter",
        ),
        ("/v2/anything", 404, "not_found"),
    ] {
        let (status, body) = get(&address, path);
        assert_eq!(status, expected_status, "status of {path}");
        assert_eq!(body["code"], code, "code of {path}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|text| !text.is_empty()),
            "message of {path}"
        );
        assert!(
            body["message_zh"]
                .as_str()
                .is_some_and(|text| !text.is_empty()),
            "Chinese message of {path}"
        );
    }

    // While `checkin serve` has the models open, the CLI sends its queries to the API.
    let api = format!("http://{address}");
    let view: Value = serde_json::from_str(&checkin_output(
        &server,
        &models,
        &config,
        &["--api", &api, "query", "customer", "c-http", "--json"],
    ))
    .expect("query prints JSON");
    assert_eq!(view["check_ins"], 3);
    assert_eq!(view["visits"], 3);

    let output = checkin_command(&server, &models, &config)
        .args(["--api", &api, "query", "customer", "nobody"])
        .output()
        .expect("failed to run checkin query");
    assert!(!output.status.success(), "an unknown customer is an error");
    assert!(String::from_utf8_lossy(&output.stderr).contains("customer_not_found"));
}
