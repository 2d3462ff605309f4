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
    let csrf = csrf["csrf"].as_str().unwrap().to_owned();
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

    // A change needs the CSRF token and this origin, even with the cookie.
    let send = r#"{"text":"hello"}"#;
    let path = format!("/api/rooms/{}/messages", room.id);
    let ok = [
        ("Host", host),
        ("Origin", origin.as_str()),
        ("Cookie", owner.as_str()),
        ("X-CSRF-Token", csrf.as_str()),
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
    assert_eq!(st, 403);
    assert!(body.contains("CSRF"), "{body}");
    let wrong_origin = [
        ("Host", host),
        ("Origin", "http://localhost:1"),
        ("Cookie", owner.as_str()),
        ("X-CSRF-Token", csrf.as_str()),
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
    let (st, head, _) = http(&addr, "GET", &token_path, &[("Host", host)], "");
    assert_eq!(st, 303);
    assert!(head.contains("location: /guest"), "{head}");
    let guest = cookie(&head);
    let g = [("Host", host), ("Cookie", guest.as_str())];
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
    let (_, head, _) = http(&addr, "GET", &token_path, &[("Host", host)], "");
    let guest = cookie(&head);
    let g = [("Host", host), ("Cookie", guest.as_str())];
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
    let (_, head, _) = http(&addr, "GET", &token_path, &[("Host", host)], "");
    let guest = cookie(&head);
    let g = [("Host", host), ("Cookie", guest.as_str())];
    let (_, _, body) = http(&addr, "GET", "/api/session", &g, "");
    let gcsrf = serde_json::from_str::<serde_json::Value>(&body).unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_owned();
    let gw = [
        ("Host", host),
        ("Origin", origin.as_str()),
        ("Cookie", guest.as_str()),
        ("X-CSRF-Token", gcsrf.as_str()),
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
    let codes: Vec<u16> = (0..6)
        .map(|i| {
            http(
                &addr,
                "POST",
                "/api/guest/messages",
                &gw,
                &format!("{{\"text\":\"m{i}\"}}"),
            )
            .0
        })
        .collect();
    assert_eq!(codes, [200, 200, 200, 200, 200, 429]);
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
    for shot in ["web-owner.png", "web-guest.png"] {
        assert!(
            std::fs::metadata(shots.join(shot))
                .map(|m| m.len() > 10_000)
                .unwrap_or(false),
            "{shot} was taken"
        );
    }
    drop(a);
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
    let phone = r#"
import http.client, json, sys
url = sys.argv[1]
host = url.split("/")[2]
c = http.client.HTTPConnection(host, timeout=10)
c.request("GET", "/" + url.split("/", 3)[3])
r = c.getresponse(); r.read()
assert r.status == 303, r.status
cookie = r.getheader("set-cookie").split(";")[0]
c.request("GET", "/api/guest/messages", headers={"Cookie": cookie})
r = c.getresponse(); body = json.loads(r.read())
assert r.status == 200, (r.status, body)
print(json.dumps([m["text"] for m in body["messages"]]))
c.request("GET", "/api/rooms", headers={"Cookie": cookie})
r = c.getresponse(); r.read()
print(r.status)
"#;
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
