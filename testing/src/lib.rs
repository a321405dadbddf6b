//! What Wharf's tests share: the spec's workflows and the HTTP client they speak through, peer
//! programs (found, or the test skipped with a reason, or failed under `WHARF_REQUIRE_PEERS=1`),
//! test images in an OCI layout, and waiting for a condition. Not published.

#![allow(clippy::print_stderr, reason = "a skipped test says so, and why")]

use std::time::{Duration, Instant};

pub mod events;
pub mod http;
pub mod images;
pub mod peers;
pub mod proxy;
pub mod tokens;

/// Says that `test` is skipped and why, and returns `false` to stop it; under
/// `WHARF_REQUIRE_PEERS=1` (as `scripts/test` runs) the test fails instead, naming `missing`.
#[must_use]
pub fn skip(test: &str, missing: &str) -> bool {
    assert!(std::env::var("WHARF_REQUIRE_PEERS").as_deref() != Ok("1"), "{test}: WHARF_REQUIRE_PEERS=1 but {missing}");
    eprintln!("skipped {test}: {missing}");
    false
}

/// Polls `check` every 20 ms until it holds; fails the test after `within`.
pub async fn eventually(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} did not happen within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
