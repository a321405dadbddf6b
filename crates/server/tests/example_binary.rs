//! The spec workflows against `examples/registry.rs` as users run it: a process started
//! with a Distribution config file, spoken to over TCP, stopped with SIGTERM.
#![allow(clippy::print_stderr, reason = "a skipped test says so, and why")]

mod common;
#[path = "../../../testing/peers.rs"]
mod peers;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use common::Target;
use common::workflows::{bad_input, deletes_refused, discovery, management, pull, push, read_only};

/// The example as `cargo test --workspace` builds it, next to this test's binary.
fn example_binary(test: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("examples").join("registry");
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
        format!("skipped {test}: needs the registry example; run `cargo test --workspace`, which builds it\n")
            .as_bytes(),
    );
    None
}

/// The example serving a fresh root with `storage_extra` in its `storage:` section; stopped
/// with SIGTERM on `stop`, killed if dropped.
struct Example {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
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
        Example { child, port, _dir: dir }
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
    let Some(binary) = example_binary("spec_workflows_against_the_example") else { return };
    let deletes = "  delete:\n    enabled: true\n";
    // Each workflow wants a registry of its own.
    for (name, extra) in [
        ("pull", deletes),
        ("push", deletes),
        ("discovery", deletes),
        ("management", deletes),
        ("bad_input", deletes),
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
            "deletes_refused" => deletes_refused(&target).await,
            _ => read_only(&target).await,
        }
        example.stop();
    }
}
