//! `cargo run --release --example registry [-- --config config.yml]`
//!
//! A private registry: the OCI distribution API on 127.0.0.1:5000 with filesystem storage
//! in `./registry-data` when given no configuration, or as Distribution's `config.yml` says
//! (`REGISTRY_*` variables override either). Stops gracefully on Ctrl-C or SIGTERM.

use wharf::server::{Config, LOCAL_CONFIG, Server, init_logging, shutdown_signal};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let usage = "usage: registry [-c|--config config.yml]";
    let mut args = std::env::args().skip(1);
    let config = match (args.next().as_deref(), args.next(), args.next()) {
        (None, _, _) => Config::from_yaml(LOCAL_CONFIG, "the built-in configuration", std::env::vars())?,
        (Some("-c" | "--config"), Some(path), None) => Config::from_file(path)?,
        (Some(path), None, None) if !path.starts_with('-') => Config::from_file(path)?,
        _ => return Err(usage.into()),
    };
    init_logging(&config.log);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let addr = config.addr;
    let storage = format!("{:?}", config.storage);
    let server = Server::new(config).await?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    tracing::info!(address = %listener.local_addr()?, storage = %storage, "serving the distribution API");
    server.run(listener, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}
