//! Lab baseline: plain GATT without the PeddleNet stack, on the same
//! controllers. A bluer server (`serve`) and a btleplug client (`client`)
//! move sequence-numbered, MTU-sized values as fast as BlueZ takes them:
//!
//! * `client --mode write`: ATT Write Commands (write without response), the
//!   server counts them and reports;
//! * `client --mode notify`/`indicate`: the server pushes values through
//!   BlueZ's notification socket and the client counts them.
//!
//! Prints `RESULT` lines with throughput and how many values were lost or
//! reordered (every value starts with its 32-bit sequence number).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bluer::adv::Advertisement;
use bluer::gatt::local::{
    Application, Characteristic, CharacteristicControlEvent, CharacteristicNotify,
    CharacteristicNotifyMethod, CharacteristicWrite, CharacteristicWriteMethod, Service,
    characteristic_control,
};
use btleplug::api::{Central as _, Manager as _, Peripheral as _, ScanFilter, WriteType};
use btleplug::platform::Manager;
use clap::{Parser, Subcommand};
use futures::{FutureExt, StreamExt};

const RAW_SERVICE: bluer::Uuid = bluer::Uuid::from_u128(0x8e2ecb65_7069_4c36_a767_e0987289ebbf);
const RAW_RX: bluer::Uuid = bluer::Uuid::from_u128(0x8e2ecb65_7069_4c36_a767_e0987289ebc0);
const RAW_TX: bluer::Uuid = bluer::Uuid::from_u128(0x8e2ecb65_7069_4c36_a767_e0987289ebc1);

/// Control values written by the client (sequence number u32::MAX, then a command byte).
const CMD_END: u8 = 1;
const CMD_PUSH: u8 = 2;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    adapter: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// GATT server: counts writes, pushes notifications on request.
    Serve {
        /// Use indications instead of notifications.
        #[arg(long)]
        indicate: bool,
        /// Exit after this many seconds.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// GATT client.
    Client {
        /// write, notify (the server's characteristic decides notify/indicate).
        #[arg(long, default_value = "write")]
        mode: String,
        /// Bytes to move.
        #[arg(long, default_value_t = 1 << 20)]
        bytes: usize,
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Value size (default: 510, the largest BlueZ 5.66 delivers).
        #[arg(long)]
        payload: Option<usize>,
    },
}

#[derive(Default, Debug)]
struct Counter {
    seen: std::collections::HashSet<u32>,
    bytes: u64,
    max: Option<u32>,
    reordered: u64,
    duplicates: u64,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Counter {
    fn take(&mut self, v: &[u8]) {
        if v.len() < 4 {
            return;
        }
        let seq = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = Some(now);
        if !self.seen.insert(seq) {
            self.duplicates += 1;
            return;
        }
        self.bytes += v.len() as u64;
        if self.max.is_some_and(|m| seq < m) {
            self.reordered += 1;
        }
        self.max = Some(self.max.map_or(seq, |m| m.max(seq)));
    }

    /// Whether all of `0..n` arrived.
    fn complete(&self, n: u32) -> bool {
        self.seen.len() as u64 >= u64::from(n)
    }

    fn line(&self, expected: u32) -> String {
        let secs = match (self.first, self.last) {
            (Some(a), Some(b)) => (b - a).as_secs_f64(),
            _ => 0.0,
        };
        let got = (0..expected).filter(|s| self.seen.contains(s)).count() as u64;
        format!(
            "values={} bytes={} lost={} reordered={} duplicates={} secs={secs:.3} mbps={:.4}",
            self.seen.len(),
            self.bytes,
            u64::from(expected) - got,
            self.reordered,
            self.duplicates,
            if secs > 0.0 {
                self.bytes as f64 / secs / 1e6
            } else {
                0.0
            }
        )
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let r = match args.cmd {
        Cmd::Serve { indicate, timeout } => {
            tokio::time::timeout(Duration::from_secs(timeout), serve(&args.adapter, indicate))
                .await
                .unwrap_or(Ok(()))
        }
        Cmd::Client {
            mode,
            bytes,
            timeout,
            payload,
        } => {
            match tokio::time::timeout(
                Duration::from_secs(timeout),
                client(&args.adapter, &mode, bytes, payload),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err("timeout".into()),
            }
        }
    };
    if let Err(e) = r {
        println!("ERROR {e}");
        std::process::exit(1);
    }
}

async fn serve(adapter: &str, indicate: bool) -> Result<(), String> {
    let session = bluer::Session::new().await.map_err(|e| e.to_string())?;
    let adapter = session.adapter(adapter).map_err(|e| e.to_string())?;
    let counter = Arc::new(Mutex::new(Counter::default()));
    let (cmd_tx, mut cmd_rx) = tokio::sync::mpsc::unbounded_channel::<(u8, u32)>();
    let c2 = counter.clone();
    let write = CharacteristicWriteMethod::Fun(Box::new(move |v, req| {
        if std::env::var_os("RAW_TRACE").is_some() {
            println!(
                "WRITE len={} head={:02x?} mtu={} op={:?}",
                v.len(),
                &v[..v.len().min(6)],
                req.mtu,
                req.op_type
            );
        }
        if v.len() >= 9 && v[..4] == u32::MAX.to_be_bytes() {
            let _ = cmd_tx.send((v[4], u32::from_be_bytes([v[5], v[6], v[7], v[8]])));
        } else if let Ok(mut c) = c2.lock() {
            c.take(&v);
        }
        async { Ok(()) }.boxed()
    }));
    let (mut control, handle) = characteristic_control();
    let app = Application {
        services: vec![Service {
            uuid: RAW_SERVICE,
            primary: true,
            characteristics: vec![
                Characteristic {
                    uuid: RAW_RX,
                    write: Some(CharacteristicWrite {
                        write_without_response: true,
                        method: write,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                Characteristic {
                    uuid: RAW_TX,
                    notify: Some(CharacteristicNotify {
                        notify: !indicate,
                        indicate,
                        method: CharacteristicNotifyMethod::Io,
                        ..Default::default()
                    }),
                    control_handle: handle,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    };
    let _app = adapter
        .serve_gatt_application(app)
        .await
        .map_err(|e| e.to_string())?;
    let adv = Advertisement {
        service_uuids: [RAW_SERVICE].into_iter().collect(),
        discoverable: Some(true),
        ..Default::default()
    };
    let _adv = adapter.advertise(adv).await.map_err(|e| e.to_string())?;
    println!("SERVING");
    let mut writer = None;
    loop {
        tokio::select! {
            ev = control.next() => match ev {
                Some(CharacteristicControlEvent::Notify(w)) => { println!("SUBSCRIBED mtu={}", w.mtu()); writer = Some(w); }
                Some(CharacteristicControlEvent::Write(r)) => r.reject(bluer::gatt::local::ReqError::NotSupported),
                None => return Ok(()),
            },
            Some((cmd, arg)) = cmd_rx.recv() => {
                let Some(w) = writer.as_ref() else { continue };
                match cmd {
                    CMD_END => {
                        let line = counter.lock().map(|c| c.line(arg)).unwrap_or_default();
                        println!("RESULT dir=write {line}");
                        let mut v = u32::MAX.to_be_bytes().to_vec();
                        v.extend_from_slice(line.as_bytes());
                        v.truncate(w.mtu());
                        let _ = w.send(&v).await;
                    }
                    CMD_PUSH => {
                        let t = Instant::now();
                        let size = w.mtu();
                        for seq in 0..arg {
                            let mut v = seq.to_be_bytes().to_vec();
                            v.resize(size, 0x5a);
                            if let Err(e) = w.send(&v).await {
                                println!("PUSHFAIL {e}");
                                break;
                            }
                        }
                        println!("PUSHED values={arg} size={size} secs={:.3}", t.elapsed().as_secs_f64());
                    }
                    _ => {}
                }
            }
        }
    }
}

async fn client(
    adapter: &str,
    mode: &str,
    bytes: usize,
    payload: Option<usize>,
) -> Result<(), String> {
    let manager = Manager::new().await.map_err(|e| e.to_string())?;
    let mut central = None;
    for a in manager.adapters().await.map_err(|e| e.to_string())? {
        if a.adapter_info()
            .await
            .unwrap_or_default()
            .starts_with(adapter)
        {
            central = Some(a);
        }
    }
    let central = central.ok_or("no such adapter")?;
    central
        .start_scan(ScanFilter {
            services: vec![RAW_SERVICE],
        })
        .await
        .map_err(|e| e.to_string())?;
    let p = loop {
        let mut found = None;
        for p in central.peripherals().await.map_err(|e| e.to_string())? {
            if let Ok(Some(props)) = p.properties().await
                && props.services.contains(&RAW_SERVICE)
            {
                found = Some(p);
            }
        }
        if let Some(p) = found {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let _ = central.stop_scan().await;
    let t_connect = Instant::now();
    p.connect().await.map_err(|e| format!("connect: {e}"))?;
    p.discover_services()
        .await
        .map_err(|e| format!("discover: {e}"))?;
    println!(
        "CONNECTED mtu={} secs={:.3}",
        p.mtu(),
        t_connect.elapsed().as_secs_f64()
    );
    let chars = p.characteristics();
    let rx = chars
        .iter()
        .find(|c| c.uuid == RAW_RX)
        .ok_or("no rx")?
        .clone();
    let tx = chars
        .iter()
        .find(|c| c.uuid == RAW_TX)
        .ok_or("no tx")?
        .clone();
    let mut notes = p.notifications().await.map_err(|e| e.to_string())?;
    p.subscribe(&tx).await.map_err(|e| e.to_string())?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // 510: the largest value BlueZ 5.66 delivers at MTU 517 (see gatt::value_size).
    let payload = payload.unwrap_or(510).min(usize::from(p.mtu()) - 3).max(9);
    let cmd = |c: u8, arg: u32| {
        let mut v = u32::MAX.to_be_bytes().to_vec();
        v.push(c);
        v.extend_from_slice(&arg.to_be_bytes());
        v
    };
    match mode {
        "write" => {
            let n = bytes.div_ceil(payload) as u32;
            let t = Instant::now();
            for seq in 0..n {
                let mut v = seq.to_be_bytes().to_vec();
                v.resize(payload, 0xa5);
                p.write(&rx, &v, WriteType::WithoutResponse)
                    .await
                    .map_err(|e| format!("write: {e}"))?;
            }
            let sent_secs = t.elapsed().as_secs_f64();
            p.write(&rx, &cmd(CMD_END, n), WriteType::WithoutResponse)
                .await
                .map_err(|e| e.to_string())?;
            while let Some(n_) = notes.next().await {
                if n_.value.len() >= 4 && n_.value[..4] == u32::MAX.to_be_bytes() {
                    let secs = t.elapsed().as_secs_f64();
                    let moved = n as usize * payload;
                    println!(
                        "RESULT dir=write-client values={n} bytes={moved} payload={payload} send_secs={sent_secs:.3} secs={secs:.3} mbps={:.4} server: {}",
                        moved as f64 / secs / 1e6,
                        String::from_utf8_lossy(&n_.value[4..]),
                    );
                    break;
                }
            }
        }
        _ => {
            let n = bytes.div_ceil(payload - 2) as u32;
            let mut counter = Counter::default();
            let t = Instant::now();
            p.write(&rx, &cmd(CMD_PUSH, n), WriteType::WithoutResponse)
                .await
                .map_err(|e| e.to_string())?;
            while let Ok(Some(v)) =
                tokio::time::timeout(Duration::from_secs(10), notes.next()).await
            {
                counter.take(&v.value);
                if counter.complete(n) {
                    break;
                }
            }
            let secs = t.elapsed().as_secs_f64();
            println!(
                "RESULT dir={mode} requested={n} {} total_secs={secs:.3} total_mbps={:.4}",
                counter.line(n),
                counter.bytes as f64 / secs / 1e6
            );
        }
    }
    let _ = p.disconnect().await;
    Ok(())
}
