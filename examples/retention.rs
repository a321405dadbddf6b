//! `cargo run --release --example retention -- --policy policy.yaml
//!     (--inventory inventory.json | --registry config.yml|DIR) [--now RFC3339]
//!     [--in-use FILE] [--format table|json] [--explain REPO:TAG]
//!     [--export-inventory FILE] [--apply [PLAN.json]]`
//!
//! Plans what a tag policy keeps and deletes, as a dry run by default: a table per
//! repository (or the plan as JSON), with the rule and the reason for every tag. The
//! inventory comes from a file or from a registry (a Distribution `config.yml`, or a
//! filesystem root); `--export-inventory` saves it, so a policy can be tried offline on
//! real data. `--apply` carries the plan out on the registry, or a saved plan exactly as it
//! was written, skipping what changed since; each deletion prints an audit line (JSON).

#![allow(clippy::print_stdout, clippy::print_stderr, reason = "an example prints its plan and its audit lines")]

use std::path::PathBuf;
use std::sync::Arc;

use wharf::policy::{Decision, InUse, Inventory, Plan, Policy, Timestamp, explain, plan, registry};
use wharf::registry::Registry;

const USAGE: &str = "usage: retention --policy policy.yaml (--inventory inventory.json | --registry config.yml|DIR) \
                     [--now RFC3339] [--in-use FILE] [--format table|json] [--explain REPO:TAG] \
                     [--export-inventory FILE] [--apply [PLAN.json]]";

#[derive(Default)]
struct Args {
    policy: Option<PathBuf>,
    inventory: Option<PathBuf>,
    registry: Option<PathBuf>,
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
            "--registry" => args.registry = Some(value("--registry")?.into()),
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

/// The registry a Distribution config describes, or a filesystem root.
async fn open_registry(path: &PathBuf) -> Result<Registry, Box<dyn std::error::Error>> {
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
    let registry = match &args.registry {
        Some(path) => Some(open_registry(path).await?),
        None => None,
    };
    let inventory = match (&args.inventory, &registry) {
        (Some(path), None) => Inventory::from_json(&read(path)?)?,
        (None, Some(registry)) => registry::inventory(registry).await?,
        _ => return Err(format!("one of --inventory and --registry; {USAGE}").into()),
    };
    if let Some(path) = &args.export {
        std::fs::write(path, inventory.to_json() + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let now = args.now.unwrap_or(Timestamp(std::time::SystemTime::now()));
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
        let registry = registry.ok_or("--apply needs --registry")?;
        let applied = registry::apply(&plan, &registry, &mut |entry| {
            println!("{}", serde_json::to_string(entry).unwrap_or_default());
        })
        .await?;
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
