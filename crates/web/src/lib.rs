//! `peddlenet-web`: the local web UI. A browser on this machine gets rooms,
//! chat with live updates, invites as QR codes, guest passes and the mesh;
//! a phone on the LAN, given a guest pass by QR code, gets one room under a
//! nickname, with no app installed.
//!
//! It runs inside `peddlenetd` but talks to the daemon only through the IPC
//! API (`peddlenet-api`), like any other front end. Every asset is embedded
//! in the binary: nothing is fetched from anywhere else.
//!
//! Who may do what:
//! - **The owner** signs in with a one-time link from `peddlenet web` or the
//!   desktop app (both got over the private IPC socket), which gives the
//!   browser an owner session.
//! - **A guest** opens `/g/<token>` (the guest QR code). The session then
//!   holds the token; every guest request hands it to the daemon, which
//!   confines it to the pass's room and refuses it once expired or revoked.
//! - Everything else is refused. [`guard`] has the Host, Origin, session
//!   token and rate checks every request passes; bodies are capped at
//!   [`MAX_BODY`].
//!
//! Resources are bounded per client: connections per address and in all,
//! with a header-read and an idle timeout ([`conn`]); sessions per guest
//! pass and per address ([`session`]); event streams per session, per pass
//! and per kind of user ([`streams`]); requests per session ([`guard`]).

mod conn;
pub mod guard;
mod routes;
mod session;
mod streams;

/// Entry points for the fuzz targets in fuzz/; not an API.
#[doc(hidden)]
pub mod fuzzing {
    /// Parses `b` as each JSON body the HTTP API takes (and as the history
    /// page's query string), as the handlers do.
    pub fn json_bodies(b: &[u8]) {
        crate::routes::parse_untrusted(b)
    }
}

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use peddlenet_api::{Client, ClientError, Event};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};

use crate::guard::{AllowedHosts, RateLimiter};
use crate::session::Sessions;
use crate::streams::Streams;

/// The default address of the web UI: this machine only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4718";
/// Largest request body accepted (a message is at most 32 KiB of text).
pub const MAX_BODY: usize = 64 * 1024;
/// API requests per second per session, and the burst allowed.
pub const PER_SESSION_RATE: (f64, u32) = (20.0, 60);
/// API requests per second per client address for requests without a
/// session (sign-in, guest passes), and the burst allowed.
pub const PER_ADDRESS_RATE: (f64, u32) = (20.0, 60);
/// Messages per second per guest pass, and the burst allowed.
pub const PER_GUEST_RATE: (f64, u32) = (1.0, 5);
/// Client addresses and guest passes whose rate is tracked at once.
const RATE_KEYS: usize = 4096;
/// A request (its body included) must be answered within this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default: a connection must send a request's headers within this once it
/// is waiting for one (a new connection, or a kept-alive one between requests).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default: a connection with nothing read or written for this long is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default: connections open at once, all clients together.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Default: connections open at once from one client address.
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 128;
/// How often changed sessions are written to the data folder.
const SESSIONS_SAVE_EVERY: Duration = Duration::from_secs(1);
/// Events buffered for slow streams before they are told to reload.
const EVENT_BUFFER: usize = 256;

/// Where the web UI listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfig {
    /// A specific address (not 0.0.0.0): by default 127.0.0.1:4718.
    pub listen: SocketAddr,
    /// LAN mode: also listen, on the same port, on this interface's IPv4
    /// address, and give guests URLs there.
    pub lan_interface: Option<String>,
    /// Connections, timeouts.
    pub limits: ConnLimits,
    /// Where sessions are kept across restarts (the daemon's data folder);
    /// none: in memory only.
    pub state_dir: Option<PathBuf>,
}

/// Bounds on connections (see [`conn`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        }
    }
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("a valid address"),
            lan_interface: None,
            limits: ConnLimits::default(),
            state_dir: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(
        "the web UI must listen on a specific address, not {0}; for phones on the LAN set [web] lan_interface"
    )]
    Unspecified(SocketAddr),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("LAN mode: no network interface named {0:?} (see `ip -brief addr`)")]
    NoInterface(String),
    #[error("LAN mode: interface {0:?} has no IPv4 address yet")]
    NoAddress(String),
    #[error("cannot list network interfaces: {0}")]
    Interfaces(std::io::Error),
    #[error(
        "LAN mode: {0:?} is a loopback interface, which no phone can reach; pick the interface of the camp's network"
    )]
    Loopback(String),
    #[error("LAN mode: an interface name is at most {max} bytes, not {0}", max = peddlenet_api::MAX_INTERFACE_NAME)]
    NameTooLong(usize),
}

/// The web UI's listening sockets, bound and not yet serving.
pub struct Web {
    listeners: Vec<TcpListener>,
    local_url: String,
    lan_url: Option<String>,
    hosts: Arc<RwLock<AllowedHosts>>,
    extra: (mpsc::Sender<Extra>, mpsc::Receiver<Extra>),
    limits: ConnLimits,
    state_dir: Option<PathBuf>,
}

/// A listener opened after start, and what closes it.
type Extra = (TcpListener, watch::Receiver<bool>);

/// Most listeners opened after start at once.
const MAX_EXTRA: usize = 4;

/// Opens and closes listeners on addresses that come and go while the web UI
/// runs (a Wi-Fi Direct group this node hosts for phones, LAN mode), on the
/// web UI's port, and makes their `Host` allowed for as long as they are open.
/// Each address is counted by its users: LAN mode and a hosted group on the
/// same address share one listener, which stays until both have closed it.
#[derive(Clone)]
pub struct ExtraListeners {
    port: u16,
    hosts: Arc<RwLock<AllowedHosts>>,
    tx: mpsc::Sender<Extra>,
    open: Arc<Mutex<std::collections::HashMap<IpAddr, Opened>>>,
}

/// An extra listener's stop switch and how many users hold it open.
struct Opened {
    stop: watch::Sender<bool>,
    users: usize,
}

impl ExtraListeners {
    /// The web UI's port, which every listener shares.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts serving on `ip` (same port as the local address), or counts
    /// one more user of a listener already there; returns the URL. Each
    /// successful `open` is undone by one [`close`](Self::close).
    pub async fn open(&self, ip: IpAddr) -> Result<String, WebError> {
        let at = SocketAddr::new(ip, self.port);
        if let Some(o) = self.open.lock().expect("lock").get_mut(&ip) {
            o.users += 1;
            return Ok(format!("http://{at}"));
        }
        if self.open.lock().expect("lock").len() >= MAX_EXTRA {
            return Err(WebError::Bind(
                at,
                std::io::Error::other("too many extra listeners"),
            ));
        }
        let l = TcpListener::bind(at)
            .await
            .map_err(|e| WebError::Bind(at, e))?;
        let (stop_tx, stop_rx) = watch::channel(false);
        {
            let mut open = self.open.lock().expect("lock");
            if let Some(o) = open.get_mut(&ip) {
                // Another user opened it while this one was binding.
                o.users += 1;
                return Ok(format!("http://{at}"));
            }
            self.hosts.write().expect("lock").add(at);
            open.insert(
                ip,
                Opened {
                    stop: stop_tx,
                    users: 1,
                },
            );
        }
        if self.tx.send((l, stop_rx)).await.is_err() {
            self.close(ip);
            return Err(WebError::Bind(
                at,
                std::io::Error::other("the web UI has stopped"),
            ));
        }
        Ok(format!("http://{at}"))
    }

    /// One user is done with `ip`: when it was the last, stops serving there
    /// and forgets its Host.
    pub fn close(&self, ip: IpAddr) {
        let mut open = self.open.lock().expect("lock");
        let Some(o) = open.get_mut(&ip) else {
            return;
        };
        o.users -= 1;
        if o.users > 0 {
            return;
        }
        if let Some(o) = open.remove(&ip) {
            let _ = o.stop.send(true);
        }
        self.hosts
            .write()
            .expect("lock")
            .remove(SocketAddr::new(ip, self.port));
    }
}

/// The IPv4 address of interface `name`.
pub fn interface_ipv4(name: &str) -> Result<IpAddr, WebError> {
    let all = if_addrs::get_if_addrs().map_err(WebError::Interfaces)?;
    let mine: Vec<_> = all.into_iter().filter(|i| i.name == name).collect();
    if mine.is_empty() {
        return Err(WebError::NoInterface(name.into()));
    }
    mine.iter()
        .map(|i| i.ip())
        .find(IpAddr::is_ipv4)
        .ok_or_else(|| WebError::NoAddress(name.into()))
}

/// The interfaces LAN mode may use: each with an IPv4 address that is not
/// loopback (its first such address), sorted by name.
pub fn lan_candidates() -> Result<Vec<(String, IpAddr)>, WebError> {
    let mut out: Vec<(String, IpAddr)> = Vec::new();
    for i in if_addrs::get_if_addrs().map_err(WebError::Interfaces)? {
        let ip = i.ip();
        if i.is_loopback() || ip.is_loopback() || !ip.is_ipv4() {
            continue;
        }
        if !out.iter().any(|(n, _)| *n == i.name) {
            out.push((i.name, ip));
        }
    }
    out.sort();
    Ok(out)
}

/// The address LAN mode would use on interface `name`: its IPv4 address;
/// refused for a name too long, unknown, loopback, or with no IPv4 address.
pub fn lan_address(name: &str) -> Result<IpAddr, WebError> {
    if name.len() > peddlenet_api::MAX_INTERFACE_NAME {
        return Err(WebError::NameTooLong(name.len()));
    }
    let all = if_addrs::get_if_addrs().map_err(WebError::Interfaces)?;
    let mine: Vec<_> = all.into_iter().filter(|i| i.name == name).collect();
    if mine.is_empty() {
        return Err(WebError::NoInterface(name.into()));
    }
    if mine.iter().any(|i| i.is_loopback() || i.ip().is_loopback()) {
        return Err(WebError::Loopback(name.into()));
    }
    mine.iter()
        .map(|i| i.ip())
        .find(IpAddr::is_ipv4)
        .ok_or_else(|| WebError::NoAddress(name.into()))
}

impl Web {
    /// Binds the listening sockets (and, in LAN mode, finds the interface's
    /// address): errors here say why the web UI is off.
    pub async fn bind(cfg: &WebConfig) -> Result<Self, WebError> {
        if cfg.listen.ip().is_unspecified() {
            return Err(WebError::Unspecified(cfg.listen));
        }
        let local = TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| WebError::Bind(cfg.listen, e))?;
        let local_addr = local
            .local_addr()
            .map_err(|e| WebError::Bind(cfg.listen, e))?;
        let mut addrs = vec![local_addr];
        let mut listeners = vec![local];
        let mut lan_url = None;
        if let Some(name) = &cfg.lan_interface {
            let at = SocketAddr::new(interface_ipv4(name)?, local_addr.port());
            let l = TcpListener::bind(at)
                .await
                .map_err(|e| WebError::Bind(at, e))?;
            lan_url = Some(format!("http://{at}"));
            addrs.push(at);
            listeners.push(l);
        }
        Ok(Self {
            listeners,
            local_url: format!("http://{local_addr}"),
            lan_url,
            hosts: Arc::new(RwLock::new(AllowedHosts::for_addrs(&addrs))),
            extra: mpsc::channel(MAX_EXTRA),
            limits: cfg.limits,
            state_dir: cfg.state_dir.clone(),
        })
    }

    /// `http://127.0.0.1:4718`, say (no trailing slash).
    pub fn local_url(&self) -> &str {
        &self.local_url
    }

    /// The LAN address's URL, in LAN mode.
    pub fn lan_url(&self) -> Option<&str> {
        self.lan_url.as_deref()
    }

    /// The handle that adds listeners while this runs.
    pub fn extra_listeners(&self) -> ExtraListeners {
        let port = self
            .listeners
            .first()
            .and_then(|l| l.local_addr().ok())
            .map_or(0, |a| a.port());
        ExtraListeners {
            port,
            hosts: self.hosts.clone(),
            tx: self.extra.0.clone(),
            open: Arc::default(),
        }
    }

    /// Serves until `stop` turns true, talking to the daemon at `socket`.
    pub async fn run(self, socket: PathBuf, stop: watch::Receiver<bool>) {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let limits = self.limits;
        let state = Arc::new(State {
            socket,
            client: tokio::sync::Mutex::new(None),
            hosts: self.hosts,
            sessions: Mutex::new(match &self.state_dir {
                Some(dir) => Sessions::load(dir, std::time::Instant::now()),
                None => Sessions::new(),
            }),
            per_session: Mutex::new(RateLimiter::new(
                PER_SESSION_RATE.0,
                PER_SESSION_RATE.1,
                RATE_KEYS,
            )),
            per_address: Mutex::new(RateLimiter::new(
                PER_ADDRESS_RATE.0,
                PER_ADDRESS_RATE.1,
                RATE_KEYS,
            )),
            per_guest: Mutex::new(RateLimiter::new(
                PER_GUEST_RATE.0,
                PER_GUEST_RATE.1,
                RATE_KEYS,
            )),
            events,
            streams: Arc::default(),
            keep_alive: (limits.idle_timeout / 3)
                .clamp(Duration::from_millis(200), Duration::from_secs(15)),
        });
        tokio::spawn(relay_events(state.clone(), stop.clone()));
        let saver = tokio::spawn(save_sessions(state.clone(), stop.clone()));
        let app = routes::router(state);
        let conns = conn::Conns::new(limits);
        let serve = |l: TcpListener, stop: watch::Receiver<bool>, also: watch::Receiver<bool>| {
            tokio::spawn(conn::serve(l, app.clone(), conns.clone(), stop, also))
        };
        let (_never_tx, never) = watch::channel(false);
        let mut servers = Vec::new();
        for l in self.listeners {
            servers.push(serve(l, stop.clone(), never.clone()));
        }
        let (_keep, mut extra) = self.extra;
        let mut stopping = stop.clone();
        loop {
            tokio::select! {
                _ = stopping.wait_for(|s| *s) => break,
                Some((l, closed)) = extra.recv() => {
                    servers.retain(|s| !s.is_finished());
                    servers.push(serve(l, stop.clone(), closed));
                }
            }
        }
        for s in servers {
            // Open event streams would hold graceful shutdown: don't wait long.
            let _ = tokio::time::timeout(Duration::from_secs(2), s).await;
        }
        let _ = saver.await;
    }
}

pub(crate) struct State {
    socket: PathBuf,
    client: tokio::sync::Mutex<Option<Client>>,
    hosts: Arc<RwLock<AllowedHosts>>,
    sessions: Mutex<Sessions>,
    per_session: Mutex<RateLimiter<String>>,
    per_address: Mutex<RateLimiter<IpAddr>>,
    per_guest: Mutex<RateLimiter<String>>,
    /// The daemon's events, for every open stream.
    events: broadcast::Sender<Arc<Event>>,
    streams: Arc<Mutex<Streams>>,
    /// How often an event stream sends a comment to keep its connection
    /// from idling out.
    keep_alive: Duration,
}

impl State {
    /// A connected client, reconnecting if the last one failed.
    async fn client(&self) -> Result<Client, ClientError> {
        let mut c = self.client.lock().await;
        if let Some(c) = c.as_ref() {
            return Ok(c.clone());
        }
        let new = Client::connect(&self.socket).await?;
        *c = Some(new.clone());
        Ok(new)
    }

    /// Forgets a client whose connection failed.
    async fn drop_client(&self) {
        *self.client.lock().await = None;
    }
}

/// Writes the sessions file when sessions changed, at most once a second
/// (a guest's every message changes it), outside the sessions' lock; once
/// more on the way out.
async fn save_sessions(state: Arc<State>, mut stop: watch::Receiver<bool>) {
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(SESSIONS_SAVE_EVERY) => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        let snap = state.sessions.lock().expect("lock").snapshot();
        if let Some(snap) = snap {
            let _ = tokio::task::spawn_blocking(move || session::write_snapshot(snap)).await;
        }
        if stopping {
            return;
        }
    }
}

/// Keeps one subscription to the daemon and hands its events to every
/// stream; reconnects while the daemon runs.
async fn relay_events(state: Arc<State>, stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        let sub = match Client::connect(&state.socket).await {
            Ok(c) => c.subscribe().await.map(|s| (c, s)),
            Err(e) => Err(e),
        };
        match sub {
            Ok((_client, mut events)) => {
                // Open views may have missed events while there was no
                // subscription (the daemon restarting): they reload.
                let _ = state.events.send(Arc::new(Event::Lagged { missed: 0 }));
                while let Some(e) = events.next().await {
                    // No stream open is fine.
                    let _ = state.events.send(Arc::new(e));
                }
            }
            Err(e) => tracing::debug!(error = %e, "web UI: no event subscription yet"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(at: SocketAddr, host: &str) -> std::io::Result<String> {
        let mut s = tokio::net::TcpStream::connect(at).await?;
        s.write_all(
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        Ok(out.lines().next().unwrap_or_default().to_owned())
    }

    /// A listener opened later (a hosted Wi-Fi group's address) serves the
    /// page, its Host is allowed while it is open, and both end with `close`.
    #[tokio::test]
    async fn extra_listeners_open_and_close() {
        let web = Web::bind(&WebConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..WebConfig::default()
        })
        .await
        .unwrap();
        let port = web.listeners[0].local_addr().unwrap().port();
        let extra = web.extra_listeners();
        let (stop_tx, stop) = watch::channel(false);
        let dir = std::env::temp_dir().join("no-daemon-here.sock");
        let task = tokio::spawn(web.run(dir, stop));
        let local = SocketAddr::from(([127, 0, 0, 1], port));
        let group = SocketAddr::from(([127, 0, 0, 2], port));
        assert!(
            !get(local, &group.to_string())
                .await
                .unwrap()
                .contains(" 200"),
            "an unknown Host is refused"
        );
        assert!(
            get(group, &group.to_string()).await.is_err(),
            "nothing listens there yet"
        );

        let url = extra.open(group.ip()).await.unwrap();
        assert_eq!(url, format!("http://{group}"));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            get(group, &group.to_string())
                .await
                .unwrap()
                .contains(" 200")
        );
        assert!(
            get(local, &group.to_string())
                .await
                .unwrap()
                .contains(" 200"),
            "its Host is one of ours now"
        );
        assert!(
            !get(group, "evil.example:80")
                .await
                .unwrap()
                .contains(" 200"),
            "other Hosts are still refused"
        );

        // LAN mode on the same address shares the listener: the group's
        // close leaves it to LAN mode, whose close ends it.
        assert_eq!(extra.open(group.ip()).await.unwrap(), url);
        extra.close(group.ip());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(
            get(group, &group.to_string())
                .await
                .unwrap()
                .contains(" 200"),
            "still open for its other user"
        );
        extra.close(group.ip());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(get(group, &group.to_string()).await.is_err(), "closed");
        assert!(
            !get(local, &group.to_string())
                .await
                .unwrap()
                .contains(" 200"),
            "its Host is refused again"
        );
        stop_tx.send(true).unwrap();
        task.await.unwrap();
    }
}
