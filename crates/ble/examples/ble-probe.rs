//! Lab probe: runs the real BLE link layer on one adapter and exchanges
//! messages with another probe. Used by `tests/ble/*.sh` inside the VM lab;
//! prints machine-readable lines (`LINKUP`, `SENT`, `RECV`, `RESULT`, …) on
//! stdout and logs on stderr.
//!
//! * `exchange --send 100,307200 --expect 2`: on every link up, sends the
//!   listed messages (until the peer confirmed); exits 0 once it received
//!   `--expect` distinct messages and the peer confirmed it has all of ours.
//! * `bench` / `bench --serve`: latency, throughput and time to first message.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use peddlenet_ble::{Ble, BleConfig, BleEvent, LinkId};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::Receiver;

const K_DATA: u8 = 1;
const K_DONE: u8 = 2;
const K_PING: u8 = 3;
const K_PONG: u8 = 4;
const K_BULK: u8 = 5;
const K_BULK_ACK: u8 = 6;
const K_FIRST: u8 = 7;
const K_REVERSE: u8 = 8;

#[derive(Parser)]
#[command(about = "PeddleNet BLE lab probe")]
struct Args {
    /// Adapter (hci0, hci1, …).
    #[arg(long)]
    adapter: Option<String>,
    /// Roles: both, central or peripheral.
    #[arg(long, default_value = "both")]
    role: String,
    /// Give up after this many seconds (exit 2).
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Link cap.
    #[arg(long, default_value_t = 7)]
    max_links: usize,
    /// Re-register the advertisement every N seconds (0: never).
    #[arg(long, default_value_t = 900)]
    readvertise: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Exchange messages and checksums.
    Exchange {
        /// Sizes of the messages to send, comma-separated.
        #[arg(long, value_delimiter = ',')]
        send: Vec<usize>,
        /// Distinct messages to receive before confirming.
        #[arg(long, default_value_t = 0)]
        expect: usize,
        /// Varies the content.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Benchmark (client, or server with --serve).
    Bench {
        /// Answer a client instead of measuring.
        #[arg(long)]
        serve: bool,
        /// Bytes per direction for the throughput runs.
        #[arg(long, default_value_t = 1 << 20)]
        bytes: usize,
        /// Message size for the throughput runs.
        #[arg(long, default_value_t = 64 * 1024)]
        msg: usize,
        /// Number of pings.
        #[arg(long, default_value_t = 100)]
        pings: usize,
    },
}

fn epoch_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn content(seed: u64, index: usize, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ (index as u64 + 1).wrapping_mul(0xd1b5_4a32_d192_ed03);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,peddlenet_ble=info".into()),
        )
        .init();
    let args = Args::parse();
    let cfg = BleConfig {
        adapter: args.adapter.clone(),
        max_links: args.max_links,
        central: args.role != "peripheral",
        peripheral: args.role != "central",
        readvertise_interval: (args.readvertise > 0).then(|| Duration::from_secs(args.readvertise)),
        ..BleConfig::default()
    };
    let deadline = Duration::from_secs(args.timeout);
    let code = match tokio::time::timeout(deadline, run(args.cmd, cfg)).await {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            println!("ERROR {e}");
            1
        }
        Err(_) => {
            println!("TIMEOUT after {}s", deadline.as_secs());
            2
        }
    };
    std::process::exit(code);
}

async fn run(cmd: Cmd, cfg: BleConfig) -> Result<(), String> {
    let start_call = Instant::now();
    let (ble, events) = Ble::start(cfg).await.map_err(|e| e.to_string())?;
    let started = Instant::now();
    println!(
        "STARTED epoch_ms={} start_ms={}",
        epoch_ms(),
        started.duration_since(start_call).as_millis()
    );
    let result = match cmd {
        Cmd::Exchange { send, expect, seed } => exchange(&ble, events, send, expect, seed).await,
        Cmd::Bench { serve: true, .. } => serve(&ble, events, started).await,
        Cmd::Bench {
            serve: false,
            bytes,
            msg,
            pings,
        } => bench(&ble, events, bytes, msg, pings).await,
    };
    // Let the last messages go out before closing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    ble.shutdown().await;
    result
}

async fn exchange(
    ble: &Ble,
    mut events: Receiver<BleEvent>,
    sizes: Vec<usize>,
    expect: usize,
    seed: u64,
) -> Result<(), String> {
    let msgs: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| content(seed, i, n))
        .collect();
    let mut received: HashSet<String> = HashSet::new();
    let mut my_done = expect == 0;
    let mut peer_done = false;
    while let Some(ev) = events.recv().await {
        match ev {
            BleEvent::LinkUp { link } => {
                let info = ble.links().into_iter().find(|l| l.link == link);
                println!(
                    "LINKUP {link} role={} mtu={} epoch_ms={}",
                    info.as_ref()
                        .map(|i| i.role.to_string())
                        .unwrap_or_default(),
                    info.map(|i| i.mtu).unwrap_or(0),
                    epoch_ms()
                );
                if !peer_done {
                    for m in &msgs {
                        let mut framed = vec![K_DATA];
                        framed.extend_from_slice(m);
                        if let Err(e) = ble.send(link, framed).await {
                            println!("SENDFAIL {link} {e}");
                            break;
                        }
                        println!("SENT {link} len={} sha256={}", m.len(), sha(m));
                    }
                }
                if my_done {
                    let _ = ble.send(link, vec![K_DONE]).await;
                }
            }
            BleEvent::Message { link, bytes } => match bytes.first() {
                Some(&K_DATA) => {
                    let body = &bytes[1..];
                    let h = sha(body);
                    if received.insert(h.clone()) {
                        println!(
                            "RECV {link} len={} sha256={h} epoch_ms={}",
                            body.len(),
                            epoch_ms()
                        );
                    }
                    if !my_done && received.len() >= expect {
                        my_done = true;
                        println!("ALLRECEIVED {}", received.len());
                        let _ = ble.send(link, vec![K_DONE]).await;
                    }
                }
                Some(&K_DONE) => {
                    peer_done = true;
                    println!("PEERDONE {link}");
                }
                _ => println!("UNKNOWN {link} len={}", bytes.len()),
            },
            BleEvent::LinkDown { link, reason } => {
                println!("LINKDOWN {link} epoch_ms={} reason={reason}", epoch_ms())
            }
        }
        if my_done && peer_done {
            println!("DONE");
            return Ok(());
        }
    }
    Err("event channel closed".into())
}

/// Waits for the next message on `link` (other links are ignored).
async fn next_msg(events: &mut Receiver<BleEvent>, link: LinkId) -> Result<Vec<u8>, String> {
    loop {
        match events.recv().await {
            Some(BleEvent::Message { link: l, bytes }) if l == link => return Ok(bytes),
            Some(BleEvent::LinkDown { link: l, reason }) if l == link => {
                return Err(format!("link down: {reason}"));
            }
            Some(_) => {}
            None => return Err("event channel closed".into()),
        }
    }
}

async fn first_link(events: &mut Receiver<BleEvent>) -> Result<LinkId, String> {
    loop {
        match events.recv().await {
            Some(BleEvent::LinkUp { link }) => return Ok(link),
            Some(_) => {}
            None => return Err("event channel closed".into()),
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

async fn bench(
    ble: &Ble,
    mut events: Receiver<BleEvent>,
    bytes: usize,
    msg: usize,
    pings: usize,
) -> Result<(), String> {
    let link = first_link(&mut events).await?;
    println!("LINKUP {link} epoch_ms={}", epoch_ms());
    let send = |b: Vec<u8>| ble.send(link, b);
    send(vec![K_FIRST]).await.map_err(|e| e.to_string())?;

    // Latency: sequential pings through the whole stack.
    let mut rtts = Vec::with_capacity(pings);
    for i in 0..pings as u32 {
        let mut p = vec![K_PING];
        p.extend_from_slice(&i.to_be_bytes());
        let t = Instant::now();
        send(p).await.map_err(|e| e.to_string())?;
        loop {
            let m = next_msg(&mut events, link).await?;
            if m.first() == Some(&K_PONG) && m[1..] == i.to_be_bytes() {
                break;
            }
        }
        rtts.push(t.elapsed());
    }
    rtts.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "RESULT ping_count={} rtt_p50_ms={:.2} rtt_p99_ms={:.2} oneway_p50_ms={:.2} oneway_p99_ms={:.2}",
        rtts.len(),
        ms(percentile(&rtts, 0.5)),
        ms(percentile(&rtts, 0.99)),
        ms(percentile(&rtts, 0.5)) / 2.0,
        ms(percentile(&rtts, 0.99)) / 2.0
    );

    // Throughput central → peripheral (ATT writes).
    let t = Instant::now();
    let mut sent = 0;
    while sent < bytes {
        let n = msg.min(bytes - sent);
        let mut m = vec![K_BULK];
        m.extend_from_slice(&(bytes as u32).to_be_bytes());
        m.extend(std::iter::repeat_n(0x5a, n));
        send(m).await.map_err(|e| e.to_string())?;
        sent += n;
    }
    loop {
        if next_msg(&mut events, link).await?.first() == Some(&K_BULK_ACK) {
            break;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "RESULT dir=c2p bytes={bytes} secs={secs:.3} mbps={:.4}",
        bytes as f64 / secs / 1e6
    );

    // Throughput peripheral → central (notifications).
    let mut req = vec![K_REVERSE];
    req.extend_from_slice(&(bytes as u32).to_be_bytes());
    req.extend_from_slice(&(msg as u32).to_be_bytes());
    let t = Instant::now();
    send(req).await.map_err(|e| e.to_string())?;
    let mut got = 0;
    while got < bytes {
        let m = next_msg(&mut events, link).await?;
        if m.first() == Some(&K_BULK) {
            got += m.len() - 5;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "RESULT dir=p2c bytes={bytes} secs={secs:.3} mbps={:.4}",
        bytes as f64 / secs / 1e6
    );
    if let Some(info) = ble.links().into_iter().find(|l| l.link == link) {
        println!(
            "RESULT link_mtu={} link_rtt_ms={:.2}",
            info.mtu,
            info.rtt.map(ms).unwrap_or(f64::NAN)
        );
    }
    send(vec![K_DONE]).await.map_err(|e| e.to_string())?;
    println!("DONE");
    Ok(())
}

async fn serve(ble: &Ble, mut events: Receiver<BleEvent>, started: Instant) -> Result<(), String> {
    let mut first = true;
    let mut bulk = 0usize;
    while let Some(ev) = events.recv().await {
        let BleEvent::Message { link, bytes } = ev else {
            if let BleEvent::LinkUp { link } = ev {
                println!(
                    "LINKUP {link} after_start_ms={}",
                    started.elapsed().as_millis()
                );
            }
            continue;
        };
        if first {
            first = false;
            println!(
                "RESULT first_message_after_advertising_ms={}",
                started.elapsed().as_millis()
            );
        }
        match bytes.first() {
            Some(&K_PING) => {
                let mut p = bytes.clone();
                p[0] = K_PONG;
                ble.send(link, p).await.map_err(|e| e.to_string())?;
            }
            Some(&K_BULK) if bytes.len() >= 5 => {
                let total = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
                bulk += bytes.len() - 5;
                if bulk >= total {
                    bulk = 0;
                    ble.send(link, vec![K_BULK_ACK])
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            Some(&K_REVERSE) if bytes.len() >= 9 => {
                let total = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
                let msg =
                    (u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) as usize).max(1);
                let mut sent = 0;
                while sent < total {
                    let n = msg.min(total - sent);
                    let mut m = vec![K_BULK];
                    m.extend_from_slice(&(total as u32).to_be_bytes());
                    m.extend(std::iter::repeat_n(0xa5, n));
                    ble.send(link, m).await.map_err(|e| e.to_string())?;
                    sent += n;
                }
            }
            Some(&K_DONE) => {
                println!("DONE");
                return Ok(());
            }
            _ => {}
        }
    }
    Err("event channel closed".into())
}
