//! The web UI served by a real daemon: its defences over raw HTTP (Host,
//! Origin, CSRF, cookies, expired and revoked guest passes, body limit), and
//! the whole flow in Debian's Chromium (tests/web/e2e.mjs, Playwright):
//! owner sign-in, create, send, a second daemon's message live, a guest by
//! QR URL with a nickname, confinement to its room, revocation.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use peddlenet_api::{ClientError, ErrorCode};
use peddlenet_tests::*;

/// One HTTP/1.1 exchange; `(status, headers, body)`.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the web UI");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

fn web_addr(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

fn cookie(head: &str) -> String {
    head.lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned()
}

/// Opens a guest pass's URL path: the session cookie, and the session token
/// the page gets in the redirect's fragment.
fn enter_guest(addr: &str, token_path: &str) -> (String, String) {
    let (st, head, body) = http(addr, "GET", token_path, &[("Host", addr)], "");
    assert_eq!(st, 303, "{body}");
    let token = head
        .lines()
        .find_map(|l| l.strip_prefix("location: /guest#"))
        .unwrap_or_else(|| panic!("a redirect to /guest#<token>: {head}"))
        .trim()
        .to_owned();
    (cookie(&head), token)
}

/// Signs in with a fresh one-time code: the cookie and the session token.
async fn sign_in(c: &peddlenet_api::Client, addr: &str) -> (String, String) {
    let (url, _) = c.web_login().await.unwrap();
    let code = url.split('#').nth(1).unwrap();
    let origin = format!("http://{addr}");
    let (st, head, body) = http(
        addr,
        "POST",
        "/api/login",
        &[
            ("Host", addr),
            ("Origin", &origin),
            ("Content-Type", "application/json"),
        ],
        &format!("{{\"code\":\"{code}\"}}"),
    );
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    (
        cookie(&head),
        v["token"].as_str().expect("a session token").to_owned(),
    )
}

async fn web_of(c: &peddlenet_api::Client) -> String {
    web_addr(
        c.status()
            .await
            .unwrap()
            .web
            .first()
            .expect("the web UI is on"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_refuses_foreign_hosts_origins_and_stale_passes() {
    let _g = serial();
    let a = Daemon::start(DaemonOpts::loopback("Ana"));
    let c = a.client().await;
    let room = c.room_create("camp").await.unwrap();
    let other = c.room_create("private").await.unwrap();
    let base = c
        .status()
        .await
        .unwrap()
        .web
        .first()
        .cloned()
        .expect("the web UI is on");
    let addr = web_addr(&base);
    let host = addr.as_str();
    let origin = format!("http://{addr}");

    // DNS rebinding: another name for this address is refused, even for the page.
    let (st, _, body) = http(&addr, "GET", "/", &[("Host", "attacker.example:4718")], "");
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("unknown Host header"));
    assert_eq!(http(&addr, "GET", "/", &[("Host", host)], "").0, 200);

    // Sign in: the code works once, and only from this origin.
    let (url, _) = c.web_login().await.unwrap();
    let code = url.split('#').nth(1).unwrap();
    let login = format!("{{\"code\":\"{code}\"}}");
    let json = ("Content-Type", "application/json");
    let (st, _, body) = http(
        &addr,
        "POST",
        "/api/login",
        &[("Host", host), ("Origin", "http://attacker.example"), json],
        &login,
    );
    assert_eq!(st, 403, "a foreign Origin: {body}");
    assert!(body.contains("cross-origin"));
    assert_eq!(
        http(&addr, "POST", "/api/login", &[("Host", host), json], &login).0,
        403,
        "no Origin at all"
    );
    let (st, head, body) = http(
        &addr,
        "POST",
        "/api/login",
        &[("Host", host), ("Origin", &origin), json],
        &login,
    );
    assert_eq!(st, 200, "{body}");
    assert!(
        head.contains("HttpOnly") && head.contains("SameSite=Strict"),
        "{head}"
    );
    assert!(
        !head.to_ascii_lowercase().contains("access-control-allow"),
        "no CORS: {head}"
    );
    let owner = cookie(&head);
    let csrf: serde_json::Value = serde_json::from_str(&body).unwrap();
    let csrf = csrf["token"].as_str().unwrap().to_owned();
    assert_eq!(
        http(
            &addr,
            "POST",
            "/api/login",
            &[("Host", host), ("Origin", &origin), json],
            &login
        )
        .0,
        403,
        "used once"
    );

    // A change needs the session token and this origin, even with the cookie.
    let send = r#"{"text":"hello"}"#;
    let path = format!("/api/rooms/{}/messages", room.id);
    let ok = [
        ("Host", host),
        ("Origin", origin.as_str()),
        ("Cookie", owner.as_str()),
        ("X-Session-Token", csrf.as_str()),
        json,
    ];
    assert_eq!(
        http(
            &addr,
            "POST",
            &path,
            &[("Host", host), ("Origin", origin.as_str()), json],
            send
        )
        .0,
        401,
        "no session"
    );
    let no_csrf = [
        ("Host", host),
        ("Origin", origin.as_str()),
        ("Cookie", owner.as_str()),
        json,
    ];
    let (st, _, body) = http(&addr, "POST", &path, &no_csrf, send);
    assert_eq!(st, 401);
    assert!(body.contains("session token"), "{body}");
    let wrong_origin = [
        ("Host", host),
        ("Origin", "http://localhost:1"),
        ("Cookie", owner.as_str()),
        ("X-Session-Token", csrf.as_str()),
        json,
    ];
    assert_eq!(http(&addr, "POST", &path, &wrong_origin, send).0, 403);
    let (st, _, body) = http(&addr, "POST", &path, &ok, send);
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        history_ids(&c, &room.id).await.len(),
        1,
        "exactly the one accepted request sent"
    );

    // Bodies are bounded.
    let huge = format!("{{\"text\":\"{}\"}}", "x".repeat(70 * 1024));
    assert_eq!(http(&addr, "POST", &path, &ok, &huge).0, 413);

    // Guest passes: confined, and refused once revoked or expired.
    let pass = c.guest_create(&room.id, Some(5)).await.unwrap();
    let token_path = pass
        .url
        .as_deref()
        .unwrap()
        .split_once(&addr)
        .unwrap()
        .1
        .to_owned();
    let (guest, gtoken) = enter_guest(&addr, &token_path);
    let g = [
        ("Host", host),
        ("Cookie", guest.as_str()),
        ("X-Session-Token", gtoken.as_str()),
    ];
    assert_eq!(http(&addr, "GET", "/api/guest/messages", &g, "").0, 200);
    let (st, _, body) = http(
        &addr,
        "GET",
        &format!("/api/rooms/{}/messages", other.id),
        &g,
        "",
    );
    assert_eq!(st, 403, "a guest reads no other room: {body}");
    assert_eq!(
        http(
            &addr,
            "GET",
            &format!("/api/rooms/{}/messages", room.id),
            &g,
            ""
        )
        .0,
        403,
        "nor its own through the owner API"
    );
    assert_eq!(http(&addr, "GET", "/api/rooms", &g, "").0, 403);
    // The pass names its room by id, exactly: a room *named* like that id
    // is another room, and the guest never sees it.
    let decoy = c.room_create(&room.id).await.unwrap();
    c.send(&decoy.id, "decoy: not for guests").await.unwrap();
    let (st, _, body) = http(&addr, "GET", "/api/guest/messages", &g, "");
    assert_eq!(st, 200);
    assert!(body.contains("hello") && !body.contains("decoy"), "{body}");
    // Expiry (the pass lasts 5 s): the session and the URL stop working.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let (st, _, body) = http(&addr, "GET", "/api/guest/messages", &g, "");
    assert_eq!(st, 403, "expired: {body}");
    assert!(body.contains("expired"), "{body}");
    let (st, _, body) = http(&addr, "GET", &token_path, &[("Host", host)], "");
    assert_eq!(st, 403);
    assert!(body.contains("This guest pass does not work"));
    // Revocation.
    let pass = c.guest_create(&room.id, None).await.unwrap();
    let token_path = pass
        .url
        .as_deref()
        .unwrap()
        .split_once(&addr)
        .unwrap()
        .1
        .to_owned();
    let (guest, gtoken) = enter_guest(&addr, &token_path);
    let g = [
        ("Host", host),
        ("Cookie", guest.as_str()),
        ("X-Session-Token", gtoken.as_str()),
    ];
    assert_eq!(http(&addr, "GET", "/api/guest/messages", &g, "").0, 200);
    let revoke = format!("/api/guests/{}", pass.id);
    assert_eq!(http(&addr, "DELETE", &revoke, &ok[..4], "").0, 204);
    let (st, _, body) = http(&addr, "GET", "/api/guest/messages", &g, "");
    assert!(st == 403 || st == 401, "revoked: {st} {body}");
    assert_eq!(
        http(&addr, "GET", &token_path, &[("Host", host)], "").0,
        403
    );
    assert!(c.guest_list().await.unwrap().is_empty());
    // A guest may send a burst of 5, then one a second.
    let pass = c.guest_create(&room.id, None).await.unwrap();
    let token_path = pass
        .url
        .as_deref()
        .unwrap()
        .split_once(&addr)
        .unwrap()
        .1
        .to_owned();
    let (guest, gcsrf) = enter_guest(&addr, &token_path);
    let gw = [
        ("Host", host),
        ("Origin", origin.as_str()),
        ("Cookie", guest.as_str()),
        ("X-Session-Token", gcsrf.as_str()),
        json,
    ];
    let (st, _, body) = http(
        &addr,
        "POST",
        "/api/guest/messages",
        &gw,
        r#"{"text":"too early"}"#,
    );
    assert_eq!(st, 400, "no nickname yet: {body}");
    assert_eq!(
        http(
            &addr,
            "POST",
            "/api/guest/nickname",
            &gw,
            r#"{"nickname":"Mo"}"#
        )
        .0,
        200
    );
    let replies: Vec<(u16, String, String)> = (0..6)
        .map(|i| {
            http(
                &addr,
                "POST",
                "/api/guest/messages",
                &gw,
                &format!("{{\"text\":\"m{i}\"}}"),
            )
        })
        .collect();
    let codes: Vec<u16> = replies.iter().map(|r| r.0).collect();
    assert_eq!(codes, [200, 200, 200, 200, 200, 429]);
    assert!(
        replies[5].1.contains("retry-after: 1"),
        "a 429 says when to come back: {}",
        replies[5].1
    );
    let (h, _) = c.history(&room.id, None, Some(10)).await.unwrap();
    assert_eq!(
        h.iter().filter(|m| m.author_name == "Mo (guest)").count(),
        5
    );

    // The CLI revokes too, and says so for an unknown id.
    let p = c.guest_create(&room.id, None).await.unwrap();
    let out = a.cli(&["guest", "revoke", &p.id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = a.cli(&["guest", "revoke", &p.id]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no guest pass")
    );
}

fn chromium() -> Option<String> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| p.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_end_to_end_in_chromium() {
    let test = "web::the_web_ui_end_to_end_in_chromium";
    let Some(chromium) = chromium() else {
        return skip(
            test,
            "Chromium is not installed (Debian: chromium; .ci/run installs it)",
        );
    };
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    if !e2e.join("node_modules/playwright-core").exists() {
        return skip(
            test,
            "playwright-core is not installed (cd tests/web && npm ci; .ci/run does it)",
        );
    }
    let _g = serial();
    let a = Daemon::start(DaemonOpts::loopback("Ana"));
    let ca = a.client().await;
    let room = ca.room_create("camp").await.unwrap();
    let other = ca.room_create("private").await.unwrap();
    let (_, invite) = ca.room_invite(&room.id).await.unwrap();
    let b = Daemon::start(DaemonOpts::loopback("Ben").peer(&a.tcp_addr().await));
    let cb = b.client().await;
    // A right-to-left override in a name must not reorder the page around it.
    let b_name = "Ben\u{202e}fdp.exe";
    let out = b.cli(&["name", b_name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cb.room_join(&invite).await.unwrap();
    wait_room_peers(&ca, &room.id, 1).await;
    let (login, _) = ca.web_login().await.unwrap();
    let guest = ca.guest_create(&room.id, None).await.unwrap().url.unwrap();
    let shots = bin("peddlenetd").parent().unwrap().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let (shots_dir, b_socket) = (shots.clone(), b.socket.clone());

    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("e2e.mjs")
            .current_dir(&e2e)
            .env("CHROMIUM", chromium)
            .env("LOGIN_URL", login)
            .env("GUEST_URL", guest)
            .env("OTHER_ROOM", other.id)
            .env("CLI", bin("peddlenet"))
            .env("B_SOCKET", b_socket)
            .env("SHOTS", shots_dir)
            .env("B_NAME", b_name)
            .output()
            .expect("node")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser test failed (above)");
    assert!(
        stdout.contains("revoked: the guest's page says so"),
        "every step ran"
    );
    for shot in ["web-owner.png", "web-guest.png", "web-not-live.png"] {
        assert!(
            std::fs::metadata(shots.join(shot))
                .map(|m| m.len() > 10_000)
                .unwrap_or(false),
            "{shot} was taken"
        );
    }
    drop(a);
}

/// A free TCP port on 127.0.0.1 (the web UI must keep its port across a
/// restart, so the test picks one rather than port 0).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The web UI as people use it (tests/web/ui.mjs, Playwright): the guest
/// page on a phone (the list scrolls, the composer stays), who is who with
/// two guests of one nickname, the owner opening a guest link, the chat's
/// details (multi-line, links, unread counts, separators, grouping, sign
/// out, leave, rename, members), a daemon restart under live pages (and
/// one that lost the sessions: the page says it is signed out), and
/// screenshots at the sizes people use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_as_people_use_it_in_chromium() {
    let test = "web::the_web_ui_as_people_use_it_in_chromium";
    let Some(chromium) = chromium() else {
        return skip(
            test,
            "Chromium is not installed (Debian: chromium; .ci/run installs it)",
        );
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    if !dir.join("node_modules/playwright-core").exists() {
        return skip(
            test,
            "playwright-core is not installed (cd tests/web && npm ci; .ci/run does it)",
        );
    }
    let _g = serial();
    let port = free_port();
    let mut a = Daemon::start(
        DaemonOpts::loopback("Ana").config(&format!("[web]\nlisten = \"127.0.0.1:{port}\"\n")),
    );
    let ca = a.client().await;
    let camp = ca.room_create("camp").await.unwrap();
    ca.room_create("other").await.unwrap();
    // Enough history that the guest's list must scroll on a phone.
    for i in 1..=40 {
        ca.send(&camp.id, &format!("earlier message {i} of 40"))
            .await
            .unwrap();
    }
    let (login, _) = ca.web_login().await.unwrap();
    let pass = ca.guest_create(&camp.id, None).await.unwrap().url.unwrap();
    let pass2 = ca.guest_create(&camp.id, None).await.unwrap().url.unwrap();
    let shots = bin("peddlenetd").parent().unwrap().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let cli_path = bin("peddlenet");
    let socket = a.socket.clone();
    let shots_dir = shots.clone();

    let (ok, stdout) = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut child = Command::new("node")
            .arg("ui.mjs")
            .current_dir(&dir)
            .env("CHROMIUM", chromium)
            .env("LOGIN_URL", login)
            .env("GUEST_URL", pass)
            .env("GUEST_URL_2", pass2)
            .env("CLI", cli_path)
            .env("A_SOCKET", socket)
            .env("SHOTS", &shots)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("node");
        let mut to_node = child.stdin.take().unwrap();
        let mut all = String::new();
        for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            eprintln!("{line}");
            all.push_str(&line);
            all.push('\n');
            // The script asks for a restart of the daemon under its pages.
            if line.starts_with("ui: restart the daemon") {
                a.terminate();
                if line.ends_with("without its sessions") {
                    std::fs::remove_file(a.data_dir.join("web-sessions.json"))
                        .expect("the web UI keeps its sessions in the data folder");
                }
                a.restart();
                to_node.write_all(b"restarted\n").unwrap();
            }
        }
        (child.wait().unwrap().success(), all)
    })
    .await
    .unwrap();
    assert!(ok, "the browser test failed (above)");
    assert!(stdout.contains("ui: all steps passed"), "every step ran");
    for shot in [
        "web-owner-1920x1080.png",
        "web-owner-960x640.png",
        "web-owner-800x600.png",
        "web-guest-390x844.png",
    ] {
        assert!(
            std::fs::metadata(shots_dir.join(shot))
                .map(|m| m.len() > 10_000)
                .unwrap_or(false),
            "{shot} was taken"
        );
    }
}

/// LAN mode: the web UI also listens on the chosen interface, guest URLs
/// point there, and another host (a phone on the camp network) reaches the
/// pass's room; this machine-only listener stays on loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lan_mode_serves_guests_on_the_chosen_interface() {
    if let Some(why) = netns::Lab::unavailable() {
        return skip("web::lan_mode_serves_guests_on_the_chosen_interface", &why);
    }
    let _g = serial();
    let lab = netns::Lab::links("w", 2, &[(0, 1)], 215).expect("network namespaces");
    let host_ip = lab.addr(0, 1);
    let a = Daemon::start(
        DaemonOpts::in_netns("A", &lab.hosts[0], &[])
            .config("[web]\nlisten = \"127.0.0.1:4718\"\nlan_interface = \"l0\"\n"),
    );
    let c = a.client().await;
    let room = c.room_create("camp").await.unwrap();
    c.send(&room.id, "welcome to camp").await.unwrap();
    let web = c.status().await.unwrap().web;
    assert_eq!(
        web,
        vec![
            "http://127.0.0.1:4718/".to_owned(),
            format!("http://{host_ip}:4718/")
        ]
    );
    let pass = c.guest_create(&room.id, None).await.unwrap();
    let url = pass.url.unwrap();
    assert!(
        url.starts_with(&format!("http://{host_ip}:4718/g/")),
        "the guest URL is on the LAN address: {url}"
    );

    // The phone: another host, HTTP from its own namespace.
    let phone = r##"
import http.client, json, sys
url = sys.argv[1]
host = url.split("/")[2]
c = http.client.HTTPConnection(host, timeout=10)
c.request("GET", "/" + url.split("/", 3)[3])
r = c.getresponse(); r.read()
assert r.status == 303, r.status
cookie = r.getheader("set-cookie").split(";")[0]
token = r.getheader("location").split("#", 1)[1]
h = {"Cookie": cookie, "X-Session-Token": token}
c.request("GET", "/api/guest/messages", headers=h)
r = c.getresponse(); body = json.loads(r.read())
assert r.status == 200, (r.status, body)
print(json.dumps([m["text"] for m in body["messages"]]))
c.request("GET", "/api/rooms", headers=h)
r = c.getresponse(); r.read()
print(r.status)
"##;
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &lab.hosts[1], "python3", "-c", phone, &url])
        .output()
        .expect("python3 in the phone's namespace");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["[\"welcome to camp\"]", "403"],
        "the guest reads its room, and nothing else"
    );
    // The loopback listener is not on the LAN.
    let probe = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.hosts[1],
            "python3",
            "-c",
            "import socket; socket.create_connection(('127.0.0.1', 4718), timeout=2)",
        ])
        .output()
        .unwrap();
    assert!(
        !probe.status.success(),
        "nothing listens on the phone's own loopback"
    );
}

/// The phone's side of LAN mode: opens a guest URL from namespace `ns` and
/// reads the pass's room; `Err` with what went wrong (a refused connection).
fn phone_reads(ns: &str, url: &str) -> Result<String, String> {
    let phone = r##"
import http.client, json, sys
url = sys.argv[1]
host = url.split("/")[2]
c = http.client.HTTPConnection(host, timeout=5)
c.request("GET", "/" + url.split("/", 3)[3])
r = c.getresponse(); r.read()
assert r.status == 303, r.status
cookie = r.getheader("set-cookie").split(";")[0]
token = r.getheader("location").split("#", 1)[1]
h = {"Cookie": cookie, "X-Session-Token": token}
c.request("GET", "/api/guest/messages", headers=h)
r = c.getresponse(); body = json.loads(r.read())
assert r.status == 200, (r.status, body)
print(json.dumps([m["text"] for m in body["messages"]]))
c.request("GET", "/api/status", headers=h)
r = c.getresponse(); r.read()
print(r.status)
"##;
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", phone, url])
        .output()
        .expect("python3 in the phone's namespace");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// LAN mode through IPC (`set_settings`), as the desktop app's "Use LAN"
/// does: the interfaces on offer (never loopback), bad names refused with
/// nothing changed, on and off at once without a restart (a phone on the
/// other end of the link reads its room, then is refused), and the choice
/// kept across a restart, winning over the config file's `lan_interface`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lan_mode_turns_on_and_off_over_ipc() {
    if let Some(why) = netns::Lab::unavailable() {
        return skip("web::lan_mode_turns_on_and_off_over_ipc", &why);
    }
    let _g = serial();
    let lab = netns::Lab::links("v", 2, &[(0, 1)], 216).expect("network namespaces");
    let host_ip = lab.addr(0, 1);
    let lan_base = format!("http://{host_ip}:4718");
    // The config file turns it on: that is the default until Settings say otherwise.
    let mut a = Daemon::start(
        DaemonOpts::in_netns("A", &lab.hosts[0], &[])
            .config("[web]\nlisten = \"127.0.0.1:4718\"\nlan_interface = \"l0\"\n"),
    );
    let c = a.client().await;
    let room = c.room_create("camp").await.unwrap();
    c.send(&room.id, "welcome to camp").await.unwrap();
    let s = c.settings().await.unwrap();
    assert_eq!(s.lan_interface.as_deref(), Some("l0"), "from the file");
    assert_eq!(s.lan_url.as_deref(), Some(lan_base.as_str()));
    assert_eq!(
        s.lan_interfaces,
        vec![peddlenet_api::LanInterface {
            name: "l0".into(),
            addr: host_ip.parse().unwrap()
        }],
        "the namespace's link, and not its loopback"
    );

    // Bad input: a clear error, nothing changed.
    let set = |name: &str, budget: Option<u64>| peddlenet_api::SettingsUpdate {
        lan_interface: Some(name.into()),
        relay_budget_mib: budget,
        ..Default::default()
    };
    for (update, code, says) in [
        (set("lo", None), ErrorCode::BadRequest, "loopback"),
        (
            set("nosuch0", None),
            ErrorCode::BadRequest,
            "no network interface named \"nosuch0\"",
        ),
        (
            set(&"x".repeat(16), None),
            ErrorCode::TooLong,
            "at most 15 bytes",
        ),
        // A bad budget alongside: LAN mode is not turned off either.
        (set("", Some(0)), ErrorCode::BadRequest, "relay budget"),
    ] {
        match c.set_settings(update).await {
            Err(ClientError::Api(e)) => {
                assert_eq!(e.code, code, "{}", e.message);
                assert!(e.message.contains(says), "{}", e.message);
            }
            other => panic!("refused, not {other:?}"),
        }
        let now = c.settings().await.unwrap();
        assert_eq!(now.lan_interface.as_deref(), Some("l0"), "unchanged");
        assert_eq!(now.relay_budget_mib, s.relay_budget_mib, "unchanged");
    }

    // A pass; the phone reads its room at the LAN address. Owner API: refused.
    let url = c.guest_create(&room.id, None).await.unwrap().url.unwrap();
    assert!(url.starts_with(&format!("{lan_base}/g/")), "{url}");
    assert_eq!(
        phone_reads(&lab.hosts[1], &url)
            .unwrap()
            .lines()
            .collect::<Vec<_>>(),
        ["[\"welcome to camp\"]", "403"]
    );
    // The owner's sign-in stays on this machine.
    let (login, _) = c.web_login().await.unwrap();
    assert!(login.starts_with("http://127.0.0.1:4718/"), "{login}");

    // Off, at once: the phone is refused; the pass's link is this machine's.
    let off = c.set_settings(set("", None)).await.unwrap();
    assert_eq!((off.lan_interface, off.lan_url), (None, None));
    assert_eq!(
        c.status().await.unwrap().web,
        vec!["http://127.0.0.1:4718/".to_owned()]
    );
    let refused = phone_reads(&lab.hosts[1], &url).unwrap_err();
    assert!(refused.contains("Connection refused"), "{refused}");

    // Kept across a restart, over the file's "l0".
    assert!(a.terminate().success());
    a.restart();
    let c = a.client().await;
    assert_eq!(c.settings().await.unwrap().lan_interface, None);
    let url = c.guest_create(&room.id, None).await.unwrap().url.unwrap();
    assert!(url.starts_with("http://127.0.0.1:4718/g/"), "{url}");

    // On again through IPC: the same pass, at the LAN address.
    let on = c.set_settings(set("l0", None)).await.unwrap();
    assert_eq!(on.lan_interface.as_deref(), Some("l0"));
    assert_eq!(on.lan_url.as_deref(), Some(lan_base.as_str()));
    let moved = url.replace("http://127.0.0.1:4718", &lan_base);
    assert_eq!(
        phone_reads(&lab.hosts[1], &moved).unwrap().lines().next(),
        Some("[\"welcome to camp\"]")
    );
    assert!(
        c.guest_create(&room.id, None)
            .await
            .unwrap()
            .url
            .unwrap()
            .starts_with(&lan_base)
    );
    assert!(a.terminate().success());
    a.restart();
    let c = a.client().await;
    assert_eq!(
        c.settings().await.unwrap().lan_interface.as_deref(),
        Some("l0"),
        "on across a restart"
    );
    // The CLI: off, and the choices on offer.
    let out = Command::new(bin("peddlenet"))
        .arg("--socket")
        .arg(&a.socket)
        .args(["settings", "--lan", ""])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("lan mode:     off"), "{text}");
    assert!(
        text.contains(&format!("lan choices:  l0 ({host_ip})")),
        "{text}"
    );
    assert_eq!(c.settings().await.unwrap().lan_interface, None);
}

/// LAN mode from the owner page (tests/web/lan.mjs, Playwright): a guest
/// pass at 127.0.0.1 offers "Use LAN: l0 (…)", which turns LAN mode on and
/// shows the same pass at the LAN address (a phone at the other end of the
/// link opens it); the Guests tab shows the setting and turns it off. The
/// browser runs in the daemon's namespace, so only the test's link is used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lan_mode_from_the_owner_page_in_chromium() {
    let test = "web::lan_mode_from_the_owner_page_in_chromium";
    let Some(chromium) = chromium() else {
        return skip(
            test,
            "Chromium is not installed (Debian: chromium; .ci/run installs it)",
        );
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    if !dir.join("node_modules/playwright-core").exists() {
        return skip(
            test,
            "playwright-core is not installed (cd tests/web && npm ci; .ci/run does it)",
        );
    }
    if let Some(why) = netns::Lab::unavailable() {
        return skip(test, &why);
    }
    let _g = serial();
    let lab = netns::Lab::links("u", 2, &[(0, 1)], 219).expect("network namespaces");
    let ip = lab.addr(0, 1);
    let a = Daemon::start(
        DaemonOpts::in_netns("A", &lab.hosts[0], &[])
            .config("[web]\nlisten = \"127.0.0.1:4718\"\n"),
    );
    let c = a.client().await;
    let room = c.room_create("camp").await.unwrap();
    c.send(&room.id, "welcome to camp").await.unwrap();
    let (login, _) = c.web_login().await.unwrap();
    let (ns, phone_ns) = (lab.hosts[0].clone(), lab.hosts[1].clone());
    let lan_ip = ip.clone();
    let (ok, out, phone) = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &ns, "node", "lan.mjs"])
            .current_dir(&dir)
            .env("CHROMIUM", chromium)
            .env("LOGIN_URL", login)
            .env("LAN_IP", lan_ip)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("node");
        let mut to_node = child.stdin.take().unwrap();
        let (mut all, mut phone) = (String::new(), None);
        for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            eprintln!("{line}");
            all.push_str(&line);
            all.push('\n');
            if let Some(url) = line.strip_prefix("lan: pass ") {
                phone = Some(phone_reads(&phone_ns, url));
                to_node.write_all(b"read\n").unwrap();
            }
        }
        (child.wait().unwrap().success(), all, phone)
    })
    .await
    .unwrap();
    assert!(ok, "the browser test failed (above)");
    assert!(out.contains("lan: all steps passed"), "every step ran");
    assert_eq!(
        phone
            .expect("the pass was shown at the LAN address")
            .unwrap()
            .lines()
            .next(),
        Some("[\"welcome to camp\"]"),
        "a phone on the LAN opens the pass shown"
    );
    assert_eq!(c.settings().await.unwrap().lan_interface, None, "off again");
}

/// Opens an event stream over a connection of its own: the status code and
/// the socket, positioned after the response's head.
fn open_stream(addr: &str, path: &str, cookie: &str) -> (u16, TcpStream) {
    let mut s = TcpStream::connect(addr).expect("connect to the web UI");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, s)
}

/// Reads `s` until `what` shows up; false at the end or after `within`.
fn read_until(s: &mut TcpStream, what: &str, within: Duration) -> bool {
    let end = std::time::Instant::now() + within;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < end {
        s.set_read_timeout(Some(
            end.saturating_duration_since(std::time::Instant::now())
                .max(Duration::from_millis(1)),
        ))
        .unwrap();
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => {
                seen.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&seen).contains(what) {
                    return true;
                }
            }
        }
    }
    false
}

/// Browsers send every cookie of 127.0.0.1 to every port: a page of another
/// server there gets the owner's cookie. The cookie alone reads nothing; the
/// session token only this origin's page holds must come with it. And two
/// daemons' web UIs on one machine name their cookies apart, so signing in
/// to one does not sign the other out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_alone_reads_nothing_and_two_web_uis_keep_their_sessions() {
    let _g = serial();
    let a = Daemon::start(DaemonOpts::loopback("Ana"));
    let b = Daemon::start(DaemonOpts::loopback("Ben"));
    let (ca, cb) = (a.client().await, b.client().await);
    ca.room_create("ana-only").await.unwrap();
    let (wa, wb) = (web_of(&ca).await, web_of(&cb).await);

    // A browser's cookie jar for 127.0.0.1, all ports together.
    let mut jar = std::collections::BTreeMap::new();
    let (ka, ta) = sign_in(&ca, &wa).await;
    let (kb, tb) = sign_in(&cb, &wb).await;
    for k in [&ka, &kb] {
        let (name, value) = k.split_once('=').unwrap();
        jar.insert(name.to_owned(), value.to_owned());
    }
    assert_eq!(
        jar.len(),
        2,
        "the two web UIs' cookies have names of their own"
    );
    let sent: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let sent = sent.join("; ");

    // What another port's server can replay: the cookies, without a token.
    for path in ["/api/rooms", "/api/session", "/api/status", "/api/events"] {
        let (st, _, body) = http(&wa, "GET", path, &[("Host", &wa), ("Cookie", &sent)], "");
        assert_eq!(st, 401, "{path} with the cookie alone: {body}");
        assert!(!body.contains("ana-only"));
    }
    assert_eq!(
        http(
            &wa,
            "GET",
            "/api/rooms",
            &[("Host", &wa), ("Cookie", &sent), ("X-Session-Token", &tb)],
            ""
        )
        .0,
        401,
        "another web UI's token is no good here"
    );
    // The page, with its token: both sessions work side by side.
    let (st, _, body) = http(
        &wa,
        "GET",
        "/api/rooms",
        &[("Host", &wa), ("Cookie", &sent), ("X-Session-Token", &ta)],
        "",
    );
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("ana-only"));
    assert_eq!(
        http(
            &wb,
            "GET",
            "/api/rooms",
            &[("Host", &wb), ("Cookie", &sent), ("X-Session-Token", &tb)],
            ""
        )
        .0,
        200
    );
    // An event stream, which cannot send headers, takes the token in its URL.
    let (st, _) = open_stream(&wa, &format!("/api/events?token={ta}"), &sent);
    assert_eq!(st, 200);
    let (st, _) = open_stream(&wa, &format!("/api/events?token={tb}"), &sent);
    assert_eq!(st, 401);
}

/// A guest re-opening its pass again and again, or opening event stream
/// after event stream, keeps the owner neither out nor from live updates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guests_cannot_sign_the_owner_out_nor_stop_its_live_view() {
    let _g = serial();
    let a = Daemon::start(DaemonOpts::loopback("Ana"));
    let c = a.client().await;
    let room = c.room_create("camp").await.unwrap();
    let addr = web_of(&c).await;
    let (owner, otoken) = sign_in(&c, &addr).await;
    let pass = c.guest_create(&room.id, None).await.unwrap();
    let token_path = pass
        .url
        .as_deref()
        .unwrap()
        .split_once(&addr)
        .unwrap()
        .1
        .to_owned();

    // The pass opened 100 times (waiting as told when over the rate).
    let mut guests = Vec::new();
    while guests.len() < 100 {
        let (st, head, _) = http(&addr, "GET", &token_path, &[("Host", &addr)], "");
        if st == 429 {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        assert_eq!(st, 303);
        let t = head
            .lines()
            .find_map(|l| l.strip_prefix("location: /guest#"))
            .unwrap()
            .trim()
            .to_owned();
        guests.push((cookie(&head), t));
    }
    let mut held = 0;
    for (k, t) in &guests {
        loop {
            let (st, _, _) = http(
                &addr,
                "GET",
                "/api/session",
                &[("Host", &addr), ("Cookie", k), ("X-Session-Token", t)],
                "",
            );
            if st == 429 {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            held += usize::from(st == 200);
            break;
        }
    }
    println!("figure: guest sessions of one pass held after 100 opens: {held}");
    assert!(held <= 4, "sessions per pass are capped: {held} held");
    let o = [
        ("Host", addr.as_str()),
        ("Cookie", owner.as_str()),
        ("X-Session-Token", otoken.as_str()),
    ];
    assert_eq!(
        http(&addr, "GET", "/api/rooms", &o, "").0,
        200,
        "the owner is still signed in"
    );

    // One guest floods event streams, more than all streams allowed before.
    let (gk, gt) = guests.last().unwrap().clone();
    let gpath = format!("/api/guest/events?token={gt}");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (stop2, addr2, gk2, gpath2) = (stop.clone(), addr.clone(), gk.clone(), gpath.clone());
    let flood = std::thread::spawn(move || {
        let (mut open, mut tries) = (Vec::new(), 0u32);
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) || tries < 80 {
            tries += 1;
            let (st, s) = open_stream(&addr2, &gpath2, &gk2);
            if st == 200 {
                open.push(s);
            } else {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        (open, tries)
    });
    std::thread::sleep(Duration::from_millis(1500));
    // The owner (re)connects meanwhile and gets its live updates.
    let t0 = std::time::Instant::now();
    let (st, mut live) = open_stream(&addr, &format!("/api/events?token={otoken}"), &owner);
    assert_eq!(st, 200, "the owner's stream is served while a guest floods");
    c.send(&room.id, "while flooded").await.unwrap();
    assert!(
        read_until(&mut live, "while flooded", Duration::from_secs(10)),
        "the owner's stream is live"
    );
    let took = t0.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut streams, tries) = flood.join().unwrap();
    println!(
        "figure: owner live again {} ms after reconnecting, while one guest opened {tries} streams",
        took.as_millis()
    );
    // The guest holds few streams: the others were ended for the newer ones.
    c.send(&room.id, "to the guests").await.unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let live_guest_streams = streams
        .iter_mut()
        .map(|s| read_until(s, "to the guests", Duration::from_millis(50)))
        .filter(|live| *live)
        .count();
    println!(
        "figure: guest streams still live of {} opened: {live_guest_streams}",
        streams.len()
    );
    assert!(
        live_guest_streams <= 4,
        "{live_guest_streams} guest streams live"
    );
    assert!(live_guest_streams >= 1, "the guest's newest stream works");
}

/// Connections: idle ones and ones with half-sent headers are closed after
/// the header timeout, one with a stalled body after the idle timeout, and
/// however many are opened, no more than the cap per address are held; the
/// web UI still serves a new request and the IPC socket still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_are_closed_and_capped() {
    let _g = serial();
    let a = Daemon::start(DaemonOpts::loopback("Ana").config(
        "[web]\nlisten = \"127.0.0.1:0\"\nheader_timeout_secs = 2\nidle_timeout_secs = 3\nmax_connections_per_address = 32\n",
    ));
    let c = a.client().await;
    let addr = web_of(&c).await;
    let held = |conns: &mut Vec<TcpStream>| {
        let mut open = 0;
        for s in conns.iter_mut() {
            s.set_nonblocking(true).unwrap();
            let mut b = [0u8; 256];
            open += usize::from(
                matches!(s.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            );
            s.set_nonblocking(false).unwrap();
        }
        open
    };
    let mut conns = Vec::new();
    for i in 0..300 {
        let mut s = TcpStream::connect(&addr).unwrap();
        if i % 2 == 1 {
            s.write_all(format!("GET / HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ").as_bytes())
                .unwrap();
        }
        conns.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let during = held(&mut conns);
    println!("figure: connections held open of 300 idle or half-sent: {during}");
    assert!(during <= 32, "{during} held past the per-address cap");
    // A new request is served (it takes an idle connection's place), and
    // the IPC socket is unaffected.
    assert_eq!(http(&addr, "GET", "/", &[("Host", &addr)], "").0, 200);
    c.status().await.expect("the IPC socket answers");
    // A stalled body: the request is in progress, the connection idle.
    let mut stalled = TcpStream::connect(&addr).unwrap();
    stalled
        .write_all(
            format!(
                "POST /api/login HTTP/1.1\r\nHost: {addr}\r\nOrigin: http://{addr}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"code\""
            )
            .as_bytes(),
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let after = held(&mut conns);
    println!("figure: of those, held open after the 2 s header timeout: {after}");
    assert_eq!(after, 0);
    let mut v = vec![stalled];
    assert_eq!(
        held(&mut v),
        1,
        "a stalled body is not cut by the header timeout"
    );
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(
        held(&mut v),
        0,
        "a stalled body is cut by the 3 s idle timeout"
    );
}

/// Another local page flooding 127.0.0.1 (with the owner's cookie, which it
/// gets, but not its token) uses up only its own rate: the owner's messages
/// all go through. Every 429 says when to come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_per_session_and_429s_say_when_to_retry() {
    let _g = serial();
    let a = Daemon::start(DaemonOpts::loopback("Ana"));
    let c = a.client().await;
    let room = c.room_create("camp").await.unwrap();
    let addr = web_of(&c).await;
    let (owner, otoken) = sign_in(&c, &addr).await;
    let (mut limited, mut without_retry_after) = (0, 0);
    for _ in 0..400 {
        let (st, head, _) = http(
            &addr,
            "GET",
            "/api/rooms",
            &[("Host", &addr), ("Cookie", &owner)],
            "",
        );
        if st == 429 {
            limited += 1;
            without_retry_after +=
                usize::from(!head.to_ascii_lowercase().contains("retry-after: "));
        }
    }
    assert!(limited > 0, "the flood itself is limited");
    assert_eq!(without_retry_after, 0, "every 429 has Retry-After");
    let origin = format!("http://{addr}");
    let path = format!("/api/rooms/{}/messages", room.id);
    let codes: Vec<u16> = (0..16)
        .map(|i| {
            http(
                &addr,
                "POST",
                &path,
                &[
                    ("Host", &addr),
                    ("Origin", &origin),
                    ("Cookie", &owner),
                    ("X-Session-Token", &otoken),
                    ("Content-Type", "application/json"),
                ],
                &format!("{{\"text\":\"m{i}\"}}"),
            )
            .0
        })
        .collect();
    assert_eq!(codes, [200; 16], "the owner's messages all went through");
}
