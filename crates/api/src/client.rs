//! The typed async client. Cheap to clone; requests from several tasks are
//! pipelined over one connection.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};

use crate::frame::{self, FrameError};
use crate::schema::*;

/// Events buffered for a subscriber before the oldest are dropped (and a
/// [`Event::Lagged`] says how many).
pub const EVENT_BUFFER: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("peddlenetd is not running (no daemon answers at {0}); start it with `peddlenetd`")]
    NotRunning(PathBuf),
    #[error("cannot reach peddlenetd at {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the daemon at {path} runs as uid {uid}, not as you: refusing to talk to it")]
    Untrusted { path: PathBuf, uid: u32 },
    #[error("connection to peddlenetd lost")]
    Closed,
    /// The daemon said why it closed this connection (too many clients, a
    /// broken frame) before closing it.
    #[error("peddlenetd closed the connection: {0}")]
    Refused(ApiError),
    #[error("bad frame from peddlenetd: {0}")]
    Frame(#[from] FrameError),
    #[error("unexpected reply from peddlenetd: {0}")]
    Protocol(String),
    #[error(transparent)]
    Api(#[from] ApiError),
}

type Pending = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<Outcome>>>>>;

struct Inner {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Pending,
    /// An error the daemon sent about the connection itself (reply id 0,
    /// which no request has) before closing it.
    farewell: Arc<Mutex<Option<ApiError>>>,
    next_id: AtomicU64,
    events: Mutex<Option<mpsc::Receiver<Event>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

/// Live events after [`Client::subscribe`].
pub struct EventStream {
    rx: mpsc::Receiver<Event>,
}

impl EventStream {
    /// The next event; `None` once the daemon is gone.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl Client {
    /// Connects to the daemon at `path`.
    pub async fn connect(path: &Path) -> Result<Self, ClientError> {
        let stream = match UnixStream::connect(path).await {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(ClientError::NotRunning(path.to_owned()));
            }
            Err(source) => {
                return Err(ClientError::Connect {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        // Where the socket lives in a shared folder (/tmp), another user could
        // have put a daemon of theirs there to collect invites and texts.
        let uid = crate::paths::current_uid();
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == uid || cred.uid() == 0 => {}
            Ok(cred) => {
                return Err(ClientError::Untrusted {
                    path: path.to_owned(),
                    uid: cred.uid(),
                });
            }
            Err(source) => {
                return Err(ClientError::Connect {
                    path: path.to_owned(),
                    source,
                });
            }
        }
        let (mut rd, wr) = stream.into_split();
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_BUFFER);
        let pend = pending.clone();
        let farewell: Arc<Mutex<Option<ApiError>>> = Arc::default();
        let last_word = farewell.clone();
        let reader = tokio::spawn(async move {
            let mut missed = 0u64;
            loop {
                let payload = match frame::read_frame(&mut rd).await {
                    Ok(Some(p)) => p,
                    Ok(None) | Err(_) => break,
                };
                let f = match serde_json::from_slice::<ServerFrame>(&payload) {
                    Ok(f) => f,
                    Err(e) => {
                        // A reply this client cannot read still answers its
                        // request: fail it rather than leave it waiting.
                        let id = serde_json::from_slice::<serde_json::Value>(&payload)
                            .ok()
                            .and_then(|v| v["reply"]["id"].as_u64());
                        let tx = id.and_then(|id| {
                            pend.lock()
                                .expect("lock")
                                .as_mut()
                                .and_then(|m| m.remove(&id))
                        });
                        match tx {
                            Some(tx) => {
                                let _ = tx.send(Outcome::Error(crate::ApiError::new(
                                    crate::ErrorCode::Internal,
                                    format!("the daemon's reply could not be read (is it another version of PeddleNet?): {e}"),
                                )));
                            }
                            None => {
                                tracing::warn!(error = %e, "ignoring an unparseable frame from the daemon")
                            }
                        }
                        continue;
                    }
                };
                match f {
                    ServerFrame::Reply(r) => {
                        let tx = pend
                            .lock()
                            .expect("lock")
                            .as_mut()
                            .and_then(|m| m.remove(&r.id));
                        match (tx, r.outcome) {
                            (Some(tx), outcome) => {
                                let _ = tx.send(outcome);
                            }
                            (None, Outcome::Error(e)) if r.id == 0 => {
                                *last_word.lock().expect("lock") = Some(e);
                            }
                            (None, _) => {}
                        }
                    }
                    ServerFrame::Event(e) => {
                        if missed > 0 && ev_tx.try_send(Event::Lagged { missed }).is_ok() {
                            missed = 0;
                        }
                        match ev_tx.try_send(e) {
                            Ok(()) => {}
                            Err(mpsc::error::TrySendError::Full(_)) => missed += 1,
                            Err(mpsc::error::TrySendError::Closed(_)) => {}
                        }
                    }
                }
            }
            // Fail every request still waiting: the connection is gone.
            pend.lock().expect("lock").take();
        });
        Ok(Self {
            inner: Arc::new(Inner {
                writer: tokio::sync::Mutex::new(wr),
                pending,
                farewell,
                next_id: AtomicU64::new(1),
                events: Mutex::new(Some(ev_rx)),
                reader,
            }),
        })
    }

    /// Connects to the daemon at the default socket path.
    pub async fn connect_default() -> Result<Self, ClientError> {
        Self::connect(&crate::paths::default_socket_path()).await
    }

    /// Sends one request and waits for its reply.
    pub async fn call(&self, request: Request) -> Result<Response, ClientError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        match self.inner.pending.lock().expect("lock").as_mut() {
            Some(m) => m.insert(id, tx),
            None => return Err(self.closed()),
        };
        let payload = serde_json::to_vec(&ClientFrame { id, request }).expect("requests serialize");
        let bytes = frame::encode(&payload)?;
        let written = {
            let mut w = self.inner.writer.lock().await;
            w.write_all(&bytes).await.is_ok()
        };
        if !written {
            // The daemon closed the connection, perhaps saying why first (it
            // refuses a client beyond its limit at once): let the reader
            // reach the end of what was sent, then tell that.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), rx).await;
            return Err(self.closed());
        }
        match rx.await {
            Ok(Outcome::Ok(r)) => Ok(r),
            Ok(Outcome::Error(e)) => Err(ClientError::Api(e)),
            Err(_) => Err(self.closed()),
        }
    }

    /// Why the connection is gone: what the daemon said, if it said anything.
    fn closed(&self) -> ClientError {
        match self.inner.farewell.lock().expect("lock").clone() {
            Some(e) => ClientError::Refused(e),
            None => ClientError::Closed,
        }
    }

    /// Asks the daemon for events; returns the stream (once per client).
    pub async fn subscribe(&self) -> Result<EventStream, ClientError> {
        let rx = self
            .inner
            .events
            .lock()
            .expect("lock")
            .take()
            .ok_or_else(|| ClientError::Protocol("already subscribed".into()))?;
        self.call(Request::Subscribe).await?;
        Ok(EventStream { rx })
    }

    pub async fn status(&self) -> Result<Status, ClientError> {
        match self.call(Request::Status).await? {
            Response::Status(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    pub async fn peers(&self) -> Result<Vec<PeerInfo>, ClientError> {
        match self.call(Request::Peers).await? {
            Response::Peers { peers } => Ok(peers),
            other => Err(unexpected(other)),
        }
    }

    pub async fn dial(&self, addr: &str) -> Result<(), ClientError> {
        self.done(Request::Dial { addr: addr.into() }).await
    }

    pub async fn set_display_name(&self, name: &str) -> Result<(), ClientError> {
        self.done(Request::SetDisplayName { name: name.into() })
            .await
    }

    pub async fn settings(&self) -> Result<Settings, ClientError> {
        match self.call(Request::Settings).await? {
            Response::Settings(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// Changes the settings `update` names; answers with all of them.
    pub async fn set_settings(&self, update: SettingsUpdate) -> Result<Settings, ClientError> {
        match self.call(Request::SetSettings(update)).await? {
            Response::Settings(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    pub async fn guest_create(
        &self,
        room: &str,
        ttl_seconds: Option<u32>,
    ) -> Result<GuestInfo, ClientError> {
        self.guest(Request::GuestCreate {
            room: room.into(),
            ttl_seconds,
        })
        .await
    }

    pub async fn guest_list(&self) -> Result<Vec<GuestInfo>, ClientError> {
        match self.call(Request::GuestList).await? {
            Response::Guests { guests } => Ok(guests),
            other => Err(unexpected(other)),
        }
    }

    pub async fn guest_revoke(&self, id: &str) -> Result<(), ClientError> {
        self.done(Request::GuestRevoke { id: id.into() }).await
    }

    pub async fn guest_check(&self, token: &str) -> Result<GuestInfo, ClientError> {
        self.guest(Request::GuestCheck {
            token: token.into(),
        })
        .await
    }

    pub async fn guest_send(
        &self,
        token: &str,
        nickname: &str,
        text: &str,
    ) -> Result<MessageInfo, ClientError> {
        match self
            .call(Request::GuestSend {
                token: token.into(),
                nickname: nickname.into(),
                text: text.into(),
            })
            .await?
        {
            Response::Sent(m) => Ok(m),
            other => Err(unexpected(other)),
        }
    }

    pub async fn guest_history(
        &self,
        token: &str,
        before: Option<String>,
    ) -> Result<(Vec<MessageInfo>, Option<String>), ClientError> {
        match self
            .call(Request::GuestHistory {
                token: token.into(),
                before,
            })
            .await?
        {
            Response::History { messages, next } => Ok((messages, next)),
            other => Err(unexpected(other)),
        }
    }

    /// A one-time link signing a browser in to the web UI, and when it expires.
    pub async fn web_login(&self) -> Result<(String, u64), ClientError> {
        match self.call(Request::WebLogin).await? {
            Response::WebLogin { url, expires_ms } => Ok((url, expires_ms)),
            other => Err(unexpected(other)),
        }
    }

    /// The Wi-Fi network this node hosts for phones (`wifi_off` if none).
    pub async fn wifi_hotspot(&self) -> Result<WifiHotspot, ClientError> {
        match self.call(Request::WifiHotspot).await? {
            Response::WifiHotspot(h) => Ok(h),
            other => Err(unexpected(other)),
        }
    }

    pub async fn web_redeem(&self, code: &str) -> Result<(), ClientError> {
        self.done(Request::WebRedeem { code: code.into() }).await
    }

    async fn guest(&self, r: Request) -> Result<GuestInfo, ClientError> {
        match self.call(r).await? {
            Response::Guest(g) => Ok(g),
            other => Err(unexpected(other)),
        }
    }

    pub async fn room_create(&self, name: &str) -> Result<RoomInfo, ClientError> {
        self.room(Request::RoomCreate { name: name.into() }).await
    }

    pub async fn room_join(&self, invite: &str) -> Result<RoomInfo, ClientError> {
        self.room(Request::RoomJoin {
            invite: invite.into(),
        })
        .await
    }

    pub async fn room_invite(&self, room: &str) -> Result<(RoomInfo, String), ClientError> {
        match self.call(Request::RoomInvite { room: room.into() }).await? {
            Response::Invite { room, uri } => Ok((room, uri)),
            other => Err(unexpected(other)),
        }
    }

    pub async fn room_leave(&self, room: &str) -> Result<(), ClientError> {
        self.done(Request::RoomLeave { room: room.into() }).await
    }

    pub async fn room_list(&self) -> Result<Vec<RoomInfo>, ClientError> {
        match self.call(Request::RoomList).await? {
            Response::Rooms { rooms } => Ok(rooms),
            other => Err(unexpected(other)),
        }
    }

    /// Sends a text; returns once the daemon holds it on disk.
    pub async fn send(&self, room: &str, text: &str) -> Result<MessageInfo, ClientError> {
        match self
            .call(Request::Send {
                room: room.into(),
                text: text.into(),
            })
            .await?
        {
            Response::Sent(m) => Ok(m),
            other => Err(unexpected(other)),
        }
    }

    /// A page of history, newest first; pass the returned cursor to go further back.
    pub async fn history(
        &self,
        room: &str,
        before: Option<String>,
        limit: Option<u32>,
    ) -> Result<(Vec<MessageInfo>, Option<String>), ClientError> {
        match self
            .call(Request::History {
                room: room.into(),
                before,
                limit,
            })
            .await?
        {
            Response::History { messages, next } => Ok((messages, next)),
            other => Err(unexpected(other)),
        }
    }

    async fn room(&self, r: Request) -> Result<RoomInfo, ClientError> {
        match self.call(r).await? {
            Response::Room(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    async fn done(&self, r: Request) -> Result<(), ClientError> {
        match self.call(r).await? {
            Response::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(r: Response) -> ClientError {
    ClientError::Protocol(format!("unexpected response {r:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape_is_stable() {
        // The JSON other clients (web UI, scripts) rely on.
        let f = ClientFrame {
            id: 7,
            request: Request::Send {
                room: "camp".into(),
                text: "hi".into(),
            },
        };
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"id":7,"method":"send","params":{"room":"camp","text":"hi"}}"#
        );
        let s = ClientFrame {
            id: 1,
            request: Request::Status,
        };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"id":1,"method":"status"}"#
        );
        let r = ServerFrame::Reply(Reply {
            id: 7,
            outcome: Outcome::Error(ApiError::new(ErrorCode::UnknownRoom, "no room")),
        });
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"reply":{"id":7,"error":{"code":"unknown_room","message":"no room"}}}"#
        );
        let back: ServerFrame = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    proptest::proptest! {
        /// The request and reply decoders never panic, whatever the payload.
        #[test]
        fn json_decoders_survive_any_payload(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512), s in "\\PC{0,200}") {
            let _ = serde_json::from_slice::<ClientFrame>(&b);
            let _ = serde_json::from_slice::<ServerFrame>(&b);
            let _ = serde_json::from_str::<ClientFrame>(&s);
            let _ = serde_json::from_str::<ClientFrame>(&format!(r#"{{"id":1,"method":"send","params":{{"room":{s:?},"text":{s:?}}}}}"#));
        }

        #[test]
        fn requests_round_trip(id in 0u64.., room in "\\PC{0,40}", text in "\\PC{0,200}", limit in proptest::option::of(0u32..1000)) {
            for request in [
                Request::Send { room: room.clone(), text: text.clone() },
                Request::History { room: room.clone(), before: Some(text.clone()), limit },
                Request::RoomJoin { invite: text.clone() },
            ] {
                let f = ClientFrame { id, request };
                let back: ClientFrame = serde_json::from_slice(&serde_json::to_vec(&f).unwrap()).unwrap();
                proptest::prop_assert_eq!(back, f);
            }
        }
    }

    /// A daemon whose reply this client cannot read (another version): the
    /// request fails with a reason instead of waiting forever.
    #[tokio::test]
    async fn an_unreadable_reply_fails_its_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            while let Ok(Some(req)) = frame::read_frame(&mut s).await {
                let id = serde_json::from_slice::<serde_json::Value>(&req).unwrap()["id"]
                    .as_u64()
                    .unwrap();
                let reply =
                    format!(r#"{{"reply":{{"id":{id},"ok":{{"type":"status","version":"9"}}}}}}"#);
                frame::write_frame(&mut s, reply.as_bytes()).await.unwrap();
            }
        });
        let c = Client::connect(&path).await.unwrap();
        let e = tokio::time::timeout(std::time::Duration::from_secs(5), c.status())
            .await
            .expect("an answer, not a hang")
            .unwrap_err();
        assert!(e.to_string().contains("another version"), "{e}");
    }

    #[tokio::test]
    async fn a_missing_daemon_is_reported_as_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let err = Client::connect(&dir.path().join("none.sock"))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, ClientError::NotRunning(_)), "{err}");
        assert!(err.to_string().contains("not running"));
    }
}
