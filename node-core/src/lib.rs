//! Rivulet's peer engine: the erasure-coded media format and codec that the tracker, the
//! caches, the viewers and the app all share.

pub mod codec;
pub mod format;
