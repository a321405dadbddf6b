//! OCI image layout directories (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`), read and
//! written as skopeo does: images are found by their `org.opencontainers.image.ref.name`
//! annotation or by digest. Blobs land under a temporary name and are renamed into place
//! only once their bytes hash to their digest; `index.json` is replaced whole, under a lock
//! on the layout, so two copies into one layout at once keep both images.

use std::io::{Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt as _};
use tokio::io::AsyncWriteExt as _;
use wharf_oci::{Descriptor, Digest, Digester, Manifest, media_type};

use crate::address::LayoutImage;
use crate::error::{Error, Result};
use crate::push::BlobSource;

/// The annotation that names an image in a layout's index.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

const OCI_LAYOUT: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct Layout {
    dir: PathBuf,
}

fn layout_error(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Layout { path: path.display().to_string(), reason: reason.to_string() }
}

impl Layout {
    /// An existing layout.
    ///
    /// # Errors
    /// [`Error::Layout`] when `dir` has no readable `oci-layout` file.
    pub fn open(dir: &Path) -> Result<Layout> {
        let marker = dir.join("oci-layout");
        let text = std::fs::read(&marker).map_err(|e| layout_error(&marker, format!("not an OCI layout: {e}")))?;
        let version: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| layout_error(&marker, format!("not JSON: {e}")))?;
        if version.get("imageLayoutVersion").and_then(|v| v.as_str()).is_none() {
            return Err(layout_error(&marker, "no imageLayoutVersion"));
        }
        Ok(Layout { dir: dir.to_owned() })
    }

    /// The layout at `dir`, created (with an empty index) when it does not exist.
    ///
    /// # Errors
    /// [`Error::Layout`] when the folder cannot be created or holds something else.
    pub fn create(dir: &Path) -> Result<Layout> {
        std::fs::create_dir_all(dir.join("blobs")).map_err(|e| layout_error(dir, e))?;
        let marker = dir.join("oci-layout");
        if !marker.exists() {
            std::fs::write(&marker, OCI_LAYOUT).map_err(|e| layout_error(&marker, e))?;
        }
        let layout = Layout::open(dir)?;
        let index = dir.join("index.json");
        if !index.exists() {
            let empty =
                serde_json::json!({"schemaVersion": 2, "mediaType": media_type::OCI_IMAGE_INDEX, "manifests": []});
            write_replacing(&index, &serde_json::to_vec(&empty).map_err(|e| layout_error(&index, e))?)?;
        }
        Ok(layout)
    }

    /// The layout's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs").join(digest.algorithm().to_string()).join(digest.hex())
    }

    fn index(&self) -> Result<serde_json::Value> {
        let path = self.dir.join("index.json");
        let text = std::fs::read(&path).map_err(|e| layout_error(&path, e))?;
        let index: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| layout_error(&path, format!("not JSON: {e}")))?;
        if !index.get("manifests").is_some_and(serde_json::Value::is_array) {
            return Err(layout_error(&path, "no manifests array"));
        }
        Ok(index)
    }

    /// The descriptor of the image `image` names: by tag, by digest, or the layout's only
    /// image when `None`.
    ///
    /// # Errors
    /// [`Error::Layout`] when there is no such image (or several and none was named).
    pub fn resolve(&self, image: Option<&LayoutImage>) -> Result<Descriptor> {
        let path = self.dir.join("index.json");
        let index = self.index()?;
        let entries = index["manifests"].as_array().map(Vec::as_slice).unwrap_or_default();
        let found: Vec<&serde_json::Value> = entries
            .iter()
            .filter(|entry| match image {
                None => true,
                Some(LayoutImage::Tag(tag)) => entry["annotations"][REF_NAME].as_str() == Some(tag.as_str()),
                Some(LayoutImage::Digest(digest)) => entry["digest"].as_str() == Some(digest.as_str()),
            })
            .collect();
        let entry = match (found.as_slice(), image) {
            ([entry], _) | ([entry, ..], Some(LayoutImage::Digest(_))) => *entry,
            ([], _) => return Err(layout_error(&path, format!("no image {}", describe(image)))),
            (_, None) => return Err(layout_error(&path, "several images; name one by tag or digest")),
            (_, Some(_)) => return Err(layout_error(&path, format!("several images are {}", describe(image)))),
        };
        serde_json::from_value::<Descriptor>(entry.clone())
            .map_err(|e| layout_error(&path, format!("a bad descriptor: {e}")))
    }

    /// The manifests the index lists whose `subject` is `subject`.
    ///
    /// # Errors
    /// [`Error::Layout`] when the index or a listed manifest cannot be read.
    pub fn referrers(&self, subject: &Digest, limit: u64) -> Result<Vec<Descriptor>> {
        let index = self.index()?;
        let mut found = Vec::new();
        for entry in index["manifests"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let Ok(descriptor) = serde_json::from_value::<Descriptor>(entry.clone()) else { continue };
            if !self.has_blob(&descriptor.digest, descriptor.size) {
                continue;
            }
            let manifest = self.manifest(&descriptor, limit)?;
            if manifest.subject().is_some_and(|s| &s.digest == subject) {
                found.push(descriptor);
            }
        }
        Ok(found)
    }

    /// Whether the layout holds blob `digest` with `size` bytes.
    pub fn has_blob(&self, digest: &Digest, size: u64) -> bool {
        std::fs::metadata(self.blob_path(digest)).is_ok_and(|m| m.len() == size)
    }

    /// The manifest `descriptor` names, checked against its digest.
    ///
    /// # Errors
    /// [`Error::Layout`] when it is missing or not a manifest; [`Error::DigestMismatch`].
    pub fn manifest(&self, descriptor: &Descriptor, limit: u64) -> Result<Manifest> {
        let path = self.blob_path(&descriptor.digest);
        let bytes = self.small_blob(&descriptor.digest, limit)?;
        Manifest::parse(bytes, Some(&descriptor.media_type)).map_err(|e| layout_error(&path, e))
    }

    /// A small blob read whole and checked against its digest.
    ///
    /// # Errors
    /// [`Error::Layout`] when it is missing, [`Error::TooLarge`], [`Error::DigestMismatch`].
    pub fn small_blob(&self, digest: &Digest, limit: u64) -> Result<Bytes> {
        let path = self.blob_path(digest);
        let length = std::fs::metadata(&path).map_err(|e| layout_error(&path, e))?.len();
        if length > limit {
            return Err(Error::TooLarge { what: path.display().to_string(), limit });
        }
        let bytes = Bytes::from(std::fs::read(&path).map_err(|e| layout_error(&path, e))?);
        let actual = Digest::compute(digest.algorithm(), &bytes);
        if &actual != digest {
            return Err(Error::DigestMismatch {
                what: path.display().to_string(),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    /// The bytes of blob `descriptor`, to push elsewhere.
    pub fn blob(&self, descriptor: &Descriptor) -> LayoutBlob {
        LayoutBlob { path: self.blob_path(&descriptor.digest) }
    }

    /// Writes blob `descriptor` from `stream`, kept only when its bytes hash to its digest
    /// and number its size; nothing is left behind otherwise.
    ///
    /// # Errors
    /// [`Error::DigestMismatch`], [`Error::TooLarge`], the stream's own errors, and
    /// [`Error::Layout`] for files that cannot be written.
    pub async fn write_blob(
        &self,
        descriptor: &Descriptor,
        mut stream: impl Stream<Item = Result<Bytes>> + Unpin,
    ) -> Result<u64> {
        let path = self.blob_path(&descriptor.digest);
        let folder = path.parent().unwrap_or(&self.dir).to_owned();
        tokio::fs::create_dir_all(&folder).await.map_err(|e| layout_error(&folder, e))?;
        let temporary =
            tempfile::Builder::new().prefix(".partial-").tempfile_in(&folder).map_err(|e| layout_error(&folder, e))?;
        let (file, temporary_path) = temporary.into_parts();
        let mut file = tokio::fs::File::from_std(file);
        let mut digester = Digester::new(descriptor.digest.algorithm());
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            written = written.checked_add(chunk.len() as u64).filter(|&w| w <= descriptor.size).ok_or_else(|| {
                Error::TooLarge {
                    what: format!("blob {} for {}", descriptor.digest, self.dir.display()),
                    limit: descriptor.size,
                }
            })?;
            digester.update(&chunk);
            file.write_all(&chunk).await.map_err(|e| layout_error(&temporary_path, e))?;
        }
        let actual = digester.finalize();
        if actual != descriptor.digest || written != descriptor.size {
            return Err(Error::DigestMismatch {
                what: format!("blob written to {}", self.dir.display()),
                expected: format!("{} ({} bytes)", descriptor.digest, descriptor.size),
                actual: format!("{actual} ({written} bytes)"),
            });
        }
        file.sync_all().await.map_err(|e| layout_error(&temporary_path, e))?;
        drop(file);
        temporary_path.persist(&path).map_err(|e| layout_error(&path, e.error))?;
        Ok(written)
    }

    /// Writes a manifest's exact bytes as a blob.
    ///
    /// # Errors
    /// As for [`Layout::write_blob`].
    pub async fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        let descriptor = manifest.descriptor();
        if !self.has_blob(&descriptor.digest, descriptor.size) {
            let raw = manifest.raw().clone();
            self.write_blob(&descriptor, futures::stream::once(async move { Ok(raw) }).boxed()).await?;
        }
        Ok(())
    }

    /// Names `descriptor` in `index.json`: under `tag` (replacing the image that had it), or
    /// by digest alone when `tag` is `None` (once). Holds the layout's lock while it reads
    /// and replaces the index.
    ///
    /// # Errors
    /// [`Error::Layout`] when the index cannot be read, locked or replaced.
    pub fn add_to_index(&self, descriptor: &Descriptor, tag: Option<&str>) -> Result<()> {
        let lock_path = self.dir.join(".index.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| layout_error(&lock_path, e))?;
        lock.lock().map_err(|e| layout_error(&lock_path, e))?;
        let mut index = self.index()?;
        let entries = index["manifests"].as_array_mut().ok_or_else(|| layout_error(&self.dir, "no manifests array"))?;
        let mut entry = serde_json::to_value(descriptor).map_err(|e| layout_error(&self.dir, e))?;
        match tag {
            Some(tag) => {
                entries.retain(|e| e["annotations"][REF_NAME].as_str() != Some(tag));
                entry["annotations"][REF_NAME] = serde_json::Value::from(tag);
                entries.push(entry);
            }
            None => {
                if !entries.iter().any(|e| e["digest"].as_str() == Some(descriptor.digest.as_str())) {
                    entries.push(entry);
                }
            }
        }
        let path = self.dir.join("index.json");
        write_replacing(&path, &serde_json::to_vec(&index).map_err(|e| layout_error(&path, e))?)?;
        drop(lock);
        Ok(())
    }
}

fn describe(image: Option<&LayoutImage>) -> String {
    match image {
        None => "at all".into(),
        Some(LayoutImage::Tag(tag)) => format!("tagged {tag}"),
        Some(LayoutImage::Digest(digest)) => format!("with digest {digest}"),
    }
}

/// Replaces `path` with `bytes` at once: a temporary file beside it, synced, renamed over.
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let folder = path.parent().unwrap_or(Path::new("."));
    let mut temporary = tempfile::NamedTempFile::new_in(folder).map_err(|e| layout_error(folder, e))?;
    temporary.write_all(bytes).map_err(|e| layout_error(path, e))?;
    temporary.as_file().sync_all().map_err(|e| layout_error(path, e))?;
    temporary.persist(path).map_err(|e| layout_error(path, e.error))?;
    Ok(())
}

/// A blob file of a layout, as the source of a push.
#[derive(Debug, Clone)]
pub struct LayoutBlob {
    path: PathBuf,
}

impl BlobSource for LayoutBlob {
    fn open(&self, offset: u64) -> BoxFuture<'_, Result<BoxStream<'static, Result<Bytes>>>> {
        Box::pin(async move {
            let path = self.path.clone();
            let mut file = std::fs::File::open(&path).map_err(|e| layout_error(&path, e))?;
            file.seek(SeekFrom::Start(offset)).map_err(|e| layout_error(&path, e))?;
            let reader = tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(file), 256 << 10);
            Ok(reader.map(move |chunk| chunk.map_err(|e| layout_error(&path, e))).boxed())
        })
    }
}
