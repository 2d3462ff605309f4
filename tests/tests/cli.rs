//! The `peddlenet` CLI as people and scripts use it: readable errors, JSON
//! for every command, the invite as a QR code.

use peddlenet_tests::*;

fn text(o: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn no_daemon_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = cli(&dir.path().join("absent.sock"), &["status"]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("not running") && err.contains("peddlenetd"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_works_in_text_and_json() {
    let _g = serial();
    let a = Daemon::start(DaemonOpts::loopback("A"));
    a.client().await;
    let json = |args: &[&str]| -> serde_json::Value {
        let mut v = vec!["--json"];
        v.extend_from_slice(args);
        let o = a.cli(&v);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{args:?}: {err}");
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {out}"))
    };

    assert_eq!(json(&["status"])["display_name"], "A");
    assert_eq!(json(&["name", "Ana"])["display_name"], "Ana");
    let created = json(&["room", "create", "Base camp"]);
    let invite = created["invite"].as_str().unwrap().to_owned();
    assert!(invite.starts_with("peddlenet://join/"));
    assert_eq!(json(&["room", "list"]).as_array().unwrap().len(), 1);
    assert_eq!(
        json(&["send", "base camp", "hello", "there"])["text"],
        "hello there"
    );
    let h = json(&["history", "Base camp"]);
    assert_eq!(h["messages"][0]["text"], "hello there");
    assert_eq!(h["messages"][0]["author_name"], "Ana");
    assert_eq!(json(&["peers"]).as_array().unwrap().len(), 0);
    assert_eq!(json(&["room", "invite", "Base camp"])["invite"], invite);

    // Text output: the invite with a QR code of it.
    let (out, _) = text(&a.cli(&["room", "invite", "Base camp"]));
    assert!(out.contains('█') && out.contains(&invite), "{out}");
    let (out, _) = text(&a.cli(&["history", "Base camp"]));
    assert!(out.contains("Ana (you): hello there"), "{out}");

    // Readable errors, non-zero exits.
    for (args, needle) in [
        (&["send", "nowhere", "hi"][..], "no room named"),
        (
            &["room", "join", "peddlenet://join/AAAA"][..],
            "not a valid invite",
        ),
        (&["room", "join", "hello"][..], "not a valid invite"),
        (&["connect", "not-an-address"][..], "bad address"),
        (&["send", "Base camp", "  "][..], "empty"),
    ] {
        let o = a.cli(args);
        let (_, err) = text(&o);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert_eq!(json(&["room", "leave", "Base camp"])["left"], "Base camp");
    assert!(json(&["room", "list"]).as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_live_messages() {
    let _g = serial();
    let a = Daemon::start(DaemonOpts::loopback("A"));
    let c = a.client().await;
    let room = c.room_create("r").await.unwrap();
    let mut child = std::process::Command::new(bin("peddlenet"))
        .arg("--socket")
        .arg(&a.socket)
        .args(["--json", "watch"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains("live one"))
    });
    // Give watch time to subscribe, then send until it reports.
    for _ in 0..50 {
        c.send(&room.id, "live one").await.unwrap();
        if lines.is_finished() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let line = lines.join().unwrap().expect("watch printed the message");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["message"]["text"], "live one");
}

/// The author's view in plain text: `watch` reports the message and then its
/// end-to-end delivery, and `history` shows the state next to the text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_and_history_show_delivery_to_members() {
    let _g = serial();
    let a = Daemon::start(DaemonOpts::loopback("A"));
    let ca = a.client().await;
    let room = ca.room_create("r").await.unwrap();
    let (_, invite) = ca.room_invite(&room.id).await.unwrap();
    let mut child = std::process::Command::new(bin("peddlenet"))
        .arg("--socket")
        .arg(&a.socket)
        .arg("watch")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(l);
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let sent = ca.send(&room.id, "anyone there").await.unwrap();
    let b = Daemon::start(DaemonOpts::loopback("B"));
    b.client().await.room_join(&invite).await.unwrap();
    let want = format!("message {}: [delivered to 1 of 1 member]", &sent.id[..16]);
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen.iter().any(|l: &String| l.contains(&want)) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => seen.push(l),
            Err(_) => panic!(
                "watch never printed {want:?}; it printed:\n{}",
                seen.join("\n")
            ),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.iter()
            .any(|l| l.contains("A (you): anyone there [stored here]")),
        "{}",
        seen.join("\n")
    );
    let (out, _) = text(&a.cli(&["history", "r"]));
    assert!(
        out.contains("A (you): anyone there [delivered to 1 of 1 member]"),
        "{out}"
    );
}
