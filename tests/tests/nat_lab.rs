//! Caches behind home routers, in a closed little internet of network namespaces
//! (`tests/nat-lab/lab.sh`: real nft NAT, a router running miniupnpd, one without UPnP, a
//! public side with IPv4 and IPv6), running the real `rivulet-tracker` and `rivulet-node`
//! binaries. Needs root to make namespaces (CI has it); without, it fails with one line.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rivulet_e2e::{sha256_file, workspace_binary};
use rivulet_tracker_client::{Credentials, NodeInfo, ReachState, TrackerClient};
use serde_json::Value;

const PASSWORD: &str = "lab-password-1";
/// The tracker as every namespace names it (`/etc/netns/NS/hosts`: its IPv4 address, or its
/// IPv6 address in the IPv6-only namespaces).
const TRACKER: &str = "http://tracker.lab:7878";
/// The tracker from inside its own namespace, for the admin's queries.
const TRACKER_IN_WAN: &str = "http://11.77.0.10:7878";

/// The lab, taken down (with everything running in it) when dropped.
struct Lab {
    name: String,
    script: PathBuf,
}

impl Lab {
    fn up() -> Lab {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            panic!("nat_lab: needs root to make network namespaces; run the tests as root");
        }
        for tool in ["ip", "nft", "/usr/sbin/miniupnpd"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(found, "nat_lab: {tool} is missing; run installer/deps.sh");
        }
        let name = format!("nl{}", std::process::id() % 100_000);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("nat-lab/lab.sh");
        let lab = Lab { name, script };
        lab.run("down");
        let up = lab.run("up");
        assert!(
            up.status.success(),
            "nat_lab: lab.sh up failed: {}",
            String::from_utf8_lossy(&up.stderr).trim()
        );
        lab
    }

    fn run(&self, what: &str) -> std::process::Output {
        Command::new("bash")
            .arg(&self.script)
            .args([what, &self.name])
            .output()
            .expect("nat_lab: running bash")
    }

    /// `CMD` run inside the lab's host `host` (`wan`, `h1`, `c`, ...).
    fn exec(&self, host: &str, program: &Path) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &format!("{}-{host}", self.name)])
            .arg(program);
        command
    }

    /// `f` on a thread that has entered the namespace of `host` (sockets it opens are there).
    fn within<T: Send + 'static>(&self, host: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}-{host}", self.name);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: a valid namespace file descriptor; setns changes only this thread.
            let rc =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("the namespace thread")
    }

    /// The future `f` makes, run to its end on a thread inside `host`'s namespace.
    fn block_on<T, F>(&self, host: &str, f: impl FnOnce() -> F + Send + 'static) -> T
    where
        T: Send + 'static,
        F: std::future::Future<Output = T>,
    {
        self.within(host, move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(f())
        })
    }

    /// The tracker's nodes as its administrator sees them.
    fn nodes(&self) -> Vec<NodeInfo> {
        self.block_on("wan", || async {
            let admin = TrackerClient::new(TRACKER_IN_WAN)
                .login_kept(Credentials {
                    username: "admin".into(),
                    password: PASSWORD.into(),
                })
                .await
                .expect("the admin logs in");
            admin.admin_nodes().await.expect("the admin lists nodes")
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.run("down");
    }
}

/// A running binary that prints JSON lines; killed when dropped.
struct Node {
    child: Child,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Node {
    fn start(command: &mut Command) -> Node {
        let mut child = command
            .env("RIVULET_PASSWORD", PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && tx.send(v).is_err()
                {
                    break;
                }
            }
        });
        Node {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line (seen or to come) that `test` accepts.
    fn line(&mut self, within: Duration, what: &str, test: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.seen.iter().find(|v| test(v)) {
            return v.clone();
        }
        let until = Instant::now() + within;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if test(&v) {
                        return v;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no {what} within {within:?}; it printed {:?}", self.seen);
    }

    /// SIGTERM, then its last line.
    fn stop(mut self) -> Value {
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let last = self.line(Duration::from_secs(20), "stop line", |v| {
            v["stopped"] == true
        });
        let _ = self.child.wait();
        last
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tracker_cmd(lab: &Lab, data: &Path, args: &[&str]) -> std::process::Output {
    lab.exec("wan", &workspace_binary("rivulet-tracker"))
        .args(args)
        .arg("--data")
        .arg(data)
        .env("RIVULET_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .output()
        .expect("running rivulet-tracker")
}

/// `rivulet-node cache` for `user` in `host`, on the default ports.
fn cache(lab: &Lab, host: &str, user: &str, dir: &Path, extra: &[&str]) -> Command {
    let mut command = lab.exec(host, &workspace_binary("rivulet-node"));
    command
        .args(["cache", "--tracker", TRACKER, "--user", user])
        .args([
            "--size",
            "200MB",
            "--upload",
            "100Mbit",
            "--download",
            "200Mbit",
        ])
        .arg("--dir")
        .arg(dir.join(user))
        .arg("--key")
        .arg(dir.join(format!("{user}.key")))
        .args(extra);
    command
}

fn watch(lab: &Lab, host: &str, user: &str, out: &Path) -> Value {
    let run = lab
        .exec(host, &workspace_binary("rivulet-node"))
        .args(["watch", "--tracker", TRACKER, "--user", user])
        .args(["--video", "sample", "--buy", "--out"])
        .arg(out)
        .env("RIVULET_PASSWORD", PASSWORD)
        .env("XDG_CACHE_HOME", out.with_extension("cache"))
        .stdin(Stdio::null())
        .output()
        .expect("running rivulet-node watch");
    assert!(
        run.status.success(),
        "{user}'s watch in {host} failed: {}",
        String::from_utf8_lossy(&run.stderr).trim()
    );
    serde_json::from_slice(&run.stdout).expect("the watch report")
}

/// The port forwards miniupnpd has made on home 1's router (its nft chain).
fn mapped_on(lab: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &format!("{lab}-r1")])
        .args([
            "nft",
            "list",
            "chain",
            "inet",
            "filter",
            "prerouting_miniupnpd",
        ])
        .output()
        .expect("running nft");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn holds_sample(node: &NodeInfo) -> bool {
    node.holdings
        .iter()
        .any(|h| h.video == "sample" && !h.indices.is_empty())
}

fn reach_state(line: &Value) -> Option<ReachState> {
    serde_json::from_value(line["reach"]["state"].clone()).ok()
}

#[test]
fn caches_behind_home_routers_serve_when_they_can_be_reached_and_are_told_why_not() {
    let lab = Lab::up();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("tracker");

    // The tracker's catalogue and accounts, made by its own commands.
    let sample = tracker_cmd(&lab, &data, &["sample", "--seconds", "8"]);
    assert!(sample.status.success(), "{:?}", sample);
    for (name, admin) in [
        ("admin", true),
        ("ann", false),
        ("bob", false),
        ("cat", false),
        ("dan", false),
        ("eve", false),
        ("vic", false),
        ("val", false),
    ] {
        let mut args = vec!["account", name];
        if admin {
            args.push("--admin");
        }
        let made = tracker_cmd(&lab, &data, &args);
        assert!(made.status.success(), "account {name}: {made:?}");
    }
    let mut tracker = Node::start(
        lab.exec("wan", &workspace_binary("rivulet-tracker"))
            .args(["serve", "--public", "--advertise", "tracker.lab"])
            .args(["--http", "[::]:7878", "--ftp", "[::]:2121"])
            .arg("--data")
            .arg(&data),
    );
    // It prints its URL (not JSON) first: wait until it answers instead.
    let until = Instant::now() + Duration::from_secs(20);
    while lab.within("wan", || {
        std::net::TcpStream::connect_timeout(
            &"11.77.0.10:7878".parse().unwrap(),
            Duration::from_millis(500),
        )
        .is_err()
    }) {
        assert!(Instant::now() < until, "the tracker never listened");
        assert!(
            tracker.child.try_wait().unwrap().is_none(),
            "the tracker exited"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A behind the UPnP router, B behind the router without, C public, D IPv6 only.
    let dir = work.path();
    let mut a = Node::start(&mut cache(&lab, "h1", "ann", dir, &[]));
    let mut b = Node::start(&mut cache(&lab, "h2", "bob", dir, &[]));
    let mut c = Node::start(&mut cache(&lab, "c", "cat", dir, &[]));
    let mut d = Node::start(&mut cache(&lab, "d", "dan", dir, &[]));
    let started = |n: &mut Node| {
        n.line(Duration::from_secs(30), "start line", |v| {
            v["node_id"].is_string()
        })
    };
    let (a0, b0, c0, d0) = (
        started(&mut a),
        started(&mut b),
        started(&mut c),
        started(&mut d),
    );
    assert_eq!(
        a0["mapping"], "UPnP",
        "A maps its ports on its router: {a0}"
    );
    assert_eq!(
        a0["addr"], "11.77.0.2:7880",
        "A advertises its router's address"
    );
    assert!(b0["mapping"].is_null(), "B's router maps nothing: {b0}");
    assert_eq!(b0["addr"], "11.77.0.3:7880");
    assert!(c0["mapping"].is_null(), "C needs no mapping: {c0}");
    assert_eq!(c0["addr"], "11.77.0.20:7880");
    assert_eq!(
        d0["addr"], "[2a0b:77::40]:7880",
        "D advertises its IPv6 address"
    );
    let rules = mapped_on(&lab.name);
    for port in ["7880", "7881", "7912"] {
        assert!(
            rules.contains(&format!("dport {port} ")),
            "port {port} mapped: {rules}"
        );
    }

    // What the tracker's probe found, as each cache tells its user.
    let verdict = |n: &mut Node, who: &str| {
        n.line(
            Duration::from_secs(30),
            &format!("{who}'s reach verdict"),
            |v| {
                matches!(
                    reach_state(v),
                    Some(ReachState::Reachable | ReachState::Unreachable)
                )
            },
        )
    };
    let (ar, br, cr, dr) = (
        verdict(&mut a, "A"),
        verdict(&mut b, "B"),
        verdict(&mut c, "C"),
        verdict(&mut d, "D"),
    );
    assert_eq!(reach_state(&ar), Some(ReachState::Reachable), "{ar}");
    assert_eq!(
        ar["line"], "Your cache is reachable at 11.77.0.2:7880 (UPnP mapping).",
        "{ar}"
    );
    assert_eq!(reach_state(&br), Some(ReachState::Unreachable), "{br}");
    let why = br["line"].as_str().unwrap();
    assert!(
        why.starts_with("Your cache is not reachable from the internet (")
            && why.contains("Forward TCP port 7880 and 7881–7912 to this computer, or enable UPnP"),
        "B's status says why and what to do: {why}"
    );
    assert_eq!(reach_state(&cr), Some(ReachState::Reachable), "{cr}");
    assert_eq!(reach_state(&dr), Some(ReachState::Reachable), "{dr}");

    // A public tracker refuses a cache that advertises somebody else's address.
    let refused = cache(&lab, "c", "eve", dir, &["--advertise", "11.77.0.99"])
        .args(["--listen", "[::]:7990", "--passive-ports", "7991-7995"])
        .env("RIVULET_PASSWORD", PASSWORD)
        // Only the error, without the progress it logs on the way.
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr).trim().to_owned();
    assert!(!refused.status.success(), "a foreign address is refused");
    assert!(
        err.lines().count() == 1
            && err.starts_with("rivulet-node: registering the cache:")
            && err.contains("\"11.77.0.99:7990\"")
            && err.contains("address_refused"),
        "one line naming the address: {err}"
    );

    // The sample movie is bought, so placement puts it on the reachable caches (never B).
    let ids = |v: &Value| v["node_id"].as_str().unwrap().to_owned();
    let (a_id, b_id, c_id, d_id) = (ids(&a0), ids(&b0), ids(&c0), ids(&d0));
    for who in ["vic", "val"] {
        // Buying through a watch would race placement; buy first, as users do.
        lab.block_on("wan", move || async {
            let client = TrackerClient::new(TRACKER_IN_WAN)
                .login_kept(Credentials {
                    username: who.into(),
                    password: PASSWORD.into(),
                })
                .await
                .unwrap();
            client.buy("sample").await.unwrap();
        });
    }
    let until = Instant::now() + Duration::from_secs(90);
    let mut nodes;
    loop {
        nodes = lab.nodes();
        let node = |id: &str| nodes.iter().find(|n| n.node_id == id);
        assert!(
            node(&b_id).is_some_and(|n| n.holdings.is_empty()),
            "B is never placed: {:?}",
            node(&b_id)
        );
        if [&a_id, &c_id, &d_id]
            .iter()
            .all(|id| node(id).is_some_and(holds_sample))
        {
            break;
        }
        assert!(
            Instant::now() < until,
            "A, C and D never all held the movie: {nodes:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let b_node = nodes.iter().find(|n| n.node_id == b_id).unwrap();
    assert_eq!(
        b_node.reach.as_ref().map(|r| r.state),
        Some(ReachState::Unreachable)
    );
    // One more placement round, so that the peer sets see the holdings.
    std::thread::sleep(Duration::from_secs(5));

    // A viewer on the internet gets bytes from A (through its router) and C, byte-exact.
    let original = sha256_file(
        &rivulet_tracker::data_dir::DataDir::open(&data)
            .video_dir("sample")
            .join("stream.mkv"),
    )
    .unwrap();
    let report = watch(&lab, "v", "vic", &work.path().join("vic.mkv"));
    assert_eq!(report["sha256"], original.as_str(), "byte-exact: {report}");
    let from = |r: &Value, id: &str| r["from_peers"][id].as_u64().unwrap_or(0);
    assert!(from(&report, &a_id) > 0, "bytes from A: {report}");
    assert!(from(&report, &c_id) > 0, "bytes from C: {report}");
    assert_eq!(from(&report, &b_id), 0, "nothing from B: {report}");

    // An IPv6-only viewer gets the IPv6-only cache's bytes (and the rest from the origin
    // over IPv6: A and C have no IPv6 address).
    let report6 = watch(&lab, "v6", "val", &work.path().join("val.mkv"));
    assert_eq!(
        report6["sha256"],
        original.as_str(),
        "byte-exact: {report6}"
    );
    assert!(
        from(&report6, &d_id) > 0,
        "bytes from D over IPv6: {report6}"
    );

    // B fetched nothing from the origin; A's mappings go when it stops.
    let b_last = b.stop();
    assert_eq!(b_last["fetched_bytes"], 0, "B fetched nothing: {b_last}");
    let a_last = a.stop();
    assert!(a_last["fetched_bytes"].as_u64().unwrap() > 0, "{a_last}");
    let rules = mapped_on(&lab.name);
    assert!(
        !rules.contains("dport 78"),
        "A's mappings are removed: {rules}"
    );
    println!(
        "bytes: dual-stack viewer from A {}, C {}, D {}, origin {}; IPv6 viewer from D {}, origin {}",
        from(&report, &a_id),
        from(&report, &c_id),
        from(&report, &d_id),
        from(&report, "origin"),
        from(&report6, &d_id),
        from(&report6, "origin"),
    );

    // The same router by NAT-PMP: mapped, seen in its rules, removed.
    let lab_name = lab.name.clone();
    let (mapped, rules) = lab.block_on("h1", move || async move {
        use rivulet_node_core::net::portmap::{Protocol, map_by};
        let mapping = map_by(Protocol::NatPmp, &[7950, 7951]).await.unwrap();
        let rules = mapped_on(&lab_name);
        mapping.remove().await;
        (
            (mapping.protocol, mapping.ports.clone(), mapping.external_ip),
            rules,
        )
    });
    assert_eq!(
        mapped,
        (
            rivulet_node_core::net::portmap::Protocol::NatPmp,
            vec![7950, 7951],
            Some("11.77.0.2".parse().unwrap())
        )
    );
    assert!(
        rules.contains("dport 7950 ") && rules.contains("dport 7951 "),
        "{rules}"
    );
    assert!(
        !mapped_on(&lab.name).contains("dport 795"),
        "the NAT-PMP mappings are removed"
    );
    drop((c, d, tracker));
}
