//! `rivulet-tracker`'s command line (clap), here in the library so that man pages and shell
//! completions can be made from it; `main.rs` parses it and runs the command.

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

/// `rivulet-tracker`'s command line.
#[derive(Parser, Debug)]
#[command(
    name = "rivulet-tracker",
    version,
    about = "Rivulet's tracker and origin"
)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// `rivulet-tracker`'s subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the tracker: HTTP API and database (SIGINT or SIGTERM stops it gracefully).
    Serve(Box<ServeArgs>),
    /// Run an origin on its own: the chunks of the store's movies over FTP to holders of
    /// the tracker's tickets; prints its FTP address (SIGINT or SIGTERM stops it).
    Origin(Box<OriginArgs>),
    /// Print the tracker's public ticket key (hex), which `origin --ticket-key` takes.
    TicketKey {
        /// Data directory [default: the platform's data dir for rivulet-tracker].
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Create an account; the password comes from RIVULET_PASSWORD or the first line of stdin.
    Account {
        /// The username.
        name: String,
        /// Make it an administrator.
        #[arg(long)]
        admin: bool,
        /// Starting balance in points.
        #[arg(long, value_name = "N", default_value_t = 100, allow_negative_numbers = true,
              value_parser = clap::value_parser!(u64).range(0..=1_000_000_000))]
        points: u64,
        #[arg(long)]
        data: Option<PathBuf>,
        /// The database when it is not the data dir's SQLite file: postgres://USER@HOST/NAME.
        #[arg(long, value_name = "URL")]
        database: Option<String>,
    },
    /// Add a movie to the catalogue; prints its new id.
    Ingest {
        /// The media file to ingest (any container ffmpeg reads).
        file: PathBuf,
        /// Title shown in the catalogue.
        #[arg(long)]
        title: String,
        /// Price in points.
        #[arg(long, value_name = "POINTS", default_value_t = 0, allow_negative_numbers = true,
              value_parser = clap::value_parser!(u64).range(0..=1_000_000_000))]
        price: u64,
        /// Use this id instead of a random one (lowercase letters, digits, '-', '_').
        #[arg(long)]
        id: Option<String>,
        /// Data directory [default: the platform's data dir for rivulet-tracker].
        #[arg(long)]
        data: Option<PathBuf>,
        /// Put the movie in this object store, s3://BUCKET[/PREFIX], instead of the data
        /// dir's videos/ (endpoint, region and keys from AWS_ENDPOINT_URL, AWS_REGION,
        /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; path-style requests).
        #[arg(long, value_name = "URL")]
        store: Option<String>,
    },
    /// List, change or remove the catalogue's movies (`videos` alone lists them).
    Videos {
        #[command(subcommand)]
        action: Option<VideosAction>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Data directory [default: the platform's data dir for rivulet-tracker].
        #[arg(long, global = true)]
        data: Option<PathBuf>,
    },
    /// Show or change the points rate and the sign-up points; a running serve applies a
    /// change within seconds, and a stored value wins over serve's flags and config file.
    Settings {
        #[command(subcommand)]
        action: SettingsAction,
        /// Data directory [default: the platform's data dir for rivulet-tracker].
        #[arg(long, global = true)]
        data: Option<PathBuf>,
        /// The database when it is not the data dir's SQLite file: postgres://USER@HOST/NAME.
        #[arg(long, value_name = "URL", global = true)]
        database: Option<String>,
    },
    /// List accounts, or disable and enable one (a disabled account cannot log in and its
    /// sessions end).
    Accounts {
        #[command(subcommand)]
        action: AccountsAction,
        /// Data directory [default: the platform's data dir for rivulet-tracker].
        #[arg(long, global = true)]
        data: Option<PathBuf>,
        /// The database when it is not the data dir's SQLite file: postgres://USER@HOST/NAME.
        #[arg(long, value_name = "URL", global = true)]
        database: Option<String>,
    },
    /// Write a consistent copy of the database to FILE, while serve runs (SQLite's
    /// VACUUM INTO); movies and ticket.key are plain files, copy them as they are.
    Backup {
        /// The backup file to create (it must not exist).
        file: PathBuf,
        /// Data directory [default: the platform's data dir for rivulet-tracker].
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Make FILE (a backup) the database of the data dir; refused while serve runs on it.
    /// The database it replaces is kept as tracker.db.before-restore-<unix ms>.
    Restore {
        /// The backup file to restore.
        file: PathBuf,
        /// Data directory [default: the platform's data dir for rivulet-tracker].
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Make a sample movie with ffmpeg, ingest it as "sample" and verify it: a tour of the
    /// data path with nothing but this binary and ffmpeg.
    Sample {
        /// Length of the sample movie in seconds.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=3600))]
        seconds: u32,
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Rebuild every segment of a movie from random chunks and check every hash.
    Verify {
        /// The video id.
        id: String,
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

/// `videos` subcommands.
#[derive(Subcommand, Debug)]
pub enum VideosAction {
    /// List the catalogue.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Change a movie's title or price.
    Set {
        /// The video id.
        id: String,
        /// The new title.
        #[arg(long)]
        title: Option<String>,
        /// The new price in points.
        #[arg(long, value_name = "POINTS", allow_negative_numbers = true,
              value_parser = clap::value_parser!(u64).range(0..=MAX_POINTS))]
        price: Option<u64>,
    },
    /// Remove a movie and its files (purchases of it stay in the accounts' history).
    Remove {
        /// The video id.
        id: String,
    },
}

/// `settings` subcommands.
#[derive(Subcommand, Debug)]
pub enum SettingsAction {
    /// Print each setting and whether it is stored or serve's default.
    Show,
    /// Store a setting: points-rate BYTES_PER_POINT (credited bytes per point earned) or
    /// signup-points N (points a new account starts with).
    Set {
        /// Which setting.
        name: crate::settings::SettingName,
        /// Its new value.
        #[arg(allow_negative_numbers = true)]
        value: u64,
    },
}

/// `accounts` subcommands.
#[derive(Subcommand, Debug)]
pub enum AccountsAction {
    /// List every account.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Disable an account: its sessions end and log-ins are refused (403 account_disabled).
    Disable {
        /// The username.
        name: String,
    },
    /// Enable a disabled account again.
    Enable {
        /// The username.
        name: String,
    },
}

/// The clap command `rivulet-tracker` parses, for man pages and shell completions.
pub fn command() -> clap::Command {
    Cli::command()
}

/// `serve`'s settings: each one a flag and a key of the `--config` file (same name in
/// snake_case); a flag given on the command line wins over the file, the file over the
/// default.
#[derive(clap::Args, serde::Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServeArgs {
    /// A TOML file with any of the settings below (e.g. /etc/rivulet/tracker.toml).
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Data directory [default: the platform's data dir for rivulet-tracker].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The tracker's database [default: tracker.db in the data dir]: sqlite://FILE, or
    /// postgres://USER[:PASSWORD]@HOST[:PORT]/NAME to share one PostgreSQL among trackers
    /// (put a password in the config file or ~/.pgpass, not on the command line).
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Address of the HTTP API [default: 127.0.0.1:7878].
    #[arg(long)]
    pub http: Option<std::net::SocketAddr>,
    /// Address of the origin's FTP server [default: 127.0.0.1:2121].
    #[arg(long)]
    pub ftp: Option<std::net::SocketAddr>,
    /// Host name or IP nodes should dial for the origin, if not the bound one.
    #[arg(long)]
    pub advertise: Option<String>,
    /// Points a new account starts with [default: 100].
    #[arg(long, value_name = "POINTS", allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(0..=MAX_POINTS))]
    pub initial_points: Option<u64>,
    /// Seconds of silence after which a node is dropped [default: 15].
    #[arg(long, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=MAX_NODE_TIMEOUT_SECS))]
    pub node_timeout: Option<u64>,
    /// The reverse proxy in front of the tracker: only its X-Forwarded-For names the
    /// client (log-in limits, sign-up limits); from anyone else that header is ignored.
    #[arg(long, value_name = "ADDR")]
    pub trusted_proxy: Option<std::net::IpAddr>,
    /// The origin's upload cap in bits per second, over all its connections [default: 0,
    /// none].
    #[arg(long, value_name = "BITS_PER_SEC")]
    pub origin_upload_bps: Option<u64>,
    /// The origin's upload cap per FTP connection, in bits per second [default: 0, none].
    #[arg(long, value_name = "BITS_PER_SEC")]
    pub origin_connection_bps: Option<u64>,
    /// A tracker on the internet: caches must advertise public IP addresses, an IPv4 the
    /// one they connect from (loopback, private, link-local and foreign addresses get 400).
    #[arg(long)]
    #[serde(default)]
    pub public: bool,
    /// Seconds between two reachability probes of one cache [default: 60].
    #[arg(long, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=MAX_NODE_TIMEOUT_SECS))]
    pub reach_every: Option<u64>,
    /// Seconds a checked session is trusted before the database is read again: a disable
    /// or admin change made by another process is seen within this [default: 15; 0: every
    /// request reads it].
    #[arg(long, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(0..=MAX_SESSION_RECHECK_SECS))]
    pub session_recheck: Option<u64>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key); the origin's FTPS
    /// uses it too.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Clients reach the tracker over HTTPS through a reverse proxy: send HSTS and mark
    /// cookies Secure, as when serving HTTPS itself.
    #[arg(long)]
    pub behind_https_proxy: bool,
    /// The movies: s3://BUCKET[/PREFIX] (endpoint, region and keys from AWS_ENDPOINT_URL,
    /// AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) [default: the data dir's videos/].
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// Memory for the origin's segments read from the store, in bytes [default: 256MiB].
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub segment_cache: Option<u64>,
    /// The origin address nodes are told, HOST:PORT, when origins run on their own
    /// (`rivulet-tracker origin`, several behind one TCP load balancer) [default: this
    /// process's origin].
    #[arg(long, value_name = "HOST:PORT")]
    pub origin_address: Option<String>,
}

/// `origin`'s settings.
#[derive(clap::Args, Debug, Default, Clone, PartialEq)]
pub struct OriginArgs {
    /// The movies: s3://BUCKET[/PREFIX] (endpoint, region and keys from the AWS_*
    /// environment) [default: the data dir's videos/].
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// Data directory: its videos/ without --store, its ticket.key without --ticket-key
    /// [default: the platform's data dir for rivulet-tracker].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The tracker's public ticket key, 64 hex digits (`rivulet-tracker ticket-key`).
    #[arg(long, value_name = "HEX")]
    pub ticket_key: Option<String>,
    /// Address of the FTP server [default: 127.0.0.1:2121].
    #[arg(long)]
    pub ftp: Option<std::net::SocketAddr>,
    /// Memory for segments read from the store [default: 256MiB].
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub segment_cache: Option<u64>,
    /// Upload cap in bits per second, over all connections [default: 0, none].
    #[arg(long, value_name = "BITS_PER_SEC")]
    pub upload_bps: Option<u64>,
    /// Upload cap per FTP connection, in bits per second [default: 0, none].
    #[arg(long, value_name = "BITS_PER_SEC")]
    pub connection_bps: Option<u64>,
    /// Serve FTPS with this PEM certificate chain (with --tls-key): the certificate whose
    /// fingerprint the tracker publishes for its origin.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// A size such as 256MiB or 1GB.
fn parse_size(s: &str) -> Result<u64, String> {
    rivulet_node_core::units::parse_size(s, crate::store::DEFAULT_SEGMENT_CACHE_BYTES)
}

/// The most points a new account may start with.
pub const MAX_POINTS: u64 = 1_000_000_000;
/// The longest session recheck time, in seconds.
pub const MAX_SESSION_RECHECK_SECS: u64 = 300;
/// The longest node timeout, in seconds.
pub const MAX_NODE_TIMEOUT_SECS: u64 = 3600;

impl ServeArgs {
    /// These flags over the `--config` file's keys, if a file was named. The error is one
    /// line naming the file (and the bad key or value).
    pub fn with_config_file(self) -> Result<ServeArgs, String> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let file = ServeArgs::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(self.over(file))
    }

    /// Settings from TOML text; unknown keys and out-of-range values are errors.
    pub fn from_toml(text: &str) -> Result<ServeArgs, String> {
        let file: ServeArgs = toml::from_str(text)
            .map_err(|e| e.message().trim_end_matches('\n').replace('\n', " "))?;
        if file.initial_points.is_some_and(|p| p > MAX_POINTS) {
            return Err(format!("initial_points must be at most {MAX_POINTS}"));
        }
        if file
            .node_timeout
            .is_some_and(|s| !(1..=MAX_NODE_TIMEOUT_SECS).contains(&s))
        {
            return Err(format!(
                "node_timeout must be 1 to {MAX_NODE_TIMEOUT_SECS} seconds"
            ));
        }
        if file
            .session_recheck
            .is_some_and(|s| s > MAX_SESSION_RECHECK_SECS)
        {
            return Err(format!(
                "session_recheck must be at most {MAX_SESSION_RECHECK_SECS} seconds"
            ));
        }
        if file.tls_cert.is_some() != file.tls_key.is_some() {
            return Err("tls_cert and tls_key go together".into());
        }
        Ok(file)
    }

    /// Each setting of `self` where it has one, else `file`'s.
    fn over(self, file: ServeArgs) -> ServeArgs {
        ServeArgs {
            config: self.config,
            data: self.data.or(file.data),
            database: self.database.or(file.database),
            http: self.http.or(file.http),
            ftp: self.ftp.or(file.ftp),
            advertise: self.advertise.or(file.advertise),
            initial_points: self.initial_points.or(file.initial_points),
            node_timeout: self.node_timeout.or(file.node_timeout),
            trusted_proxy: self.trusted_proxy.or(file.trusted_proxy),
            origin_upload_bps: self.origin_upload_bps.or(file.origin_upload_bps),
            origin_connection_bps: self.origin_connection_bps.or(file.origin_connection_bps),
            public: self.public || file.public,
            reach_every: self.reach_every.or(file.reach_every),
            session_recheck: self.session_recheck.or(file.session_recheck),
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            behind_https_proxy: self.behind_https_proxy || file.behind_https_proxy,
            store: self.store.or(file.store),
            segment_cache: self.segment_cache.or(file.segment_cache),
            origin_address: self.origin_address.or(file.origin_address),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let file = ServeArgs::from_toml(
            "data = \"/var/lib/x\"\nhttp = \"0.0.0.0:80\"\nnode_timeout = 30\n\
             origin_upload_bps = 5000000\norigin_connection_bps = 1000000\n",
        )
        .unwrap();
        let flags = ServeArgs {
            http: Some("127.0.0.1:9000".parse().unwrap()),
            ..ServeArgs::default()
        };
        let merged = flags.over(file);
        assert_eq!(merged.http, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(merged.data, Some(PathBuf::from("/var/lib/x")));
        assert_eq!(merged.node_timeout, Some(30));
        assert_eq!(merged.ftp, None);
        assert_eq!(merged.origin_upload_bps, Some(5_000_000));
        assert_eq!(merged.origin_connection_bps, Some(1_000_000));
    }

    #[test]
    fn bad_files_are_one_clear_line() {
        for (text, want) in [
            ("htp = \"0.0.0.0:80\"", "unknown field `htp`"),
            ("http = \"not an address\"", "invalid socket address"),
            ("node_timeout = 0", "node_timeout must be"),
            ("initial_points = 2000000000", "initial_points must be"),
            ("config = \"/etc/x\"", "unknown field `config`"),
            ("origin_upload_bps = -1", "expected u64"),
            ("[serve\n", ""),
        ] {
            let e = ServeArgs::from_toml(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains('\n'), "{text:?}: {e:?}");
        }
    }
}
