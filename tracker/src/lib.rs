//! Rivulet's tracker as a library: the catalogue and its data dir, ingest and verification.
//! The `rivulet-tracker` binary is a thin command line over it, and the desktop app embeds
//! it for `--demo`.

pub mod catalogue;
pub mod data_dir;
pub mod ffmpeg;
pub mod ingest;
pub mod matroska;
pub mod sample;
pub mod verify;
