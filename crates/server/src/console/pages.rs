//! The console's pages, rendered from what the handlers read: plain data in, HTML out. Every
//! value is written through maud, which escapes it: a tag or an annotation holding markup
//! shows as text.

use std::time::SystemTime;

use maud::{DOCTYPE, Markup, PreEscaped, html};

/// The stylesheet, served at `<base>/style.css`.
pub(super) const STYLE: &str = include_str!("style.css");

/// The only script: it filters the catalog's rows as one types (the page works without it,
/// through the form).
pub(super) const FILTER_SCRIPT: &str = "document.getElementById('filter').addEventListener('input',function(e){var q=e.target.value.toLowerCase();document.querySelectorAll('tbody tr').forEach(function(r){r.hidden=r.dataset.name.indexOf(q)<0})});";

/// One repository of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RepositoryRow {
    pub name: String,
    pub tags: usize,
    /// Its blobs and manifests, each counted once.
    pub size: u64,
    pub pushed: Option<SystemTime>,
    pub pulled: Option<SystemTime>,
}

/// A page of the catalog.
#[derive(Debug, Clone)]
pub(super) struct Catalog {
    pub filter: String,
    pub rows: Vec<RepositoryRow>,
    /// Repositories that pass the filter, on every page, when they were all read.
    pub matching: Option<usize>,
    /// Whether this is the first page.
    pub first: bool,
    /// The last repository of this page, when another page follows.
    pub next: Option<String>,
}

/// What refers to a manifest, in badges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Badge {
    Signed,
    Sbom,
    Scan,
    Attestation,
}

impl Badge {
    /// The badge an artifact type earns, if any.
    pub(super) fn of(artifact_type: &str) -> Option<Badge> {
        let kind = artifact_type.to_ascii_lowercase();
        if kind.contains("signature") || kind.contains(".sig") || kind.contains("notary") {
            Some(Badge::Signed)
        } else if kind.contains("spdx") || kind.contains("cyclonedx") || kind.contains("sbom") || kind.contains("syft")
        {
            Some(Badge::Sbom)
        } else if kind.contains("sarif")
            || kind.contains("vuln")
            || kind.contains("scan")
            || kind.contains("trivy")
            || kind.contains("grype")
        {
            Some(Badge::Scan)
        } else if kind.contains("in-toto") || kind.contains("attestation") || kind.contains("provenance") {
            Some(Badge::Attestation)
        } else {
            None
        }
    }

    fn class(self) -> &'static str {
        match self {
            Badge::Signed => "signed",
            Badge::Sbom => "sbom",
            Badge::Scan => "scan",
            Badge::Attestation => "attestation",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Badge::Signed => "signed",
            Badge::Sbom => "SBOM",
            Badge::Scan => "scan",
            Badge::Attestation => "attestation",
        }
    }
}

/// A manifest of a repository, tagged or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ManifestRow {
    /// The tag; none for an untagged manifest.
    pub tag: Option<String>,
    pub digest: String,
    pub size: u64,
    pub platforms: Vec<String>,
    pub pushed: Option<SystemTime>,
    pub pulled: Option<SystemTime>,
    pub badges: Vec<Badge>,
}

/// The columns the tag table sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SortBy {
    Tag,
    Size,
    Pushed,
    Pulled,
}

impl SortBy {
    pub(super) fn parse(text: Option<&str>) -> SortBy {
        match text {
            Some("size") => SortBy::Size,
            Some("pushed") => SortBy::Pushed,
            Some("pulled") => SortBy::Pulled,
            _ => SortBy::Tag,
        }
    }

    fn key(self) -> &'static str {
        match self {
            SortBy::Tag => "tag",
            SortBy::Size => "size",
            SortBy::Pushed => "pushed",
            SortBy::Pulled => "pulled",
        }
    }

    /// Sorts `rows`: tags by name, the others largest or newest first.
    pub(super) fn sort(self, rows: &mut [ManifestRow]) {
        match self {
            SortBy::Tag => rows.sort_by(|a, b| a.tag.cmp(&b.tag).then_with(|| a.digest.cmp(&b.digest))),
            SortBy::Size => rows.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.tag.cmp(&b.tag))),
            SortBy::Pushed => rows.sort_by(|a, b| b.pushed.cmp(&a.pushed).then_with(|| a.tag.cmp(&b.tag))),
            SortBy::Pulled => rows.sort_by(|a, b| b.pulled.cmp(&a.pulled).then_with(|| a.tag.cmp(&b.tag))),
        }
    }
}

/// A repository's page.
#[derive(Debug, Clone)]
pub(super) struct RepositoryPage {
    pub name: String,
    /// The page's tags.
    pub rows: Vec<ManifestRow>,
    /// Tags on every page.
    pub tags: usize,
    /// The untagged manifests, when asked for.
    pub untagged: Option<Vec<ManifestRow>>,
    pub sort: SortBy,
    pub page: usize,
    pub pages: usize,
}

/// A layer, the config or a child of an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Part {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    /// An index's child: its platform; whether the repository has it.
    pub platform: Option<String>,
    pub present: bool,
}

/// A referrer, with those that refer to it in turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Referrer {
    pub digest: String,
    pub artifact_type: String,
    pub referrers: Vec<Referrer>,
}

/// A manifest's page.
#[derive(Debug, Clone)]
pub(super) struct ManifestPage {
    pub repository: String,
    pub digest: String,
    pub media_type: String,
    pub tags: Vec<String>,
    pub config: Option<Part>,
    pub layers: Vec<Part>,
    pub children: Vec<Part>,
    pub annotations: Vec<(String, String)>,
    pub subject: Option<String>,
    pub referrers: Vec<Referrer>,
    /// Where clients reach the registry (`host[:port]`), for the pull commands.
    pub host: String,
}

/// One repository's share of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Usage {
    pub name: String,
    pub size: u64,
}

/// The storage page.
#[derive(Debug, Clone)]
pub(super) struct StoragePage {
    /// Largest first.
    pub usage: Vec<Usage>,
    /// What collections and retention last did, newest first, as the audit records them.
    pub history: Vec<String>,
}

/// A tag's decision in a retention preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Decision {
    pub repository: String,
    pub tag: String,
    pub delete: bool,
    pub rule: String,
    pub reason: String,
}

/// The retention preview.
#[derive(Debug, Clone, Default)]
pub(super) struct RetentionPage {
    /// The policy shown in the form.
    pub policy: String,
    /// Policies the server knows, by name.
    pub known: Vec<String>,
    pub chosen: Option<String>,
    /// The plan, once a policy was given.
    pub decisions: Option<Vec<Decision>>,
    pub manifests_deleted: usize,
    pub bytes_reclaimed: u64,
    /// What was wrong with the policy given.
    pub error: Option<String>,
}

/// A byte count as people read it: `0 B`, `1.5 KiB`, `2.0 GiB`.
pub(super) fn bytes(size: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if size < 1024 {
        return format!("{size} B");
    }
    let mut value = size as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A time as `2026-12-07 10:04 UTC`; `—` for none.
pub(super) fn time(at: Option<SystemTime>) -> String {
    match at {
        Some(at) => {
            let text = humantime::format_rfc3339_seconds(at).to_string();
            format!("{} {} UTC", &text[..10], &text[11..16])
        }
        None => "—".to_owned(),
    }
}

/// `1 tag`, `2 tags`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A query string's value, percent-encoded.
pub(super) fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn short(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, hex)| hex);
    &hex[..hex.len().min(12)]
}

fn layout(base: &str, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Wharf" }
                link rel="stylesheet" href={ (base) "/style.css" };
            }
            body {
                header {
                    a.brand href={ (base) "/" } { "Wharf" }
                    nav {
                        a href={ (base) "/" } { "Repositories" }
                        a href={ (base) "/storage" } { "Storage" }
                        a href={ (base) "/retention" } { "Retention preview" }
                    }
                }
                main { (body) }
            }
        }
    }
}

fn repository_link(base: &str, name: &str) -> String {
    format!("{base}/repository?name={}", encode(name))
}

fn manifest_link(base: &str, name: &str, digest: &str) -> String {
    format!("{base}/manifest?name={}&digest={}", encode(name), encode(digest))
}

/// The catalog: a filter, and a page of repositories.
pub(super) fn catalog(base: &str, page: &Catalog) -> Markup {
    let link = |after: Option<&str>| match after {
        Some(after) => format!("{base}/?q={}&after={}", encode(&page.filter), encode(after)),
        None => format!("{base}/?q={}", encode(&page.filter)),
    };
    let body = html! {
        h1 { "Repositories" }
        form method="get" action={ (base) "/" } {
            input #filter type="search" name="q" value=(page.filter) placeholder="Filter by name" aria-label="Filter by name";
            " "
            button type="submit" { "Filter" }
        }
        @if let Some(matching) = page.matching {
            p.muted { (count(matching, "repository", "repositories")) @if !page.filter.is_empty() { " matching “" (page.filter) "”" } }
        }
        table {
            thead { tr { th { "Repository" } th.n { "Tags" } th.n { "Size" } th { "Last push" } th { "Last pull" } } }
            tbody {
                @for row in &page.rows {
                    tr data-name=(row.name.to_lowercase()) {
                        td { a href=(repository_link(base, &row.name)) { (row.name) } }
                        td.n { (row.tags) }
                        td.n { (bytes(row.size)) }
                        td { (time(row.pushed)) }
                        td { (time(row.pulled)) }
                    }
                }
            }
        }
        @if !page.first || page.next.is_some() {
            p.pager {
                @if !page.first { a href=(link(None)) { "← First page" } }
                @if let Some(next) = &page.next { a rel="next" href=(link(Some(next))) { "Next →" } }
            }
        }
        script { (PreEscaped(FILTER_SCRIPT)) }
    };
    layout(base, "Repositories", body)
}

fn manifest_rows(base: &str, name: &str, rows: &[ManifestRow]) -> Markup {
    html! {
        @for row in rows {
            tr {
                td { @if let Some(tag) = &row.tag { (tag) } @else { span.muted { "untagged" } } }
                td.mono { a href=(manifest_link(base, name, &row.digest)) title=(row.digest) { (short(&row.digest)) } }
                td.n { (bytes(row.size)) }
                td { (row.platforms.join(", ")) }
                td { (time(row.pushed)) }
                td { (time(row.pulled)) }
                td { @for badge in &row.badges { span class={ "badge " (badge.class()) } { (badge.label()) } } }
            }
        }
    }
}

/// A repository: its tags, sortable, and its untagged manifests on request.
pub(super) fn repository(base: &str, page: &RepositoryPage) -> Markup {
    let untagged = if page.untagged.is_some() { "&untagged=1" } else { "" };
    let sort = |by: SortBy| format!("{}&sort={}{untagged}", repository_link(base, &page.name), by.key());
    let turn = |number: usize| {
        format!("{}&sort={}&page={number}{untagged}", repository_link(base, &page.name), page.sort.key())
    };
    let head = |by: SortBy, label: &str, numeric: bool| {
        html! {
            th class=[numeric.then_some("n")] aria-sort=[(page.sort == by).then_some("descending")] {
                a href=(sort(by)) { (label) }
            }
        }
    };
    let body = html! {
        h1 { (page.name) }
        p.muted { (count(page.tags, "tag", "tags")) }
        table {
            thead {
                tr {
                    (head(SortBy::Tag, "Tag", false))
                    th { "Digest" }
                    (head(SortBy::Size, "Size", true))
                    th { "Platforms" }
                    (head(SortBy::Pushed, "Pushed", false))
                    (head(SortBy::Pulled, "Last pulled", false))
                    th { "Referrers" }
                }
            }
            tbody { (manifest_rows(base, &page.name, &page.rows)) }
        }
        @if page.pages > 1 {
            p.pager {
                @if page.page > 1 { a rel="prev" href=(turn(page.page - 1)) { "← Previous" } }
                span.muted { "Page " (page.page) " of " (page.pages) }
                " "
                @if page.page < page.pages { a rel="next" href=(turn(page.page + 1)) { "Next →" } }
            }
        }
        @match &page.untagged {
            Some(untagged) => {
                h2 { "Untagged manifests" }
                @if untagged.is_empty() {
                    p.muted { "None." }
                } @else {
                    table {
                        thead { tr { th { "Tag" } th { "Digest" } th.n { "Size" } th { "Platforms" } th { "Pushed" } th { "Last pulled" } th { "Referrers" } } }
                        tbody { (manifest_rows(base, &page.name, untagged)) }
                    }
                }
            }
            None => {
                p { a href={ (repository_link(base, &page.name)) "&untagged=1" } { "Show untagged manifests" } }
            }
        }
    };
    layout(base, &page.name, body)
}

fn parts(base: &str, repository: &str, title: &str, parts: &[Part], manifests: bool) -> Markup {
    html! {
        @if !parts.is_empty() {
            h2 { (title) }
            table {
                thead { tr { th { "Media type" } th { "Digest" } th.n { "Size" } @if manifests { th { "Platform" } } } }
                tbody {
                    @for part in parts {
                        tr {
                            td.mono { (part.media_type) }
                            td.mono {
                                @if manifests && part.present {
                                    a href=(manifest_link(base, repository, &part.digest)) { (part.digest) }
                                } @else { (part.digest) }
                            }
                            td.n { (bytes(part.size)) }
                            @if manifests { td { (part.platform.as_deref().unwrap_or("—")) } }
                        }
                    }
                }
            }
        }
    }
}

fn referrer_tree(base: &str, repository: &str, referrers: &[Referrer]) -> Markup {
    html! {
        ul.tree {
            @for referrer in referrers {
                li {
                    @if let Some(badge) = Badge::of(&referrer.artifact_type) {
                        span class={ "badge " (badge.class()) } { (badge.label()) }
                    }
                    span.mono { (referrer.artifact_type) } " "
                    a.mono href=(manifest_link(base, repository, &referrer.digest)) { (referrer.digest) }
                    @if !referrer.referrers.is_empty() { (referrer_tree(base, repository, &referrer.referrers)) }
                }
            }
        }
    }
}

/// A manifest or index: what it is made of, what refers to it, and how to pull it.
pub(super) fn manifest(base: &str, page: &ManifestPage) -> Markup {
    let by_digest = format!("{}/{}@{}", page.host, page.repository, page.digest);
    let body = html! {
        p { a href=(repository_link(base, &page.repository)) { (page.repository) } }
        h1.mono { (page.digest) }
        dl {
            dt { "Media type" } dd.mono { (page.media_type) }
            dt { "Tags" } dd { @if page.tags.is_empty() { span.muted { "none" } } @else { (page.tags.join(", ")) } }
            @if let Some(subject) = &page.subject {
                dt { "Refers to" } dd.mono { a href=(manifest_link(base, &page.repository, subject)) { (subject) } }
            }
        }
        h2 { "Pull it" }
        @for tag in &page.tags {
            pre { code { "docker pull " (page.host) "/" (page.repository) ":" (tag) } }
        }
        pre { code { "docker pull " (by_digest) } }
        @if let Some(config) = &page.config { (parts(base, &page.repository, "Config", std::slice::from_ref(config), false)) }
        (parts(base, &page.repository, "Layers", &page.layers, false))
        (parts(base, &page.repository, "Platforms", &page.children, true))
        @if !page.annotations.is_empty() {
            h2 { "Annotations" }
            table { tbody { @for (key, value) in &page.annotations { tr { td.mono { (key) } td { (value) } } } } }
        }
        h2 { "Referrers" }
        @if page.referrers.is_empty() { p.muted { "Nothing refers to it." } } @else { (referrer_tree(base, &page.repository, &page.referrers)) }
    };
    layout(base, &page.digest, body)
}

/// A horizontal bar chart of `usage`, drawn here as SVG.
fn bars(base: &str, usage: &[Usage]) -> Markup {
    const ROW: u64 = 22;
    const LABEL: u64 = 260;
    const WIDTH: u64 = 520;
    let largest = usage.iter().map(|u| u.size).max().unwrap_or(0).max(1);
    let height = ROW.saturating_mul(usage.len() as u64).max(ROW);
    html! {
        svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="Storage by repository"
            width=(LABEL + WIDTH + 90) height=(height) viewBox={ "0 0 " (LABEL + WIDTH + 90) " " (height) } {
            @for (row, entry) in usage.iter().enumerate() {
                @let y = ROW.saturating_mul(row as u64);
                @let width = ((entry.size as f64 / largest as f64) * WIDTH as f64).round().max(1.0) as u64;
                a href=(repository_link(base, &entry.name)) {
                    text x=(LABEL - 8) y=(y + 15) text-anchor="end" { (entry.name) }
                }
                rect x=(LABEL) y=(y + 4) width=(width) height=(ROW - 8) fill="#1f5fbf" rx="2" {}
                text x=(LABEL + width + 6) y=(y + 15) { (bytes(entry.size)) }
            }
        }
    }
}

/// Storage: the largest repositories first, and what maintenance last did.
pub(super) fn storage(base: &str, page: &StoragePage) -> Markup {
    let total: u64 = page.usage.iter().map(|u| u.size).fold(0, u64::saturating_add);
    let body = html! {
        h1 { "Storage" }
        p.muted { (count(page.usage.len(), "repository", "repositories")) ", " (bytes(total)) " counted by repository (a blob shared by two counts in both)" }
        @if !page.usage.is_empty() { (bars(base, &page.usage)) }
        h2 { "Garbage collection and retention" }
        @if page.history.is_empty() {
            p.muted { "No collection or retention run is on record." }
        } @else {
            ul { @for line in &page.history { li.mono { (line) } } }
        }
    };
    layout(base, "Storage", body)
}

/// The retention preview: a policy in, the plan out; nothing applied.
pub(super) fn retention(base: &str, page: &RetentionPage) -> Markup {
    let body = html! {
        h1 { "Retention preview" }
        p.muted { "Shows what a policy would delete. Nothing is applied here." }
        form method="post" action={ (base) "/retention" } {
            @if !page.known.is_empty() {
                p {
                    label for="known" { "A policy of the server: " }
                    select #known name="known" {
                        option value="" { "(the one pasted below)" }
                        @for name in &page.known {
                            option value=(name) selected[page.chosen.as_deref() == Some(name.as_str())] { (name) }
                        }
                    }
                }
            }
            p { label for="policy" { @if page.known.is_empty() { "A policy file (YAML):" } @else { "Or a policy file (YAML):" } } }
            textarea #policy name="policy" { (page.policy) }
            p { button type="submit" { "Preview" } }
        }
        @if let Some(error) = &page.error {
            p.delete { strong { "The policy is not valid: " } (error) }
        }
        @if let Some(decisions) = &page.decisions {
            @let deleted = decisions.iter().filter(|d| d.delete).count();
            h2 { (deleted) " of " (decisions.len()) " tags would be deleted" }
            p { (count(page.manifests_deleted, "manifest", "manifests")) ", " (bytes(page.bytes_reclaimed)) " reclaimed" }
            table {
                thead { tr { th { "Repository" } th { "Tag" } th { "Decision" } th { "Rule" } th { "Reason" } } }
                tbody {
                    @for decision in decisions {
                        tr class=[decision.delete.then_some("delete")] {
                            td { (decision.repository) }
                            td { (decision.tag) }
                            td { @if decision.delete { "delete" } @else { "keep" } }
                            td { (decision.rule) }
                            td { (decision.reason) }
                        }
                    }
                }
            }
        }
    };
    layout(base, "Retention preview", body)
}

/// A page that says why there is nothing to show.
pub(super) fn message(base: &str, title: &str, text: &str) -> Markup {
    layout(base, title, html! { h1 { (title) } p { (text) } })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn artifact_types_earn_their_badges() {
        for (kind, badge) in [
            ("application/vnd.dev.cosign.artifact.sig.v1+json", Some(Badge::Signed)),
            ("application/vnd.cncf.notary.signature", Some(Badge::Signed)),
            ("application/spdx+json", Some(Badge::Sbom)),
            ("application/vnd.cyclonedx+json", Some(Badge::Sbom)),
            ("application/sarif+json", Some(Badge::Scan)),
            ("application/vnd.in-toto+json", Some(Badge::Attestation)),
            ("application/vnd.oci.image.manifest.v1+json", None),
            ("", None),
        ] {
            assert_eq!(Badge::of(kind), badge, "{kind}");
        }
    }

    #[test]
    fn sizes_and_times_read_as_people_read_them() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 << 30), "5.0 GiB");
        assert_eq!(bytes(u64::MAX), "16.0 EiB");
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_640_000);
        assert_eq!(time(Some(at)), "2026-12-07 10:40 UTC");
        assert_eq!(time(None), "—");
        assert_eq!(count(1, "tag", "tags"), "1 tag");
        assert_eq!(count(0, "tag", "tags"), "0 tags");
    }

    fn row(tag: &str, size: u64, pushed: u64) -> ManifestRow {
        ManifestRow {
            tag: Some(tag.to_owned()),
            digest: format!("sha256:{tag}"),
            size,
            platforms: Vec::new(),
            pushed: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(pushed)),
            pulled: None,
            badges: Vec::new(),
        }
    }

    #[test]
    fn tags_sort_by_name_or_largest_and_newest_first() {
        let mut rows = vec![row("b", 10, 3), row("a", 30, 1), row("c", 20, 2)];
        let order = |rows: &[ManifestRow]| rows.iter().map(|r| r.tag.clone().unwrap()).collect::<Vec<_>>();
        SortBy::Tag.sort(&mut rows);
        assert_eq!(order(&rows), ["a", "b", "c"]);
        SortBy::Size.sort(&mut rows);
        assert_eq!(order(&rows), ["a", "c", "b"]);
        SortBy::Pushed.sort(&mut rows);
        assert_eq!(order(&rows), ["b", "c", "a"]);
        assert_eq!(SortBy::parse(Some("nonsense")), SortBy::Tag);
    }

    proptest! {
        /// Whatever a tag, an annotation or a filter holds, it shows as text.
        #[test]
        fn stored_text_never_becomes_markup(text in "\\PC{0,40}", extra in "[<>&\"']{1,8}") {
            let hostile = format!("{text}{extra}<script>x</script>");
            let page = ManifestPage {
                repository: hostile.clone(),
                digest: hostile.clone(),
                media_type: hostile.clone(),
                tags: vec![hostile.clone()],
                config: None,
                layers: vec![Part { media_type: hostile.clone(), digest: hostile.clone(), size: 1, platform: None, present: false }],
                children: Vec::new(),
                annotations: vec![(hostile.clone(), hostile.clone())],
                subject: Some(hostile.clone()),
                referrers: vec![Referrer { digest: hostile.clone(), artifact_type: hostile.clone(), referrers: Vec::new() }],
                host: hostile.clone(),
            };
            let html = manifest("/ui", &page).into_string();
            prop_assert!(!html.contains("<script>x"));
            let catalog_page = Catalog { filter: hostile.clone(), rows: Vec::new(), matching: Some(0), first: true, next: None };
            let html = catalog(&hostile, &catalog_page).into_string();
            prop_assert!(!html.contains("<script>x"));
        }
    }
}
