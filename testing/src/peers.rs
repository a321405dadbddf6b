//! Peer programs for tests: finding them (skipping with a reason, or failing under
//! `WHARF_REQUIRE_PEERS=1`), free ports, and running skopeo. Shared by the tests of several
//! crates.

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `program` is installed; says why the test is skipped when not, and fails under
/// `WHARF_REQUIRE_PEERS=1`.
pub fn has_peer(program: &str, test: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    found || crate::skip(test, &format!("{program} is not installed (scripts/test installs it)"))
}

/// A loopback port nothing listens on at the moment.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until something listens on the loopback `port`, for at most 30 s.
pub fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port} within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs skopeo (with `--insecure-policy`) and fails the test with its output when it fails.
pub fn skopeo(args: &[&str]) {
    let output = Command::new("skopeo").arg("--insecure-policy").args(args).output().expect("skopeo runs");
    assert!(
        output.status.success(),
        "skopeo {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The test S3 server (moto, started by `scripts/test`) as `WHARF_S3_ENDPOINT` and
/// `WHARF_S3_BUCKET` name it, with a root of `test`'s own in the bucket; `None` after saying
/// why the test is skipped, or a failure under `WHARF_REQUIRE_PEERS=1`.
pub fn s3_config(test: &str) -> Option<wharf_storage::S3Config> {
    let Ok(endpoint) = std::env::var("WHARF_S3_ENDPOINT") else {
        let _ = crate::skip(test, "WHARF_S3_ENDPOINT is not set (scripts/test starts moto_server)");
        return None;
    };
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let mut config = wharf_storage::S3Config::new(var("WHARF_S3_BUCKET", "wharf-test"), var("AWS_REGION", "us-east-1"));
    config.region_endpoint = Some(endpoint);
    config.force_path_style = true;
    config.access_key = Some(var("AWS_ACCESS_KEY_ID", "wharf-test"));
    config.secret_key = Some(var("AWS_SECRET_ACCESS_KEY", "wharf-test"));
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    config.root_directory = format!("tests/{test}-{}-{nanos}", std::process::id());
    Some(config)
}

/// A driver on `config`, its bucket created when it is not there yet.
pub async fn s3_driver(config: wharf_storage::S3Config) -> wharf_storage::S3Driver {
    let driver = wharf_storage::S3Driver::new(config.clone()).await.expect("S3 driver");
    if let Err(e) = driver.client().create_bucket().bucket(&config.bucket).send().await {
        let text = format!("{e:?}");
        assert!(text.contains("BucketAlready"), "creating bucket {}: {text}", config.bucket);
    }
    driver
}
