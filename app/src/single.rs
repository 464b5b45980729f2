//! One app per user. The first launch locks `rivulet.lock` in the runtime folder and listens
//! on `rivulet.sock` beside it; a later launch finds the lock held, hands its link (or just
//! "come to the front") to the running app over the socket and exits. A crashed app's lock
//! dies with it, and the next launch replaces its stale socket.
//!
//! The protocol is one line each way: `focus` or `watch ID`, answered `ok`.

use std::fs::{File, TryLockError};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::link::Launch;

/// The lock file's and the socket's names in the runtime folder.
pub const LOCK_FILE: &str = "rivulet.lock";
pub const SOCKET_FILE: &str = "rivulet.sock";

/// How long a later launch waits for the running app (to bind its socket, to answer).
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// The longest line either side sends.
const MAX_LINE: u64 = 1024;

/// What a later launch asks of the running app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handoff {
    /// Open the player on this movie (from a `rivulet://watch/ID` link); `None`: only come
    /// to the front.
    pub watch: Option<String>,
}

/// Why the hand-off to the running app failed.
#[derive(Debug, thiserror::Error)]
pub enum SingleError {
    /// The runtime folder or its lock cannot be made.
    #[error("cannot set up {path}: {source}")]
    Setup {
        /// The file or folder.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The app that holds the lock does not take the link.
    #[error("another Rivulet is running but did not take the link on {path}: {reason}")]
    NoAnswer {
        /// Its socket.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// Who this launch is.
#[derive(Debug)]
pub enum Instance {
    /// The only app: it holds the lock and listens for later launches.
    First(First),
    /// Another app runs and took this launch's link.
    HandedOff,
}

/// The running app's side: the held lock and the listening socket.
#[derive(Debug)]
pub struct First {
    lock: File,
    listener: UnixListener,
    socket: PathBuf,
}

/// Becomes the app, or hands `launch` to the app already running with this runtime folder.
pub fn claim(dir: &Path, launch: &Launch) -> Result<Instance, SingleError> {
    let setup = |path: &Path| {
        let path = path.to_owned();
        move |source| SingleError::Setup { path, source }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(setup(dir))?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(setup(&lock_path))?;
    let socket = dir.join(SOCKET_FILE);
    match lock.try_lock() {
        Ok(()) => {
            // Held by no one: whatever socket is there is a crashed app's.
            let _ = std::fs::remove_file(&socket);
            let listener = UnixListener::bind(&socket).map_err(setup(&socket))?;
            Ok(Instance::First(First {
                lock,
                listener,
                socket,
            }))
        }
        Err(TryLockError::WouldBlock) => {
            hand_off(&socket, launch)?;
            Ok(Instance::HandedOff)
        }
        Err(TryLockError::Error(e)) => Err(setup(&lock_path)(e)),
    }
}

/// Sends `launch` to the app listening on `socket`, waiting a little for an app that has
/// its lock but has not bound its socket yet.
fn hand_off(socket: &Path, launch: &Launch) -> Result<(), SingleError> {
    let no_answer = |reason: String| SingleError::NoAnswer {
        path: socket.to_owned(),
        reason,
    };
    let until = Instant::now() + ANSWER_WITHIN;
    let stream = loop {
        match UnixStream::connect(socket) {
            Ok(s) => break s,
            Err(e) if Instant::now() >= until => return Err(no_answer(e.to_string())),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let io = |e: std::io::Error| no_answer(e.to_string());
    stream.set_read_timeout(Some(ANSWER_WITHIN)).map_err(io)?;
    stream.set_write_timeout(Some(ANSWER_WITHIN)).map_err(io)?;
    let line = match &launch.watch {
        Some(id) => format!("watch {id}\n"),
        None => "focus\n".to_owned(),
    };
    (&stream).write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .take(MAX_LINE)
        .read_line(&mut answer)
        .map_err(io)?;
    match answer.trim_end() {
        "ok" => Ok(()),
        "" => Err(no_answer("it closed the connection".into())),
        other => Err(no_answer(other.to_owned())),
    }
}

/// Reads one request line; `Err` is the answer for a bad one.
fn parse_request(line: &str) -> Result<Handoff, String> {
    match line.trim_end_matches(['\r', '\n']).split_once(' ') {
        None if line.trim_end() == "focus" => Ok(Handoff { watch: None }),
        Some(("watch", id)) => crate::link::parse([crate::link::watch_link(id)])
            .ok()
            .and_then(|l| l.watch)
            .map(|watch| Handoff { watch: Some(watch) })
            .ok_or_else(|| format!("error: {id:?} is not a movie id")),
        _ => Err("error: expected `focus` or `watch ID`".into()),
    }
}

/// Answers one later launch; its hand-off, if it asked for one properly.
fn answer(stream: UnixStream) -> Option<Handoff> {
    stream.set_read_timeout(Some(ANSWER_WITHIN)).ok()?;
    stream.set_write_timeout(Some(ANSWER_WITHIN)).ok()?;
    let mut line = String::new();
    BufReader::new(&stream)
        .take(MAX_LINE)
        .read_line(&mut line)
        .ok()?;
    let request = parse_request(&line);
    let reply = match &request {
        Ok(_) => "ok\n".to_owned(),
        Err(e) => format!("{e}\n"),
    };
    let _ = (&stream).write_all(reply.as_bytes());
    match request {
        Ok(handoff) => Some(handoff),
        Err(e) => {
            tracing::warn!("a later launch sent a bad request: {e}");
            None
        }
    }
}

impl First {
    /// The socket later launches connect to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Answers later launches on a named thread for the rest of the process (which keeps
    /// the lock held), passing each hand-off to `deliver`.
    pub fn serve(self, deliver: impl Fn(Handoff) + Send + 'static) -> std::io::Result<()> {
        let First {
            lock,
            listener,
            socket,
        } = self;
        std::thread::Builder::new()
            .name("rivulet-single".into())
            .spawn(move || {
                let _held = lock;
                for stream in listener.incoming() {
                    match stream {
                        Ok(stream) => {
                            if let Some(handoff) = answer(stream) {
                                tracing::info!(
                                    "a later launch handed over {:?}",
                                    handoff.watch.as_deref().unwrap_or("(focus)")
                                );
                                deliver(handoff);
                            }
                        }
                        Err(e) => {
                            tracing::warn!("{}: {e}", socket.display());
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })
            .map(|_| ())
    }
}

/// Hand-offs for the app's subscription, put here by `main` once it is the first launch.
static INBOX: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Handoff>>> = Mutex::new(None);

/// Serves later launches (see [`First::serve`]) into the stream [`handoffs`] returns.
pub fn serve_into_app(first: First) -> std::io::Result<()> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    *INBOX.lock().unwrap_or_else(|e| e.into_inner()) = Some(rx);
    first.serve(move |handoff| {
        let _ = tx.send(handoff);
    })
}

/// Later launches' hand-offs as an iced subscription stream (silent when there are none).
pub fn handoffs() -> impl iced::futures::Stream<Item = Handoff> {
    iced::stream::channel(8, async |mut out| {
        use iced::futures::SinkExt as _;
        let inbox = INBOX.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut inbox) = inbox {
            while let Some(handoff) = inbox.recv().await {
                if out.send(handoff).await.is_err() {
                    break;
                }
            }
        }
        std::future::pending::<()>().await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(watch: Option<&str>) -> Launch {
        Launch {
            demo: false,
            watch: watch.map(String::from),
        }
    }

    #[test]
    fn requests_are_checked_like_links() {
        assert_eq!(parse_request("focus\n"), Ok(Handoff { watch: None }));
        assert_eq!(
            parse_request("watch demo\n"),
            Ok(Handoff {
                watch: Some("demo".into())
            })
        );
        for bad in [
            "watch ../x\n",
            "watch a b\n",
            "watch \n",
            "open x\n",
            "",
            "focus now\n",
        ] {
            assert!(parse_request(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_second_launch_hands_its_link_to_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let Instance::First(first) = claim(dir.path(), &launch(None)).unwrap() else {
            panic!("the first launch did not become the app");
        };
        let (tx, rx) = std::sync::mpsc::channel();
        first.serve(move |h| tx.send(h).unwrap()).unwrap();
        for watch in [Some("demo"), None] {
            let second = claim(dir.path(), &launch(watch)).unwrap();
            assert!(matches!(second, Instance::HandedOff), "{second:?}");
            let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(got.watch.as_deref(), watch);
        }
    }

    #[test]
    fn a_stale_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        // A crashed app: its socket file is left, nothing listens, nobody holds the lock.
        drop(UnixListener::bind(dir.path().join(SOCKET_FILE)).unwrap());
        assert!(dir.path().join(SOCKET_FILE).exists());
        let Instance::First(first) = claim(dir.path(), &launch(None)).unwrap() else {
            panic!("a stale socket kept the launch from becoming the app");
        };
        UnixStream::connect(first.socket()).unwrap();
    }

    #[test]
    fn a_lock_holder_that_never_answers_is_one_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        // Holds the lock and a socket but never answers (a hung app).
        let Instance::First(hung) = claim(dir.path(), &launch(None)).unwrap() else {
            panic!();
        };
        let started = Instant::now();
        let e = claim(dir.path(), &launch(Some("x"))).unwrap_err();
        assert!(matches!(e, SingleError::NoAnswer { .. }), "{e}");
        assert!(!e.to_string().contains('\n'), "{e}");
        assert!(started.elapsed() < ANSWER_WITHIN * 3);
        drop(hung);
    }
}
