//! `peddlenet-sim`: runs the festival simulation and prints its table.

use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use peddlenet_sim::festival::FestivalParams;
use peddlenet_sim::scenario::{Budgets, Scenario, TraceFile};

#[derive(Parser, Debug)]
#[command(
    about = "Simulates PeddleNet, epidemic flooding and spray-and-wait on one festival's contact trace"
)]
struct Args {
    /// Nodes: phones and fixed handhelds (one handheld per 100 nodes).
    #[arg(long, default_value_t = 1000)]
    nodes: u32,
    /// Simulated hours (added to --minutes).
    #[arg(long, default_value_t = 0.0)]
    hours: f64,
    /// Simulated minutes (added to --hours; 6 h when both are 0).
    #[arg(long, default_value_t = 0.0)]
    minutes: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Write a picture of delivery over time.
    #[arg(long)]
    svg: Option<std::path::PathBuf>,
    /// Write the scenario and PeddleNet's predicted deliveries for replay by real daemons.
    #[arg(long)]
    export_trace: Option<std::path::PathBuf>,
    /// Run on this trace instead of generating a festival.
    #[arg(long)]
    trace: Option<std::path::PathBuf>,
    /// Run PeddleNet alone and explain where this message went: the
    /// reachability check's path to each member that missed it, and every
    /// transfer PeddleNet made of it.
    #[arg(long, value_name = "SEQ")]
    explain: Option<u32>,
    /// Relay budget of a phone in MiB (0: relaying off). The core's phone
    /// default (`RelayLimits::phone`) is 32.
    #[arg(long, default_value_t = 32)]
    phone_relay_mib: u64,
    /// Relay budget of a fixed handheld in MiB.
    #[arg(long, default_value_t = 256)]
    handheld_relay_mib: u64,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let budgets = Budgets {
        phone_bytes: a.phone_relay_mib << 20,
        handheld_bytes: a.handheld_relay_mib << 20,
    };
    let started = Instant::now();
    let sc = if let Some(path) = &a.trace {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let t: TraceFile =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        Scenario::from_trace(t, budgets)?
    } else {
        let mut secs = a.hours * 3600.0 + a.minutes * 60.0;
        if secs <= 0.0 {
            secs = 6.0 * 3600.0;
        }
        anyhow::ensure!(a.nodes >= 4, "--nodes must be at least 4");
        Scenario::from_trace(
            peddlenet_sim::festival::generate(&FestivalParams::new(a.nodes, secs, a.seed)),
            budgets,
        )?
    };
    let generated = started.elapsed();
    if let Some(seq) = a.explain {
        print!("{}", peddlenet_sim::explain(&sc, a.seed, seq));
        return Ok(());
    }
    let (report, prediction) = peddlenet_sim::run(&sc, a.seed, budgets);
    let wall = started.elapsed();
    if let Some(path) = &a.svg {
        std::fs::write(path, report.svg())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &a.export_trace {
        let t = sc.to_trace(Some(prediction));
        std::fs::write(path, serde_json::to_string(&t)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
        eprintln!(
            "wall time {:.1} s (trace {:.1} s, reachability {:.1} s, PeddleNet {:.1} s, epidemic {:.1} s, spray-and-wait {:.1} s)",
            wall.as_secs_f64(),
            generated.as_secs_f64(),
            report.phase_s[0],
            report.phase_s[1],
            report.phase_s[2],
            report.phase_s[3]
        );
    }
    if report.invariant_violations > 0 {
        std::process::exit(2);
    }
    Ok(())
}
