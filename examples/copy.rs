//! `cargo run --release --example copy -- SRC DST [--all | --platform os/arch[,…] [--sparse]]
//! [--referrers] [--src-creds U:P] [--dest-creds U:P] [--src-tls-verify=false]
//! [--dest-tls-verify=false] [--src-cert-dir DIR] [--dest-cert-dir DIR]
//! [--image-parallel-copies N]`
//!
//! Copies an image as `skopeo copy` does, with SRC and DST written as skopeo writes them:
//! `docker://host[:port]/repo:tag|@digest` or `oci:DIR[:tag|@digest]`. Credentials come
//! from the flags, else from docker's and podman's files and helpers. `--sparse` copies the
//! platforms named under the original index (its digest kept) rather than a new one.
//! Progress bars on a terminal, one line per blob otherwise; a summary at the end. Exit
//! status 0 only when the copy is whole.

#![allow(clippy::print_stdout, clippy::print_stderr, reason = "an example prints its progress and report")]

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use wharf::client::{
    BlobOutcome, Client, ConfigFiles, CopyOptions, Credential, ImageAddress, PlatformSpec, Platforms, Progress,
    StaticCredentials,
};

/// One side's settings from the flags.
#[derive(Default)]
struct SideFlags {
    creds: Option<String>,
    tls_verify: bool,
    cert_dir: Option<PathBuf>,
}

struct Args {
    source: ImageAddress,
    target: ImageAddress,
    platforms: Platforms,
    referrers: bool,
    parallel: usize,
    src: SideFlags,
    dest: SideFlags,
}

fn parse_args() -> Result<Args, String> {
    let mut positional = Vec::new();
    let mut platforms = Platforms::Host;
    let mut referrers = false;
    let mut sparse = false;
    let mut parallel = CopyOptions::default().concurrency;
    let mut src = SideFlags { tls_verify: true, ..SideFlags::default() };
    let mut dest = SideFlags { tls_verify: true, ..SideFlags::default() };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value =
            |name: &str| inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--all" => platforms = Platforms::All,
            "--platform" => {
                let specs = value("--platform")?
                    .split(',')
                    .map(|spec| spec.parse::<PlatformSpec>().map_err(|e| e.to_string()))
                    .collect::<Result<Vec<_>, _>>()?;
                platforms = Platforms::Only(specs);
            }
            "--referrers" => referrers = true,
            "--sparse" => sparse = true,
            "--image-parallel-copies" => {
                let text = value("--image-parallel-copies")?;
                parallel = text
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("--image-parallel-copies {text:?}: not a count"))?;
            }
            "--src-creds" => src.creds = Some(value("--src-creds")?),
            "--dest-creds" => dest.creds = Some(value("--dest-creds")?),
            "--src-tls-verify" => src.tls_verify = value("--src-tls-verify")? != "false",
            "--dest-tls-verify" => dest.tls_verify = value("--dest-tls-verify")? != "false",
            "--src-cert-dir" => src.cert_dir = Some(value("--src-cert-dir")?.into()),
            "--dest-cert-dir" => dest.cert_dir = Some(value("--dest-cert-dir")?.into()),
            other if other.starts_with("--") => return Err(format!("unknown flag {other}")),
            _ => positional.push(arg),
        }
    }
    let [source, target] = positional.as_slice() else {
        return Err("usage: copy SRC DST [--all | --platform os/arch[,…] [--sparse]] [--referrers] [--src-creds U:P] \
                    [--dest-creds U:P] [--src-tls-verify=false] [--dest-tls-verify=false] [--src-cert-dir DIR] \
                    [--dest-cert-dir DIR] [--image-parallel-copies N]"
            .into());
    };
    if sparse {
        let Platforms::Only(specs) = platforms else { return Err("--sparse goes with --platform".into()) };
        platforms = Platforms::Sparse(specs);
    }
    let source = source.parse().map_err(|e: wharf::client::Error| e.to_string())?;
    let target = target.parse().map_err(|e: wharf::client::Error| e.to_string())?;
    Ok(Args { source, target, platforms, referrers, parallel, src, dest })
}

/// The client for one side.
fn client(address: &ImageAddress, flags: &SideFlags) -> Result<Client, String> {
    let mut builder = Client::builder();
    builder = match &flags.creds {
        Some(creds) => {
            let (user, password) = creds.split_once(':').ok_or("credentials are USER:PASSWORD")?;
            builder.credentials(StaticCredentials::new().with_fallback(Credential::basic(user, password)))
        }
        None => builder.credentials(ConfigFiles::from_env()),
    };
    if let Some(dir) = &flags.cert_dir {
        builder = builder.cert_dir(dir).map_err(|e| e.to_string())?;
    }
    if let (false, ImageAddress::Registry(reference)) = (flags.tls_verify, address) {
        builder = builder.insecure(reference.registry());
    }
    builder.build().map_err(|e| e.to_string())
}

/// Shows progress: a bar per blob on a terminal, a line per finished blob otherwise.
fn progress() -> Arc<dyn Fn(&Progress) + Send + Sync> {
    let terminal = std::io::stderr().is_terminal();
    let bars = MultiProgress::new();
    let open: Mutex<HashMap<String, ProgressBar>> = Mutex::default();
    let style = ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    Arc::new(move |event| {
        let short = |digest: &wharf::oci::Digest| digest.hex().chars().take(12).collect::<String>();
        match event {
            Progress::Started { digest, size } if terminal => {
                let bar = bars.add(ProgressBar::new(*size).with_style(style.clone()).with_prefix(short(digest)));
                open.lock().unwrap().insert(digest.to_string(), bar);
            }
            Progress::Bytes { digest, done, .. } if terminal => {
                if let Some(bar) = open.lock().unwrap().get(digest.as_str()) {
                    bar.set_position(*done);
                }
            }
            Progress::Finished { digest, size, outcome } => {
                let what = match outcome {
                    BlobOutcome::Skipped => "skipped (already there)".to_owned(),
                    BlobOutcome::Mounted => "mounted".to_owned(),
                    BlobOutcome::Uploaded { sent, resumes: 0 } => format!("sent {sent} bytes"),
                    BlobOutcome::Uploaded { sent, resumes } => format!("sent {sent} bytes, resumed {resumes} times"),
                };
                match open.lock().unwrap().remove(digest.as_str()) {
                    Some(bar) => bar.finish_with_message(what),
                    None => eprintln!("blob {digest} ({size} bytes): {what}"),
                }
            }
            Progress::Manifest { digest, size } if !terminal => eprintln!("manifest {digest} ({size} bytes)"),
            _ => {}
        }
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("copy: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let clients = client(&args.source, &args.src).and_then(|s| Ok((s, client(&args.target, &args.dest)?)));
    let (source_client, target_client) = match clients {
        Ok(clients) => clients,
        Err(e) => {
            eprintln!("copy: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let options = CopyOptions {
        platforms: args.platforms,
        referrers: args.referrers,
        concurrency: args.parallel,
        progress: Some(progress()),
    };
    match wharf::client::copy(&source_client, &args.source, &target_client, &args.target, &options).await {
        Ok(report) => {
            let digest = report.manifest.as_ref().map(|d| d.digest.to_string()).unwrap_or_default();
            println!(
                "copied {digest}: {} manifests; blobs sent {} ({} bytes), skipped {} ({} bytes), mounted {} ({} bytes)",
                report.manifests,
                report.sent.0,
                report.sent.1,
                report.skipped.0,
                report.skipped.1,
                report.mounted.0,
                report.mounted.1
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("copy: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
