//! The OpAMP client: one task that keeps the agent's status at its server and carries
//! out what the server sends (remote config, packages). It never blocks the data path:
//! while the server is away the agent runs as before, and the client reconnects with
//! the one backoff policy of sinks and sources.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use tokio::sync::oneshot;

use super::compose;
use super::packages::PackageManager;
use super::proto::{
    agent_capabilities as cap, AgentDisconnect, AgentRemoteConfig, AgentToServer, EffectiveConfig,
    RemoteConfigStatus, RemoteConfigStatuses, ServerErrorResponseType, ServerToAgent,
    FLAG_REPORT_FULL_STATE,
};
use super::report::{self, Parts, Reporter};
use super::store::{FleetStore, InstanceUid, RemoteConfig};
use super::transport::{Endpoint, HttpChannel, TransportError, WsChannel};
use crate::api::{Api, Control};
use crate::config::{Config, Env, FleetConfig, FleetTransport, RetryConfig};
use crate::retry::Reconnect;
use crate::shutdown::Shutdown;
use crate::signing::PublicKey;

/// How often the client looks for a change worth reporting between polls.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The least time between two messages that are not heartbeats.
const MIN_GAP: Duration = Duration::from_secs(1);

/// The longest a server's "come back later" is heeded.
const THROTTLE_MAX: Duration = Duration::from_secs(3600);

/// The bounds of a heartbeat interval the server sets.
const HEARTBEAT_BOUNDS: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(86_400));

/// Why the fleet client could not start (the agent runs on without it).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("fleet TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("fleet state in the data dir: {0}")]
    Store(#[from] std::io::Error),
    #[error("fleet.trusted_keys: {0}")]
    Key(String),
}

/// Starts the client for the running `config` (which has `[fleet]`). `local_file` is
/// the device's own config file, composed with each remote config; `start_error` says
/// why the stored remote config was not used at start, if it was not.
pub fn start(
    config: &Config,
    local_file: PathBuf,
    api: Arc<Api>,
    start_error: Option<String>,
    shutdown: Shutdown,
) -> Result<tokio::task::JoinHandle<()>, StartError> {
    let fleet = config.fleet.clone().expect("started only with [fleet]");
    // Packages may come over https:// even from an http:// server.
    let tls = match crate::tls::client_config(&fleet.tls_files) {
        Ok(config) => Some(config),
        Err(e) if fleet.tls => return Err(e.into()),
        Err(_) => None,
    };
    let mut headers = Vec::new();
    for (name, value) in &fleet.headers {
        // Checked when the config was parsed.
        if let (Ok(n), Ok(v)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(value),
        ) {
            headers.push((n, v));
        }
    }
    let endpoint = Endpoint {
        tls,
        headers,
        timeout: fleet.timeout,
    };
    let mut keys = Vec::new();
    for path in &fleet.trusted_keys {
        let text = std::fs::read_to_string(path)
            .map_err(|e| StartError::Key(format!("{}: {e}", path.display())))?;
        keys.push(
            PublicKey::parse(&text)
                .ok_or_else(|| StartError::Key(format!("{}: not a key", path.display())))?,
        );
    }
    let store = FleetStore::new(&config.agent.data_dir);
    let uid = store.instance_uid()?;
    let remote = match (store.remote_config(), &start_error) {
        (Some(stored), None) => status(&stored.hash, RemoteConfigStatuses::Applied, String::new()),
        (Some(stored), Some(e)) => {
            status(&stored.hash, RemoteConfigStatuses::Failed, e.to_string())
        }
        (None, _) => RemoteConfigStatus::default(),
    };
    let packages = PackageManager::new(
        endpoint.clone(),
        fleet.server.clone(),
        store.clone(),
        keys,
        fleet.max_package_bytes,
    );
    tracing::info!(server = %fleet.server, instance_uid = %uid.text(), "fleet management on");
    let client = Client {
        interval: fleet.poll_interval,
        fleet,
        api,
        local_file,
        store,
        uid,
        sequence: 0,
        reporter: Reporter::default(),
        full_next: false,
        remote,
        failed_remote: None,
        packages,
        endpoint,
        started_unix_nano: crate::clock::now_ms() * 1_000_000,
        effective: Default::default(),
    };
    Ok(tokio::spawn(client.run(shutdown)))
}

fn status(hash: &[u8], status: RemoteConfigStatuses, error: String) -> RemoteConfigStatus {
    RemoteConfigStatus {
        last_remote_config_hash: hash.to_vec(),
        status: status as i32,
        error_message: error,
    }
}

struct Client {
    fleet: FleetConfig,
    api: Arc<Api>,
    local_file: PathBuf,
    store: FleetStore,
    uid: InstanceUid,
    sequence: u64,
    reporter: Reporter,
    /// The server asked for everything.
    full_next: bool,
    remote: RemoteConfigStatus,
    /// The last remote config that failed, tried again once a package arrives (it may
    /// have named a plugin the package brings).
    failed_remote: Option<RemoteConfig>,
    packages: PackageManager,
    endpoint: Endpoint,
    /// HTTP: the poll interval; WebSocket: the heartbeat interval.
    interval: Duration,
    started_unix_nano: u64,
    /// The last config text seen, and its report.
    effective: (Arc<str>, EffectiveConfig),
}

impl Client {
    async fn run(mut self, mut shutdown: Shutdown) {
        let retry = RetryConfig {
            initial: Duration::from_millis(500),
            max: self.interval.max(Duration::from_secs(1)),
        };
        let mut reconnect = Reconnect::new(&retry, format!("OpAMP server {}", self.fleet.server));
        loop {
            // Also between connections (and in the waits below): an install that ends
            // while the server is out of reach is recorded and activated all the same.
            self.poll_packages().await;
            let outcome = match self.fleet.transport {
                FleetTransport::Http => self.run_http(&mut shutdown, &mut reconnect).await,
                FleetTransport::WebSocket => self.run_ws(&mut shutdown, &mut reconnect).await,
            };
            let error = match outcome {
                Ok(()) => return,
                Err(e) => e,
            };
            // The server may have lost what it was told.
            self.reporter.forget();
            if let TransportError::Throttled {
                retry_after: Some(after),
                ..
            } = &error
            {
                // Bounded both ways: a zero must not make a busy loop of an overloaded
                // server, a century must not leave the device unmanaged.
                let delay = (*after).clamp(Duration::from_secs(1), THROTTLE_MAX);
                tracing::warn!(%error, retry_in = ?delay, "the OpAMP server asks to come back later");
                if self.pause(delay, &mut shutdown).await {
                    return;
                }
                continue;
            }
            let delay = reconnect.failure(&error);
            if self.pause(delay, &mut shutdown).await {
                return;
            }
        }
    }

    /// Plain HTTP: a POST when something changed, or every `interval` in any case.
    async fn run_http(
        &mut self,
        shutdown: &mut Shutdown,
        reconnect: &mut Reconnect,
    ) -> Result<(), TransportError> {
        let mut channel = HttpChannel::new(
            self.endpoint.clone(),
            self.fleet.server.clone(),
            &self.uid.text(),
        );
        let mut last_sent: Option<Instant> = None;
        loop {
            self.poll_packages().await;
            let due = last_sent.is_none_or(|t| t.elapsed() >= self.interval);
            // What the server's answer changed goes out at once, but at most once per
            // MIN_GAP: a server that asks for a full state in every answer gets one a
            // second, not a loop at network speed.
            let may = last_sent.is_none_or(|t| t.elapsed() >= MIN_GAP);
            if let Some((message, parts)) = self.next_message(due, may) {
                channel.set_uid(&self.uid.text());
                let answer = channel.exchange(message.encode_to_vec()).await?;
                self.reporter.sent(parts);
                if last_sent.is_none() {
                    reconnect.up();
                }
                last_sent = Some(Instant::now());
                if self.on_answer(&answer).await? {
                    reconnect.worked();
                }
                continue;
            }
            let until_due = last_sent.map_or(Duration::ZERO, |t| {
                self.interval.saturating_sub(t.elapsed())
            });
            if shutdown.sleep(until_due.min(CHECK_EVERY)).await {
                let bye = self.disconnect_message();
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    channel.exchange(bye.encode_to_vec()),
                )
                .await;
                return Ok(());
            }
        }
    }

    /// WebSocket: a first full report, then reports as things change, a heartbeat every
    /// `interval`, and the server's messages whenever they come. The server answers
    /// every message: no answer within `fleet.timeout` means the connection is dead
    /// (a half-open TCP connection shows no other way).
    async fn run_ws(
        &mut self,
        shutdown: &mut Shutdown,
        reconnect: &mut Reconnect,
    ) -> Result<(), TransportError> {
        let timeout = self.endpoint.timeout;
        let mut socket = WsChannel::open(&self.endpoint, &self.fleet.server).await?;
        reconnect.up();
        self.reporter.forget();
        let mut last_sent = Instant::now();
        let mut awaiting: Option<Instant> = None;
        let mut due = true;
        loop {
            self.poll_packages().await;
            let may = last_sent.elapsed() >= MIN_GAP || due;
            if let Some((message, parts)) = self.next_message(due, may) {
                self.endpoint
                    .timed(socket.send(message.encode_to_vec()))
                    .await?;
                self.reporter.sent(parts);
                last_sent = Instant::now();
                awaiting.get_or_insert(last_sent);
            }
            if awaiting.is_some_and(|t| t.elapsed() >= timeout) {
                return Err(TransportError::Timeout(timeout));
            }
            let wait = self
                .interval
                .saturating_sub(last_sent.elapsed())
                .min(CHECK_EVERY);
            tokio::select! {
                answer = socket.receive() => {
                    awaiting = None;
                    if self.on_answer(&answer?).await? {
                        reconnect.worked();
                    }
                    due = false;
                }
                _ = tokio::time::sleep(wait) => {
                    due = last_sent.elapsed() >= self.interval;
                }
                _ = shutdown.stopped() => {
                    let bye = self.disconnect_message();
                    let _ = tokio::time::timeout(Duration::from_secs(2), socket.send(bye.encode_to_vec())).await;
                    socket.close().await;
                    return Ok(());
                }
            }
        }
    }

    fn capabilities(&self) -> u64 {
        let mut bits = cap::REPORTS_STATUS
            | cap::ACCEPTS_REMOTE_CONFIG
            | cap::REPORTS_EFFECTIVE_CONFIG
            | cap::REPORTS_HEALTH
            | cap::REPORTS_REMOTE_CONFIG
            | cap::REPORTS_HEARTBEAT
            | cap::REPORTS_PACKAGE_STATUSES;
        if self.packages.accepts() {
            bits |= cap::ACCEPTS_PACKAGES;
        }
        bits
    }

    fn parts(&mut self) -> Parts {
        let remote = (self.remote != RemoteConfigStatus::default()).then(|| self.remote.clone());
        Parts {
            description: Some(report::description(&self.api, &self.uid.text())),
            health: Some(report::health(&self.api, self.started_unix_nano)),
            effective_config: Some(self.effective_config()),
            remote_config_status: remote,
            package_statuses: Some(self.packages.statuses()),
        }
    }

    /// The running config as reported (redacted once per config, not per check).
    fn effective_config(&mut self) -> EffectiveConfig {
        let text = self.api.status.config.text();
        if !Arc::ptr_eq(&self.effective.0, &text) {
            let report = report::effective_config(&report::redacted(&text));
            self.effective = (text, report);
        }
        self.effective.1.clone()
    }

    /// The next message: what changed (or everything, if the server asked), or a bare
    /// heartbeat when `due`; `None` if there is nothing to say yet, or if it is not
    /// `due` and not yet time (`may`) for another.
    fn next_message(&mut self, due: bool, may: bool) -> Option<(AgentToServer, Parts)> {
        if !due && !may {
            return None;
        }
        let parts = self.parts();
        let mut message = AgentToServer::default();
        let changed = self.reporter.fill(&parts, self.full_next, &mut message);
        if !(changed || due || self.full_next) {
            return None;
        }
        self.full_next = false;
        self.stamp(&mut message);
        Some((message, parts))
    }

    /// Sets the fields every message carries; each call takes the next sequence number.
    fn stamp(&mut self, message: &mut AgentToServer) {
        message.instance_uid = self.uid.0.to_vec();
        message.sequence_num = self.sequence;
        message.capabilities = self.capabilities();
        self.sequence += 1;
    }

    fn disconnect_message(&mut self) -> AgentToServer {
        let mut message = AgentToServer {
            agent_disconnect: Some(AgentDisconnect {}),
            ..AgentToServer::default()
        };
        self.stamp(&mut message);
        message
    }

    /// Carries out one `ServerToAgent`; true if it was one (the connection does its
    /// job). Garbage is logged and skipped: a broken server must not stop the client,
    /// let alone the agent.
    async fn on_answer(&mut self, bytes: &[u8]) -> Result<bool, TransportError> {
        let answer = match ServerToAgent::decode(bytes) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, len = bytes.len(), "unreadable message from the OpAMP server; ignored");
                return Ok(false);
            }
        };
        if !answer.instance_uid.is_empty() && answer.instance_uid != self.uid.0 {
            tracing::warn!("a message from the OpAMP server for another agent; ignored");
            return Ok(false);
        }
        if let Some(error) = answer.error_response {
            let kind = ServerErrorResponseType::try_from(error.r#type)
                .unwrap_or(ServerErrorResponseType::Unknown);
            if kind == ServerErrorResponseType::Unavailable {
                return Err(TransportError::Throttled {
                    status: hyper::StatusCode::SERVICE_UNAVAILABLE,
                    retry_after: error
                        .retry_info
                        .map(|r| Duration::from_nanos(r.retry_after_nanoseconds)),
                });
            }
            tracing::warn!(error = %error.error_message, kind = ?kind, "the OpAMP server refused a message");
            return Ok(true);
        }
        if let Some(id) = answer.agent_identification {
            match <[u8; 16]>::try_from(id.new_instance_uid.as_slice()) {
                Ok(bytes) if bytes == self.uid.0 => {}
                Ok(bytes) => {
                    self.uid = InstanceUid(bytes);
                    tracing::info!(instance_uid = %self.uid.text(), "the OpAMP server assigned a new instance uid");
                    if let Err(e) = self.store.set_instance_uid(self.uid) {
                        tracing::error!(error = %e, "cannot keep the new instance uid");
                    }
                    self.full_next = true;
                }
                Err(_) => tracing::warn!(
                    "the OpAMP server sent an instance uid that is not 16 bytes; ignored"
                ),
            }
        }
        if answer.flags & FLAG_REPORT_FULL_STATE != 0 {
            self.full_next = true;
        }
        if let Some(beat) = answer
            .connection_settings
            .and_then(|c| c.opamp)
            .map(|o| o.heartbeat_interval_seconds)
            .filter(|s| *s > 0)
        {
            self.interval = Duration::from_secs(beat).clamp(HEARTBEAT_BOUNDS.0, HEARTBEAT_BOUNDS.1);
        }
        if let Some(remote) = answer.remote_config {
            self.on_remote_config(remote).await;
        }
        if let Some(offer) = answer.packages_available {
            if self.packages.accepts() {
                // Installed in the background; `poll_packages` activates them.
                let dir = self.api.status.config.plugins_dir();
                self.packages
                    .offer(offer.packages, offer.all_packages_hash, &dir);
            } else {
                tracing::warn!(
                    "the OpAMP server offers packages, but fleet.trusted_keys is empty; ignored"
                );
            }
        }
        if answer.command.is_some() {
            tracing::warn!("the OpAMP server sent a command; this agent takes none");
        }
        Ok(true)
    }

    async fn on_remote_config(&mut self, remote: AgentRemoteConfig) {
        let same_hash = remote.config_hash == self.remote.last_remote_config_hash
            && self.remote.status != RemoteConfigStatuses::Unset as i32;
        let Some(map) = remote.config.filter(|_| !same_hash) else {
            return;
        };
        let hash = remote.config_hash;
        let file = map
            .config_map
            .get("")
            .or_else(|| map.config_map.get("outpost.toml"))
            .or_else(|| {
                let mut files = map.config_map.values();
                files.next().filter(|_| map.config_map.len() == 1)
            });
        let text = match file {
            None => Err("the remote config has no file named \"\" or \"outpost.toml\"".to_owned()),
            Some(f)
                if !matches!(
                    f.content_type.as_str(),
                    "" | "text/toml" | "application/toml"
                ) =>
            {
                Err(format!(
                    "content type `{}`: the agent takes text/toml",
                    f.content_type
                ))
            }
            Some(f) => String::from_utf8(f.body.clone())
                .map_err(|_| "the remote config is not UTF-8 text".to_owned()),
        };
        let outcome = match text {
            Ok(text) => {
                let config = RemoteConfig {
                    hash: hash.clone(),
                    toml: text,
                };
                let outcome = self.apply(&config).await;
                self.failed_remote = outcome.is_err().then_some(config);
                outcome
            }
            Err(e) => Err(e),
        };
        self.remote = match outcome {
            Ok(note) => {
                tracing::info!(hash = %crate::signing::to_hex(&hash), "remote config applied");
                status(&hash, RemoteConfigStatuses::Applied, note)
            }
            Err(e) => {
                tracing::error!(error = %e, "remote config refused; the running config stays");
                status(&hash, RemoteConfigStatuses::Failed, e)
            }
        };
    }

    /// Checks `remote` composed with the local file, has the agent switch to it through
    /// the reload path, and keeps it for the next start. Returns a note for `APPLIED`
    /// (the keys that wait for a restart), or why nothing changed.
    async fn apply(&mut self, remote: &RemoteConfig) -> Result<String, String> {
        let local = Config::load(&self.local_file).map_err(|e| format!("the local config: {e}"))?;
        let path = self.store.remote_config_path();
        let config = compose::compose(&local, &remote.toml, &path, &Env::capture())
            .map_err(|e| e.to_string())?;
        // Staged before the switch, so a config that runs can always be kept; made
        // the kept one by a rename once it runs (a kill -9 between leaves the old one).
        self.store
            .stage_remote_config(remote)
            .map_err(|e| format!("cannot keep it for the next start: {e}"))?;
        let (tx, rx) = oneshot::channel();
        self.api
            .control
            .send(Control::Apply(Box::new(config), tx))
            .await
            .map_err(|_| "the agent is stopping".to_owned())?;
        let restart = rx
            .await
            .map_err(|_| "the agent is stopping".to_owned())?
            .map_err(|e| e.to_string())?;
        self.store
            .set_remote_config(remote)
            .map_err(|e| format!("applied, but cannot be kept for the next start: {e}"))?;
        Ok(if restart.is_empty() {
            String::new()
        } else {
            format!(
                "applied; takes effect at the next restart: {}",
                restart.join(", ")
            )
        })
    }

    /// Waits `delay` (false) or until shutdown (true), finishing package installs
    /// meanwhile: a throttling server may ask for an hour.
    async fn pause(&mut self, delay: Duration, shutdown: &mut Shutdown) -> bool {
        let until = Instant::now() + delay;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            if shutdown.sleep(left.min(CHECK_EVERY)).await {
                return true;
            }
            self.poll_packages().await;
        }
    }

    /// Activates the packages an install in the background finished, and installs
    /// again what failed for a passing reason (a download cut off) once its backoff
    /// is over.
    async fn poll_packages(&mut self) {
        let dir = self.api.status.config.plugins_dir();
        let installed = self.packages.poll(&dir).await;
        if !installed.is_empty() {
            self.activate_packages().await;
        }
    }

    /// New plugin files are in place: the remote config that failed for want of them
    /// is tried again, or else the running config reloads to pick them up.
    async fn activate_packages(&mut self) {
        if let Some(config) = self.failed_remote.take() {
            tracing::info!("trying the refused remote config again with the new packages");
            let hash = config.hash.clone();
            match self.apply(&config).await {
                Ok(note) => {
                    self.remote = status(&hash, RemoteConfigStatuses::Applied, note);
                    return;
                }
                Err(e) => {
                    self.failed_remote = Some(config);
                    self.remote = status(&hash, RemoteConfigStatuses::Failed, e);
                }
            }
        }
        let (tx, rx) = oneshot::channel();
        if self.api.control.send(Control::Reload(tx)).await.is_ok() {
            match rx.await {
                Ok(Ok(generation)) => tracing::info!(generation, "new plugin packages active"),
                Ok(Err(e)) => tracing::error!(error = %e, "reload with the new packages refused"),
                Err(_) => {}
            }
        }
    }
}
