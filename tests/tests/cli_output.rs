//! The CLI's output: a closed stdout ends every command quietly, and text
//! from other people cannot reorder the terminal's line.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use peddlenet_tests::*;

/// Runs the CLI with its stdout a pipe whose reading end is already closed.
fn with_closed_stdout(d: &Daemon, args: &[&str]) -> std::process::Child {
    let mut child = Command::new(bin("peddlenet"))
        .arg("--socket")
        .arg(&d.socket)
        .args(args)
        .env_remove("PEDDLENET_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run peddlenet");
    drop(child.stdout.take());
    child
}

fn assert_quiet(args: &[&str], out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "`peddlenet {}` on a closed stdout: {}, stderr: {err}",
        args.join(" "),
        out.status
    );
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe") && !err.contains("peddlenet:"),
        "`peddlenet {}` on a closed stdout said: {err}",
        args.join(" ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_ends_quietly_when_its_reader_is_gone() {
    let _g = serial();
    let d = Daemon::start(DaemonOpts::loopback("A"));
    let c = d.client().await;
    c.room_create("r").await.unwrap();
    for i in 0..200 {
        c.send("r", &format!("{i:03} {}", "x".repeat(1000)))
            .await
            .unwrap();
    }
    let commands: &[&[&str]] = &[
        &["status"],
        &["--json", "status"],
        &["peers"],
        &["name"],
        &["settings"],
        &["room", "list"],
        &["room", "invite", "r"],
        &["room", "create", "s"],
        &["history", "r", "-n", "200"],
        &["--json", "history", "r", "-n", "200"],
        &["guest", "list"],
        &["wifi", "status"],
        &["send", "r", "hello"],
        &["--help"],
    ];
    for args in commands {
        let out = with_closed_stdout(&d, args).wait_with_output().unwrap();
        assert_quiet(args, &out);
    }

    // `watch` writes only when something happens.
    for args in [&["watch"][..], &["--json", "watch"]] {
        let mut child = with_closed_stdout(&d, args);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            c.send("r", "something happens").await.unwrap();
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "`watch` kept running");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(status.success(), "{args:?}: {status}, stderr: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }

    // A real pipe to a reader that stops after one line, while the CLI
    // still has 200 KB to write; pipefail reports the CLI's status.
    let out = Command::new("bash")
        .args([
            "-c",
            r#"set -o pipefail; "$0" --socket "$1" history r -n 200 | head -1"#,
        ])
        .arg(bin("peddlenet"))
        .arg(&d.socket)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {err}", out.status);
    assert!(err.is_empty(), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidi_controls_in_names_and_texts_are_shown_not_obeyed() {
    let _g = serial();
    let d = Daemon::start(DaemonOpts::loopback("A"));
    let c = d.client().await;
    c.set_display_name("eve\u{202E}lin").await.unwrap();
    let r = c.room_create("invoice\u{202E}fdp.exe").await.unwrap();
    c.send(&r.id, "see \u{2067}attached\u{202B} invoice\u{202E}fdp.exe")
        .await
        .unwrap();

    let out = d.cli(&["room", "list"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("invoice<U+202E>fdp.exe"), "{text}");
    let out = d.cli(&["history", &r.id[..16]]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("eve<U+202E>lin (you)"), "{text}");
    assert!(
        text.contains("see <U+2067>attached<U+202B> invoice<U+202E>fdp.exe"),
        "{text}"
    );
    let out = d.cli(&["status"]);
    let status = String::from_utf8(out.stdout).unwrap();
    for t in [&text, &status] {
        assert!(
            !t.chars().any(peddlenet_api::text::is_bidi_control),
            "a bidi control reached the terminal: {t:?}"
        );
    }
}
