//! wpa_supplicant's control interface: a Unix datagram socket per network
//! interface (`/run/wpa_supplicant/wlan0`). A client binds its own socket,
//! sends a command as one datagram and reads the reply. An `ATTACH`ed socket
//! also receives events, so commands and events use two sockets, as
//! `wpa_cli` does.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::net::UnixDatagram;

use crate::Error;

/// How long a command may take. Scans and group formation do not block the
/// control interface; this only catches a stuck or vanished wpa_supplicant.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest reply or event read (wpa_supplicant's own limit is 4096 for most).
const MAX_DATAGRAM: usize = 8192;

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// One socket to one wpa_supplicant interface. Removes its own socket file
/// when dropped.
pub struct Ctrl {
    sock: UnixDatagram,
    local: PathBuf,
    remote: PathBuf,
}

impl Ctrl {
    /// Connects to the control socket at `remote`, binding a client socket in
    /// `local_dir` (which must be reachable by wpa_supplicant, normally root).
    pub fn connect(remote: &Path, local_dir: &Path) -> Result<Self, Error> {
        let local = local_dir.join(format!(
            "wpa-ctrl-{}-{}",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&local);
        let sock = UnixDatagram::bind(&local)
            .map_err(|e| Error::Io(format!("cannot bind {}", local.display()), e))?;
        let ctrl = Self {
            sock,
            local,
            remote: remote.to_owned(),
        };
        ctrl.sock.connect(remote).map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => Error::Permission(remote.display().to_string()),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                Error::NoSupplicant(format!("no wpa_supplicant answers at {}", remote.display()))
            }
            _ => Error::Io(format!("cannot reach {}", remote.display()), e),
        })?;
        Ok(ctrl)
    }

    pub fn remote(&self) -> &Path {
        &self.remote
    }

    /// Sends `cmd` and returns the reply (events, which only an attached
    /// socket gets, are skipped).
    pub async fn request(&self, cmd: &str) -> Result<String, Error> {
        self.sock
            .send(cmd.as_bytes())
            .await
            .map_err(|e| self.io_error(cmd, e))?;
        let deadline = tokio::time::Instant::now() + COMMAND_TIMEOUT;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let n = tokio::time::timeout_at(deadline, self.sock.recv(&mut buf))
                .await
                .map_err(|_| {
                    Error::Timeout(format!(
                        "{} did not answer {:?}",
                        self.remote.display(),
                        verb(cmd)
                    ))
                })?
                .map_err(|e| self.io_error(cmd, e))?;
            let reply = String::from_utf8_lossy(&buf[..n]);
            if !reply.starts_with('<') {
                return Ok(reply.into_owned());
            }
        }
    }

    /// Sends `cmd` and expects `OK`.
    pub async fn ok(&self, cmd: &str) -> Result<(), Error> {
        let reply = self.request(cmd).await?;
        if reply.trim_end() == "OK" {
            Ok(())
        } else {
            Err(Error::Refused {
                cmd: verb(cmd).to_owned(),
                reply: reply.trim_end().chars().take(80).collect(),
            })
        }
    }

    /// Turns this socket into an event monitor.
    pub async fn attach(self) -> Result<Events, Error> {
        self.ok("ATTACH").await?;
        Ok(Events {
            ctrl: self,
            buf: vec![0u8; MAX_DATAGRAM],
        })
    }

    fn io_error(&self, cmd: &str, e: std::io::Error) -> Error {
        match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                Error::Permission(self.remote.display().to_string())
            }
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                Error::NoSupplicant(format!(
                    "wpa_supplicant at {} went away",
                    self.remote.display()
                ))
            }
            _ => Error::Io(format!("{:?} to {}", verb(cmd), self.remote.display()), e),
        }
    }
}

impl Drop for Ctrl {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.local);
    }
}

/// The first word of a command (what errors name; arguments may be secret).
fn verb(cmd: &str) -> &str {
    cmd.split(' ').next().unwrap_or(cmd)
}

/// An attached socket: unsolicited events, one per datagram.
pub struct Events {
    ctrl: Ctrl,
    buf: Vec<u8>,
}

impl Events {
    /// The next event line (with its `<N>` prefix).
    pub async fn next(&mut self) -> Result<String, Error> {
        let n = self
            .ctrl
            .sock
            .recv(&mut self.buf)
            .await
            .map_err(|e| self.ctrl.io_error("event", e))?;
        Ok(String::from_utf8_lossy(&self.buf[..n]).into_owned())
    }

    /// Detaches (best effort), so wpa_supplicant stops queueing events for us.
    pub async fn detach(self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.ctrl.sock.send(b"DETACH")).await;
    }
}

/// The control sockets in `dir` that name network interfaces (not the
/// `global` one), sorted, P2P group interfaces last.
pub fn interfaces(dir: &Path) -> Result<Vec<String>, Error> {
    let rd = std::fs::read_dir(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NoSupplicant(format!(
            "no wpa_supplicant control sockets in {} (is wpa_supplicant running with ctrl_interface set?)",
            dir.display()
        )),
        std::io::ErrorKind::PermissionDenied => Error::Permission(dir.display().to_string()),
        _ => Error::Io(format!("cannot list {}", dir.display()), e),
    })?;
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n != "global" && crate::event::valid_iface(n))
        .take(64)
        .collect();
    names.sort_by_key(|n| (n.starts_with("p2p-"), n.clone()));
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in wpa_supplicant: answers PING with PONG, sends an event
    /// before the reply to ATTACH, and says FAIL to anything else.
    async fn fake_supplicant(path: PathBuf) {
        let sock = UnixDatagram::bind(&path).unwrap();
        let mut buf = [0u8; 256];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let to = from.as_pathname().unwrap().to_owned();
            let reply: &[u8] = match &buf[..n] {
                b"PING" => {
                    sock.send_to(b"<3>CTRL-EVENT-SCAN-STARTED ", &to)
                        .await
                        .unwrap();
                    b"PONG\n"
                }
                b"ATTACH" => b"OK\n",
                _ => b"FAIL\n",
            };
            sock.send_to(reply, &to).await.unwrap();
            if &buf[..n] == b"ATTACH" {
                sock.send_to(b"<3>P2P-GROUP-REMOVED p2p-wlan0-0 GO reason=REQUESTED", &to)
                    .await
                    .unwrap();
            }
        }
    }

    #[tokio::test]
    async fn request_skips_events_and_ok_checks_the_reply() {
        let dir = tempfile::tempdir().unwrap();
        let remote = dir.path().join("wlan0");
        tokio::spawn(fake_supplicant(remote.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let ctrl = Ctrl::connect(&remote, dir.path()).unwrap();
        assert_eq!(ctrl.request("PING").await.unwrap(), "PONG\n");
        let e = ctrl.ok("P2P_FIND secret-argument").await.unwrap_err();
        assert!(
            matches!(&e, Error::Refused { cmd, reply } if cmd == "P2P_FIND" && reply == "FAIL"),
            "{e}"
        );
        assert!(!e.to_string().contains("secret"));
        let mut events = Ctrl::connect(&remote, dir.path())
            .unwrap()
            .attach()
            .await
            .unwrap();
        assert!(events.next().await.unwrap().contains("P2P-GROUP-REMOVED"));
        // Our sockets are cleaned up on drop.
        drop(ctrl);
        events.detach().await;
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("wlan0")]);
    }

    #[tokio::test]
    async fn absent_supplicant_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = Ctrl::connect(&dir.path().join("wlan0"), dir.path())
            .err()
            .unwrap();
        assert!(matches!(e, Error::NoSupplicant(_)), "{e}");
        let e = interfaces(&dir.path().join("nope")).unwrap_err();
        assert!(e.to_string().contains("ctrl_interface"), "{e}");
        std::fs::write(dir.path().join("global"), "").unwrap();
        std::fs::write(dir.path().join("p2p-wlan0-0"), "").unwrap();
        std::fs::write(dir.path().join("wlan0"), "").unwrap();
        assert_eq!(
            interfaces(dir.path()).unwrap(),
            vec!["wlan0".to_owned(), "p2p-wlan0-0".to_owned()]
        );
    }
}
