//! Lab rogue central: connects to a PeddleNet node with btleplug directly
//! and writes frames that break the protocol, one case per connection. The
//! node must drop each such connection (it logs why) and keep serving.
//!
//! Prints `CASE <name> DROPPED after <secs>s` or `CASE <name> KEPT`, and
//! exits 0 only if every case was dropped.

use std::time::{Duration, Instant};

use btleplug::api::{
    Central as _, Characteristic, Manager as _, Peripheral as _, ScanFilter, WriteType,
};
use btleplug::platform::{Adapter, Manager, Peripheral};
use clap::Parser;
use futures::StreamExt;
use peddlenet_ble::frame::{DataFrame, DataKind, Frame, VERSION};
use peddlenet_ble::gatt::{RX_UUID, SERVICE_UUID, TX_UUID};

#[derive(Parser)]
struct Args {
    /// Adapter to attack from.
    #[arg(long)]
    adapter: String,
    /// Cases to run (default: all).
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// Seconds to wait for the node to drop a connection.
    #[arg(long, default_value_t = 15)]
    wait: u64,
    /// Attack only the node with this address (default: the first found).
    #[arg(long)]
    target: Option<String>,
}

const TAG: u16 = 0x0bad;
const ALL: &[&str] = &[
    "garbage",
    "truncated",
    "oversized",
    "too-many-messages",
    "undecryptable",
    "oversized-att",
];

fn hello() -> Vec<u8> {
    Frame::Hello {
        version: VERSION,
        tag: TAG,
        credits: 64,
    }
    .to_vec()
}

fn first(seq: u8, total: u32, last: bool, payload: &[u8]) -> Vec<u8> {
    Frame::Data(DataFrame {
        seq,
        kind: DataKind::First { total },
        last,
        payload,
    })
    .to_vec()
}

fn noise(n: usize, salt: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31) ^ salt ^ 0x5c)
        .collect()
}

/// The values (`seq | frame`) a case writes, in order; `None` marks a pause
/// for the node's answer.
fn script(case: &str) -> Vec<Option<Vec<u8>>> {
    let frames: Vec<Option<Vec<u8>>> = match case {
        // Not even a frame type.
        "garbage" => vec![Some(
            noise(40, 0xee).into_iter().map(|b| b | 0x80).collect(),
        )],
        // HELLO, then a DATA frame cut inside its header.
        "truncated" => vec![Some(hello()), Some(vec![0x11, 0x00, 0x00])],
        // HELLO, then a message announcing 16 MiB.
        "oversized" => vec![
            Some(hello()),
            Some(first(0, 0xff_ffff, false, &noise(100, 1))),
        ],
        // HELLO, then five messages in progress at once.
        "too-many-messages" => {
            let mut v = vec![Some(hello())];
            v.extend((0..5u8).map(|s| Some(first(s, 1000, false, &noise(50, s)))));
            v
        }
        // A plausible handshake, then a message that does not decrypt.
        "undecryptable" => {
            vec![
                Some(hello()),
                Some(first(0, 32, true, &noise(32, 7))),
                None,
                Some(first(1, 48, true, &noise(48, 9))),
            ]
        }
        // A value longer than the ATT MTU allows: BlueZ must refuse it locally.
        "oversized-att" => vec![Some(noise(600, 3))],
        _ => vec![],
    };
    let mut seq = 0u8;
    frames
        .into_iter()
        .map(|f| {
            f.map(|f| {
                let mut v = vec![seq];
                seq = seq.wrapping_add(1);
                v.extend(f);
                v
            })
        })
        .collect()
}

async fn find_node(central: &Adapter, target: Option<&str>) -> Result<Peripheral, String> {
    central
        .start_scan(ScanFilter {
            services: vec![SERVICE_UUID],
        })
        .await
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        for p in central.peripherals().await.map_err(|e| e.to_string())? {
            if let Ok(Some(props)) = p.properties().await
                && props.services.contains(&SERVICE_UUID)
                && target.is_none_or(|t| t.eq_ignore_ascii_case(&p.address().to_string()))
            {
                let _ = central.stop_scan().await;
                return Ok(p);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err("no PeddleNet node found".into())
}

async fn connect(p: &Peripheral) -> Result<(Characteristic, Characteristic), String> {
    for attempt in 1..=5 {
        match tokio::time::timeout(Duration::from_secs(20), p.connect()).await {
            Ok(Ok(())) => break,
            other => {
                println!("connect attempt {attempt} failed: {other:?}");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    p.discover_services()
        .await
        .map_err(|e| format!("discover: {e}"))?;
    let chars = p.characteristics();
    let rx = chars
        .iter()
        .find(|c| c.uuid == RX_UUID)
        .ok_or("no RX characteristic")?
        .clone();
    let tx = chars
        .iter()
        .find(|c| c.uuid == TX_UUID)
        .ok_or("no TX characteristic")?
        .clone();
    Ok((rx, tx))
}

async fn run_case(p: &Peripheral, case: &str, wait: Duration) -> Result<bool, String> {
    let (rx, tx) = connect(p).await?;
    let mut answers = p.notifications().await.map_err(|e| e.to_string())?;
    p.subscribe(&tx)
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    let mut local_refusal = None;
    for value in script(case) {
        match value {
            None => {
                // Wait for the node's handshake answer (or anything).
                let _ = tokio::time::timeout(Duration::from_secs(5), answers.next()).await;
            }
            Some(v) => {
                if let Err(e) = p.write(&rx, &v, WriteType::WithoutResponse).await {
                    local_refusal = Some(e.to_string());
                    break;
                }
            }
        }
    }
    if let Some(e) = local_refusal {
        println!("CASE {case} REFUSED-LOCALLY ({e})");
        let _ = p.disconnect().await;
        return Ok(true);
    }
    let t = Instant::now();
    let mut close_reason = None;
    while t.elapsed() < wait {
        // Look for a CLOSE addressed to us: tag | seq | 05 reason.
        while let Ok(Some(n)) =
            tokio::time::timeout(Duration::from_millis(100), answers.next()).await
        {
            if n.value.len() == 5 && n.value[..2] == TAG.to_be_bytes() && n.value[3] == 0x05 {
                close_reason = Some(n.value[4]);
            }
        }
        if !p.is_connected().await.unwrap_or(false) {
            println!(
                "CASE {case} DROPPED after {:.1}s{}",
                t.elapsed().as_secs_f64(),
                close_reason
                    .map(|r| format!(" (CLOSE reason {r})"))
                    .unwrap_or_default()
            );
            return Ok(true);
        }
    }
    println!("CASE {case} KEPT");
    let _ = p.disconnect().await;
    Ok(false)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let cases: Vec<String> = if args.cases.is_empty() {
        ALL.iter().map(|s| s.to_string()).collect()
    } else {
        args.cases
    };
    let result: Result<bool, String> = async {
        let manager = Manager::new().await.map_err(|e| e.to_string())?;
        let mut central = None;
        for a in manager.adapters().await.map_err(|e| e.to_string())? {
            if a.adapter_info()
                .await
                .unwrap_or_default()
                .split_whitespace()
                .next()
                == Some(args.adapter.as_str())
            {
                central = Some(a);
            }
        }
        let central = central.ok_or("no such adapter")?;
        let node = find_node(&central, args.target.as_deref()).await?;
        println!("FOUND node");
        let mut all = true;
        for case in &cases {
            all &= run_case(&node, case, Duration::from_secs(args.wait)).await?;
            // The node ignores a central that broke the protocol for 5 s.
            tokio::time::sleep(Duration::from_secs(6)).await;
        }
        Ok(all)
    }
    .await;
    match result {
        Ok(true) => println!("ROGUE all cases dropped"),
        Ok(false) => {
            println!("ROGUE some cases were not dropped");
            std::process::exit(1)
        }
        Err(e) => {
            println!("ERROR {e}");
            std::process::exit(2)
        }
    }
}
