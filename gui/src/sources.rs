//! Where a picture of an invite's QR code comes from, besides a file dropped
//! on the window: the desktop's file dialog (rfd: the XDG desktop portal
//! through libdbus, loaded at run time, else zenity) and the clipboard
//! (arboard). Both block, so the app calls them on a thread of their own;
//! they are behind [`ImageSources`] so that tests can stand in for the desktop.

use std::path::PathBuf;

/// An image as RGBA pixels: `(width, height, 4 bytes a pixel)`.
pub type Rgba = (usize, usize, Vec<u8>);

pub trait ImageSources: Send + Sync {
    /// Asks the person for a picture file; `Ok(None)` when they cancel,
    /// an error (in plain words) when there is no dialog to ask with.
    fn pick_file(&self) -> Result<Option<PathBuf>, String>;
    /// The picture on the clipboard, or why there is none (in plain words).
    fn clipboard_image(&self) -> Result<Rgba, String>;
}

/// The desktop's own file dialog and clipboard.
pub struct Desktop;

impl ImageSources for Desktop {
    fn pick_file(&self) -> Result<Option<PathBuf>, String> {
        // rfd asks the XDG desktop portal over the session bus, else runs
        // zenity; with neither it would say nothing at all.
        let bus = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some()
            || std::env::var_os("XDG_RUNTIME_DIR")
                .is_some_and(|d| PathBuf::from(d).join("bus").exists());
        let zenity = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("zenity").is_file()));
        if !bus && !zenity {
            return Err(
                "this desktop has no file dialog (it needs the XDG desktop portal or \
                 zenity): drop the picture on the window, or type its path"
                    .into(),
            );
        }
        Ok(rfd::FileDialog::new()
            .set_title("Join a room: pick a picture of its QR code")
            .add_filter("Pictures", &["png", "jpg", "jpeg"])
            .pick_file())
    }

    fn clipboard_image(&self) -> Result<Rgba, String> {
        let mut c =
            arboard::Clipboard::new().map_err(|e| format!("cannot read the clipboard: {e}"))?;
        match c.get_image() {
            Ok(img) => Ok((img.width, img.height, img.bytes.into_owned())),
            Err(arboard::Error::ContentNotAvailable) => {
                Err("there is no picture on the clipboard; copy the QR code's picture first".into())
            }
            Err(e) => Err(format!("cannot read the clipboard: {e}")),
        }
    }
}
