//! `cargo run --release --example retention -- --policy policy.yaml
//!     (--inventory inventory.json | --registry config.yml|DIR|https://host[/prefix]) [--now RFC3339]
//!     [--in-use FILE] [--format table|json] [--explain REPO:TAG]
//!     [--export-inventory FILE] [--apply [PLAN.json]]`
//!
//! Plans what a tag policy keeps and deletes, as a dry run by default: a table per
//! repository (or the plan as JSON), with the rule and the reason for every tag. The
//! inventory comes from a file or from a registry: a Distribution `config.yml` or a
//! filesystem root, read in place, or any registry over HTTP (`http://` for one without
//! TLS), the repositories at or below the prefix, with credentials from the docker and
//! podman files; `--export-inventory` saves it, so a policy can be tried offline on real
//! data. `--apply` carries the plan out on the registry, or a saved plan exactly as it
//! was written, skipping what changed since; each deletion prints an audit line (JSON).

#![allow(clippy::print_stdout, clippy::print_stderr, reason = "an example prints its plan and its audit lines")]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wharf::client::{Client, ConfigFiles};
use wharf::policy::{
    Applied, AuditEntry, Decision, InUse, Inventory, Plan, Policy, Timestamp, explain, plan, registry, remote,
};
use wharf::registry::Registry;

const USAGE: &str = "usage: retention --policy policy.yaml (--inventory inventory.json | --registry \
                     config.yml|DIR|https://host[/prefix]) \
                     [--now RFC3339] [--in-use FILE] [--format table|json] [--explain REPO:TAG] \
                     [--export-inventory FILE] [--apply [PLAN.json]]";

#[derive(Default)]
struct Args {
    policy: Option<PathBuf>,
    inventory: Option<PathBuf>,
    registry: Option<String>,
    now: Option<Timestamp>,
    in_use: Option<PathBuf>,
    json: bool,
    explain: Option<(String, String)>,
    export: Option<PathBuf>,
    apply: Option<Option<PathBuf>>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut words = std::env::args().skip(1).peekable();
    while let Some(flag) = words.next() {
        let mut value = |name: &str| words.next().ok_or(format!("{name} needs a value; {USAGE}"));
        match flag.as_str() {
            "--policy" => args.policy = Some(value("--policy")?.into()),
            "--inventory" => args.inventory = Some(value("--inventory")?.into()),
            "--registry" => args.registry = Some(value("--registry")?),
            "--now" => args.now = Some(value("--now")?.parse()?),
            "--in-use" => args.in_use = Some(value("--in-use")?.into()),
            "--format" => {
                args.json = match value("--format")?.as_str() {
                    "json" => true,
                    "table" => false,
                    other => return Err(format!("--format {other:?}: table or json")),
                }
            }
            "--explain" => {
                let text = value("--explain")?;
                let (repository, tag) = text.rsplit_once(':').ok_or(format!("--explain {text:?}: REPO:TAG"))?;
                args.explain = Some((repository.to_owned(), tag.to_owned()));
            }
            "--export-inventory" => args.export = Some(value("--export-inventory")?.into()),
            "--apply" => args.apply = Some(words.next_if(|next| !next.starts_with("--")).map(PathBuf::from)),
            other => return Err(format!("unexpected argument {other:?}; {USAGE}")),
        }
    }
    Ok(args)
}

fn read(path: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Where the inventory is read and the plan carried out.
enum Target {
    /// In place: a Distribution config's storage, or a filesystem root.
    Embedded(Registry),
    /// Over HTTP: a host, and the repositories at or below a prefix.
    Remote { client: Client, host: String, prefix: Option<String> },
}

impl Target {
    async fn open(registry: &str) -> Result<Target, Box<dyn std::error::Error>> {
        let Some((scheme, rest)) = registry.split_once("://") else {
            return Ok(Target::Embedded(open_registry(Path::new(registry)).await?));
        };
        let (host, prefix) = rest.split_once('/').map_or((rest, None), |(host, prefix)| (host, Some(prefix)));
        let mut builder = Client::builder().credentials(ConfigFiles::from_env());
        match scheme {
            "https" => {}
            "http" => builder = builder.plain_http(host),
            other => return Err(format!("--registry {registry:?}: {other}:// is not http:// or https://").into()),
        }
        let prefix = prefix.map(|p| p.trim_matches('/').to_owned()).filter(|p| !p.is_empty());
        Ok(Target::Remote { client: builder.build()?, host: host.to_owned(), prefix })
    }

    async fn inventory(&self, now: Timestamp) -> Result<Inventory, wharf::policy::Error> {
        match self {
            Target::Embedded(registry) => registry::inventory(registry).await,
            Target::Remote { client, host, prefix } => remote::inventory(client, host, prefix.as_deref(), now).await,
        }
    }

    async fn apply(&self, plan: &Plan) -> Result<Applied, wharf::policy::Error> {
        let mut audit = |entry: &AuditEntry| println!("{}", serde_json::to_string(entry).unwrap_or_default());
        match self {
            Target::Embedded(registry) => registry::apply(plan, registry, &mut audit).await,
            Target::Remote { client, host, .. } => remote::apply(plan, client, host, &mut audit).await,
        }
    }
}

/// The registry a Distribution config describes, or a filesystem root.
async fn open_registry(path: &Path) -> Result<Registry, Box<dyn std::error::Error>> {
    if path.is_dir() {
        let driver = wharf::storage::FilesystemDriver::new(path)?;
        return Ok(Registry::new(Arc::new(driver), wharf::registry::RegistryOptions::default()));
    }
    let config = wharf::server::Config::from_file(path)?;
    Ok(Registry::new(config.storage.build().await?, config.registry.clone()))
}

/// The plan as a table: a block per repository with deletions or a refusal, and totals.
fn print_table(plan: &Plan, inventory: &Inventory) {
    let show = |time: Option<Timestamp>| time.map_or_else(|| "-".to_owned(), |t| t.to_string());
    for repository in &plan.repositories {
        let records = inventory.repositories.iter().filter(|r| r.name == repository.name).flat_map(|r| &r.tags);
        let deleted = repository.tags.iter().filter(|t| t.decision == Decision::Delete).count();
        let refused = repository.refused.as_deref().map(|r| format!(" — refused: {r}")).unwrap_or_default();
        println!("{}: {deleted} of {} tags deleted{refused}", repository.name, repository.tags.len());
        println!(
            "  {:<28} {:<19} {:<20} {:<20} {:<8} {:<16} REASON",
            "TAG", "DIGEST", "PUSHED", "PULLED", "DECISION", "RULE"
        );
        for tag in &repository.tags {
            let record = records.clone().find(|r| r.name == tag.name);
            let digest: String = tag.digest.as_str().chars().take(19).collect();
            let decision = if tag.decision == Decision::Keep { "keep" } else { "delete" };
            println!(
                "  {:<28} {digest:<19} {:<20} {:<20} {decision:<8} {:<16} {}",
                tag.name,
                show(record.map(|r| r.pushed)),
                show(record.and_then(|r| r.pulled)),
                tag.rule.as_deref().unwrap_or("-"),
                tag.reason
            );
        }
        let manifests = repository.manifests.iter().filter(|m| m.decision == Decision::Delete).count();
        println!("  manifests deleted: {manifests}; bytes reclaimed: {}", repository.reclaimed_bytes);
    }
    let summary = plan.summary;
    println!(
        "total: {} tags and {} manifests deleted, {} bytes reclaimed",
        summary.tags_deleted, summary.manifests_deleted, summary.reclaimed_bytes
    );
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let policy = Policy::from_yaml(&read(args.policy.as_ref().ok_or(USAGE)?)?)?;
    let target = match &args.registry {
        Some(registry) => Some(Target::open(registry).await?),
        None => None,
    };
    let now = args.now.unwrap_or(Timestamp(std::time::SystemTime::now()));
    let inventory = match (&args.inventory, &target) {
        (Some(path), None) => Inventory::from_json(&read(path)?)?,
        (None, Some(target)) => target.inventory(now).await?,
        _ => return Err(format!("one of --inventory and --registry; {USAGE}").into()),
    };
    if let Some(path) = &args.export {
        std::fs::write(path, inventory.to_json() + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let in_use = match &args.in_use {
        Some(path) => InUse::parse(&read(path)?)?,
        None => InUse::default(),
    };
    if let Some((repository, tag)) = &args.explain {
        let explained = explain(&inventory, &policy, &in_use, now, repository, tag)
            .ok_or(format!("{repository}:{tag} is not in the inventory"))?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&explained)?);
            return Ok(());
        }
        let decision = if explained.tag.decision == Decision::Keep { "kept" } else { "deleted" };
        println!("{repository}:{tag} ({}) is {decision}: {}", explained.tag.digest, explained.tag.reason);
        for verdict in &explained.verdicts {
            println!("  rule {} ({:?}): {}", verdict.rule, verdict.decision, verdict.verdict);
        }
        if let Some(refused) = &explained.refused {
            println!("  the repository is refused: {refused}");
        }
        return Ok(());
    }
    let plan = match &args.apply {
        Some(Some(path)) => Plan::from_json(&read(path)?)?,
        _ => plan(&inventory, &policy, &in_use, now),
    };
    if args.json {
        println!("{}", plan.to_json());
    } else {
        print_table(&plan, &inventory);
    }
    if args.apply.is_some() {
        let target = target.ok_or("--apply needs --registry")?;
        let applied = target.apply(&plan).await?;
        eprintln!(
            "applied: {} tags and {} manifests deleted, {} skipped as changed since the plan, {} already gone",
            applied.tags_deleted, applied.manifests_deleted, applied.skipped, applied.already_gone
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("retention: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
