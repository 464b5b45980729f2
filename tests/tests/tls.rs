//! TLS end to end: the tracker serving HTTPS with a certificate from a private CA made at
//! test time, a client that trusts that CA logs in and one that does not is refused with a
//! clear error; HSTS and `Secure` cookies over HTTPS whatever a client claims in
//! `X-Forwarded-Proto` (and neither over plain HTTP, whatever it claims); a cache and a
//! viewer against that tracker with FTPS forced on loopback, chunks pinned to the
//! certificates the tracker published, the movie byte-exact.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rivulet_e2e::{eventually, sha256_file};
use rivulet_localnet::{CacheSpec, LocalNetwork, MovieSpec};
use rivulet_node_core::cache::Cache;
use rivulet_node_core::headless;
use rivulet_node_core::peer::tls;
use rivulet_node_core::viewer::WatchOptions;
use rivulet_tracker::server::TlsFiles;
use rivulet_tracker_client::{ClientError, Credentials, TrackerClient};

const PASSWORD: &str = "tls-pass-12";

/// A private CA and a certificate it signed for `localhost` and 127.0.0.1: the CA's PEM
/// path and the tracker's certificate and key files.
struct TestPki {
    ca: PathBuf,
    ca_pem: Vec<u8>,
    files: TlsFiles,
    leaf_fingerprint: String,
}

fn make_pki(dir: &Path) -> TestPki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Rivulet test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::from_params(&ca_params, ca_key);
    let leaf_params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    let ca = dir.join("ca.pem");
    let cert = dir.join("tracker-cert.pem");
    let key = dir.join("tracker-key.pem");
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    std::fs::write(&cert, format!("{}{}", leaf.pem(), ca_cert.pem())).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    TestPki {
        ca_pem: ca_cert.pem().into_bytes(),
        ca,
        files: TlsFiles { cert, key },
        leaf_fingerprint: tls::fingerprint(leaf.der()),
    }
}

async fn https_network(pki: &TestPki) -> LocalNetwork {
    let files = pki.files.clone();
    LocalNetwork::temp()
        .movie(MovieSpec::sample("film", 8).price(10))
        .account("ann", PASSWORD)
        .account("carl", PASSWORD)
        .configure(move |config| {
            config.tls = Some(files);
            config.origin_tls = tls::TlsMode::Forced;
            config.placement_interval = Duration::from_millis(300);
            config.node_timeout = Duration::from_secs(3);
        })
        .start()
        .await
        .unwrap()
}

fn creds(name: &str) -> Credentials {
    Credentials {
        username: name.into(),
        password: PASSWORD.into(),
    }
}

#[tokio::test]
async fn an_https_tracker_is_trusted_through_its_private_ca_alone() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let net = https_network(&pki).await;
    let url = net.url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    // Without the CA: refused, saying why.
    let err = TrackerClient::new(&url)
        .login(&creds("ann"))
        .await
        .unwrap_err();
    match &err {
        ClientError::Transport(why) => assert!(why.contains("certificate"), "{why}"),
        other => panic!("expected a transport error, got {other:?}"),
    }
    assert!(
        TrackerClient::new(&url)
            .with_root_certificate(b"not a pem")
            .is_err()
    );

    // With it: logs in, and the origin publishes the HTTPS certificate's fingerprint.
    let client = TrackerClient::new(&url)
        .with_root_certificate(&pki.ca_pem)
        .unwrap();
    let session = client.login(&creds("ann")).await.unwrap();
    assert_eq!(session.account.username, "ann");
    let origin = client.origin().await.unwrap();
    assert_eq!(
        origin.fingerprint.as_deref(),
        Some(pki.leaf_fingerprint.as_str())
    );

    // HSTS on every answer and Secure cookies, even to a client that says plain HTTP.
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pki.ca_pem).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let page = http
        .get(format!("{url}/login"))
        .header("x-forwarded-proto", "http")
        .send()
        .await
        .unwrap();
    assert_eq!(
        page.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    let cookies: Vec<&str> = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(!cookies.is_empty(), "the log-in page sets its form cookie");
    assert!(
        cookies.iter().all(|c| c.contains("; Secure")),
        "{cookies:?}"
    );
    let api = http
        .get(format!("{url}/api/v1/videos"))
        .send()
        .await
        .unwrap();
    assert!(api.headers().contains_key("strict-transport-security"));

    // Plain HTTP to the TLS port is no way around it.
    let plain = reqwest::Client::new()
        .get(url.replace("https://", "http://") + "/api/v1/videos")
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    net.shutdown().await;
}

#[tokio::test]
async fn a_plain_tracker_ignores_a_client_claiming_https() {
    let net = LocalNetwork::temp().start().await.unwrap();
    let page = reqwest::Client::new()
        .get(format!("{}/login", net.url()))
        .header("x-forwarded-proto", "https")
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert!(!page.headers().contains_key("strict-transport-security"));
    let cookies: Vec<&str> = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(!cookies.is_empty());
    assert!(cookies.iter().all(|c| !c.contains("Secure")), "{cookies:?}");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cache_and_a_viewer_over_https_and_pinned_ftps_rebuild_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let net = https_network(&pki).await;
    let client = TrackerClient::new(&net.url())
        .with_root_certificate(&pki.ca_pem)
        .unwrap();
    client
        .login_kept(creds("ann"))
        .await
        .unwrap()
        .buy("film")
        .await
        .unwrap();

    let options = net
        .cache_options(&CacheSpec::new("carl", PASSWORD).upload(1_000_000_000))
        .tracker_ca(Some(pki.ca.clone()));
    assert_eq!(options.tls, tls::TlsMode::Forced);
    let key_path = options.key_path.clone();
    let cache = Cache::start(options).await.unwrap();
    let (cert_dir, cert_file, _) = tls::files_beside(&key_path);
    let cert = std::fs::read(cert_dir.join(cert_file)).unwrap();
    assert!(
        !cert.is_empty(),
        "the cache made its certificate beside its store key"
    );
    let carl = client.login_kept(creds("carl")).await.unwrap();
    let node = carl.my_nodes().await.unwrap().pop().unwrap();
    let fingerprint = node
        .fingerprint
        .clone()
        .expect("the cache registered a fingerprint");
    assert!(tls::is_fingerprint(&fingerprint));
    // The cache fetched from the origin over FTPS pinned to the tracker's certificate.
    assert!(
        eventually(Duration::from_secs(30), || async {
            carl.my_nodes()
                .await
                .unwrap_or_default()
                .iter()
                .flat_map(|n| n.holdings.iter())
                .any(|h| h.video == "film" && !h.indices.is_empty())
        })
        .await,
        "the cache never held any of the film"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;

    let out = net.path("film.mkv");
    let report = headless::watch_with(
        &client,
        "ann",
        PASSWORD,
        "film",
        &out,
        &WatchOptions::default(),
        false,
    )
    .await
    .unwrap();
    let want = sha256_file(&net.stream_file("film")).unwrap();
    assert_eq!(report.sha256, want);
    assert_eq!(sha256_file(&out).unwrap(), want);
    assert!(report.from_caches_bytes > 0, "{report:?}");
    cache.stop().await;
    net.shutdown().await;
}
