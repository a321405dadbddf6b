//! The console's server time on the filesystem backend: `cargo bench --bench console`. Builds
//! (once, under `target/bench-console`) a root with a repository of 1,000 tags and 10,000
//! repositories of one tag each, then times the repository page and the catalog's first page
//! through the router (the median of five, after one warm-up), and prints each page's weight
//! with the stylesheet.

#![allow(clippy::print_stdout, reason = "a benchmark prints its measurements")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use wharf::oci::Digest;
use wharf::registry::{Registry, RegistryOptions};
use wharf::storage::FilesystemDriver;
use wharf_testing::http::Target;

const TAGS: usize = 1_000;
const REPOSITORIES: usize = 10_000;

async fn put_blob(repository: &wharf::registry::Repository, data: Vec<u8>) -> (Digest, usize) {
    let digest = Digest::sha256(&data);
    let size = data.len();
    let chunk: wharf::storage::Result<Bytes> = Ok(Bytes::from(data));
    repository.put_blob(&digest, futures::stream::iter([chunk])).await.unwrap();
    (digest, size)
}

fn manifest(config: &(Digest, usize), layer: &(Digest, usize)) -> Bytes {
    Bytes::from(wharf_testing::http::image_manifest(
        (config.0.as_str(), config.1),
        &[(layer.0.as_str(), layer.1)],
        None,
    ))
}

/// The root, filled unless a finished one is there.
async fn root(dir: &std::path::Path) -> Registry {
    let registry = Registry::new(Arc::new(FilesystemDriver::new(dir).unwrap()), RegistryOptions::default());
    let done = dir.join("filled");
    if done.exists() {
        return registry;
    }
    println!("filling {} (once)", dir.display());
    let big = registry.repository(&"big/app".parse().unwrap());
    let layer = put_blob(&big, vec![7; 64 << 10]).await;
    for tag in 0..TAGS {
        let config = put_blob(&big, format!(r#"{{"architecture":"amd64","os":"linux","n":{tag}}}"#).into_bytes()).await;
        big.put_manifest(&format!("v1.{tag}.0").parse().unwrap(), manifest(&config, &layer), None).await.unwrap();
    }
    let config = put_blob(&big, br#"{"architecture":"amd64","os":"linux"}"#.to_vec()).await;
    let shared = manifest(&config, &layer);
    let names: Vec<String> = (0..REPOSITORIES).map(|r| format!("team{}/app{r}", r % 100)).collect();
    let fill = |name: String| {
        let (registry, shared, config, layer) = (registry.clone(), shared.clone(), config.0.clone(), layer.0.clone());
        async move {
            let repository = registry.repository(&name.parse().unwrap());
            repository.link_blob(&config).await.unwrap();
            repository.link_blob(&layer).await.unwrap();
            repository.put_manifest(&"latest".parse().unwrap(), shared, None).await.unwrap();
        }
    };
    use futures::StreamExt as _;
    futures::stream::iter(names).for_each_concurrent(32, fill).await;
    std::fs::write(done, "").unwrap();
    registry
}

async fn time(target: &Target, path: &str) -> (Duration, usize) {
    let mut times = Vec::new();
    let mut weight = 0;
    for round in 0..6 {
        let started = Instant::now();
        let reply = target.get(path).await;
        let elapsed = started.elapsed();
        assert_eq!(reply.status, 200, "{path}");
        weight = reply.body.len();
        if round > 0 {
            times.push(elapsed);
        }
    }
    times.sort();
    (times[times.len() / 2], weight)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let dir = std::env::current_dir().unwrap().join("target/bench-console");
        std::fs::create_dir_all(&dir).unwrap();
        let registry = root(&dir).await;
        let router = wharf::server::router(registry, wharf::server::ServerOptions::default());
        let target = Target::in_process(router);
        let style = target.get("/ui/style.css").await.body.len();
        println!("\nthe console on the filesystem backend, median of 5\n");
        println!("| page | server time | weight with the stylesheet |");
        println!("|---|---|---|");
        for (name, path) in [
            ("repository of 1,000 tags", "/ui/repository?name=big%2Fapp"),
            ("catalog of 10,001 repositories (first page)", "/ui/"),
            ("catalog of 10,001 repositories (a page midway)", "/ui/?after=team50%2Fapp4950"),
            ("catalog filtered (team7)", "/ui/?q=team7%2F"),
            ("catalog filtered to nothing", "/ui/?q=nothing-by-that-name"),
        ] {
            let (median, weight) = time(&target, path).await;
            println!(
                "| {name} | {:.1} ms | {:.1} KiB |",
                median.as_secs_f64() * 1000.0,
                (weight + style) as f64 / 1024.0
            );
        }
    });
}
