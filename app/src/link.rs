//! Command-line arguments: `rivulet [--demo] [rivulet://watch/ID]` (clap, so that the man
//! page comes from the same definition).

use clap::{CommandFactory, Parser};

/// What the command line asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Launch {
    /// Start the embedded demo network and log in to it.
    pub demo: bool,
    /// Open the player on this movie once logged in.
    pub watch: Option<String>,
}

/// `rivulet`'s command line.
#[derive(Parser, Debug)]
#[command(
    name = "rivulet",
    version,
    about = "Rivulet's desktop app: watch movies streamed by your peers",
    long_about = "Rivulet's desktop app: log in, browse and buy movies, watch them in the \
        built-in player, and share a cache of erasure-coded chunks with other viewers for \
        points. Only one app runs per user: a second launch hands its link to the running \
        app, which comes to the front and opens it."
)]
struct Args {
    /// Start an embedded local network (tracker, origin, caches, a demo movie and account)
    /// and log in to it.
    #[arg(long)]
    demo: bool,
    /// A Rivulet link to open once logged in: rivulet://watch/ID.
    #[arg(value_name = "LINK", value_parser = watch_id)]
    link: Option<String>,
}

/// The movie id of a `rivulet://watch/ID` link.
fn watch_id(arg: &str) -> Result<String, String> {
    arg.strip_prefix("rivulet://")
        .and_then(|rest| rest.strip_prefix("watch/"))
        .map(|id| id.trim_end_matches('/'))
        .filter(|id| {
            !id.is_empty()
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
        .map(str::to_owned)
        .ok_or_else(|| format!("{arg:?} is not a Rivulet link; expected rivulet://watch/ID"))
}

/// Why the command line does not start the app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotLaunched {
    /// `--help` or `--version`: print this on stdout and exit 0.
    Info(String),
    /// A bad argument: this one line goes to stderr, and the exit is 2.
    Bad(String),
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Launch, NotLaunched> {
    let argv = std::iter::once("rivulet".to_owned()).chain(args);
    match Args::try_parse_from(argv) {
        Ok(a) => Ok(Launch {
            demo: a.demo,
            watch: a.link,
        }),
        Err(e) if !e.use_stderr() => Err(NotLaunched::Info(e.to_string())),
        Err(e) => Err(NotLaunched::Bad(rivulet_node_core::cli::usage_error_line(
            &e,
        ))),
    }
}

/// The link that opens `id`: `rivulet://watch/ID`.
pub fn watch_link(id: &str) -> String {
    format!("rivulet://watch/{id}")
}

/// `rivulet`'s clap command, for its man page.
pub fn command() -> clap::Command {
    Args::command()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn demo_and_watch_link() {
        assert_eq!(
            parse(args(&["--demo", "rivulet://watch/demo"])),
            Ok(Launch {
                demo: true,
                watch: Some("demo".into())
            })
        );
        assert_eq!(
            parse(args(&["rivulet://watch/abc-1/"])),
            Ok(Launch {
                demo: false,
                watch: Some("abc-1".into())
            })
        );
        assert_eq!(parse(args(&[])), Ok(Launch::default()));
        assert_eq!(
            parse(args(&[&watch_link("x_y.z")])).unwrap().watch,
            Some("x_y.z".into())
        );
    }

    #[test]
    fn bad_links_and_arguments_are_one_line_errors() {
        for bad in [
            "rivulet://play/x",
            "rivulet://watch/",
            "rivulet://watch/a b",
            "rivulet://watch/../../etc",
            "--fast",
        ] {
            let Err(NotLaunched::Bad(e)) = parse(args(&[bad])) else {
                panic!("{bad:?} was accepted");
            };
            assert!(!e.contains('\n') && !e.is_empty(), "{e}");
        }
        let Err(NotLaunched::Bad(e)) = parse(args(&["rivulet://watch/a", "rivulet://watch/b"]))
        else {
            panic!("two links were accepted");
        };
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn help_and_version_are_not_errors() {
        for info in ["--help", "-h", "--version"] {
            let Err(NotLaunched::Info(text)) = parse(args(&[info])) else {
                panic!("{info} did not print");
            };
            assert!(text.contains("rivulet"), "{text}");
        }
    }
}
