//! The console: read-only pages of what the registry stores, served beside the API (under
//! `/ui` by default). Everything comes from `wharf-registry` and the policy engine; the
//! console keeps no state and changes nothing.
//!
//! It asks for the same credentials as the API: with `auth.htpasswd` a user and password
//! (the browser's own prompt), with `auth.token` a bearer token, which shows only the
//! repositories it lets its holder pull.

mod pages;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use futures::{StreamExt as _, TryStreamExt as _};
use wharf_oci::{Descriptor, Digest, Manifest, RepositoryName};
use wharf_registry::{ManifestReference, Registry, Repository};

use crate::ServerOptions;
use crate::error::ApiError;

/// Repositories on one page of the catalog.
const PAGE: usize = 50;
/// Tags on one page of a repository.
const TAGS_PAGE: usize = 100;
/// Repositories or manifests read at once.
const AT_ONCE: usize = 16;
/// The largest image config read for its platform.
const MAX_CONFIG: usize = 1 << 20;
/// How deep the referrer tree goes.
const REFERRER_DEPTH: usize = 4;

/// What the console's handlers share.
pub(crate) struct Console {
    registry: Registry,
    options: Arc<ServerOptions>,
    base: Arc<str>,
}

/// The console's routes below `base` (`/ui`): `/ui` itself leads to the catalog at `/ui/`.
pub(crate) fn router(registry: Registry, options: Arc<ServerOptions>, base: &str) -> Router {
    let base = base.trim_end_matches('/').to_owned();
    let console = Arc::new(Console { registry, options, base: Arc::from(base.as_str()) });
    let index = format!("{base}/");
    let at = |path: &str| format!("{base}{path}");
    Router::new()
        .route(&base, axum::routing::get(move || async move { axum::response::Redirect::to(&index) }))
        .route(&at("/"), axum::routing::get(catalog))
        .route(&at("/repository"), axum::routing::get(repository))
        .route(&at("/manifest"), axum::routing::get(manifest))
        .route(&at("/storage"), axum::routing::get(storage))
        .route(&at("/retention"), axum::routing::get(retention).post(retention_preview))
        .route(
            &at("/style.css"),
            axum::routing::get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], pages::STYLE) }),
        )
        .with_state(console)
}

/// Who is looking, and so which repositories they see.
enum Viewer {
    /// Anyone, or a user htpasswd knows: every repository.
    Everything,
    /// A token's holder: the repositories it lets them pull.
    Pulls(BTreeSet<String>),
}

impl Viewer {
    fn sees(&self, name: &str) -> bool {
        match self {
            Viewer::Everything => true,
            Viewer::Pulls(names) => names.contains(name),
        }
    }
}

/// A page's answer: HTML, or the page that says why not.
type Page = Result<Response, Refusal>;

/// Why a page is not shown, rendered as a page of its own.
struct Refusal {
    status: StatusCode,
    title: &'static str,
    text: String,
    /// The challenge of a request that must sign in.
    headers: Vec<(header::HeaderName, header::HeaderValue)>,
    base: Arc<str>,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let page = pages::message(&self.base, self.title, &self.text);
        let mut response = (self.status, Html(page.into_string())).into_response();
        guard(&mut response);
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

impl Console {
    /// Who asks, as the API decides it; a refusal carries the API's challenge.
    async fn viewer(&self, headers: &HeaderMap) -> Result<Viewer, Refusal> {
        if let Some(htpasswd) = &self.options.htpasswd {
            htpasswd.authenticate(headers).await.map_err(|e| self.refused(e))?;
        }
        if let Some(token) = &self.options.token {
            let (_, names) = token.pulls(headers).map_err(|e| self.refused(e))?;
            return Ok(Viewer::Pulls(names.into_iter().collect()));
        }
        Ok(Viewer::Everything)
    }

    fn refusal(&self, status: StatusCode, title: &'static str, text: String) -> Refusal {
        Refusal { status, title, text, headers: Vec::new(), base: self.base.clone() }
    }

    fn refused(&self, error: ApiError) -> Refusal {
        let text = "The registry asks for credentials to show what it stores.".to_owned();
        Refusal { headers: error.headers, ..self.refusal(StatusCode::UNAUTHORIZED, "Sign in", text) }
    }

    fn not_found(&self, what: &str) -> Refusal {
        self.refusal(StatusCode::NOT_FOUND, "Not found", what.to_owned())
    }

    fn failed(&self, error: &dyn std::fmt::Display) -> Refusal {
        tracing::warn!(error = %error, "a console page failed");
        self.refusal(StatusCode::INTERNAL_SERVER_ERROR, "The store failed", error.to_string())
    }

    /// Every repository the viewer may see, in catalog order.
    async fn visible(&self, viewer: &Viewer) -> Result<Vec<RepositoryName>, Refusal> {
        let all = self.registry.catalog(None, None).await.map_err(|e| self.failed(&e))?;
        Ok(all.into_iter().filter(|name| viewer.sees(name.as_str())).collect())
    }

    /// The repository the query's `name` names, when whoever asks may see it.
    async fn named(&self, headers: &HeaderMap, query: &BTreeMap<String, String>) -> Result<Repository, Refusal> {
        let viewer = self.viewer(headers).await?;
        let name = query.get("name").ok_or_else(|| self.not_found("No repository was named."))?;
        let parsed: RepositoryName = name.parse().map_err(|_| self.not_found("That is not a repository name."))?;
        if !viewer.sees(parsed.as_str()) {
            return Err(self.not_found("No such repository."));
        }
        Ok(self.registry.repository(&parsed))
    }

    /// One repository's line in the catalog: walks of its tags and revisions, its usage and
    /// its pull times, with no link or manifest read.
    async fn summary(&self, name: &RepositoryName) -> wharf_registry::Result<pages::RepositoryRow> {
        let repository = self.registry.repository(name);
        let (tags, revisions, size, pulled) = futures::try_join!(
            repository.tag_times(),
            repository.manifest_revisions(),
            repository.usage(),
            repository.last_pull()
        )?;
        let pushed = tags.iter().map(|(_, at)| *at).chain(revisions.iter().map(|r| r.linked)).max();
        Ok(pages::RepositoryRow { name: name.to_string(), tags: tags.len(), size, pushed, pulled })
    }

    /// A manifest's size, platforms and badges.
    async fn describe(&self, repository: &Repository, digest: &Digest) -> wharf_registry::Result<Described> {
        let stored = repository.get_manifest(&ManifestReference::Digest(digest.clone())).await?;
        let size = stored.content.len() as u64;
        let manifest = Manifest::parse(stored.content, Some(&stored.media_type)).ok();
        let mut described = Described { size, ..Described::default() };
        if let Some(manifest) = &manifest {
            if manifest.kind().is_index() {
                for child in manifest.manifests() {
                    described.size = described.size.saturating_add(child.size);
                    if let Some(platform) = &child.platform {
                        described.platforms.push(platform_text(platform));
                    }
                    if let Ok(stored) = repository.get_manifest(&ManifestReference::Digest(child.digest.clone())).await
                        && let Ok(child) = Manifest::parse(stored.content, Some(&stored.media_type))
                    {
                        described.size = described.size.saturating_add(blob_sizes(&child));
                    }
                }
            } else {
                described.size = described.size.saturating_add(blob_sizes(manifest));
                if let Some(config) = manifest.config()
                    && let Some(platform) = self.config_platform(repository, config).await
                {
                    described.platforms.push(platform);
                }
            }
        }
        let referrers = repository.referrers(digest, None).await?;
        let mut badges: Vec<pages::Badge> =
            referrers.iter().filter_map(|r| r.artifact_type.as_deref().and_then(pages::Badge::of)).collect();
        badges.sort_unstable();
        badges.dedup();
        described.badges = badges;
        Ok(described)
    }

    /// `os/architecture[/variant]` from an image's config, when it is small and says so.
    async fn config_platform(&self, repository: &Repository, config: &Descriptor) -> Option<String> {
        if config.size > MAX_CONFIG as u64 {
            return None;
        }
        let (_, stream) = repository.read_blob(&config.digest, 0).await.ok()?;
        let chunks: Vec<bytes::Bytes> = stream.try_collect().await.ok()?;
        let value: serde_json::Value = serde_json::from_slice(&chunks.concat()).ok()?;
        let os = value.get("os")?.as_str()?;
        let architecture = value.get("architecture")?.as_str()?;
        Some(match value.get("variant").and_then(|v| v.as_str()) {
            Some(variant) => format!("{os}/{architecture}/{variant}"),
            None => format!("{os}/{architecture}"),
        })
    }

    /// Rows for `digests` of `repository`, each with its tag and times.
    async fn rows(
        &self,
        repository: &Repository,
        entries: Vec<(Option<String>, Digest, Option<SystemTime>)>,
    ) -> wharf_registry::Result<Vec<pages::ManifestRow>> {
        // A manifest several tags name is read once.
        let distinct: BTreeSet<Digest> = entries.iter().map(|(_, digest, _)| digest.clone()).collect();
        let described: HashMap<Digest, (Described, Option<SystemTime>)> = futures::stream::iter(distinct)
            .map(|digest| async move {
                let described = self.describe(repository, &digest).await?;
                let pulled = repository.last_pulled(&digest).await?;
                Ok::<_, wharf_registry::Error>((digest, (described, pulled)))
            })
            .buffer_unordered(AT_ONCE)
            .try_collect()
            .await?;
        Ok(entries
            .into_iter()
            .filter_map(|(tag, digest, pushed)| {
                let (described, pulled) = described.get(&digest)?;
                Some(pages::ManifestRow {
                    tag,
                    digest: digest.to_string(),
                    size: described.size,
                    platforms: described.platforms.clone(),
                    pushed,
                    pulled: *pulled,
                    badges: described.badges.clone(),
                })
            })
            .collect())
    }

    /// The referrers of `digest`, and theirs, `depth` levels down.
    fn referrer_tree<'a>(
        &'a self,
        repository: &'a Repository,
        digest: &'a Digest,
        depth: usize,
    ) -> futures::future::BoxFuture<'a, wharf_registry::Result<Vec<pages::Referrer>>> {
        Box::pin(async move {
            if depth == 0 {
                return Ok(Vec::new());
            }
            let mut tree = Vec::new();
            for referrer in repository.referrers(digest, None).await? {
                let below = self.referrer_tree(repository, &referrer.digest, depth - 1).await?;
                tree.push(pages::Referrer {
                    digest: referrer.digest.to_string(),
                    artifact_type: referrer.artifact_type.clone().unwrap_or_else(|| referrer.media_type.clone()),
                    referrers: below,
                });
            }
            Ok(tree)
        })
    }
}

/// What the repository page shows of one manifest.
#[derive(Debug, Clone, Default)]
struct Described {
    size: u64,
    platforms: Vec<String>,
    badges: Vec<pages::Badge>,
}

fn platform_text(platform: &wharf_oci::Platform) -> String {
    match platform.variant() {
        Some(variant) => format!("{}/{}/{variant}", platform.os(), platform.architecture()),
        None => format!("{}/{}", platform.os(), platform.architecture()),
    }
}

/// An image's config and layers, added up.
fn blob_sizes(manifest: &Manifest) -> u64 {
    manifest.config().into_iter().chain(manifest.layers()).map(|d| d.size).fold(0, u64::saturating_add)
}

fn html(markup: maud::Markup) -> Response {
    let mut response = Html(markup.into_string()).into_response();
    guard(&mut response);
    response
}

/// What a browser may do with a page: load the stylesheet from here, run the filter script
/// and nothing else, post forms only here, and show the page in no frame. Markup that got
/// into a page through a bug would still run nothing.
fn guard(response: &mut Response) {
    use std::sync::LazyLock;
    static POLICY: LazyLock<header::HeaderValue> = LazyLock::new(|| {
        use base64::Engine as _;
        use sha2::Digest as _;
        let script = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(pages::FILTER_SCRIPT));
        let policy = format!(
            "default-src 'none'; style-src 'self'; script-src 'sha256-{script}'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        );
        header::HeaderValue::from_str(&policy).unwrap_or(header::HeaderValue::from_static("default-src 'none'"))
    });
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, POLICY.clone());
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("same-origin"));
}

async fn catalog(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> Page {
    let viewer = console.viewer(&headers).await?;
    let filter = query.get("q").map(|q| q.trim().to_owned()).unwrap_or_default();
    let after: Option<RepositoryName> = query.get("after").and_then(|a| a.parse().ok());
    let failed = |e: wharf_registry::Error| console.failed(&e);
    // Unfiltered, everything visible: the catalog from `after` on, as the API pages it, so
    // a page costs what it shows. Filtered or limited by a token: the whole list, matched.
    let (mut names, matching) = if filter.is_empty() && matches!(viewer, Viewer::Everything) {
        (console.registry.catalog(Some(PAGE + 1), after.as_ref()).await.map_err(failed)?, None)
    } else {
        let needle = filter.to_lowercase();
        let mut all = console.visible(&viewer).await?;
        all.retain(|name| name.as_str().to_lowercase().contains(&needle));
        let matching = all.len();
        let from = after.as_ref().map_or(0, |after| {
            all.iter().position(|name| name.components().cmp(after.components()).is_gt()).unwrap_or(all.len())
        });
        (all.into_iter().skip(from).take(PAGE + 1).collect(), Some(matching))
    };
    let next = (names.len() > PAGE).then(|| names[PAGE - 1].to_string());
    names.truncate(PAGE);
    let console = &console;
    let rows: Vec<pages::RepositoryRow> = futures::stream::iter(names)
        .map(|name| async move { console.summary(&name).await })
        .buffered(AT_ONCE)
        .try_collect()
        .await
        .map_err(failed)?;
    let catalog = pages::Catalog { filter, rows, matching, first: after.is_none(), next };
    Ok(html(pages::catalog(&console.base, &catalog)))
}

async fn repository(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> Page {
    let repository = console.named(&headers, &query).await?;
    let failed = |e: wharf_registry::Error| console.failed(&e);
    let (tags, revisions) =
        futures::try_join!(repository.tag_links(), repository.manifest_revisions()).map_err(failed)?;
    if tags.is_empty() && revisions.is_empty() {
        return Err(console.not_found("No such repository."));
    }
    let tagged: BTreeSet<&Digest> = tags.iter().map(|t| &t.digest).collect();
    let untagged_entries: Vec<(Option<String>, Digest, Option<SystemTime>)> = revisions
        .iter()
        .filter(|r| !tagged.contains(&r.digest))
        .map(|r| (None, r.digest.clone(), Some(r.linked)))
        .collect();
    let mut entries: Vec<(Option<String>, Digest, Option<SystemTime>)> =
        tags.iter().map(|t| (Some(t.tag.clone()), t.digest.clone(), Some(t.linked))).collect();
    let sort = pages::SortBy::parse(query.get("sort").map(String::as_str));
    let pages_count = entries.len().div_ceil(TAGS_PAGE).max(1);
    let page = query.get("page").and_then(|p| p.parse::<usize>().ok()).unwrap_or(1).clamp(1, pages_count);
    let skip = (page - 1).saturating_mul(TAGS_PAGE);
    // By name or push time, only the page's manifests are read; by size or pull time, all.
    let rows = match sort {
        pages::SortBy::Tag | pages::SortBy::Pushed => {
            if sort == pages::SortBy::Pushed {
                entries.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
            }
            let shown = entries.into_iter().skip(skip).take(TAGS_PAGE).collect();
            console.rows(&repository, shown).await.map_err(failed)?
        }
        pages::SortBy::Size | pages::SortBy::Pulled => {
            let mut rows = console.rows(&repository, entries).await.map_err(failed)?;
            sort.sort(&mut rows);
            rows.into_iter().skip(skip).take(TAGS_PAGE).collect()
        }
    };
    let untagged = if query.get("untagged").is_some_and(|v| v == "1") {
        let mut rows = console.rows(&repository, untagged_entries).await.map_err(failed)?;
        pages::SortBy::Pushed.sort(&mut rows);
        Some(rows)
    } else {
        None
    };
    let page = pages::RepositoryPage {
        name: repository.name().to_string(),
        rows,
        tags: tags.len(),
        untagged,
        sort,
        page,
        pages: pages_count,
    };
    Ok(html(pages::repository(&console.base, &page)))
}

async fn manifest(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> Page {
    let repository = console.named(&headers, &query).await?;
    let digest: Digest =
        query.get("digest").and_then(|d| d.parse().ok()).ok_or_else(|| console.not_found("That is not a digest."))?;
    let stored = match repository.get_manifest(&ManifestReference::Digest(digest.clone())).await {
        Ok(stored) => stored,
        Err(wharf_registry::Error::ManifestUnknown { .. }) => {
            return Err(console.not_found("The repository has no such manifest."));
        }
        Err(e) => return Err(console.failed(&e)),
    };
    let manifest = Manifest::parse(stored.content, Some(&stored.media_type)).map_err(|e| console.failed(&e))?;
    let failed = |e: wharf_registry::Error| console.failed(&e);
    let tags = repository.tag_links().await.map_err(failed)?;
    let part = |d: &Descriptor| pages::Part {
        media_type: d.media_type.clone(),
        digest: d.digest.to_string(),
        size: d.size,
        platform: d.platform.as_ref().map(platform_text),
        present: false,
    };
    let mut children = Vec::new();
    for child in manifest.manifests() {
        let mut shown = part(child);
        shown.present = repository.get_manifest(&ManifestReference::Digest(child.digest.clone())).await.is_ok();
        children.push(shown);
    }
    let referrers = console.referrer_tree(&repository, &digest, REFERRER_DEPTH).await.map_err(failed)?;
    let host = console
        .options
        .host
        .as_deref()
        .and_then(|h| url::Url::parse(h).ok())
        .and_then(|u| u.host_str().map(|host| u.port().map_or(host.to_owned(), |port| format!("{host}:{port}"))))
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_owned))
        .unwrap_or_else(|| "localhost".to_owned());
    let page = pages::ManifestPage {
        repository: repository.name().to_string(),
        digest: digest.to_string(),
        media_type: manifest.media_type().to_owned(),
        tags: tags.iter().filter(|t| t.digest == digest).map(|t| t.tag.clone()).collect(),
        config: manifest.config().map(part),
        layers: manifest.layers().iter().map(part).collect(),
        children,
        annotations: manifest.annotations().iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        subject: manifest.subject().map(|s| s.digest.to_string()),
        referrers,
        host,
    };
    Ok(html(pages::manifest(&console.base, &page)))
}

async fn storage(State(console): State<Arc<Console>>, headers: HeaderMap) -> Page {
    let viewer = console.viewer(&headers).await?;
    let names = console.visible(&viewer).await?;
    let mut usage: Vec<pages::Usage> = futures::stream::iter(names)
        .map(|name| {
            let repository = console.registry.repository(&name);
            async move {
                Ok::<_, wharf_registry::Error>(pages::Usage { name: name.to_string(), size: repository.usage().await? })
            }
        })
        .buffer_unordered(AT_ONCE)
        .try_collect()
        .await
        .map_err(|e| console.failed(&e))?;
    usage.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.name.cmp(&b.name)));
    let history = console
        .registry
        .maintenance_records()
        .await
        .map_err(|e| console.failed(&e))?
        .into_iter()
        .map(|record| format!("{} — {}", pages::time(Some(record.at)), record.summary))
        .collect();
    let page = pages::StoragePage { usage, history };
    Ok(html(pages::storage(&console.base, &page)))
}

/// The server's own policy, offered by name in the preview.
const SERVER_POLICY: &str = "the server's policy (policy:)";

/// The preview's form; with `policy` or `known` in the query (a link to a preview), the
/// preview too.
async fn retention(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
) -> Page {
    let viewer = console.viewer(&headers).await?;
    if query.contains_key("policy") || query.contains_key("known") {
        return console.preview(&viewer, &query).await;
    }
    let page = pages::RetentionPage { known: console.known_policies(), ..pages::RetentionPage::default() };
    Ok(html(pages::retention(&console.base, &page)))
}

async fn retention_preview(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    axum::extract::Form(form): axum::extract::Form<BTreeMap<String, String>>,
) -> Page {
    let viewer = console.viewer(&headers).await?;
    console.preview(&viewer, &form).await
}

impl Console {
    /// The plan of the policy `form` names (`known`) or holds (`policy`), applying nothing.
    async fn preview(&self, viewer: &Viewer, form: &BTreeMap<String, String>) -> Page {
        let chosen = form.get("known").filter(|k| !k.is_empty()).cloned();
        let text = form.get("policy").cloned().unwrap_or_default();
        let mut page = pages::RetentionPage {
            policy: text.clone(),
            known: self.known_policies(),
            chosen: chosen.clone(),
            ..Default::default()
        };
        let policy = match chosen.as_deref() {
            Some(SERVER_POLICY) => match &self.options.policy {
                Some(policy) => Ok(policy.as_ref().clone()),
                None => Err("the server has no policy".to_owned()),
            },
            Some(other) => Err(format!("the server knows no policy {other:?}")),
            None => wharf_policy::Policy::from_yaml(&text).map_err(|e| e.to_string()),
        };
        match policy {
            Err(error) => page.error = Some(error),
            Ok(policy) => {
                let (decisions, manifests, bytes) = self.plan(viewer, &policy).await.map_err(|e| self.failed(&e))?;
                page.decisions = Some(decisions);
                page.manifests_deleted = manifests;
                page.bytes_reclaimed = bytes;
            }
        }
        Ok(html(pages::retention(&self.base, &page)))
    }

    fn known_policies(&self) -> Vec<String> {
        if self.options.policy.is_some() { vec![SERVER_POLICY.to_owned()] } else { Vec::new() }
    }

    /// The plan of `policy` over what the viewer sees: every tag's decision, the manifests
    /// it deletes and the bytes it reclaims.
    async fn plan(
        &self,
        viewer: &Viewer,
        policy: &wharf_policy::Policy,
    ) -> Result<(Vec<pages::Decision>, usize, u64), String> {
        let inventory = wharf_policy::registry::inventory(&self.registry).await.map_err(|e| e.to_string())?;
        let now = wharf_policy::Timestamp(SystemTime::now());
        let policy = policy.clone();
        let in_use = wharf_policy::InUse::default();
        let plan = tokio::task::spawn_blocking(move || wharf_policy::plan(&inventory, &policy, &in_use, now))
            .await
            .map_err(|e| e.to_string())?;
        let mut decisions = Vec::new();
        let (mut manifests, mut bytes) = (0, 0u64);
        for repository in plan.repositories.iter().filter(|r| viewer.sees(&r.name)) {
            for tag in &repository.tags {
                decisions.push(pages::Decision {
                    repository: repository.name.clone(),
                    tag: tag.name.clone(),
                    delete: tag.decision == wharf_policy::Decision::Delete,
                    rule: tag.rule.as_deref().unwrap_or("—").to_owned(),
                    reason: tag.reason.to_string(),
                });
            }
            manifests += repository.manifests.iter().filter(|m| m.decision == wharf_policy::Decision::Delete).count();
            bytes = bytes.saturating_add(repository.reclaimed_bytes);
        }
        Ok((decisions, manifests, bytes))
    }
}
