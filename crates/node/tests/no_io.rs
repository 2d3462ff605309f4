//! The core must stay free of I/O: nothing in its dependency graph (normal
//! and build dependencies, transitively) may be a runtime, network, storage
//! or radio crate.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

/// Crate names (or name prefixes, ending in `*`) the core must not pull in.
const FORBIDDEN: &[&str] = &[
    "tokio*",
    "libp2p*",
    "sled",
    "bluer",
    "btleplug",
    "dbus*",
    "libdbus-sys",
    "axum*",
    "hyper*",
    "mio",
    "socket2",
    "async-std",
    "async-io",
    "smol",
    "reqwest",
    "peddlenet-store",
    "peddlenet-mesh",
    "peddlenet-api",
    "peddlenet-ble",
    "peddlenet-wifi",
    "peddlenet-web",
];

fn forbidden(name: &str) -> bool {
    FORBIDDEN.iter().any(|f| match f.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == *f,
    })
}

#[test]
fn the_core_depends_on_no_io_crate() {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--manifest-path",
            manifest,
        ])
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let names: HashMap<&str, &str> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes: HashMap<&str, &serde_json::Value> = meta["resolve"]["nodes"]
        .as_array()
        .expect("resolve")
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let root = names
        .iter()
        .find(|(_, n)| **n == "peddlenet-node")
        .map(|(id, _)| *id)
        .expect("peddlenet-node in the workspace");
    // Walk normal and build dependencies (not dev-dependencies: tests may
    // use anything), remembering the path to report it.
    let mut seen = BTreeSet::new();
    let mut stack = vec![(root, vec![names[root]])];
    let mut bad = Vec::new();
    while let Some((id, path)) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        for dep in nodes[id]["deps"].as_array().expect("deps") {
            let runtime = dep["dep_kinds"]
                .as_array()
                .expect("dep_kinds")
                .iter()
                .any(|k| k["kind"].as_str() != Some("dev"));
            if !runtime {
                continue;
            }
            let dep_id = dep["pkg"].as_str().unwrap();
            let name = names[dep_id];
            let mut p = path.clone();
            p.push(name);
            if forbidden(name) {
                bad.push(p.join(" -> "));
            } else {
                stack.push((dep_id, p));
            }
        }
    }
    assert!(seen.len() > 3, "the walk found the core's dependencies");
    assert!(
        bad.is_empty(),
        "I/O crates in the core's dependencies:\n{}",
        bad.join("\n")
    );
}
