//! `peddlenet`: the command-line front end of peddlenetd.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use peddlenet_api::{Client, ClientError, DeliveryState, Event, MessageInfo, PeerInfo, RoomInfo};
use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;

/// Talk to people around you with no internet, through the local peddlenetd.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// The daemon's socket [default: $XDG_RUNTIME_DIR/peddlenet/peddlenetd.sock]
    #[arg(long, global = true, env = "PEDDLENET_SOCKET")]
    socket: Option<PathBuf>,
    /// Print JSON (one object per line for `watch`) instead of text
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Is the daemon running, who am I, how many peers and rooms
    Status,
    /// Connected peers, with their link and round-trip time
    Peers,
    /// Dial a peer by multiaddr, e.g. /ip4/192.168.4.2/tcp/4717
    Connect { addr: String },
    /// Show or set the name others see with your messages
    Name { name: Option<String> },
    /// Create, share, join and leave rooms
    #[command(subcommand)]
    Room(RoomCmd),
    /// Send a message to a room (by name or id prefix)
    Send { room: String, text: Vec<String> },
    /// A room's messages, newest last
    History {
        room: String,
        /// How many messages
        #[arg(short = 'n', long, default_value_t = 50)]
        limit: u32,
        /// Start before this cursor (printed at the top of an earlier page)
        #[arg(long)]
        before: Option<String>,
    },
    /// Follow messages, peers and delivery states as they happen
    Watch,
    /// A one-time link that signs this machine's browser in to the web UI
    Web {
        /// Open it in the browser (xdg-open) instead of printing it
        #[arg(long)]
        open: bool,
    },
    /// Guest passes: a phone opens one room in its browser, by QR code
    #[command(subcommand)]
    Guest(GuestCmd),
    /// Show or change the daemon's settings (kept across restarts)
    Settings {
        /// Carry rooms you are not in (unreadable to you) for others: on or off.
        /// Off drops everything carried.
        #[arg(long, value_name = "on|off", value_parser = on_off)]
        relay: Option<bool>,
        /// Disk the rooms carried for others may take, in MiB (1 to 65536).
        /// A smaller budget drops the oldest carried messages at once.
        #[arg(long, value_name = "MIB")]
        relay_budget: Option<u64>,
        /// Run the Bluetooth LE link: on or off
        #[arg(long, value_name = "on|off", value_parser = on_off)]
        bluetooth: Option<bool>,
        /// Run the Wi-Fi Direct link: on or off
        #[arg(long, value_name = "on|off", value_parser = on_off)]
        wifi_direct: Option<bool>,
        /// LAN mode: the web UI also answers guests' phones on this
        /// interface's address (e.g. wlan0); "" turns it off
        #[arg(long, value_name = "INTERFACE")]
        lan: Option<String>,
    },
    /// Wi-Fi Direct: the link's state, and hosting a Wi-Fi network for phones
    #[command(subcommand)]
    Wifi(WifiCmd),
}

#[derive(Debug, Subcommand)]
enum WifiCmd {
    /// What the Wi-Fi Direct link is doing
    Status,
    /// Host a Wi-Fi network phones can join (kept across restarts): on or off
    Host {
        #[arg(value_name = "on|off", value_parser = on_off, action = clap::ArgAction::Set)]
        on: bool,
    },
    /// The hosted network's QR code: a phone's camera joins it
    Qr {
        /// Only the network's name and passphrase, no QR code
        #[arg(long)]
        no_qr: bool,
    },
}

fn on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("expected on or off, not {s:?}")),
    }
}

#[derive(Debug, Subcommand)]
enum GuestCmd {
    /// A new guest pass to ROOM; prints its URL and QR code (shown only now)
    Create {
        room: String,
        /// How long it lasts, in minutes (default 1440, a day; at most 43200)
        #[arg(long)]
        minutes: Option<u32>,
        /// Only the URL, no QR code
        #[arg(long)]
        no_qr: bool,
    },
    /// Guest passes in force
    List,
    /// End a guest pass now (its id, from `guest list`)
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
enum RoomCmd {
    /// Create a room and print its invite
    Create { name: String },
    /// Print a room's invite as text and as a QR code
    Invite {
        room: String,
        /// Only the invite text, no QR code
        #[arg(long)]
        no_qr: bool,
    },
    /// Join a room from an invite (peddlenet://join/...)
    Join { invite: String },
    /// Leave a room and forget its messages
    Leave { room: String },
    /// Your rooms
    List,
}

/// `println!`, except that a failed write is returned (with `?`) instead of
/// panicking: see `main` for a closed stdout.
macro_rules! out {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout(), $($arg)*)?
    };
}

/// Whether `e` is a write to a closed pipe (`peddlenet status | head -1`).
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // Whoever reads our output stopped reading: end quietly and with
        // success, as the command did what it was asked (a `send` was sent);
        // `set -o pipefail` scripts that stop reading early then do not fail.
        // Rust ignores SIGPIPE, so the write fails instead of killing us; we
        // keep it that way, so that writing to a daemon that has closed the
        // socket is an error we can explain too.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peddlenet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> std::io::Result<()> {
    out!("{}", serde_json::to_string_pretty(v).expect("serializable"));
    Ok(())
}

fn time(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!("{h:02}:{m:02}:{s:02}Z")
}

/// `2026-11-21 18:05Z`: a date too, for what lasts longer than a day.
fn date_time(ms: u64) -> String {
    let days = (ms / 86_400_000) as i64;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let mins = (ms / 60_000) % 1440;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}Z", mins / 60, mins % 60)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn delivery(d: &Option<DeliveryState>) -> String {
    d.map(|d| format!(" [{d}]")).unwrap_or_default()
}

/// Text from other people, safe for a terminal: bidi controls shown as
/// `<U+202E>` and the like, other control characters (escape sequences among
/// them) as U+FFFD; line breaks stay. Why markers rather than isolates:
/// `peddlenet_api::text`.
fn clean(s: &str) -> std::borrow::Cow<'_, str> {
    peddlenet_api::text::sanitize(s)
}

fn print_message(m: &MessageInfo) -> std::io::Result<()> {
    // Names are labels anyone can pick; the key's first digits tell people apart.
    let who = if m.own {
        format!("{} (you)", clean(&m.author_name))
    } else {
        format!("{} [{}]", clean(&m.author_name), &m.author[..4])
    };
    out!(
        "{} {}: {}{}",
        time(m.timestamp_ms),
        who,
        clean(&m.text),
        delivery(&m.delivery)
    );
    Ok(())
}

fn print_room(r: &RoomInfo) -> std::io::Result<()> {
    out!(
        "{}  {}  {} messages, {} members known, {} peers online",
        &r.id[..16],
        clean(&r.name),
        r.messages,
        r.members,
        r.online_peers
    );
    Ok(())
}

fn print_peer(p: &PeerInfo) -> std::io::Result<()> {
    let rtt = p
        .rtt_ms
        .map(|r| format!("{r:.1} ms"))
        .unwrap_or_else(|| "-".into());
    out!("{:?}  {}  {}  rtt {}", p.link, &p.peer, p.addr, rtt);
    Ok(())
}

fn qr(text: &str) -> anyhow::Result<String> {
    let code = QrCode::new(text.as_bytes())?;
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let path = cli
        .socket
        .unwrap_or_else(peddlenet_api::paths::default_socket_path);
    let client = Client::connect(&path).await.map_err(explain)?;
    let json = cli.json;
    match cli.cmd {
        Cmd::Status => {
            let s = client.status().await.map_err(explain)?;
            if json {
                print_json(&s)?;
            } else {
                out!(
                    "peddlenetd {} running for {}s",
                    s.version,
                    s.uptime_ms / 1000
                );
                out!(
                    "you:      {} ({})",
                    clean(&s.display_name),
                    &s.author_id[..16]
                );
                out!("peers:    {}", s.peers);
                out!("rooms:    {}", s.rooms);
                out!("waiting:  {} of your messages for a first peer", s.waiting);
                out!("data:     {}", s.data_dir);
                if !s.wifi_direct.is_empty() {
                    out!("wifi direct: {}", s.wifi_direct);
                }
                if !s.bluetooth.is_empty() {
                    out!("bluetooth: {}", s.bluetooth);
                }
                for w in &s.web {
                    out!("web UI:   {w} (sign in: `peddlenet web`)");
                }
                if s.relay.enabled {
                    out!(
                        "relaying: {} rooms, {} envelopes, {:.1} of {:.0} MiB",
                        s.relay.rooms,
                        s.relay.envelopes,
                        s.relay.bytes as f64 / 1048576.0,
                        s.relay.budget_bytes as f64 / 1048576.0
                    );
                } else {
                    out!("relaying: off");
                }
                for a in &s.listen_addrs {
                    out!("listen:   {a}");
                }
            }
        }
        Cmd::Peers => {
            let peers = client.peers().await.map_err(explain)?;
            if json {
                print_json(&peers)?;
            } else if peers.is_empty() {
                out!("no peers connected");
            } else {
                for p in &peers {
                    print_peer(p)?;
                }
            }
        }
        Cmd::Connect { addr } => {
            client.dial(&addr).await.map_err(explain)?;
            if json {
                print_json(&serde_json::json!({"dialling": addr}))?;
            } else {
                out!("dialling {addr}; `peddlenet peers` shows when it is up");
            }
        }
        Cmd::Name { name } => {
            if let Some(n) = &name {
                client.set_display_name(n).await.map_err(explain)?;
            }
            let s = client.status().await.map_err(explain)?;
            if json {
                print_json(&serde_json::json!({"display_name": s.display_name}))?;
            } else {
                out!("{}", clean(&s.display_name));
            }
        }
        Cmd::Settings {
            relay,
            relay_budget,
            bluetooth,
            wifi_direct,
            lan,
        } => {
            let s = if relay.is_none()
                && relay_budget.is_none()
                && bluetooth.is_none()
                && wifi_direct.is_none()
                && lan.is_none()
            {
                client.settings().await
            } else {
                let u = peddlenet_api::SettingsUpdate {
                    relay_enabled: relay,
                    relay_budget_mib: relay_budget,
                    bluetooth_enabled: bluetooth,
                    wifi_direct_enabled: wifi_direct,
                    wifi_host: None,
                    lan_interface: lan,
                };
                client.set_settings(u).await
            }
            .map_err(explain)?;
            if json {
                print_json(&s)?;
            } else {
                out!(
                    "relay:        {}",
                    if s.relay_enabled { "on" } else { "off" }
                );
                out!("relay budget: {} MiB", s.relay_budget_mib);
                out!(
                    "bluetooth:    {}",
                    if s.bluetooth_enabled { "on" } else { "off" }
                );
                out!(
                    "wifi direct:  {}",
                    if s.wifi_direct_enabled { "on" } else { "off" }
                );
                out!("wifi host:    {}", if s.wifi_host { "on" } else { "off" });
                match (&s.lan_interface, &s.lan_url) {
                    (Some(i), Some(u)) => out!("lan mode:     on ({i}): {u}"),
                    _ => out!("lan mode:     off"),
                }
                let choices: Vec<String> = s
                    .lan_interfaces
                    .iter()
                    .map(|i| format!("{} ({})", i.name, i.addr))
                    .collect();
                out!(
                    "lan choices:  {}",
                    if choices.is_empty() {
                        "none (no network with an IPv4 address)".to_owned()
                    } else {
                        choices.join(", ")
                    }
                );
            }
        }
        Cmd::Wifi(WifiCmd::Status) => {
            let s = client.status().await.map_err(explain)?;
            if json {
                print_json(&serde_json::json!({"wifi_direct": s.wifi_direct}))?;
            } else {
                out!("Wi-Fi Direct: {}", s.wifi_direct);
            }
        }
        Cmd::Wifi(WifiCmd::Host { on }) => {
            let u = peddlenet_api::SettingsUpdate {
                wifi_host: Some(on),
                ..Default::default()
            };
            let s = client.set_settings(u).await.map_err(explain)?;
            if json {
                print_json(&s)?;
            } else if !s.wifi_direct_enabled {
                out!(
                    "hosting {}, but Wi-Fi Direct is off (peddlenet settings --wifi-direct on)",
                    if on { "on" } else { "off" }
                );
            } else if on {
                out!(
                    "hosting on: the group starts in a few seconds; `peddlenet wifi qr` shows its QR code"
                );
            } else {
                out!("hosting off");
            }
        }
        Cmd::Wifi(WifiCmd::Qr { no_qr }) => {
            let h = client.wifi_hotspot().await.map_err(explain)?;
            if json {
                print_json(&h)?;
            } else {
                if !no_qr {
                    out!("{}", qr(&h.qr)?);
                }
                out!(
                    "Wi-Fi network \"{}\", passphrase {}",
                    clean(&h.ssid),
                    clean(&h.passphrase)
                );
                if let Some(url) = &h.web_url {
                    out!("web UI in that network: {url}");
                }
            }
        }
        Cmd::Room(rc) => room(&client, rc, json).await?,
        Cmd::Web { open } => {
            let (url, expires_ms) = client.web_login().await.map_err(explain)?;
            let secs = expires_ms.saturating_sub(now_ms()) / 1000;
            if json {
                print_json(&serde_json::json!({"url": url, "expires_ms": expires_ms}))?;
            } else if open {
                let st = std::process::Command::new("xdg-open").arg(&url).status();
                if !st.map(|s| s.success()).unwrap_or(false) {
                    anyhow::bail!(
                        "cannot open a browser (xdg-open); open this link yourself within {secs}s:\n{url}"
                    );
                }
            } else {
                out!("{url}");
                eprintln!("(works once, within {secs}s, in a browser on this machine)");
            }
        }
        Cmd::Guest(GuestCmd::Create {
            room,
            minutes,
            no_qr,
        }) => {
            let g = client
                .guest_create(&room, minutes.map(|m| m.saturating_mul(60)))
                .await
                .map_err(explain)?;
            let url = g.url.clone().unwrap_or_default();
            if json {
                print_json(&g)?;
            } else {
                if !no_qr {
                    out!("{}", qr(&url)?);
                }
                out!(
                    "guest pass {} to {:?}, until {}:\n{url}",
                    g.id,
                    clean(&g.room_name),
                    date_time(g.expires_ms)
                );
            }
        }
        Cmd::Guest(GuestCmd::List) => {
            let list = client.guest_list().await.map_err(explain)?;
            if json {
                print_json(&list)?;
            } else if list.is_empty() {
                out!("no guest passes");
            } else {
                for g in list {
                    out!(
                        "{}  {}  until {}",
                        g.id,
                        clean(&g.room_name),
                        date_time(g.expires_ms)
                    );
                }
            }
        }
        Cmd::Guest(GuestCmd::Revoke { id }) => {
            client.guest_revoke(&id).await.map_err(explain)?;
            if json {
                print_json(&serde_json::json!({"revoked": id}))?;
            } else {
                out!("guest pass {id} revoked");
            }
        }
        Cmd::Send { room, text } => {
            let text = text.join(" ");
            let m = client.send(&room, &text).await.map_err(explain)?;
            if json {
                print_json(&m)?;
            } else {
                out!("sent{}", delivery(&m.delivery));
            }
        }
        Cmd::History {
            room,
            limit,
            before,
        } => {
            let (msgs, next) = client
                .history(&room, before, Some(limit))
                .await
                .map_err(explain)?;
            if json {
                print_json(&serde_json::json!({"messages": msgs, "next": next}))?;
            } else {
                if let Some(n) = &next {
                    out!("(older messages: --before {n})");
                }
                for m in msgs.iter().rev() {
                    print_message(m)?;
                }
            }
        }
        Cmd::Watch => {
            let mut events = client.subscribe().await.map_err(explain)?;
            if !json {
                eprintln!("watching; Ctrl-C to stop");
            }
            while let Some(e) = events.next().await {
                if json {
                    out!("{}", serde_json::to_string(&e)?);
                } else {
                    match &e {
                        Event::Message { message } => print_message(message)?,
                        Event::PeerUp { peer } => out!(
                            "peer up: {} via {:?} at {}",
                            peer.peer,
                            peer.link,
                            peer.addr
                        ),
                        Event::PeerDown { peer } => out!("peer down: {peer}"),
                        Event::Delivery {
                            id, delivery: d, ..
                        } => out!("message {}:{}", &id[..16], delivery(&Some(*d))),
                        Event::Lagged { missed } => out!("(missed {missed} events)"),
                    }
                }
                std::io::stdout().flush()?;
            }
            anyhow::bail!("the daemon went away");
        }
    }
    Ok(())
}

async fn room(client: &Client, rc: RoomCmd, json: bool) -> anyhow::Result<()> {
    match rc {
        RoomCmd::Create { name } => {
            let r = client.room_create(&name).await.map_err(explain)?;
            let (_, uri) = client.room_invite(&r.id).await.map_err(explain)?;
            if json {
                print_json(&serde_json::json!({"room": r, "invite": uri}))?;
            } else {
                out!("created room {:?} ({})", r.name, &r.id[..16]);
                out!("invite: {uri}");
                out!(
                    "show it as a QR code with `peddlenet room invite {:?}`",
                    r.name
                );
            }
        }
        RoomCmd::Invite { room, no_qr } => {
            let (r, uri) = client.room_invite(&room).await.map_err(explain)?;
            if json {
                print_json(&serde_json::json!({"room": r, "invite": uri}))?;
            } else {
                if !no_qr {
                    out!("{}", qr(&uri)?);
                }
                out!("scan to join {:?}, or paste:\n{uri}", r.name);
            }
        }
        RoomCmd::Join { invite } => {
            let r = client.room_join(&invite).await.map_err(explain)?;
            if json {
                print_json(&r)?;
            } else {
                out!("joined {:?} ({})", clean(&r.name), &r.id[..16]);
            }
        }
        RoomCmd::Leave { room } => {
            client.room_leave(&room).await.map_err(explain)?;
            if json {
                print_json(&serde_json::json!({"left": room}))?;
            } else {
                out!("left {room:?}");
            }
        }
        RoomCmd::List => {
            let rooms = client.room_list().await.map_err(explain)?;
            if json {
                print_json(&rooms)?;
            } else if rooms.is_empty() {
                out!("no rooms yet: `peddlenet room create NAME` or `peddlenet room join INVITE`");
            } else {
                for r in &rooms {
                    print_room(r)?;
                }
            }
        }
    }
    Ok(())
}

fn explain(e: ClientError) -> anyhow::Error {
    anyhow::Error::new(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(date_time(0), "1970-01-01 00:00Z");
        assert_eq!(date_time(951_782_400_000), "2000-02-29 00:00Z");
        assert_eq!(date_time(1_795_300_000_000), "2026-11-21 22:26Z");
    }

    /// clap checks its definitions only when a command is parsed; check them
    /// all here, and the on/off arguments.
    #[test]
    fn command_line_definitions() {
        use clap::{CommandFactory, Parser};
        Cli::command().debug_assert();
        let c = Cli::try_parse_from(["peddlenet", "wifi", "host", "off"]).unwrap();
        assert!(matches!(c.cmd, Cmd::Wifi(WifiCmd::Host { on: false })));
        let c = Cli::try_parse_from(["peddlenet", "wifi", "host", "on"]).unwrap();
        assert!(matches!(c.cmd, Cmd::Wifi(WifiCmd::Host { on: true })));
        assert!(Cli::try_parse_from(["peddlenet", "wifi", "host", "maybe"]).is_err());
    }
}
