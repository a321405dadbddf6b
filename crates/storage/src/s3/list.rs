//! Listings a page at a time, and deletions of what they find.

use super::*;

impl Inner {
    /// The pages of ListObjectsV2 below `prefix` (grouped at `/` with `delimited`), fetched
    /// as the stream is read.
    pub(super) fn object_pages(
        &self,
        prefix: &str,
        delimited: bool,
        start_after: Option<String>,
    ) -> BoxStream<'static, Result<ListObjectsV2Output>> {
        let pages = self
            .client
            .list_objects_v2()
            .bucket(&self.config.bucket)
            .prefix(prefix)
            .set_delimiter(delimited.then(|| "/".to_owned()))
            .set_start_after(start_after)
            .into_paginator()
            .send();
        let prefix = prefix.to_owned();
        stream::unfold(pages, |mut pages| async move { pages.next().await.map(|page| (page, pages)) })
            .map_err(move |e| backend("list", &prefix, e))
            .boxed()
    }

    /// Whether there is an object at `key`, and whether there are objects below `key/`: one
    /// listing of the name (its siblings sharing the name as a prefix come one per name).
    pub(super) async fn names(&self, key: &str) -> Result<(bool, bool)> {
        let below = format!("{key}/");
        let (mut at, mut under) = (false, false);
        let mut pages = self.object_pages(key, true, None);
        while let Some(page) = pages.try_next().await? {
            at |= page.contents().iter().any(|o| o.key() == Some(key));
            under |= page.common_prefixes().iter().any(|p| p.prefix() == Some(below.as_str()));
            // Keys come sorted: past `key/`, neither can turn up.
            let last = page
                .contents()
                .iter()
                .filter_map(|o| o.key())
                .chain(page.common_prefixes().iter().filter_map(|p| p.prefix()))
                .max();
            if under || last.is_some_and(|last| last > below.as_str()) {
                break;
            }
        }
        Ok((at, under))
    }

    /// Deletes `key` if `at`, and every key below `key/` if `below`, a page at a time.
    pub(super) async fn delete_tree(&self, path: &str, key: &str, at: bool, below: bool) -> Result<()> {
        if at {
            self.delete_keys(path, vec![key.to_owned()]).await?;
        }
        if below {
            let mut pages = self.object_pages(&format!("{key}/"), false, None);
            while let Some(page) = pages.try_next().await? {
                let keys: Vec<String> = page.contents().iter().filter_map(|o| o.key()).map(str::to_owned).collect();
                self.delete_keys(path, keys).await?;
            }
        }
        Ok(())
    }

    /// Deletes `keys` with DeleteObjects, up to a thousand a request.
    pub(super) async fn delete_keys(&self, path: &str, keys: Vec<String>) -> Result<()> {
        for batch in keys.chunks(DELETE_BATCH) {
            let objects = batch
                .iter()
                .map(|key| ObjectIdentifier::builder().key(key).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::backend(NAME, "delete", path, e))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| Error::backend(NAME, "delete", path, e))?;
            let output = self
                .client
                .delete_objects()
                .bucket(&self.config.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| backend("delete", path, e))?;
            if let Some(failed) = output.errors().first() {
                return Err(Error::backend(
                    NAME,
                    "delete",
                    path,
                    format!("{}: {}", failed.key().unwrap_or("?"), failed.message().unwrap_or("refused")),
                ));
            }
        }
        Ok(())
    }
}
