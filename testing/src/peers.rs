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

/// podman, daemonless, with its storage in a temporary folder.
pub fn podman(dir: &std::path::Path, args: &[&str]) -> String {
    let output = std::process::Command::new("podman")
        .arg("--root")
        .arg(dir.join("storage"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .args(["--storage-driver", "vfs", "--events-backend", "file", "--cgroup-manager", "cgroupfs"])
        .args(args)
        .output()
        .expect("podman runs");
    assert!(output.status.success(), "podman {args:?} failed:\n{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
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

/// A child process, killed and reaped when dropped, however the test ends.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `openssl req -x509` with a fresh RSA key valid for 127.0.0.1, marked as no CA (rustls
/// refuses a CA certificate as a server's own): `<name>.key` and `<name>.crt` in `dir`.
pub fn self_signed_for_loopback(dir: &std::path::Path, name: &str) {
    let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
    let args = [
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        &key,
        "-x509",
        "-out",
        &crt,
        "-subj",
        "/CN=127.0.0.1",
        "-days",
        "1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
    ];
    openssl(dir, &args);
}

/// Debian's `docker-registry` (Distribution 2.8.2) with filesystem storage on a free
/// loopback port, with `extra` appended to its config (an `auth:` section, `http.tls`
/// indented under `http:` with `extra_http`); stopped on drop.
pub struct Distribution {
    /// Where it listens.
    pub port: u16,
    _child: KillOnDrop,
    _dir: tempfile::TempDir,
}

impl Distribution {
    /// Starts it over a fresh root of its own.
    pub fn start(extra_http: &str, extra: &str) -> Distribution {
        Distribution::start_over(None, extra_http, extra)
    }

    /// Starts it over the storage root `root` (what it stored stays there after it stops).
    pub fn serve(root: &std::path::Path) -> Distribution {
        Distribution::start_over(Some(root), "", "")
    }

    fn start_over(root: Option<&std::path::Path>, extra_http: &str, extra: &str) -> Distribution {
        let dir = tempfile::tempdir().expect("a folder for docker-registry");
        let port = free_port();
        let file = dir.path().join("config.yml");
        let root = root.map_or_else(|| dir.path().join("root"), std::path::Path::to_path_buf);
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{extra_http}{extra}",
            root.display()
        );
        std::fs::write(&file, config).expect("docker-registry's config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&file)
            // Its S3 driver panics when this is set; unset it for any driver.
            .env_remove("AWS_CA_BUNDLE")
            // Its log (every 404 a client's probe gets is an "error" line) stays in a file.
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("registry.log")).expect("its log"))
            .spawn()
            .expect("docker-registry starts");
        let distribution = Distribution { port, _child: KillOnDrop(child), _dir: dir };
        wait_for_port(port, "docker-registry");
        distribution
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The address of `repository:tag` there, as skopeo writes it.
    pub fn url(&self, repository: &str, tag: &str) -> String {
        format!("docker://{}/{repository}:{tag}", self.host())
    }
}

/// Debian's nginx as one process of the test's user, everything it writes under `dir`,
/// serving `servers` (its `server { … }` blocks) inside an `http` block of nginx's
/// defaults (so a 1 MiB body limit); stopped on drop.
pub struct Nginx {
    _child: KillOnDrop,
}

impl Nginx {
    /// Starts it and waits until it listens on `port` (which `servers` names).
    pub fn start(dir: &std::path::Path, port: u16, servers: &str) -> Nginx {
        std::fs::create_dir_all(dir).expect("nginx's folder");
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {t}/nginx.pid;\nerror_log {t}/error.log warn;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {t}/body;\n  proxy_temp_path {t}/proxy;\n  fastcgi_temp_path {t}/fastcgi;\n  uwsgi_temp_path {t}/uwsgi;\n  scgi_temp_path {t}/scgi;\n{servers}}}\n",
            t = dir.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf).expect("nginx's config");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let nginx = Nginx { _child: KillOnDrop(child) };
        wait_for_port(port, "nginx");
        nginx
    }
}

/// Runs `openssl` with `args` in `dir`, failing the test with its output when it fails.
pub fn openssl(dir: &std::path::Path, args: &[&str]) {
    let output = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}
