//! Where the daemon's socket lives, so that every front end finds it with no
//! configuration.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// Environment variable that overrides the socket path for every front end.
pub const SOCKET_ENV: &str = "PEDDLENET_SOCKET";
pub const SOCKET_NAME: &str = "peddlenetd.sock";

/// The folder that holds the socket: `$XDG_RUNTIME_DIR/peddlenet`, or, where
/// that is unset, `/tmp/peddlenet-$UID` (created 0700 and checked to be ours
/// by the daemon).
pub fn default_runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d).join("peddlenet"),
        None => std::env::temp_dir().join(format!("peddlenet-{}", current_uid())),
    }
}

/// `$PEDDLENET_SOCKET`, else `<runtime dir>/peddlenetd.sock`.
pub fn default_socket_path() -> PathBuf {
    match std::env::var_os(SOCKET_ENV).filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => default_runtime_dir().join(SOCKET_NAME),
    }
}

/// The real user id of this process (the owner of `/proc/self`).
pub fn current_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}
