//! Private folders and the identity key file.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, bail};
use peddlenet_proto::Identity;

/// Creates `dir` (and parents) with mode 0700 if missing. An existing folder
/// must be ours, not a symbolic link, and not writable by others (such as
/// /tmp: it is refused, never changed); one merely readable by others is
/// made private.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    // Not following links: a link planted by someone else to a folder of
    // ours would pass the owner check and could be swapped later.
    let meta =
        fs::symlink_metadata(dir).with_context(|| format!("cannot inspect {}", dir.display()))?;
    if meta.file_type().is_symlink() {
        bail!(
            "{} is a symbolic link; refusing to use it as a private folder",
            dir.display()
        );
    }
    let uid = peddlenet_api::paths::current_uid();
    if meta.uid() != uid {
        bail!(
            "{} belongs to uid {}, not to this user ({uid}); refusing to use it",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o022 != 0 {
        bail!(
            "{} can be written by other users; choose a folder of your own",
            dir.display()
        );
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private", dir.display()))?;
    }
    Ok(())
}

/// The folder of a socket path the user chose: created private if missing;
/// an existing one is used as it is (the socket itself is made 0600), so that
/// `--socket /tmp/me.sock` leaves /tmp alone.
pub fn socket_dir(dir: &Path) -> anyhow::Result<()> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => private_dir(dir),
        Err(e) => Err(e).with_context(|| format!("cannot inspect {}", dir.display())),
        Ok(m) if m.file_type().is_symlink() => bail!(
            "{} is a symbolic link; refusing to put the socket there",
            dir.display()
        ),
        Ok(_) => Ok(()),
    }
}

/// Loads the identity from `path`, or creates one there (mode 0600) on first start.
pub fn load_or_create_identity(path: &Path) -> anyhow::Result<(Identity, bool)> {
    match OpenOptions::new().read(true).open(path) {
        Ok(mut f) => {
            let meta = f.metadata()?;
            if meta.mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "identity key was readable by others; making it private");
                fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
            }
            let mut seed = [0u8; 32];
            let mut rest = Vec::new();
            f.read_exact(&mut seed)
                .with_context(|| format!("identity key {} is truncated", path.display()))?;
            f.read_to_end(&mut rest)?;
            if !rest.is_empty() {
                bail!(
                    "identity key {} is {} bytes, expected 32",
                    path.display(),
                    32 + rest.len()
                );
            }
            Ok((Identity::from_seed(&seed), false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = Identity::generate();
            let tmp = path.with_extension("key.tmp");
            let _ = fs::remove_file(&tmp);
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?;
            f.write_all(id.seed())?;
            f.sync_all()?;
            fs::rename(&tmp, path)?;
            if let Some(parent) = path.parent() {
                fs::File::open(parent)?.sync_all()?;
            }
            Ok((id, true))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read identity key {}", path.display())),
    }
}

/// Raises this process's soft limit on open files to its hard limit (systemd
/// starts services at 1024 soft, and the units set `LimitNOFILE`); returns
/// the soft limit now in force. The web UI's connection cap is sized from it
/// so that the IPC socket and the mesh always have descriptors left.
pub fn raise_open_files_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.current.is_some() && lim.current != lim.maximum {
        let raised = Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => return lim.maximum.unwrap_or(u64::MAX),
            Err(e) => tracing::warn!(
                soft = ?lim.current,
                hard = ?lim.maximum,
                error = %e,
                "cannot raise the open-files limit"
            ),
        }
    }
    lim.current.unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The soft open-files limit is raised to the hard one (what the web
    /// UI's connection cap is then sized from).
    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let before = getrlimit(Resource::Nofile);
        if let Some(hard) = before.maximum.filter(|h| *h > 256) {
            setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(256),
                    maximum: Some(hard),
                },
            )
            .unwrap();
            assert_eq!(raise_open_files_limit(), hard);
            assert_eq!(getrlimit(Resource::Nofile).current, Some(hard));
        }
    }

    #[test]
    fn identity_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("identity.key");
        let (a, created) = load_or_create_identity(&p).unwrap();
        assert!(created);
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        let (b, created) = load_or_create_identity(&p).unwrap();
        assert!(!created);
        assert_eq!(a.author_id(), b.author_id());
        fs::write(&p, [1u8; 10]).unwrap();
        assert!(load_or_create_identity(&p).is_err());
    }

    #[test]
    fn private_dir_tightens_modes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a/b");
        private_dir(&d).unwrap();
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&d).unwrap();
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        // A shared folder like /tmp is refused, and left exactly as it was.
        let shared = dir.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(
            private_dir(&shared)
                .unwrap_err()
                .to_string()
                .contains("written by other users")
        );
        assert_eq!(fs::metadata(&shared).unwrap().mode() & 0o7777, 0o1777);
        socket_dir(&shared).unwrap();
        assert_eq!(
            fs::metadata(&shared).unwrap().mode() & 0o7777,
            0o1777,
            "a socket's existing folder is not changed"
        );
        socket_dir(&dir.path().join("new")).unwrap();
        assert_eq!(
            fs::metadata(dir.path().join("new")).unwrap().mode() & 0o777,
            0o700
        );
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        assert!(
            private_dir(&link)
                .unwrap_err()
                .to_string()
                .contains("symbolic link")
        );
    }
}
