//! `checkin up --demo` through the real binary: it starts nats-server, the
//! stack and the simulator, prints a customer URL that soon shows visits,
//! and stops cleanly on SIGINT.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::free_port;
use serde_json::Value;

/// Kills the demo if the test fails before it stopped.
struct Demo {
    child: Child,
}

impl Drop for Demo {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Demo {
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("failed to poll the demo") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

/// Returns the customer JSON once the URL answers 200, or `None` before that.
fn fetch_customer(url: &str) -> Option<Value> {
    let mut response = ureq::get(url).call().ok()?;
    let body = response.body_mut().read_to_string().ok()?;
    serde_json::from_str(&body).ok()
}

#[test]
fn demo_serves_customer_and_stops_on_sigint() {
    let dir = tempfile::tempdir().expect("failed to create a temporary directory");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../checkin.toml");
    let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("stderr log");
    let nats_port = free_port().to_string();
    let listen = format!("127.0.0.1:{}", free_port());

    let child = Command::new(env!("CARGO_BIN_EXE_checkin"))
        .current_dir(dir.path())
        .args(["--config", config.to_str().expect("utf-8 path")])
        .args(["up", "--demo", "--port", &nats_port, "--listen", &listen])
        .env_remove("CHECKIN_NATS")
        .env_remove("CHECKIN_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("failed to start checkin up --demo");
    let mut demo = Demo { child };

    let stdout = demo.child.stdout.take().expect("piped stdout");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut printed = Vec::new();
    let customer_url = loop {
        let line = received
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no customer URL within 60 s; output so far: {printed:?}"));
        let url = line
            .split_whitespace()
            .find(|word| word.starts_with("http://") && word.contains("/v1/customers/"))
            .map(str::to_string);
        printed.push(line);
        if let Some(url) = url {
            break url;
        }
    };
    assert!(
        customer_url.starts_with(&format!("http://{listen}/")),
        "the customer URL points at --listen: {customer_url}"
    );

    let deadline = Instant::now() + Duration::from_secs(90);
    let customer = loop {
        if let Some(customer) = fetch_customer(&customer_url)
            && customer["visits"].as_u64().is_some_and(|visits| visits > 0)
        {
            break customer;
        }
        assert!(
            Instant::now() < deadline,
            "{customer_url} showed no visits within 90 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        customer["check_ins"]
            .as_u64()
            .is_some_and(|count| count > 0)
    );

    let pid = demo.child.id().to_string();
    let signalled = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("failed to run kill");
    assert!(signalled.success(), "kill -INT {pid} failed");
    let status = demo
        .wait_exit(Duration::from_secs(30))
        .expect("the demo did not exit within 30 s of SIGINT");
    let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
    assert!(status.success(), "the demo exited with {status}:\n{log}");
    assert!(
        log.contains("nats-server stopped"),
        "the demo stops its nats-server:\n{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "a log written to a file has no colour codes:\n{log}"
    );
}
