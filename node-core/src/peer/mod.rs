//! Talking to other nodes: FTP sessions that fetch chunks, for the viewer and the cache.

pub mod ftp;
