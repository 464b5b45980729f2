//! Rivulet's tracker as a library: the catalogue and its data dir, ingest and verification,
//! accounts and the HTTP API. The `rivulet-tracker` binary is a thin command line over it,
//! and the desktop app embeds it for `--demo`.

pub mod accounting;
pub mod accounts;
pub mod admin;
pub mod api;
pub mod catalogue;
pub mod catalogue_cache;
pub mod cli;
pub mod credit;
pub mod data_dir;
pub mod db;
pub mod earnings;
pub mod ffmpeg;
pub mod http_serve;
pub mod ingest;
pub mod leader;
pub mod login_limit;
pub mod matroska;
pub mod measured;
pub mod metrics;
pub mod nodes;
pub mod ops;
pub mod origin;
pub mod origin_ftp;
pub mod placement;
pub mod proof;
pub mod reach;
pub mod sample;
pub mod server;
pub mod service;
pub mod sessions;
pub mod settings;
pub mod store;
pub mod tickets;
pub mod verify;
pub mod web;
