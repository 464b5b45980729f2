//! TLS for chunk transfers (FTPS): a node's own self-signed certificate, made once and kept
//! beside its store key, its SHA-256 fingerprint (what the tracker publishes), the server
//! side's rustls config, and the client side's pinning verifier, which accepts exactly the
//! certificate whose fingerprint the tracker named and checks the handshake signature
//! with ring's verification algorithms.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// The certificate file a cache keeps beside its store key `store.key`.
pub const CERT_FILE: &str = "store-tls-cert.pem";
/// The private key file a cache keeps beside its store key `store.key`.
pub const KEY_FILE: &str = "store-tls-key.pem";

/// Where a cache with store key `key_path` keeps its certificate: the key's folder, and
/// the key's name without extension with `-tls-cert.pem` / `-tls-key.pem` (`store.key`:
/// [`CERT_FILE`], [`KEY_FILE`]).
pub fn files_beside(key_path: &Path) -> (PathBuf, String, String) {
    let dir = key_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let stem = key_path
        .file_stem()
        .map_or_else(|| "store".into(), |s| s.to_string_lossy().into_owned());
    (
        dir,
        format!("{stem}-tls-cert.pem"),
        format!("{stem}-tls-key.pem"),
    )
}

/// Whether a chunk server speaks FTPS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain FTP only, no certificate published (the demo network, local benches).
    Off,
    /// FTPS offered and required of every client but loopback ones.
    #[default]
    On,
    /// FTPS required of every client, loopback ones too (tests, `swarm --tls`).
    Forced,
}

/// A certificate chain (leaf first) with its private key and the leaf's fingerprint.
pub struct Identity {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// SHA-256 of the leaf certificate's DER, 64 lowercase hex digits.
    pub fingerprint: String,
    /// Where the chain and the key are (PEM).
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint)
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

/// SHA-256 of `der`, 64 lowercase hex digits: a certificate's fingerprint.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Whether `s` has the form of a fingerprint (64 lowercase hex digits).
pub fn is_fingerprint(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The ring provider every TLS config here uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Identity {
    /// Reads a PEM certificate chain and a PEM private key; the error is one sentence
    /// naming the file.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Identity, String> {
        let chain = CertificateDer::pem_file_iter(cert_path)
            .map_err(|e| format!("{}: {e}", cert_path.display()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", cert_path.display()))?;
        let Some(leaf) = chain.first() else {
            return Err(format!("{}: no PEM certificate in it", cert_path.display()));
        };
        let key = PrivateKeyDer::from_pem_file(key_path)
            .map_err(|e| format!("{}: no usable PEM private key: {e}", key_path.display()))?;
        let identity = Identity {
            fingerprint: fingerprint(leaf),
            chain,
            key,
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
        };
        // A key that does not belong to the certificate fails here, not at the first client.
        identity
            .server_config()
            .map_err(|e| format!("{} and {}: {e}", cert_path.display(), key_path.display()))?;
        Ok(identity)
    }

    /// The identity in `dir` (`cert_file` and `key_file`), made there first if either is
    /// missing: a self-signed certificate for `name`, both files readable by the owner only.
    pub fn load_or_create(
        dir: &Path,
        cert_file: &str,
        key_file: &str,
        name: &str,
    ) -> io::Result<Identity> {
        let (cert_path, key_path) = (dir.join(cert_file), dir.join(key_file));
        if !cert_path.exists() || !key_path.exists() {
            let made = rcgen::generate_simple_self_signed(vec![name.to_owned()])
                .map_err(io::Error::other)?;
            std::fs::create_dir_all(dir)?;
            write_private(&key_path, made.signing_key.serialize_pem().as_bytes())?;
            write_private(&cert_path, made.cert.pem().as_bytes())?;
            tracing::info!(cert = %cert_path.display(), "made a TLS certificate");
        }
        Identity::load(&cert_path, &key_path).map_err(io::Error::other)
    }

    /// A rustls server config serving this identity (TLS 1.2 and 1.3, ring).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.key_log = Arc::new(NoKeyLog);
        Ok(Arc::new(config))
    }
}

/// Never writes session keys anywhere.
#[derive(Debug)]
struct NoKeyLog;

impl rustls::KeyLog for NoKeyLog {
    fn log(&self, _label: &str, _client_random: &[u8], _secret: &[u8]) {}
}

/// Writes `bytes` to `path`, readable and writable by the owner only (0600 on Unix).
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Whether a chunk server lets `client` in without TLS: only loopback clients (the
/// machine's own nodes), and only when TLS is not forced for everyone.
pub fn plain_allowed(client: IpAddr, forced: bool) -> bool {
    !forced && client.to_canonical().is_loopback()
}

/// A rustls client config that trusts exactly the certificate with SHA-256 `expected`.
pub fn pinned_client_config(expected: &str) -> Arc<rustls::ClientConfig> {
    let provider = provider();
    let verifier = PinnedCert {
        expected: expected.to_ascii_lowercase(),
        algorithms: provider.signature_verification_algorithms,
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Arc::new(config)
}

/// Accepts the one certificate whose SHA-256 is `expected`; the name, issuer and dates do
/// not matter (the tracker vouches for the certificate itself), the handshake signature
/// does (it proves the peer holds the certificate's key).
#[derive(Debug)]
struct PinnedCert {
    expected: String,
    algorithms: WebPkiSupportedAlgorithms,
}

/// The error a pinning client's handshake fails with when the certificate is another.
pub const NOT_PINNED: &str = "the certificate is not the one the tracker named";

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if fingerprint(end_entity) == self.expected {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(NOT_PINNED.into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_alone_may_go_plain_and_forcing_ends_it() {
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let remote: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(plain_allowed(v4, false));
        assert!(plain_allowed(mapped, false));
        assert!(plain_allowed("::1".parse().unwrap(), false));
        assert!(!plain_allowed(remote, false));
        assert!(!plain_allowed(v4, true));
    }

    #[test]
    fn the_certificate_lives_beside_the_store_key() {
        let (dir, cert, key) = files_beside(Path::new("/k/store.key"));
        assert_eq!(
            (dir.as_path(), cert.as_str(), key.as_str()),
            (Path::new("/k"), CERT_FILE, KEY_FILE)
        );
        assert_eq!(files_beside(Path::new("alice.key")).1, "alice-tls-cert.pem");
    }

    #[test]
    fn a_certificate_is_made_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path(), CERT_FILE, KEY_FILE, "cache").unwrap();
        assert!(is_fingerprint(&first.fingerprint), "{}", first.fingerprint);
        let again = Identity::load_or_create(dir.path(), CERT_FILE, KEY_FILE, "cache").unwrap();
        assert_eq!(
            first.fingerprint, again.fingerprint,
            "reused across restarts"
        );
        #[cfg(unix)]
        for file in [CERT_FILE, KEY_FILE] {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }

    #[test]
    fn a_key_of_another_certificate_is_one_clear_error() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        Identity::load_or_create(a.path(), CERT_FILE, KEY_FILE, "a").unwrap();
        Identity::load_or_create(b.path(), CERT_FILE, KEY_FILE, "b").unwrap();
        let err = Identity::load(&a.path().join(CERT_FILE), &b.path().join(KEY_FILE)).unwrap_err();
        assert!(!err.contains('\n'), "{err}");
        let err = Identity::load(&a.path().join("none.pem"), &a.path().join(KEY_FILE)).unwrap_err();
        assert!(err.contains("none.pem"), "{err}");
    }
}
