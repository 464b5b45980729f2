//! Rivulet's desktop app: log in, browse and buy, watch in an embedded mpv view, tune the
//! cache, see points, keep sharing from the system tray. The engine (`rivulet-node-core`)
//! runs behind [`engine::NodeHandle`].

pub mod app;
pub mod credentials;
pub mod demo;
pub mod engine;
pub mod environment;
pub mod feed;
pub mod icon;
pub mod link;
pub mod report;
pub mod resume;
pub mod screen;
pub mod settings;
pub mod single;
pub mod tray;
pub mod video;
