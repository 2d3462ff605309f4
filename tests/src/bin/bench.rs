//! peddlenet-bench: messages per second from a client on daemon A until
//! stored on daemon B, latency A to B, and the daemons' memory.
//!
//! Run with release binaries (the daemons are taken from the same target
//! folder as this program):
//!
//! ```sh
//! cargo build --release --workspace
//! target/release/peddlenet-bench [--messages 20000] [--window 512] [--size 256] [--idle 600] [--kept 1]
//! ```
//!
//! After the load it watches both daemons' memory for `--idle` seconds
//! (600 by default; a quick run takes 60), then measures B's disk per
//! message, one `room list` (wall time, B's CPU, B's memory before and
//! after), and B's start-up with the stored messages (a stop, a start,
//! the time until it answers, then one `room list` on the fresh process),
//! and B's memory once it has synced with A again: with the room's sync set
//! kept at B's stop, or with `--kept 0` read whole from the store as a
//! start after a crash does.
//! `--messages 1000000` is the million-message run.
//!
//! Latency is measured from just before the client sends on A to the moment
//! B's event stream reports the message, which B emits after storing it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use peddlenet_api::Event;
use peddlenet_tests::*;
use tokio::sync::{Mutex, Semaphore};

struct Args {
    messages: usize,
    window: usize,
    size: usize,
    idle: u64,
    /// Whether B's restart may use the sync sets kept at its stop.
    kept: bool,
}

fn args() -> Args {
    let mut a = Args {
        messages: 20_000,
        window: 512,
        size: 256,
        idle: 600,
        kept: true,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    for pair in v.chunks(2) {
        let n: usize = pair
            .get(1)
            .and_then(|x| x.parse().ok())
            .unwrap_or_else(|| panic!("{} needs a number", pair[0]));
        match pair[0].as_str() {
            "--messages" => a.messages = n,
            "--window" => a.window = n,
            "--size" => a.size = n,
            "--idle" => a.idle = n as u64,
            "--kept" => a.kept = n != 0,
            other => {
                panic!(
                    "unknown option {other}; options: --messages N --window N --size BYTES --idle SECONDS --kept 0|1"
                )
            }
        }
    }
    a
}

fn text(seq: usize, size: usize) -> String {
    let mut t = format!("bench {seq:08} ");
    while t.len() < size {
        t.push('x');
    }
    t.truncate(size);
    t
}

fn seq_of(text: &str) -> Option<usize> {
    text.strip_prefix("bench ")?.get(..8)?.parse().ok()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

struct Run {
    sent_at: Arc<Mutex<HashMap<usize, Instant>>>,
    received: Arc<Mutex<Vec<(usize, Instant)>>>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let a = Daemon::start(DaemonOpts {
        log: "warn,peddlenet_store=info".into(),
        ..DaemonOpts::loopback("A")
    });
    let ca = a.client().await;
    let mut b = Daemon::start(DaemonOpts {
        log: "warn,peddlenet_store=info".into(),
        ..DaemonOpts::loopback("B").peer(&a.tcp_addr().await)
    });
    let cb = b.client().await;
    let room = ca.room_create("bench").await.unwrap();
    let (_, invite) = ca.room_invite(&room.id).await.unwrap();
    cb.room_join(&invite).await.unwrap();
    wait_room_peers(&ca, &room.id, 1).await;
    wait_room_peers(&cb, &room.id, 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = (a.rss_kib(), b.rss_kib());

    let run = Run {
        sent_at: Arc::default(),
        received: Arc::default(),
    };
    let mut events = cb.subscribe().await.unwrap();
    let received = run.received.clone();
    tokio::spawn(async move {
        while let Some(e) = events.next().await {
            match e {
                Event::Message { message } => {
                    if let Some(s) = seq_of(&message.text) {
                        received.lock().await.push((s, Instant::now()));
                    }
                }
                Event::Lagged { missed } => eprintln!("bench client lagged by {missed} events"),
                _ => {}
            }
        }
    });

    // 1. Unloaded latency: one message at a time, 5 ms apart.
    let unloaded = 500;
    for seq in 0..unloaded {
        run.sent_at.lock().await.insert(seq, Instant::now());
        ca.send(&room.id, &text(seq, args.size)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wait_count(&run, unloaded, Duration::from_secs(10)).await;
    let lat_idle = latencies(&run, 0..unloaded).await;

    // 2. Throughput: `window` sends in flight over one connection.
    let (pa, pb) = (a.pid(), b.pid());
    let peak = Arc::new(std::sync::Mutex::new((0u64, 0u64)));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                let mut p = peak.lock().unwrap();
                p.0 = p.0.max(rss_kib(pa));
                p.1 = p.1.max(rss_kib(pb));
                drop(p);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let first = unloaded;
    let last = unloaded + args.messages;
    let window = Arc::new(Semaphore::new(args.window));
    let cpu0 = (cpu_time(pa), cpu_time(pb), cpu_time(std::process::id()));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(args.messages);
    for seq in first..last {
        let permit = window.clone().acquire_owned().await.unwrap();
        let (ca, room, sent_at, size) =
            (ca.clone(), room.id.clone(), run.sent_at.clone(), args.size);
        sent_at.lock().await.insert(seq, Instant::now());
        tasks.push(tokio::spawn(async move {
            let r = ca.send(&room, &text(seq, size)).await;
            drop(permit);
            r.is_ok()
        }));
    }
    let mut acked = 0;
    for t in tasks {
        acked += t.await.unwrap() as usize;
    }
    let acked_in = start.elapsed();
    let got = wait_count(&run, unloaded + args.messages, Duration::from_secs(30)).await - unloaded;
    let last_at = run
        .received
        .lock()
        .await
        .iter()
        .filter(|(s, _)| *s >= first)
        .map(|(_, t)| *t)
        .max()
        .unwrap_or(start);
    let stored_in = last_at - start;
    let cpu = (
        cpu_time(pa) - cpu0.0,
        cpu_time(pb) - cpu0.1,
        cpu_time(std::process::id()) - cpu0.2,
    );
    let per_k = |d: Duration| {
        format!(
            "{:.0} ms",
            d.as_secs_f64() * 1000.0 * 1000.0 / args.messages as f64
        )
    };
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    let lat_load = latencies(&run, first..last).await;
    // Rate over the first and the last 10,000 messages of the load (a tenth
    // of it when that is fewer).
    let (rate_first, rate_last) = {
        let mut t: Vec<(usize, Instant)> = run
            .received
            .lock()
            .await
            .iter()
            .filter(|(s, _)| *s >= first)
            .copied()
            .collect();
        t.sort_by_key(|(_, at)| *at);
        let tenth = (t.len() / 10).clamp(1, 10_000);
        let rate = |from: Instant, to: Instant| tenth as f64 / (to - from).as_secs_f64().max(1e-9);
        if t.len() >= 20 {
            (
                rate(start, t[tenth - 1].1),
                rate(t[t.len() - tenth - 1].1, t[t.len() - 1].1),
            )
        } else {
            (0.0, 0.0)
        }
    };

    // Memory after the load: every second for `idle` seconds.
    let load_end = Instant::now();
    let mut idle_rss: Vec<(u64, u64, u64)> = Vec::new();
    let mut at_2s = (0, 0);
    let mut at_60s = (0, 0);
    for sec in 1..=args.idle.max(2) {
        tokio::time::sleep_until((load_end + Duration::from_secs(sec)).into()).await;
        let r = (a.rss_kib(), b.rss_kib());
        if sec == 2 {
            at_2s = r;
        }
        if sec == 60 {
            at_60s = r;
        }
        idle_rss.push((sec, r.0, r.1));
    }
    let at_end = idle_rss.last().map(|x| (x.1, x.2)).unwrap_or_default();
    // The store's reopens in place after the load, by now.
    let reopens = (reopen_times(&a.log()), reopen_times(&b.log()));
    // The spread over the idle time from 60 s on (or all of it, if shorter).
    let steady: Vec<&(u64, u64, u64)> = idle_rss
        .iter()
        .filter(|x| x.0 >= 60.min(args.idle))
        .collect();
    let spread = |f: fn(&(u64, u64, u64)) -> u64| {
        let lo = steady.iter().map(|x| f(x)).min().unwrap_or(0);
        let hi = steady.iter().map(|x| f(x)).max().unwrap_or(0);
        (lo, hi)
    };
    let (spread_a, spread_b) = (spread(|x| x.1), spread(|x| x.2));
    let peak = *peak.lock().unwrap();

    // Disk per message on B: its data folder over the messages it holds.
    let stored = unloaded + got;
    let disk = dir_bytes(&b.data_dir);

    // One room list on the loaded daemon.
    let room_list = |pid: u32| {
        let cb = cb.clone();
        let room_id = room.id.clone();
        async move {
            let (rss0, cpu0) = (rss_kib(pid), cpu_time(pid));
            let t0 = Instant::now();
            let rooms = cb.room_list().await.unwrap();
            let wall = t0.elapsed();
            let (rss1, cpu1) = (rss_kib(pid), cpu_time(pid));
            let n = rooms
                .iter()
                .find(|r| r.id == room_id)
                .map(|r| r.messages)
                .unwrap_or(0);
            (wall, cpu1 - cpu0, rss0, rss1, n)
        }
    };
    let list_loaded = room_list(pb).await;

    // Start-up with the stored messages, then a room list on the fresh process.
    drop(cb);
    b.terminate();
    if !args.kept {
        let _ = std::fs::remove_file(b.data_dir.join("store").join(peddlenet_store::ITEMS_FILE));
    }
    // The store says where the room's set came from.
    b.opts.log = "warn,peddlenet_store=info".into();
    let t0 = Instant::now();
    b.restart();
    let cb = b.client().await;
    let startup = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pb2 = b.pid();
    let room_list_fresh = {
        let (rss0, cpu0) = (rss_kib(pb2), cpu_time(pb2));
        let t0 = Instant::now();
        let rooms = cb.room_list().await.unwrap();
        let wall = t0.elapsed();
        let (rss1, cpu1) = (rss_kib(pb2), cpu_time(pb2));
        let n = rooms
            .iter()
            .find(|r| r.id == room.id)
            .map(|r| r.messages)
            .unwrap_or(0);
        (wall, cpu1 - cpu0, rss0, rss1, n)
    };
    // B has met A again by now and reconciled the room with it, which
    // needs the room's set.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rss_synced = rss_kib(pb2);
    let set_from = if b.log().contains("sync set read from the last clean stop") {
        "kept at its stop"
    } else {
        "read whole from the store"
    };

    println!(
        "\npeddlenet-bench: {} messages of {} bytes, window {}, loopback, one room, A -> B",
        args.messages, args.size, args.window
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| acknowledged by A (on A's disk) | {acked} in {} ({:.0} msg/s) |",
        ms(acked_in),
        acked as f64 / acked_in.as_secs_f64()
    );
    println!(
        "| stored on B | {got} of {} in {} ({:.0} msg/s) |",
        args.messages,
        ms(stored_in),
        got as f64 / stored_in.as_secs_f64()
    );
    println!(
        "| latency A->B unloaded ({unloaded} msgs, 5 ms apart) | p50 {} / p99 {} |",
        ms(pct(&lat_idle, 0.5)),
        ms(pct(&lat_idle, 0.99))
    );
    println!(
        "| latency A->B under full load | p50 {} / p99 {} |",
        ms(pct(&lat_load, 0.5)),
        ms(pct(&lat_load, 0.99))
    );
    println!(
        "| CPU per 1000 messages: A / B / this client | {} / {} / {} |",
        per_k(cpu.0),
        per_k(cpu.1),
        per_k(cpu.2)
    );
    println!("| RSS idle A / B | {} / {} |", mib(idle.0), mib(idle.1));
    println!(
        "| RSS peak under load A / B | {} / {} |",
        mib(peak.0),
        mib(peak.1)
    );
    println!(
        "| stored on B, first / last {} messages of the load | {rate_first:.0} / {rate_last:.0} msg/s (last/first {:.2}) |",
        (got / 10).clamp(1, 10_000),
        rate_last / rate_first.max(1e-9)
    );
    println!(
        "| RSS 2 s after load A / B | {} / {} |",
        mib(at_2s.0),
        mib(at_2s.1)
    );
    if args.idle > 60 {
        println!(
            "| RSS 60 s after load A / B | {} / {} |",
            mib(at_60s.0),
            mib(at_60s.1)
        );
    }
    println!(
        "| RSS {} s after load A / B | {} / {} |",
        args.idle,
        mib(at_end.0),
        mib(at_end.1)
    );
    println!(
        "| the store reopened in place by then (sled's snapshot brought up to date), A / B | {} / {} |",
        reopens.0, reopens.1
    );
    println!(
        "| RSS from {} s to {} s after load, min-max A / B | {}-{} / {}-{} |",
        60.min(args.idle),
        args.idle,
        mib(spread_a.0),
        mib(spread_a.1),
        mib(spread_b.0),
        mib(spread_b.1)
    );
    println!(
        "| disk on B per message ({stored} messages, {:.1} MiB) | {:.2} KiB |",
        disk as f64 / (1 << 20) as f64,
        disk as f64 / 1024.0 / stored.max(1) as f64
    );
    for (what, r) in [
        ("after the load", list_loaded),
        ("on B just restarted", room_list_fresh),
    ] {
        println!(
            "| one room list {what} ({} messages) | {} wall, B's CPU {}, B's RSS {} -> {} |",
            r.4,
            ms(r.0),
            ms(r.1),
            mib(r.2),
            mib(r.3)
        );
    }
    println!(
        "| B's start-up with {stored} stored messages (start to first answer) | {} |",
        ms(startup)
    );
    println!(
        "| B's RSS 12 s after its restart, synced with A again (the room's set {set_from}) | {} |",
        mib(rss_synced)
    );
    if got < args.messages {
        println!(
            "\nWARNING: {} messages did not reach B",
            args.messages - got
        );
    }
}

fn dir_bytes(p: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

async fn wait_count(run: &Run, n: usize, limit: Duration) -> usize {
    let start = Instant::now();
    loop {
        let have = run.received.lock().await.len();
        if have >= n || start.elapsed() > limit {
            return have;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn latencies(run: &Run, range: std::ops::Range<usize>) -> Vec<Duration> {
    let sent = run.sent_at.lock().await;
    let mut v: Vec<Duration> = run
        .received
        .lock()
        .await
        .iter()
        .filter(|(s, _)| range.contains(s))
        .filter_map(|(s, t)| sent.get(s).map(|t0| t.saturating_duration_since(*t0)))
        .collect();
    v.sort();
    v
}

/// The daemon's reopens of its store, from its log: "none", or each one's
/// duration.
fn reopen_times(log: &str) -> String {
    let times: Vec<String> = log
        .lines()
        .filter(|l| l.contains("store reopened:"))
        .filter_map(|l| {
            let ms = l.split("ms=").nth(1)?.split_whitespace().next()?;
            Some(format!("{ms} ms"))
        })
        .collect();
    if times.is_empty() {
        "none".into()
    } else {
        times.join(", ")
    }
}
