//! What the app remembers across runs, in `$XDG_STATE_HOME/peddlenet/gui.json`
//! (default `~/.local/state/peddlenet`): the room open last, how far each
//! room was read, the names rooms were given on this computer, which rooms
//! are muted, and the data folder each socket's daemon used (so the app
//! never starts a daemon for that socket on another folder).
//! A missing or unreadable file is an empty state; writes go through a
//! temporary file and a rename, so a crash never leaves half a file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Rooms remembered at most (the oldest-read are forgotten first).
pub const MAX_ROOMS: usize = 1000;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    /// The room open when the app was last used.
    #[serde(default)]
    pub last_room: Option<String>,
    /// Per room: its message count when it was last read.
    #[serde(default)]
    pub read: BTreeMap<String, u64>,
    /// Per room: the name it was given on this computer (shown instead of
    /// its own; nobody else sees it).
    #[serde(default)]
    pub names: BTreeMap<String, String>,
    /// Rooms whose new messages raise no desktop notification.
    #[serde(default)]
    pub muted: std::collections::BTreeSet<String>,
    /// Per socket path: the data folder of the daemon that answered there.
    #[serde(default)]
    pub data_dirs: BTreeMap<String, String>,
}

/// `$XDG_STATE_HOME/peddlenet` (default `~/.local/state/peddlenet`).
pub fn state_dir() -> PathBuf {
    match std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        Some(p) => p.join("peddlenet"),
        None => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp"))
            .join(".local/state/peddlenet"),
    }
}

/// The default file: `state_dir()/gui.json`.
pub fn default_path() -> PathBuf {
    state_dir().join("gui.json")
}

impl Saved {
    /// The state in `path`; empty when there is none or it cannot be read.
    pub fn load(path: &Path) -> Self {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::warn!("ignoring {}: {e}", path.display());
                Self::default()
            }),
            Err(_) => Self::default(),
        }
    }

    /// Writes the state to `path` (whole, or not at all).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, path)
    }

    /// Keeps the state bounded: rooms beyond [`MAX_ROOMS`] are forgotten.
    pub fn trim(&mut self) {
        while self.read.len() > MAX_ROOMS {
            let Some(k) = self.read.keys().next().cloned() else {
                break;
            };
            self.read.remove(&k);
        }
        while self.names.len() > MAX_ROOMS {
            let Some(k) = self.names.keys().next().cloned() else {
                break;
            };
            self.names.remove(&k);
        }
        while self.data_dirs.len() > MAX_ROOMS {
            let Some(k) = self.data_dirs.keys().next().cloned() else {
                break;
            };
            self.data_dirs.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_state_round_trips_and_bad_files_are_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/gui.json");
        assert_eq!(Saved::load(&p), Saved::default());
        let mut s = Saved {
            last_room: Some("r1".into()),
            ..Default::default()
        };
        s.read.insert("r1".into(), 7);
        s.save(&p).unwrap();
        assert_eq!(Saved::load(&p), s);
        std::fs::write(&p, b"{not json").unwrap();
        assert_eq!(Saved::load(&p), Saved::default());
    }
}
