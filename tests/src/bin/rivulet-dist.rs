//! `rivulet-dist`: makes the files the Debian packages ship that come from the clap
//! definitions of the installed commands: man pages (`man DIR`) and shell completions
//! (`completions DIR`). `installer/build-debs.sh` runs it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use clap_complete::Shell;

#[derive(Parser, Debug)]
#[command(
    name = "rivulet-dist",
    about = "Makes the man pages and shell completions the packages ship"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Writes rivulet.1, rivulet-node.1, rivulet-tracker.1 and one page per subcommand
    /// (rivulet-tracker-serve.1, …) into DIR.
    Man {
        /// The folder to write into (created).
        dir: PathBuf,
    },
    /// Writes bash, zsh and fish completions for every command into DIR
    /// (rivulet-tracker.bash, _rivulet-tracker, rivulet-tracker.fish, …).
    Completions {
        /// The folder to write into (created).
        dir: PathBuf,
    },
}

/// Every installed command, from the clap definition its binary parses with.
fn commands() -> Vec<clap::Command> {
    vec![
        rivulet_app::link::command(),
        rivulet_node_core::cli::node_command(),
        rivulet_tracker::cli::command(),
    ]
}

fn main() -> ExitCode {
    rivulet_node_core::cli::init_tracing();
    let cli: Cli = match rivulet_node_core::cli::parse("rivulet-dist") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let result = match cli.command {
        Command::Man { dir } => man_pages(&dir),
        Command::Completions { dir } => completions(&dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rivulet-dist: {}", rivulet_node_core::cli::one_line(&e));
            ExitCode::FAILURE
        }
    }
}

fn man_pages(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for command in commands() {
        clap_mangen::generate_to(command, dir)
            .with_context(|| format!("writing man pages into {}", dir.display()))?;
    }
    Ok(())
}

fn completions(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for mut command in commands() {
        let name = command.get_name().to_owned();
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            clap_complete::generate_to(shell, &mut command, &name, dir)
                .with_context(|| format!("writing {shell} completions into {}", dir.display()))?;
        }
    }
    Ok(())
}
