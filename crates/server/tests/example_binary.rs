//! The spec workflows against `examples/registry.rs` as users run it: a process started
//! with a Distribution config file, spoken to over TCP, stopped with SIGTERM.
#![allow(clippy::print_stderr, reason = "a skipped test says so, and why")]

mod common;
#[path = "../../../testing/peers.rs"]
mod peers;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use axum::http::{Method, StatusCode};
use common::Target;
use common::content::{blob_pushes, content_kinds};
use common::workflows::{bad_input, deletes_refused, discovery, management, pull, push, read_only};

/// An example as `cargo test --workspace` builds it, next to this test's binary.
fn example_binary(test: &str, example: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("examples").join(example);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("WHARF_REQUIRE_PEERS").as_deref() != Ok("1"),
        "{test}: WHARF_REQUIRE_PEERS=1 but {} is missing (`cargo test --workspace` builds it)",
        path.display()
    );
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("skipped {test}: needs the {example} example; run `cargo test --workspace`, which builds it\n")
            .as_bytes(),
    );
    None
}

/// The example serving a fresh root with `storage_extra` in its `storage:` section; stopped
/// with SIGTERM on `stop`, killed if dropped.
struct Example {
    child: Child,
    port: u16,
    config: PathBuf,
    dir: tempfile::TempDir,
}

impl Example {
    fn start(binary: &PathBuf, storage_extra: &str) -> Example {
        let dir = tempfile::tempdir().unwrap();
        let port = peers::free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n{storage_extra}http:\n  addr: 127.0.0.1:{port}\n  relativeurls: true\n",
                dir.path().join("root").display()
            ),
        )
        .unwrap();
        let child = Command::new(binary)
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("registry.log")).unwrap())
            .spawn()
            .expect("the example starts");
        peers::wait_for_port(port, "the registry example");
        Example { child, port, config, dir }
    }

    fn target(&self) -> Target {
        Target::remote(format!("http://127.0.0.1:{}", self.port))
    }

    /// SIGTERM, and a clean exit.
    fn stop(mut self) {
        let status = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "the example exited with {exit} after SIGTERM");
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_workflows_against_the_example() {
    let Some(binary) = example_binary("spec_workflows_against_the_example", "registry") else { return };
    let deletes = "  delete:\n    enabled: true\n";
    // Each workflow wants a registry of its own.
    for (name, extra) in [
        ("pull", deletes),
        ("push", deletes),
        ("discovery", deletes),
        ("management", deletes),
        ("bad_input", deletes),
        ("content_kinds", deletes),
        ("blob_pushes", deletes),
        ("deletes_refused", ""),
        ("read_only", "  maintenance:\n    readonly:\n      enabled: true\n"),
    ] {
        let example = Example::start(&binary, extra);
        let target = example.target();
        match name {
            "pull" => pull(&target).await,
            "push" => push(&target).await,
            "discovery" => discovery(&target).await,
            "management" => management(&target).await,
            "bad_input" => bad_input(&target).await,
            "content_kinds" => content_kinds(&target).await,
            "blob_pushes" => blob_pushes(&target).await,
            "deletes_refused" => deletes_refused(&target).await,
            _ => read_only(&target).await,
        }
        example.stop();
    }
}

/// Runs the gc example on `config` with `args`; returns what it printed.
fn run_gc(binary: &PathBuf, config: &PathBuf, args: &[&str]) -> String {
    let output = Command::new(binary).arg(config).args(args).output().expect("the gc example runs");
    assert!(
        output.status.success(),
        "gc {args:?} exited with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 report")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_example_collects_while_the_registry_serves() {
    let test = "gc_example_collects_while_the_registry_serves";
    let (Some(registry), Some(gc)) = (example_binary(test, "registry"), example_binary(test, "gc")) else { return };
    let example = Example::start(&registry, "  delete:\n    enabled: true\n");
    let target = example.target();
    let (kept, kept_digest) = common::push_image(&target, "team/app", "stable", 1).await;
    let (_, dropped_digest) = common::push_image(&target, "team/app", "old", 2).await;
    let loose = common::push_blob(&target, "team/app", b"a blob no manifest uses").await;
    let reply = target.send(Method::DELETE, "/v2/team/app/manifests/old", &[], Vec::new()).await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "tag delete: {:?}", reply.body);
    let kept_blobs: Vec<String> = serde_json::from_slice::<serde_json::Value>(&kept).unwrap()["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| layer["digest"].as_str().unwrap().to_owned())
        .collect();
    // All of that was pushed two hours ago, as far as the collector can tell; a blob pushed
    // just now is inside the grace period.
    let status = Command::new("find")
        .arg(example.dir.path().join("root"))
        .args(["-exec", "touch", "-d", "2 hours ago", "{}", "+"])
        .status()
        .unwrap();
    assert!(status.success());
    let fresh = common::push_blob(&target, "team/app", b"a blob pushed just now").await;

    // A dry run names what would go and deletes nothing.
    let report = run_gc(&gc, &example.config, &["--dry-run", "--delete-untagged"]);
    assert!(report.contains(&format!("manifest team/app@{dropped_digest}: would delete")), "{report}");
    assert!(report.contains(&format!("blob {loose}: would delete")), "{report}");
    assert!(!report.contains(&kept_digest) && !report.contains(&fresh), "{report}");
    let head = |digest: String| {
        let target = &target;
        async move { target.send(Method::HEAD, &format!("/v2/team/app/blobs/{digest}"), &[], Vec::new()).await.status }
    };
    assert_eq!(head(loose.clone()).await, StatusCode::OK);

    // The real run, while the registry serves.
    let report = run_gc(&gc, &example.config, &["--delete-untagged"]);
    assert!(report.contains(&format!("manifest team/app@{dropped_digest}: deleted")), "{report}");
    assert!(report.contains(&format!("blob {loose}: deleted")), "{report}");
    // The untagged image's config and layer, its manifest, and the loose blob.
    assert!(report.contains("deleted 1 manifests and 4 blobs"), "{report}");
    assert_eq!(head(loose).await, StatusCode::NOT_FOUND);
    assert_eq!(head(fresh).await, StatusCode::OK);
    let reply = target.get(&format!("/v2/team/app/manifests/{dropped_digest}")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = target.get("/v2/team/app/manifests/stable").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, kept);
    for digest in kept_blobs {
        assert_eq!(head(digest).await, StatusCode::OK);
    }
    // The registry goes on taking pushes.
    common::push_image(&target, "team/app", "next", 3).await;
    example.stop();
}
