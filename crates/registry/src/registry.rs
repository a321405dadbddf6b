//! The registry: its store, its options, its caches, and what spans repositories.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures::TryStreamExt;
use wharf_oci::{Digest, RepositoryName};
use wharf_storage::StorageDriver;

use crate::{Error, PurgedUpload, RegistryOptions, Repository, Result, cache, layout, pulls};

/// A registry over a storage driver. Clones share the driver.
#[derive(Clone)]
pub struct Registry {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) driver: Arc<dyn StorageDriver>,
    pub(crate) options: RegistryOptions,
    pub(crate) pulls: pulls::PullLog,
    pub(crate) manifests: cache::ManifestCache,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").field("driver", &self.inner.driver).field("options", &self.inner.options).finish()
    }
}

impl Registry {
    /// A registry storing through `driver`.
    pub fn new(driver: Arc<dyn StorageDriver>, options: RegistryOptions) -> Registry {
        Registry {
            inner: Arc::new(Inner {
                driver,
                options,
                pulls: pulls::PullLog::default(),
                manifests: cache::ManifestCache::default(),
            }),
        }
    }

    /// The storage driver underneath.
    pub fn driver(&self) -> &Arc<dyn StorageDriver> {
        &self.inner.driver
    }

    /// The settings it was made with.
    pub fn options(&self) -> &RegistryOptions {
        &self.inner.options
    }

    /// A repository of this registry (it exists once something is pushed to it).
    pub fn repository(&self, name: &RepositoryName) -> Repository {
        Repository { registry: self.clone(), name: name.clone() }
    }

    /// Repository names in the order of their path components (`a`, `a/b`, `a-b`), after
    /// `last` (exclusive) and at most `n` of them. A repository is listed once it has a
    /// layer folder, as Distribution 2.8 does: a blob pushed or mounted makes it one, an
    /// upload alone does not.
    ///
    /// A page costs one listing per repository folder it visits: the folders before `last`
    /// are skipped without being read.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn catalog(&self, n: Option<usize>, last: Option<&RepositoryName>) -> Result<Vec<RepositoryName>> {
        let mut found = Vec::new();
        if n == Some(0) {
            return Ok(found);
        }
        if n.is_none() && last.is_none() {
            return self.every_repository_folder(|children| children.iter().any(|c| c == "_layers")).await;
        }
        self.visit_repository_folders(last, |name, children| {
            if children.iter().any(|c| c == "_layers") {
                found.push(name.clone());
            }
            n.is_none_or(|n| found.len() < n)
        })
        .await?;
        Ok(found)
    }

    /// Walks the repository folders depth first in the order of their path components,
    /// calling `visit` with each folder's name and the names of its entries, after `after`;
    /// stops when `visit` returns false.
    async fn visit_repository_folders(
        &self,
        after: Option<&RepositoryName>,
        mut visit: impl FnMut(&RepositoryName, &[String]) -> bool,
    ) -> Result<()> {
        let after: Option<Vec<&str>> = after.map(|name| name.components().collect());
        let root = layout::repositories();
        // Folders still to visit, as component lists; the next one is at the end.
        let mut stack: Vec<Vec<String>> = vec![Vec::new()];
        while let Some(parts) = stack.pop() {
            let dir = if parts.is_empty() { root.clone() } else { format!("{root}/{}", parts.join("/")) };
            let children: Vec<String> = match self.inner.driver.list(&dir).await {
                Ok(paths) => paths.into_iter().filter_map(|p| p.rsplit('/').next().map(str::to_owned)).collect(),
                Err(e) if e.is_not_found() => Vec::new(),
                Err(e) => return Err(e.into()),
            };
            let is_after = |candidate: &[String]| {
                after.as_ref().is_none_or(|after| {
                    let candidate: Vec<&str> = candidate.iter().map(String::as_str).collect();
                    candidate.as_slice() > after.as_slice()
                })
            };
            if !parts.is_empty()
                && is_after(&parts)
                && let Ok(name) = parts.join("/").parse::<RepositoryName>()
                && !visit(&name, &children)
            {
                return Ok(());
            }
            let mut subfolders: Vec<Vec<String>> = children
                .iter()
                .filter(|child| !child.starts_with('_'))
                .map(|child| {
                    let mut child_parts = parts.clone();
                    child_parts.push(child.clone());
                    child_parts
                })
                .filter(|child| {
                    // Keep what comes after `after`, and the folders on the way to it.
                    is_after(child)
                        || after.as_ref().is_some_and(|after| {
                            after.len() >= child.len() && child.iter().zip(after.iter()).all(|(a, b)| a == b)
                        })
                })
                .collect();
            subfolders.sort();
            stack.extend(subfolders.into_iter().rev());
        }
        Ok(())
    }

    /// Every repository, including those with only uploads or layers.
    pub(crate) async fn all_repositories(&self) -> Result<Vec<RepositoryName>> {
        self.every_repository_folder(|children| children.iter().any(|c| c.starts_with('_'))).await
    }

    /// Every repository folder whose entries `keep` takes, in the order of their path
    /// components: the whole tree, one level at a time, each level's folders listed at once.
    async fn every_repository_folder(&self, keep: fn(&[String]) -> bool) -> Result<Vec<RepositoryName>> {
        let root = layout::repositories();
        let mut found: Vec<RepositoryName> = Vec::new();
        let mut level: Vec<Vec<String>> = vec![Vec::new()];
        while !level.is_empty() {
            let dirs: Vec<String> = level
                .iter()
                .map(|parts| if parts.is_empty() { root.clone() } else { format!("{root}/{}", parts.join("/")) })
                .collect();
            let lists = self.inner.driver.list_many(dirs).await?;
            let listed = level.into_iter().zip(lists).map(|(parts, children)| {
                let children: Vec<String> = children
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|p| p.rsplit('/').next().map(str::to_owned))
                    .collect();
                (parts, children)
            });
            let mut next = Vec::new();
            for (parts, children) in listed {
                if !parts.is_empty()
                    && keep(&children)
                    && let Ok(name) = parts.join("/").parse::<RepositoryName>()
                {
                    found.push(name);
                }
                for child in children.iter().filter(|child| !child.starts_with('_')) {
                    let mut child_parts = parts.clone();
                    child_parts.push(child.clone());
                    next.push(child_parts);
                }
            }
            level = next;
        }
        found.sort_by(|a, b| a.components().cmp(b.components()));
        Ok(found)
    }

    /// Removes uploads started more than `max_age` ago (Distribution's `uploadpurging`).
    /// Uploads whose start time cannot be read are left alone.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn purge_uploads(&self, max_age: std::time::Duration, dry_run: bool) -> Result<Vec<PurgedUpload>> {
        let cutoff = SystemTime::now().checked_sub(max_age).unwrap_or(SystemTime::UNIX_EPOCH);
        let mut purged = Vec::new();
        for repository in self.all_repositories().await? {
            let ids = match self.inner.driver.list(&layout::uploads(&repository)).await {
                Ok(paths) => paths,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            for path in ids {
                let Some(id) = path.rsplit('/').next() else {
                    continue;
                };
                let started = match self.inner.driver.get_content(&layout::upload_started_at(&repository, id)).await {
                    Ok(text) => humantime::parse_rfc3339_weak(String::from_utf8_lossy(&text).trim()).ok(),
                    Err(e) if e.is_not_found() => None,
                    Err(e) => return Err(e.into()),
                };
                let Some(started) = started.filter(|started| *started < cutoff) else {
                    continue;
                };
                if !dry_run {
                    match self.inner.driver.delete(&layout::upload_dir(&repository, id)).await {
                        Ok(()) => {}
                        Err(e) if e.is_not_found() => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                purged.push(PurgedUpload { repository: repository.clone(), id: id.to_owned(), started });
            }
        }
        Ok(purged)
    }

    /// The bytes of every blob stored, shared ones counted once.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn usage(&self) -> Result<u64> {
        let blobs = self.inner.driver.walk(&layout::blobs(), None);
        blobs
            .try_fold(0, |total, file| async move {
                Ok(if file.path.ends_with("/data") { total + file.size } else { total })
            })
            .await
            .map_err(Error::from)
    }

    pub(crate) async fn read_link(&self, path: &str) -> Result<Option<Digest>> {
        match self.inner.driver.get_content(path).await {
            Ok(content) => {
                let text = String::from_utf8_lossy(&content);
                let digest =
                    text.trim().parse().map_err(|source| Error::CorruptLink { path: path.to_owned(), source })?;
                Ok(Some(digest))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) async fn write_link(&self, path: &str, digest: &Digest) -> Result<()> {
        Ok(self.inner.driver.put_content(path, Bytes::from(digest.to_string())).await?)
    }

    pub(crate) async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        match self.inner.driver.stat(&layout::blob_data(digest)).await {
            Ok(info) if !info.is_dir => Ok(Some(info.size)),
            Ok(_) => Ok(None),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
