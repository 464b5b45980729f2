//! Talking to other nodes over FTP: sessions that fetch chunks, and the chunk server the
//! origin and every cache run.

pub mod chunk_server;
pub mod ftp;
pub mod limits;
pub mod tls;
