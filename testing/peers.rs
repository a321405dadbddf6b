//! Peer programs for tests: finding them (skipping with a reason, or failing under
//! `WHARF_REQUIRE_PEERS=1`), free ports, and running skopeo. Included by tests of several
//! crates with `#[path]`.

#![allow(dead_code, reason = "each test that includes this uses a part of it")]

use std::io::Write as _;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `program` is installed; says why the test is skipped when not, and fails under
/// `WHARF_REQUIRE_PEERS=1`.
pub(crate) fn has_peer(program: &str, test: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("WHARF_REQUIRE_PEERS").as_deref() != Ok("1"),
            "{test}: WHARF_REQUIRE_PEERS=1 but {program} is not installed (scripts/test installs it)"
        );
        let _ = writeln!(std::io::stderr(), "skipped {test}: needs {program} (scripts/test installs it)");
    }
    found
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until something listens on the loopback `port`, for at most 30 s.
pub(crate) fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port} within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs skopeo (with `--insecure-policy`) and fails the test with its output when it fails.
pub(crate) fn skopeo(args: &[&str]) {
    let output = Command::new("skopeo").arg("--insecure-policy").args(args).output().expect("skopeo runs");
    assert!(
        output.status.success(),
        "skopeo {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
