//! Helpers for tests that run Rivulet's real binaries and look at what they leave: start one
//! and read the line it prints when it is ready, list every path a node wrote.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

/// Spawns `command` with stdout piped and returns the child and the first line it printed
/// (without the line end). Panics with the command's name if it cannot start or prints
/// nothing: for tests only.
pub fn spawn_reading_line(command: &mut Command) -> (Child, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {:?}: {e}", command.get_program()));
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout is piped"))
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("reading from {:?}: {e}", command.get_program()));
    (child, line.trim_end().to_owned())
}

/// Every path under `dir`, folders and files, depth first (nothing when `dir` is missing):
/// for tests that check what a node left on disk.
pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}
