//! The HTTP API (described in `assets/openapi.json`) and the embedded page.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{delete, get, post};
use futures::Stream;
use peddlenet_api::{ApiError, Client, ClientError, ErrorCode, Event, MessageInfo};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::guard::{self, Refusal};
use crate::session::{Session, Sessions, Who};
use crate::streams::Streams;
use crate::{MAX_BODY, State};

type S = Arc<State>;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");
const ICON_SVG: &str = include_str!("../../../packaging/icons/peddlenet.svg");
const OPENAPI: &str = include_str!("../assets/openapi.json");
/// How often an open guest stream checks that its pass still holds.
const GUEST_RECHECK: Duration = Duration::from_secs(5);

pub(crate) fn router(state: S) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/login", get(page))
        .route("/guest", get(page))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/icon.svg",
            get(|| async { asset("image/svg+xml", ICON_SVG) }),
        )
        .route(
            "/api/openapi.json",
            get(|| async { asset("application/json", OPENAPI) }),
        )
        .route("/g/{token}", get(guest_enter))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/session", get(session_info))
        .route("/api/status", get(status))
        .route("/api/peers", get(peers))
        .route("/api/rooms", get(rooms).post(room_create))
        .route("/api/rooms/join", post(room_join))
        .route("/api/rooms/{room}/messages", get(history).post(send))
        .route("/api/rooms/{room}/invite", get(invite))
        .route("/api/rooms/{room}/leave", post(room_leave))
        .route("/api/name", post(set_name))
        .route("/api/guests", get(guests).post(guest_create))
        .route("/api/guests/{id}", delete(guest_revoke))
        .route("/api/wifi", get(wifi))
        .route("/api/lan", get(lan).post(set_lan))
        .route("/api/events", get(owner_events))
        .route("/api/guest/nickname", post(guest_nickname))
        .route("/api/guest/messages", get(guest_history).post(guest_send))
        .route("/api/guest/events", get(guest_events))
        .fallback(|| async { HttpError(StatusCode::NOT_FOUND, "no such page".into()) })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(state.clone(), guard_layer))
        .with_state(state)
}

/// Paths served to anyone, unlimited: the page and its assets.
fn is_static(path: &str) -> bool {
    matches!(
        path,
        "/" | "/login" | "/guest" | "/app.js" | "/app.css" | "/icon.svg" | "/api/openapi.json"
    )
}

/// A request's session, checked (cookie and token) by [`guard_layer`].
#[derive(Clone)]
pub(crate) struct Authed {
    id: String,
    session: Session,
}

/// The session behind a request, if it presented one whole (the cookie and
/// its token).
pub(crate) struct Auth(Option<Authed>);

impl<T: Send + Sync> axum::extract::FromRequestParts<T> for Auth {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &T,
    ) -> std::result::Result<Self, Infallible> {
        Ok(Auth(parts.extensions.get::<Authed>().cloned()))
    }
}

/// The session a request presents: the cookie and, in `X-Session-Token`
/// (or, for an event stream, which cannot send headers, `?token=`), its
/// token. A cookie alone, as any server on this host may be sent, is nothing.
fn authenticate(st: &State, req: &Request) -> Option<Authed> {
    let cookie = req.headers().get(header::COOKIE)?.to_str().ok()?;
    let mut sessions = st.sessions.lock().expect("lock");
    let (owner, guest) = sessions.cookie_values(cookie);
    let mut token = req
        .headers()
        .get("x-session-token")
        .and_then(|v| v.to_str().ok());
    if token.is_none() && req.uri().path().ends_with("/events") {
        token = req
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")));
    }
    // The owner's and a guest's cookie may both be here (the owner opened
    // a guest link): the token says which session this page holds.
    let now = Instant::now();
    let (id, session) = owner
        .and_then(|c| sessions.get(c, token, now))
        .or_else(|| guest.and_then(|c| sessions.get(c, token, now)))?;
    Some(Authed { id, session })
}

/// A 429 that says when to come back.
fn too_many(wait: Duration, msg: String) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut r = HttpError(StatusCode::TOO_MANY_REQUESTS, msg).into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    r
}

/// Every request: Host and (for changes) Origin, its session, its rate (per
/// session; per address without one), and a time limit; every response:
/// headers that keep the page from being framed, sniffed, cached or leaking
/// its URL.
async fn guard_layer(
    AxState(st): AxState<S>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut req: Request,
    next: Next,
) -> Response {
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD);
    let (host, origin) = (
        header_text(req.headers(), header::HOST),
        header_text(req.headers(), header::ORIGIN),
    );
    let checked = guard::check_request(
        &st.hosts.read().expect("lock"),
        changes,
        host.as_deref(),
        origin.as_deref(),
    );
    let mut resp = match checked {
        Err(r) => {
            tracing::debug!(%peer, refusal = ?r, "web request refused");
            HttpError(StatusCode::FORBIDDEN, r.to_string()).into_response()
        }
        Ok(()) => {
            let auth = authenticate(&st, &req);
            let now = Instant::now();
            let within = if is_static(req.uri().path()) {
                Ok(())
            } else if let Some(a) = &auth {
                st.per_session.lock().expect("lock").allow(&a.id, now)
            } else {
                st.per_address.lock().expect("lock").allow(&peer.ip(), now)
            };
            match within {
                Err(wait) => {
                    tracing::debug!(%peer, "web request over its rate");
                    too_many(wait, Refusal::RateLimited.to_string())
                }
                Ok(()) => {
                    if let Some(a) = auth {
                        req.extensions_mut().insert(a);
                    }
                    match tokio::time::timeout(crate::REQUEST_TIMEOUT, next.run(req)).await {
                        Ok(r) => r,
                        Err(_) => HttpError(
                            StatusCode::REQUEST_TIMEOUT,
                            "the request took too long".into(),
                        )
                        .into_response(),
                    }
                }
            }
        }
    };
    let limited = resp.status() == StatusCode::TOO_MANY_REQUESTS;
    let h = resp.headers_mut();
    if limited && !h.contains_key(header::RETRY_AFTER) {
        h.insert(header::RETRY_AFTER, HeaderValue::from(1u64));
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn header_text(h: &HeaderMap, name: header::HeaderName) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// An error as the API returns it: a status and `{"error": "..."}`.
#[derive(Debug)]
pub(crate) struct HttpError(StatusCode, String);

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<ClientError> for HttpError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Api(ApiError { code, message }) => {
                let status = match code {
                    ErrorCode::BadRequest
                    | ErrorCode::BadInvite
                    | ErrorCode::BadAddress
                    | ErrorCode::AlreadyMember
                    | ErrorCode::AmbiguousRoom => StatusCode::BAD_REQUEST,
                    ErrorCode::TooLong => StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::UnknownRoom => StatusCode::NOT_FOUND,
                    ErrorCode::BadToken => StatusCode::FORBIDDEN,
                    ErrorCode::WebOff | ErrorCode::WifiOff => StatusCode::CONFLICT,
                    ErrorCode::Busy => StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::DiskFull => StatusCode::INSUFFICIENT_STORAGE,
                    ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
                };
                HttpError(status, message)
            }
            other => HttpError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the PeddleNet daemon is not answering: {other}"),
            ),
        }
    }
}

type Result<T> = std::result::Result<T, HttpError>;

/// Runs `f` with the daemon's client; a broken connection is dropped so the
/// next request reconnects.
async fn call<T, F, Fut>(st: &State, f: F) -> Result<T>
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = std::result::Result<T, ClientError>>,
{
    let c = match st.client().await {
        Ok(c) => c,
        Err(e) => return Err(e.into()),
    };
    match f(c).await {
        Ok(v) => Ok(v),
        Err(e) => {
            if !matches!(e, ClientError::Api(_)) {
                st.drop_client().await;
            }
            Err(e.into())
        }
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// The session behind a request, of the kind wanted (owner or guest).
fn require(auth: Auth, owner: bool) -> Result<(String, Session)> {
    let Some(Authed { id, session: s }) = auth.0 else {
        return Err(HttpError(
            StatusCode::UNAUTHORIZED,
            "not signed in (or the session token is missing): open the link from `peddlenet web` or a guest QR code".into(),
        ));
    };
    if owner != (s.who == Who::Owner) {
        return Err(HttpError(
            StatusCode::FORBIDDEN,
            if owner {
                "guests cannot do this"
            } else {
                "this is for guests"
            }
            .into(),
        ));
    }
    Ok((id, s))
}

fn owner(a: Auth) -> Result<()> {
    require(a, true).map(|_| ())
}

fn qr_svg(text: &str) -> Result<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|e| {
        HttpError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot draw the QR code: {e}"),
        )
    })?;
    Ok(code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(256, 256)
        .quiet_zone(true)
        .build())
}

fn with_cookie(cookie: String, body: impl IntoResponse) -> Response {
    let mut r = body.into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
struct LoginBody {
    code: String,
}

async fn login(
    AxState(st): AxState<S>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    axum::Json(b): axum::Json<LoginBody>,
) -> Result<Response> {
    call(&st, |c| async move { c.web_redeem(&b.code).await }).await?;
    let mut sessions = st.sessions.lock().expect("lock");
    let (_, issued) = sessions.create(Who::Owner, peer.ip(), Instant::now());
    tracing::info!("web UI: the owner signed in");
    Ok(with_cookie(
        sessions.set_cookie(true, &issued.cookie_value),
        axum::Json(json!({ "kind": "owner", "token": issued.token })),
    ))
}

async fn logout(AxState(st): AxState<S>, a: Auth) -> Result<Response> {
    let Some(Authed { id, session }) = a.0 else {
        return Err(HttpError(StatusCode::UNAUTHORIZED, "not signed in".into()));
    };
    let mut sessions = st.sessions.lock().expect("lock");
    sessions.remove(&id);
    Ok(with_cookie(
        sessions.clear_cookie(session.who == Who::Owner),
        StatusCode::NO_CONTENT,
    ))
}

async fn session_info(a: Auth) -> Result<Response> {
    let Some(Authed { session: s, .. }) = a.0 else {
        return Err(HttpError(StatusCode::UNAUTHORIZED, "not signed in".into()));
    };
    Ok(axum::Json(match s.who {
        Who::Owner => json!({ "kind": "owner" }),
        Who::Guest { room_name, nickname, expires_ms, .. } => {
            json!({ "kind": "guest", "room_name": room_name, "nickname": nickname, "expires_ms": expires_ms })
        }
    })
    .into_response())
}

async fn status(AxState(st): AxState<S>, a: Auth) -> Result<Response> {
    owner(a)?;
    Ok(axum::Json(call(&st, |c| async move { c.status().await }).await?).into_response())
}

async fn peers(AxState(st): AxState<S>, a: Auth) -> Result<Response> {
    owner(a)?;
    Ok(axum::Json(call(&st, |c| async move { c.peers().await }).await?).into_response())
}

async fn rooms(AxState(st): AxState<S>, a: Auth) -> Result<Response> {
    owner(a)?;
    Ok(axum::Json(call(&st, |c| async move { c.room_list().await }).await?).into_response())
}

#[derive(Deserialize)]
struct NameBody {
    name: String,
}

async fn room_create(
    AxState(st): AxState<S>,
    a: Auth,
    axum::Json(b): axum::Json<NameBody>,
) -> Result<Response> {
    owner(a)?;
    Ok(
        axum::Json(call(&st, |c| async move { c.room_create(&b.name).await }).await?)
            .into_response(),
    )
}

#[derive(Deserialize)]
struct InviteBody {
    invite: String,
}

async fn room_join(
    AxState(st): AxState<S>,
    a: Auth,
    axum::Json(b): axum::Json<InviteBody>,
) -> Result<Response> {
    owner(a)?;
    Ok(
        axum::Json(call(&st, |c| async move { c.room_join(b.invite.trim()).await }).await?)
            .into_response(),
    )
}

#[derive(Deserialize)]
struct Page {
    before: Option<String>,
}

/// A message as the owner sees it: as the daemon gives it, with `guest`
/// true for one a guest wrote through this web UI (which the daemon signs
/// as its own): not the owner's own then, and no delivery state. Known by
/// the guest session that sent it; for a message older than that record,
/// by the " (guest)" the daemon puts after a guest's nickname.
fn for_owner(m: &MessageInfo, sessions: &Sessions) -> serde_json::Value {
    let guest =
        m.own && (sessions.author_of(&m.id).is_some() || m.author_name.ends_with(" (guest)"));
    let mut v = serde_json::to_value(m).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("guest".into(), guest.into());
        if guest {
            o.insert("own".into(), false.into());
            o.insert("delivery".into(), serde_json::Value::Null);
        }
    }
    v
}

async fn history(
    AxState(st): AxState<S>,
    a: Auth,
    Path(room): Path<String>,
    Query(p): Query<Page>,
) -> Result<Response> {
    owner(a)?;
    let (messages, next) = call(&st, |c| async move {
        c.history(&room, p.before, Some(50)).await
    })
    .await?;
    let sessions = st.sessions.lock().expect("lock");
    let messages: Vec<_> = messages.iter().map(|m| for_owner(m, &sessions)).collect();
    drop(sessions);
    Ok(axum::Json(json!({ "messages": messages, "next": next })).into_response())
}

async fn room_leave(
    AxState(st): AxState<S>,
    a: Auth,
    Path(room): Path<String>,
) -> Result<Response> {
    owner(a)?;
    call(&st, |c| async move { c.room_leave(&room).await }).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_name(
    AxState(st): AxState<S>,
    a: Auth,
    axum::Json(b): axum::Json<NameBody>,
) -> Result<Response> {
    owner(a)?;
    let name = b.name.trim().to_owned();
    call(&st, |c| async move { c.set_display_name(&name).await }).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct TextBody {
    text: String,
}

async fn send(
    AxState(st): AxState<S>,
    a: Auth,
    Path(room): Path<String>,
    axum::Json(b): axum::Json<TextBody>,
) -> Result<Response> {
    owner(a)?;
    Ok(
        axum::Json(call(&st, |c| async move { c.send(&room, &b.text).await }).await?)
            .into_response(),
    )
}

async fn invite(AxState(st): AxState<S>, a: Auth, Path(room): Path<String>) -> Result<Response> {
    owner(a)?;
    let (room, uri) = call(&st, |c| async move { c.room_invite(&room).await }).await?;
    let svg = qr_svg(&uri)?;
    Ok(axum::Json(json!({ "room": room, "uri": uri, "svg": svg })).into_response())
}

async fn guests(AxState(st): AxState<S>, a: Auth) -> Result<Response> {
    owner(a)?;
    Ok(axum::Json(call(&st, |c| async move { c.guest_list().await }).await?).into_response())
}

#[derive(Deserialize)]
struct GuestBody {
    room: String,
    ttl_minutes: Option<u32>,
}

async fn guest_create(
    AxState(st): AxState<S>,
    a: Auth,
    axum::Json(b): axum::Json<GuestBody>,
) -> Result<Response> {
    owner(a)?;
    let g = call(&st, |c| async move {
        c.guest_create(&b.room, b.ttl_minutes.map(|m| m.saturating_mul(60)))
            .await
    })
    .await?;
    let svg = qr_svg(g.url.as_deref().unwrap_or_default())?;
    Ok(axum::Json(json!({ "guest": g, "svg": svg })).into_response())
}

async fn guest_revoke(
    AxState(st): AxState<S>,
    a: Auth,
    Path(id): Path<String>,
) -> Result<Response> {
    owner(a)?;
    call(&st, |c| async move { c.guest_revoke(&id).await }).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The Wi-Fi network hosted for phones, with its QR code (409 when none).
async fn wifi(AxState(st): AxState<S>, a: Auth) -> Result<Response> {
    owner(a)?;
    let w = call(&st, |c| async move { c.wifi_hotspot().await }).await?;
    let svg = qr_svg(&w.qr)?;
    Ok(axum::Json(json!({ "hotspot": w, "svg": svg })).into_response())
}

/// LAN mode as the owner page shows it: on which interface (and URL), and
/// the interfaces the daemon offers.
fn lan_json(s: &peddlenet_api::Settings) -> serde_json::Value {
    json!({
        "lan_interface": s.lan_interface,
        "lan_url": s.lan_url,
        "lan_interfaces": s.lan_interfaces,
    })
}

async fn lan(AxState(st): AxState<S>, a: Auth) -> Result<Response> {
    owner(a)?;
    let s = call(&st, |c| async move { c.settings().await }).await?;
    Ok(axum::Json(lan_json(&s)).into_response())
}

#[derive(Deserialize)]
struct LanBody {
    /// An interface the daemon offers, or "" for off.
    interface: String,
    /// A guest pass's URL on this machine: answered with its URL on the
    /// LAN address and that URL's QR code (the same pass).
    #[serde(default)]
    pass_url: Option<String>,
}

/// The token of a guest URL (`…/g/<token>`), if it looks like one.
fn pass_token(url: &str) -> Option<&str> {
    let (_, t) = url.rsplit_once("/g/")?;
    (!t.is_empty()
        && t.len() <= 64
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    .then_some(t)
}

/// Turns LAN mode on (on an interface the daemon offers) or off.
async fn set_lan(
    AxState(st): AxState<S>,
    a: Auth,
    axum::Json(b): axum::Json<LanBody>,
) -> Result<Response> {
    owner(a)?;
    let token = match &b.pass_url {
        Some(u) => Some(pass_token(u).ok_or_else(|| {
            HttpError(
                StatusCode::BAD_REQUEST,
                "pass_url is not a guest pass's link (…/g/<token>)".into(),
            )
        })?),
        None => None,
    };
    let update = peddlenet_api::SettingsUpdate {
        lan_interface: Some(b.interface.clone()),
        ..Default::default()
    };
    let s = call(&st, |c| async move { c.set_settings(update).await }).await?;
    let mut out = lan_json(&s);
    if let (Some(t), Some(base)) = (token, &s.lan_url) {
        let url = format!("{base}/g/{t}");
        out["pass"] = json!({ "svg": qr_svg(&url)?, "url": url });
    }
    Ok(axum::Json(out).into_response())
}

/// A guest opens the QR code's URL: the daemon checks the pass, the browser
/// gets a guest session, and the token leaves the address bar.
async fn guest_enter(
    AxState(st): AxState<S>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
) -> Response {
    let t = token.clone();
    match call(&st, |c| async move { c.guest_check(&t).await }).await {
        Ok(g) => {
            let who = Who::Guest {
                token,
                pass: g.id.clone(),
                room: g.room,
                room_name: g.room_name,
                expires_ms: g.expires_ms,
                nickname: None,
                author: String::new(),
            };
            let mut sessions = st.sessions.lock().expect("lock");
            let (_, issued) = sessions.create(who, peer.ip(), Instant::now());
            tracing::info!(pass = %g.id, "web UI: a guest arrived");
            // The session token goes to the page in the fragment, which no
            // server sees; the page keeps it and sends it with every request.
            with_cookie(
                sessions.set_cookie(false, &issued.cookie_value),
                Redirect::to(&format!("/guest#{}", issued.token)),
            )
        }
        Err(HttpError(code, msg)) => {
            let body = format!(
                "<!doctype html><meta charset=utf-8><meta name=viewport content=\"width=device-width\"><title>PeddleNet</title>\
                 <h1>This guest pass does not work</h1><p>{}</p><p>Ask for a new QR code.</p>",
                msg.replace('&', "&amp;").replace('<', "&lt;")
            );
            (
                code,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                body,
            )
                .into_response()
        }
    }
}

/// A guest's session: its key, pass token, pass id, nickname and author id.
struct GuestSession {
    id: String,
    token: String,
    pass: String,
    nickname: Option<String>,
    author: String,
}

fn guest_session(a: Auth) -> Result<GuestSession> {
    let (id, s) = require(a, false)?;
    match s.who {
        Who::Guest {
            token,
            pass,
            nickname,
            author,
            ..
        } => Ok(GuestSession {
            id,
            token,
            pass,
            nickname,
            author,
        }),
        Who::Owner => unreachable!("require() checked the kind"),
    }
}

/// A refused pass ends its sessions here too.
fn ended(st: &State, token: &str, e: HttpError) -> HttpError {
    if e.0 == StatusCode::FORBIDDEN {
        st.sessions.lock().expect("lock").end_pass(token);
    }
    e
}

#[derive(Deserialize)]
struct NicknameBody {
    nickname: String,
}

async fn guest_nickname(
    AxState(st): AxState<S>,
    a: Auth,
    axum::Json(b): axum::Json<NicknameBody>,
) -> Result<Response> {
    let id = guest_session(a)?.id;
    let nick = b.nickname.trim().to_owned();
    if nick.is_empty() || nick.chars().count() > 32 || nick.chars().any(char::is_control) {
        return Err(HttpError(
            StatusCode::BAD_REQUEST,
            "a nickname is 1 to 32 characters, no control characters".into(),
        ));
    }
    st.sessions
        .lock()
        .expect("lock")
        .set_nickname(&id, nick.clone());
    Ok(axum::Json(json!({ "nickname": nick })).into_response())
}

/// A message as a guest sees it: no keys, and "mine" for its own.
#[derive(Serialize)]
struct GuestMessage {
    id: String,
    author_name: String,
    text: String,
    timestamp_ms: u64,
    mine: bool,
}

/// `mine` by who wrote it (this guest session), never by name: two guests
/// may share a nickname.
fn for_guest(m: MessageInfo, author: &str, sessions: &Sessions) -> GuestMessage {
    let mine = m.own && sessions.author_of(&m.id) == Some(author);
    GuestMessage {
        id: m.id,
        author_name: m.author_name,
        text: m.text,
        timestamp_ms: m.timestamp_ms,
        mine,
    }
}

async fn guest_history(
    AxState(st): AxState<S>,
    a: Auth,
    Query(p): Query<Page>,
) -> Result<Response> {
    let g = guest_session(a)?;
    let t = g.token.clone();
    let (messages, next) = call(&st, |c| async move { c.guest_history(&t, p.before).await })
        .await
        .map_err(|e| ended(&st, &g.token, e))?;
    let sessions = st.sessions.lock().expect("lock");
    let messages: Vec<GuestMessage> = messages
        .into_iter()
        .map(|m| for_guest(m, &g.author, &sessions))
        .collect();
    drop(sessions);
    Ok(axum::Json(json!({ "messages": messages, "next": next })).into_response())
}

async fn guest_send(
    AxState(st): AxState<S>,
    a: Auth,
    axum::Json(b): axum::Json<TextBody>,
) -> Result<Response> {
    let GuestSession {
        token,
        pass,
        nickname: nick,
        author,
        ..
    } = guest_session(a)?;
    let nick =
        nick.ok_or_else(|| HttpError(StatusCode::BAD_REQUEST, "pick a nickname first".into()))?;
    let within = st
        .per_guest
        .lock()
        .expect("lock")
        .allow(&pass, Instant::now());
    if let Err(wait) = within {
        return Ok(too_many(wait, "slow down: one message a second".into()));
    }
    let (t, n) = (token.clone(), nick.clone());
    let m = call(&st, |c| async move { c.guest_send(&t, &n, &b.text).await })
        .await
        .map_err(|e| ended(&st, &token, e))?;
    let mut sessions = st.sessions.lock().expect("lock");
    sessions.record_author(&m.id, &author);
    Ok(axum::Json(for_guest(m, &author, &sessions)).into_response())
}

fn sse_json(kind: &str, v: &impl Serialize) -> SseEvent {
    SseEvent::default()
        .event(kind)
        .data(serde_json::to_string(v).unwrap_or_else(|_| "null".into()))
}

fn too_many_streams() -> Response {
    let mut r = HttpError(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many live views open; try again in a moment".into(),
    )
    .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(5u64));
    r
}

fn sse(
    st: &State,
    stream: impl Stream<Item = std::result::Result<SseEvent, Infallible>> + Send + 'static,
) -> Response {
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(st.keep_alive))
        .into_response()
}

/// The owner's live view: every event of the daemon. Always served (see
/// [`crate::streams`]); it ends when a newer owner stream took its place.
async fn owner_events(AxState(st): AxState<S>, a: Auth) -> Result<Response> {
    let (id, _) = require(a, true)?;
    let Ok(place) = Streams::admit(&st.streams, &id, None) else {
        return Ok(too_many_streams());
    };
    let rx = st.events.subscribe();
    let st2 = st.clone();
    let stream = futures::stream::unfold((rx, place, st2), |(mut rx, mut place, st)| async move {
        let ev = tokio::select! {
            r = rx.recv() => match r {
                Ok(e) => match &*e {
                    Event::Message { message } => {
                        let m = for_owner(message, &st.sessions.lock().expect("lock"));
                        sse_json("event", &json!({ "type": "message", "message": m }))
                    }
                    Event::Lagged { missed } => sse_json("reload", &json!({ "missed": missed })),
                    other => sse_json("event", other),
                },
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    sse_json("reload", &json!({ "missed": n }))
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            },
            _ = &mut place.ended => return None,
        };
        Some((Ok(ev), (rx, place, st)))
    });
    Ok(sse(&st, stream))
}

/// A guest's live view: messages of its room only, and an `ended` event
/// (then the end) once its pass is revoked or expires.
async fn guest_events(AxState(st): AxState<S>, a: Auth) -> Result<Response> {
    let (id, s) = require(a, false)?;
    let Who::Guest {
        token, pass, room, ..
    } = s.who
    else {
        unreachable!("require() checked the kind")
    };
    let Ok(place) = Streams::admit(&st.streams, &id, Some(&pass)) else {
        return Ok(too_many_streams());
    };
    let rx = st.events.subscribe();
    let mut recheck = tokio::time::interval(GUEST_RECHECK);
    recheck.reset();
    let ctx = (rx, place, recheck, st.clone(), id, token, room, false);
    let stream = futures::stream::unfold(
        ctx,
        |(mut rx, mut place, mut recheck, st, id, token, room, done)| async move {
            if done {
                return None;
            }
            loop {
                tokio::select! {
                    r = rx.recv() => match r {
                        Ok(e) => {
                            if let Event::Lagged { missed } = &*e {
                                let ev = sse_json("reload", &json!({ "missed": missed }));
                                return Some((Ok(ev), (rx, place, recheck, st, id, token, room, false)));
                            }
                            if let Event::Message { message } = &*e
                                && message.room == room
                            {
                                let author = match session_of_id(&st, &id) { Some(Who::Guest { author, .. }) => author, _ => String::new() };
                                let ev = sse_json("message", &for_guest(message.clone(), &author, &st.sessions.lock().expect("lock")));
                                return Some((Ok(ev), (rx, place, recheck, st, id, token, room, false)));
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            let ev = sse_json("reload", &json!({ "missed": n }));
                            return Some((Ok(ev), (rx, place, recheck, st, id, token, room, false)));
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    },
                    _ = &mut place.ended => return None,
                    _ = recheck.tick() => {
                        let t = token.clone();
                        if let Err(e) = call(&st, |c| async move { c.guest_check(&t).await }).await
                            && e.0 == StatusCode::FORBIDDEN
                        {
                            st.sessions.lock().expect("lock").end_pass(&token);
                            let ev = sse_json("ended", &json!({ "reason": e.1 }));
                            return Some((Ok(ev), (rx, place, recheck, st, id, token, room, true)));
                        }
                    }
                }
            }
        },
    );
    Ok(sse(&st, stream))
}

fn session_of_id(st: &State, id: &str) -> Option<Who> {
    st.sessions
        .lock()
        .expect("lock")
        .touch(id, Instant::now())
        .map(|s| s.who)
}

/// Every JSON body the API takes, and the history page's query, parsed as
/// the handlers' extractors parse them (for the fuzz targets in fuzz/).
pub(crate) fn parse_untrusted(b: &[u8]) {
    let _ = axum::Json::<LoginBody>::from_bytes(b);
    let _ = axum::Json::<NameBody>::from_bytes(b);
    let _ = axum::Json::<InviteBody>::from_bytes(b);
    let _ = axum::Json::<TextBody>::from_bytes(b);
    let _ = axum::Json::<GuestBody>::from_bytes(b);
    let _ = axum::Json::<NicknameBody>::from_bytes(b);
    if let Ok(text) = std::str::from_utf8(b)
        && let Ok(uri) = format!("/api/rooms/x/messages?{text}").parse::<axum::http::Uri>()
    {
        let _ = Query::<Page>::try_from_uri(&uri);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OpenAPI description names every API route, and no other.
    #[test]
    fn openapi_lists_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        let mut documented: Vec<String> = doc["paths"]
            .as_object()
            .expect("paths")
            .keys()
            .cloned()
            .collect();
        documented.sort();
        let src = include_str!("routes.rs");
        let mut routed: Vec<String> = src
            .lines()
            .filter_map(|l| l.trim().strip_prefix(".route(\""))
            .map(|l| l.split('"').next().expect("a path").to_owned())
            .filter(|p| p.starts_with("/api/") || p.starts_with("/g/"))
            .filter(|p| p != "/api/openapi.json")
            .collect();
        routed.sort();
        assert_eq!(documented, routed);
    }

    /// Everything that writes to the daemon's disk documents 507 (disk full),
    /// which `HttpError::from` returns for `ErrorCode::DiskFull`.
    #[test]
    fn openapi_documents_disk_full_for_writes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("valid JSON");
        let mut missing = Vec::new();
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            for (method, op) in ops.as_object().expect("operations") {
                let writes = matches!(method.as_str(), "post" | "delete")
                    && !matches!(
                        path.as_str(),
                        "/api/login" | "/api/logout" | "/api/guest/nickname"
                    );
                if writes && op["responses"].get("507").is_none() {
                    missing.push(format!("{method} {path}"));
                }
            }
        }
        assert!(missing.is_empty(), "no 507 documented: {missing:?}");
    }
}
