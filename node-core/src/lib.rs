//! Rivulet's peer engine: the erasure-coded media format and codec that the tracker, the
//! caches, the viewers and the app all share, the FTP tickets that guard chunk access, and
//! the viewer role that rebuilds a movie from verified chunks.

pub mod cache;
pub mod cli;
pub mod clock;
pub mod codec;
pub mod env;
pub mod format;
pub mod headless;
pub mod net;
pub mod paths;
pub mod peer;
pub mod task;
pub mod ticket;
pub mod units;
pub mod viewer;
