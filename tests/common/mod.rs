//! The shared end-to-end fixture: a real nats-server on a free port, a
//! `checkin` binary to run as child processes, and helpers to publish
//! submissions and read the ledger back.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream;
use checkin_core::chain::ChainVerifier;
use checkin_core::{ChainHead, EventId, Record, codec};
use checkin_ledger::reader::{StoredMessage, StreamReader};
use checkin_ledger::topology::{INTAKE_STREAM, LEDGER_STREAM, REJECTED_STREAM};
use futures::StreamExt;
use tempfile::TempDir;

/// A nats-server with JetStream, stopped and its storage removed when dropped.
pub struct NatsServer {
    child: Option<Child>,
    dir: TempDir,
    port: u16,
    sync_always: bool,
    extra_config: String,
}

impl NatsServer {
    /// Starts a server with nats-server's default sync interval.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Starts a server; `sync_always` syncs every write to disk.
    pub fn start_with(sync_always: bool) -> Self {
        Self::start_with_config(sync_always, "")
    }

    /// Starts a server whose configuration ends with `extra_config`.
    pub fn start_with_config(sync_always: bool, extra_config: &str) -> Self {
        let dir = tempfile::tempdir().expect("failed to create a temporary directory");
        let mut server = Self {
            child: None,
            dir,
            port: free_port(),
            sync_always,
            extra_config: extra_config.to_string(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let store = self.dir.path().join("jetstream");
        let sync = if self.sync_always {
            "\n  sync_interval: always"
        } else {
            ""
        };
        let config = format!(
            "listen: 127.0.0.1:{}\njetstream {{\n  store_dir: {:?}{sync}\n}}\n{}\n",
            self.port, store, self.extra_config
        );
        let config_path = self.dir.path().join("nats-server.conf");
        std::fs::write(&config_path, config).expect("failed to write nats-server.conf");
        let log = std::fs::File::create(self.dir.path().join("nats-server.log"))
            .expect("failed to create log");

        let child = Command::new(nats_server_binary())
            .arg("--config")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect(
                "failed to start nats-server; set CHECKIN_NATS_SERVER or put nats-server on PATH",
            );
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            if let Some(status) = exited {
                let log = std::fs::read_to_string(self.dir.path().join("nats-server.log"))
                    .unwrap_or_default();
                panic!("nats-server exited with {status} during start-up:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "nats-server did not listen on port {} within 15 s",
            self.port
        );
    }

    /// Returns the client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Returns the JetStream store directory.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("jetstream")
    }

    /// Returns a scratch directory that lives as long as the server.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(&path).expect("failed to create scratch directory");
        path
    }

    /// Connects a client.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .expect("failed to connect to the test server")
    }

    /// Stops the server with SIGKILL and starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Stops the server with SIGKILL, keeping its port and store for [`NatsServer::start_again`].
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Stops the server with SIGTERM and waits, so it writes its stream
    /// indexes as a clean shutdown does, keeping its store.
    pub fn stop_cleanly(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status()
                .expect("failed to run kill");
            assert!(status.success(), "kill -TERM failed");
            let _ = child.wait();
        }
    }

    /// Starts a stopped server again on the same port and store.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "nats-server is still running");
        self.spawn();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn nats_server_binary() -> PathBuf {
    std::env::var_os("CHECKIN_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("failed to bind a free port");
    listener
        .local_addr()
        .expect("bound socket has an address")
        .port()
}

/// A `checkin` child process, killed when dropped.
pub struct CheckinProcess {
    child: Child,
}

impl CheckinProcess {
    /// Starts `checkin --nats URL --data-dir DIR --config CONFIG ARGS…`.
    pub fn spawn(server: &NatsServer, data_dir: &Path, config: &Path, args: &[&str]) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("checkin.log"))
            .expect("failed to open the process log");
        let child = checkin_command(server, data_dir, config)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("failed to start checkin");
        Self { child }
    }

    /// Kills the process with SIGKILL: no clean-up code runs.
    pub fn kill_hard(mut self) {
        self.child.kill().expect("failed to kill checkin");
        self.child.wait().expect("failed to reap checkin");
    }

    /// Tells whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .try_wait()
            .expect("failed to poll checkin")
            .is_none()
    }
}

impl Drop for CheckinProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds `checkin --nats URL --data-dir DIR --config CONFIG`; the caller adds the subcommand.
pub fn checkin_command(server: &NatsServer, data_dir: &Path, config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_checkin"));
    command
        .arg("--nats")
        .arg(server.url())
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--config")
        .arg(config);
    command
}

/// Runs `checkin` with `args` to completion, asserts it succeeded and returns its standard output.
pub fn checkin_output(
    server: &NatsServer,
    data_dir: &Path,
    config: &Path,
    args: &[&str],
) -> String {
    let output = checkin_command(server, data_dir, config)
        .args(args)
        .output()
        .expect("failed to run checkin");
    assert!(
        output.status.success(),
        "checkin {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// Writes a config file with the test sites and the given extra TOML.
pub fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("checkin.toml");
    let text = format!(
        "ledger = \"test\"\n{extra}\n\
         [sites.sh-jingan]\nname = \"静安店\"\ntime_zone = \"Asia/Shanghai\"\n\
         [sites.ny-soho]\ntime_zone = \"America/New_York\"\n"
    );
    std::fs::write(&path, text).expect("failed to write config");
    path
}

/// Builds a valid live check-in for the test sites.
pub fn check_in(
    id: &EventId,
    customer: &str,
    at: chrono::DateTime<chrono::FixedOffset>,
) -> serde_json::Value {
    serde_json::json!({
        "id": id.to_string(),
        "customer": customer,
        "site": "sh-jingan",
        "device": "kiosk-7",
        "at": at.to_rfc3339(),
        "method": "qr",
    })
}

/// Returns the current time in Shanghai's offset.
pub fn now_shanghai() -> chrono::DateTime<chrono::FixedOffset> {
    let offset = chrono::FixedOffset::east_opt(8 * 3600).expect("valid offset");
    chrono::Utc::now().with_timezone(&offset)
}

/// Publishes raw submissions to an intake subject with `Nats-Msg-Id` set to
/// `msg_ids[i]` when given, and returns how many JetStream reported as duplicates.
pub async fn publish_all(
    js: &jetstream::Context,
    subject: &str,
    payloads: &[(Option<String>, Vec<u8>)],
) -> usize {
    let mut duplicates = 0;
    for window in payloads.chunks(500) {
        let mut pending = Vec::new();
        for (msg_id, payload) in window {
            let mut headers = HeaderMap::new();
            if let Some(id) = msg_id {
                headers.insert("Nats-Msg-Id", id.as_str());
            }
            let ack = js
                .publish_with_headers(subject.to_string(), headers, payload.clone().into())
                .await
                .expect("failed to publish to intake");
            pending.push(ack);
        }
        for ack in pending {
            if ack.await.expect("intake did not acknowledge").duplicate {
                duplicates += 1;
            }
        }
    }
    duplicates
}

/// Waits until `condition` holds, polling; panics with `what` after `timeout`.
pub async fn wait_for<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Returns the number of messages in a stream.
pub async fn stream_messages(js: &jetstream::Context, name: &str) -> u64 {
    match js.get_stream(name).await {
        Ok(mut stream) => stream
            .info()
            .await
            .map(|info| info.state.messages)
            .unwrap_or(0),
        Err(_) => 0,
    }
}

/// Waits until intake is drained and the ledger contains `records` messages.
///
/// Fails fast with the cause instead of timing out when the ledger grows past
/// `records` (something was recorded twice) or stays short while intake is
/// empty for 10 s (the sequencer purged submissions it never recorded).
pub async fn wait_for_ledger(js: &jetstream::Context, records: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut stalled_since: Option<(u64, Instant)> = None;
    loop {
        let ledger = stream_messages(js, LEDGER_STREAM).await;
        let intake = stream_messages(js, INTAKE_STREAM).await;
        assert!(
            ledger <= records,
            "ledger contains {ledger} records, more than the {records} expected"
        );
        if ledger == records && intake == 0 {
            return;
        }

        if intake == 0 && ledger < records {
            match stalled_since {
                Some((count, since)) if count == ledger => assert!(
                    since.elapsed() < Duration::from_secs(10),
                    "ledger stopped at {ledger} of {records} records with intake empty for 10 s: submissions were lost"
                ),
                _ => stalled_since = Some((ledger, Instant::now())),
            }
        } else {
            stalled_since = None;
        }

        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: ledger contains {ledger} of {records} records, intake {intake} messages"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Everything read back from a ledger stream.
pub struct LedgerContents {
    /// Decoded records by sequence, starting at 1.
    pub records: Vec<(u64, Record)>,
    /// The chain head as recomputed.
    pub head: ChainHead,
    /// Findings of the chain verification, as text.
    pub findings: Vec<String>,
}

impl LedgerContents {
    /// Counts how often each event id occurs.
    pub fn id_counts(&self) -> HashMap<EventId, usize> {
        let mut counts = HashMap::new();
        for (_, record) in &self.records {
            if let Some(id) = record.body.event_id() {
                *counts.entry(id).or_default() += 1;
            }
        }
        counts
    }
}

/// Reads the whole ledger stream, verifying the chain.
pub async fn read_ledger(js: &jetstream::Context) -> LedgerContents {
    let reader = StreamReader::open(js, LEDGER_STREAM)
        .await
        .expect("ledger stream exists");
    let (_, last) = reader.bounds().await.expect("ledger bounds");
    let mut verifier = ChainVerifier::new();
    let mut records = Vec::new();
    let mut stream = reader.range(1, last).await.expect("ledger range");
    while let Some(message) = stream.next().await {
        let message = message.expect("ledger message");
        verifier.push(message.link());
        let record = codec::decode(&message.payload).expect("ledger record decodes");
        records.push((message.seq, record));
    }
    LedgerContents {
        records,
        head: verifier.head(),
        findings: verifier
            .findings()
            .iter()
            .map(ToString::to_string)
            .collect(),
    }
}

/// Reads every message of the rejected stream.
pub async fn read_rejected(js: &jetstream::Context) -> Vec<StoredMessage> {
    let reader = StreamReader::open(js, REJECTED_STREAM)
        .await
        .expect("rejected stream exists");
    let (_, last) = reader.bounds().await.expect("rejected bounds");
    let mut stream = reader.range(1, last).await.expect("rejected range");
    let mut messages = Vec::new();
    while let Some(message) = stream.next().await {
        messages.push(message.expect("rejected message"));
    }
    messages
}

/// Waits until a sequencer has created the streams and written the genesis record.
pub async fn wait_for_genesis(js: &jetstream::Context) {
    wait_for(Duration::from_secs(30), "the genesis record", || async {
        stream_messages(js, LEDGER_STREAM).await >= 1
    })
    .await;
}
