//! `peddlenet-gui`: the desktop app. A front end over the daemon's IPC only
//! (`peddlenet-api`): a worker thread owns the runtime and the client
//! ([`worker`]), the UI thread draws ([`app`]) and never waits on I/O, and
//! [`qr`] shows invites as QR codes and reads them back from images
//! (files, dropped files, the file dialog and the clipboard of [`sources`]).

pub mod app;
pub mod emoji;
pub mod fonts;
pub mod notify;
pub mod qr;
pub mod sources;
pub mod state;
pub mod when;
pub mod worker;

pub use app::App;
