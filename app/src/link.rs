//! Command-line arguments: `rivulet [--demo] [rivulet://watch/ID]`.

/// What the command line asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Launch {
    /// Start the embedded demo network and log in to it.
    pub demo: bool,
    /// Open the player on this movie once logged in.
    pub watch: Option<String>,
}

/// Parses the arguments after the program name; the error is one line for the user.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Launch, String> {
    let mut launch = Launch::default();
    for arg in args {
        if arg == "--demo" {
            launch.demo = true;
        } else if arg == "--help" || arg == "-h" {
            return Err("usage: rivulet [--demo] [rivulet://watch/ID]".into());
        } else if let Some(rest) = arg.strip_prefix("rivulet://") {
            let id = rest
                .strip_prefix("watch/")
                .map(|id| id.trim_end_matches('/'))
                .filter(|id| {
                    !id.is_empty()
                        && id
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                })
                .ok_or_else(|| {
                    format!("{arg:?} is not a Rivulet link; expected rivulet://watch/ID")
                })?;
            launch.watch = Some(id.to_owned());
        } else {
            return Err(format!(
                "unexpected argument {arg:?}; usage: rivulet [--demo] [rivulet://watch/ID]"
            ));
        }
    }
    Ok(launch)
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
        assert_eq!(parse(args(&[])), Ok(Launch::default()));
    }

    #[test]
    fn bad_links_and_arguments_are_one_line_errors() {
        for bad in [
            "rivulet://play/x",
            "rivulet://watch/",
            "rivulet://watch/a b",
            "--fast",
        ] {
            let e = parse(args(&[bad])).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
