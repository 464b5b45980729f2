//! Rivulet's peer engine: the erasure-coded media format and codec that the tracker, the
//! caches, the viewers and the app all share, and the FTP tickets that guard chunk access.

pub mod codec;
pub mod format;
pub mod ticket;
