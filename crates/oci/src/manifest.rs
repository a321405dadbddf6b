//! Manifests parsed from the exact bytes that were pushed: OCI image manifests and indexes,
//! Docker schema 2 manifests and manifest lists, and artifacts (`subject`, `artifactType`).
//!
//! The raw bytes are the truth. A [`Manifest`] reads what it needs out of them and keeps them
//! untouched, because re-serialising would change the digest (field order, whitespace,
//! unknown fields).

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::digest::{Algorithm, Digest};
use crate::error::{Error, Result};
use crate::media_type;

/// The largest manifest a registry should accept, 4 MiB, as Distribution and the OCI spec's
/// conformance suite expect. [`Manifest::parse`] does not enforce it: callers reading a request
/// body stop at this size before parsing.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// The OCI platform object (`architecture`, `os`, variants and features), from `oci-spec`.
pub use oci_spec::image::Platform;

/// A content descriptor: what a manifest says about each piece of content it points to.
///
/// `oci-spec` has a `Descriptor` too; this one holds a validated [`Digest`] (sha256 or sha512
/// only) and keeps annotations ordered, so a registry can index and re-emit it
/// deterministically. Conversions to and from the `oci-spec` type are provided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Descriptor {
    /// The media type of the content pointed to.
    pub media_type: String,
    /// The digest of the content.
    pub digest: Digest,
    /// The size of the content in bytes.
    pub size: u64,
    /// Other places the content can be fetched from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// The platform an index entry is for.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "platform_fields")]
    pub platform: Option<Platform>,
    /// The artifact type of the content, when it is an artifact manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The content itself, base64-encoded, for small blobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

impl Descriptor {
    /// A descriptor with only the three required fields.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            urls: None,
            annotations: None,
            platform: None,
            artifact_type: None,
            data: None,
        }
    }

    /// Checks the rules of the image spec that parsing alone does not: a well-formed media type
    /// and artifact type, a size Go and Java clients can represent, embedded `data` that matches
    /// the digest and size, and the sizes of the well-known empty contents.
    fn validate(&self, at: &str) -> Result<()> {
        let invalid = |reason: String| Error::InvalidManifest { reason: format!("{at}: {reason}") };
        if !media_type::is_well_formed(&self.media_type) {
            return Err(invalid(format!("mediaType {:?} is not a valid media type", self.media_type)));
        }
        if let Some(artifact_type) = &self.artifact_type
            && !media_type::is_well_formed(artifact_type)
        {
            return Err(invalid(format!("artifactType {artifact_type:?} is not a valid media type")));
        }
        if self.size > i64::MAX as u64 {
            return Err(invalid(format!("size {} is larger than the largest allowed, {}", self.size, i64::MAX)));
        }
        let known_size = match self.digest.as_str() {
            media_type::OCI_EMPTY_DIGEST => Some(2),
            EMPTY_SHA256 | EMPTY_SHA512 => Some(0),
            _ => None,
        };
        if let Some(expected) = known_size.filter(|&expected| expected != self.size) {
            return Err(invalid(format!(
                "size {} does not match the content of digest {}, which is {expected} bytes",
                self.size, self.digest
            )));
        }
        if let Some(data) = &self.data {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| invalid(format!("data is not valid base64: {e}")))?;
            if decoded.len() as u64 != self.size {
                return Err(invalid(format!("data holds {} bytes but size says {}", decoded.len(), self.size)));
            }
            self.digest.verify(&decoded).map_err(|e| invalid(format!("data does not match: {e}")))?;
        }
        Ok(())
    }
}

const EMPTY_SHA256: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const EMPTY_SHA512: &str = "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e";

impl From<Descriptor> for oci_spec::image::Descriptor {
    fn from(d: Descriptor) -> Self {
        let mut out = oci_spec::image::Descriptor::new(
            oci_spec::image::MediaType::from(d.media_type.as_str()),
            d.size,
            oci_spec::image::Digest::try_from(d.digest.as_str())
                .unwrap_or_else(|_| unreachable!("a validated sha256/sha512 digest is a valid OCI digest")),
        );
        out.set_urls(d.urls);
        out.set_annotations(d.annotations.map(|a| a.into_iter().collect()));
        out.set_platform(d.platform);
        out.set_artifact_type(d.artifact_type.map(|t| oci_spec::image::MediaType::from(t.as_str())));
        out.set_data(d.data);
        out
    }
}

impl TryFrom<oci_spec::image::Descriptor> for Descriptor {
    type Error = Error;

    fn try_from(d: oci_spec::image::Descriptor) -> Result<Self> {
        Ok(Descriptor {
            media_type: d.media_type().to_string(),
            digest: d.digest().as_ref().parse()?,
            size: d.size(),
            urls: d.urls().clone(),
            annotations: d.annotations().clone().map(|a| a.into_iter().collect()),
            platform: d.platform().clone(),
            artifact_type: d.artifact_type().as_ref().map(ToString::to_string),
            data: d.data().clone(),
        })
    }
}

/// The four kinds of manifest a registry stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ManifestKind {
    /// `application/vnd.oci.image.manifest.v1+json` (images and artifacts).
    OciImage,
    /// `application/vnd.oci.image.index.v1+json`.
    OciIndex,
    /// `application/vnd.docker.distribution.manifest.v2+json`.
    DockerImage,
    /// `application/vnd.docker.distribution.manifest.list.v2+json`.
    DockerManifestList,
}

impl ManifestKind {
    /// The media type that names this kind.
    pub const fn media_type(self) -> &'static str {
        match self {
            ManifestKind::OciImage => media_type::OCI_IMAGE_MANIFEST,
            ManifestKind::OciIndex => media_type::OCI_IMAGE_INDEX,
            ManifestKind::DockerImage => media_type::DOCKER_MANIFEST,
            ManifestKind::DockerManifestList => media_type::DOCKER_MANIFEST_LIST,
        }
    }

    /// The kind a media type names, if it names a supported manifest.
    pub fn from_media_type(media_type: &str) -> Option<ManifestKind> {
        [ManifestKind::OciImage, ManifestKind::OciIndex, ManifestKind::DockerImage, ManifestKind::DockerManifestList]
            .into_iter()
            .find(|kind| kind.media_type() == media_type)
    }

    /// Whether this kind lists other manifests (an index or manifest list) rather than layers.
    pub const fn is_index(self) -> bool {
        matches!(self, ManifestKind::OciIndex | ManifestKind::DockerManifestList)
    }
}

/// The fields of every supported manifest kind, all optional: which are required depends on
/// the kind, which is only known once `mediaType` and the content type are compared.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    schema_version: Option<i64>,
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    artifact_type: Option<String>,
    annotations: Option<BTreeMap<String, String>>,
}

/// A parsed manifest that keeps the exact bytes it came from.
///
/// ```
/// use wharf_oci::{Manifest, ManifestKind, media_type};
///
/// let raw = br#"{
///   "schemaVersion": 2,
///   "mediaType": "application/vnd.oci.image.manifest.v1+json",
///   "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2,
///              "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
///   "layers": [],
///   "x-unknown-field": "kept"
/// }"#;
/// let manifest = Manifest::parse(&raw[..], Some(media_type::OCI_IMAGE_MANIFEST))?;
/// assert_eq!(manifest.kind(), ManifestKind::OciImage);
/// assert_eq!(manifest.raw(), &raw[..]);
/// assert_eq!(manifest.references().count(), 1);
/// assert_eq!(manifest.digest(), &wharf_oci::Digest::sha256(raw));
/// # Ok::<(), wharf_oci::Error>(())
/// ```
#[derive(Clone)]
pub struct Manifest {
    raw: Bytes,
    kind: ManifestKind,
    media_type: MediaTypeSource,
    digest: Digest,
    config: Option<Descriptor>,
    layers: Vec<Descriptor>,
    manifests: Vec<Descriptor>,
    subject: Option<Descriptor>,
    artifact_type: Option<String>,
    annotations: BTreeMap<String, String>,
}

/// Where the media type came from: the document's own field is returned as written.
#[derive(Clone)]
enum MediaTypeSource {
    Document(String),
    Kind,
}

/// Content types that say nothing about the manifest kind; the document decides.
const GENERIC_CONTENT_TYPES: [&str; 3] = ["", "application/json", "application/octet-stream"];

impl Manifest {
    /// Parses a manifest from its raw bytes and, when known, the content type it was sent
    /// with (an HTTP `Content-Type`; parameters are ignored).
    ///
    /// The kind comes from the document's `mediaType` and the content type; when they name
    /// different kinds the manifest is refused. Without either, a document with `manifests`
    /// is an OCI index and one with `config` an OCI image manifest, as the OCI spec allows.
    ///
    /// # Errors
    /// - [`Error::UnsupportedManifest`] for Docker schema 1 and media types that are not manifests;
    /// - [`Error::MediaTypeConflict`] when the document and the content type disagree;
    /// - [`Error::InvalidManifest`] for malformed JSON, `schemaVersion` other than 2, missing
    ///   or misplaced fields, and descriptors with bad digests, sizes or media types (the
    ///   message names the field, e.g. `layers[2].digest`).
    pub fn parse(bytes: impl Into<Bytes>, content_type: Option<&str>) -> Result<Manifest> {
        let raw = bytes.into();
        let declared = declared_kind(content_type)?;

        if raw.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(invalid("a manifest must be a JSON object".into()));
        }
        // serde_json skips unknown fields without checking their strings are UTF-8, and JSON
        // must be: check the whole document first.
        let text = std::str::from_utf8(&raw).map_err(|e| {
            invalid(format!("a manifest must be UTF-8 JSON: invalid byte at offset {}", e.valid_up_to()))
        })?;
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let document: Document = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." || path == "?" {
                invalid(format!("malformed JSON: {inner}"))
            } else {
                invalid(format!("{path}: {inner}"))
            }
        })?;
        deserializer.end().map_err(|e| invalid(format!("trailing characters after the JSON object: {e}")))?;

        let document_kind = match document.media_type.as_deref() {
            Some(t) if media_type::is_schema1(t) => return Err(schema1()),
            Some(t) => Some(ManifestKind::from_media_type(t).ok_or_else(|| Error::UnsupportedManifest {
                reason: format!("mediaType {t:?} is not a manifest media type"),
            })?),
            None => None,
        };
        match document.schema_version {
            Some(2) => {}
            Some(1) => return Err(schema1()),
            Some(other) => return Err(invalid(format!("schemaVersion must be 2, not {other}"))),
            None => return Err(invalid("schemaVersion is missing".into())),
        }
        let kind = match (document_kind, declared) {
            (Some(document_kind), Some(declared)) if document_kind != declared => {
                return Err(Error::MediaTypeConflict {
                    document: document_kind.media_type().to_owned(),
                    content_type: declared.media_type().to_owned(),
                });
            }
            (Some(kind), _) | (None, Some(kind)) => kind,
            (None, None) if document.manifests.is_some() && document.config.is_some() => {
                return Err(invalid(
                    "no mediaType, and both config and manifests: cannot tell an image from an index".into(),
                ));
            }
            (None, None) if document.manifests.is_some() => ManifestKind::OciIndex,
            (None, None) if document.config.is_some() => ManifestKind::OciImage,
            (None, None) => {
                return Err(invalid(
                    "no mediaType and no content type, and neither config nor manifests to tell the kind".into(),
                ));
            }
        };

        let Document { media_type, config, layers, manifests, subject, artifact_type, annotations, .. } = document;
        let (config, layers, manifests) = if kind.is_index() {
            if config.is_some() || layers.is_some() {
                return Err(invalid(format!("{} cannot have config or layers", kind.media_type())));
            }
            let manifests = manifests.ok_or_else(|| invalid("manifests is missing".into()))?;
            (None, Vec::new(), manifests)
        } else {
            if manifests.is_some() {
                return Err(invalid(format!("{} cannot have manifests", kind.media_type())));
            }
            let config = config.ok_or_else(|| invalid("config is missing".into()))?;
            let layers = layers.ok_or_else(|| invalid("layers is missing".into()))?;
            (Some(config), layers, Vec::new())
        };
        if let Some(artifact_type) = &artifact_type
            && !media_type::is_well_formed(artifact_type)
        {
            return Err(invalid(format!("artifactType {artifact_type:?} is not a valid media type")));
        }

        if let Some(config) = &config {
            config.validate("config")?;
        }
        for (i, layer) in layers.iter().enumerate() {
            layer.validate(&format!("layers[{i}]"))?;
        }
        for (i, child) in manifests.iter().enumerate() {
            child.validate(&format!("manifests[{i}]"))?;
        }
        if let Some(subject) = &subject {
            subject.validate("subject")?;
        }

        Ok(Manifest {
            digest: Digest::sha256(&raw),
            raw,
            kind,
            media_type: media_type.map_or(MediaTypeSource::Kind, MediaTypeSource::Document),
            config,
            layers,
            manifests,
            subject,
            artifact_type,
            annotations: annotations.unwrap_or_default(),
        })
    }

    /// The exact bytes the manifest was parsed from.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Which of the four manifest kinds this is.
    pub fn kind(&self) -> ManifestKind {
        self.kind
    }

    /// The manifest's media type: its `mediaType` field, or the kind's media type when the
    /// document has none.
    pub fn media_type(&self) -> &str {
        match &self.media_type {
            MediaTypeSource::Document(media_type) => media_type,
            MediaTypeSource::Kind => self.kind.media_type(),
        }
    }

    /// The sha256 digest of the raw bytes, the manifest's canonical address.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The digest of the raw bytes with another algorithm (for pushes addressed by sha512).
    pub fn digest_with(&self, algorithm: Algorithm) -> Digest {
        match algorithm {
            Algorithm::Sha256 => self.digest.clone(),
            other => Digest::compute(other, &self.raw),
        }
    }

    /// The config descriptor of an image manifest; `None` for an index.
    pub fn config(&self) -> Option<&Descriptor> {
        self.config.as_ref()
    }

    /// The layers of an image manifest (empty for an index).
    pub fn layers(&self) -> &[Descriptor] {
        &self.layers
    }

    /// The child manifests of an index or manifest list (empty for an image manifest).
    pub fn manifests(&self) -> &[Descriptor] {
        &self.manifests
    }

    /// The manifest this one refers to (signatures, SBOMs and other OCI 1.1 referrers).
    pub fn subject(&self) -> Option<&Descriptor> {
        self.subject.as_ref()
    }

    /// The `artifactType` field as written.
    pub fn artifact_type(&self) -> Option<&str> {
        self.artifact_type.as_deref()
    }

    /// The artifact type a referrers listing reports for this manifest: `artifactType`, else
    /// the config's media type (an index without `artifactType` has none).
    pub fn effective_artifact_type(&self) -> Option<&str> {
        self.artifact_type().or_else(|| self.config.as_ref().map(|c| c.media_type.as_str()))
    }

    /// The manifest's annotations.
    pub fn annotations(&self) -> &BTreeMap<String, String> {
        &self.annotations
    }

    /// Every descriptor the manifest points to: config, layers, child manifests and subject.
    pub fn references(&self) -> impl Iterator<Item = &Descriptor> {
        self.config.iter().chain(&self.layers).chain(&self.manifests).chain(&self.subject)
    }

    /// A descriptor of this manifest, for an index or a referrers listing.
    pub fn descriptor(&self) -> Descriptor {
        let mut descriptor = Descriptor::new(self.media_type(), self.digest.clone(), self.raw.len() as u64);
        descriptor.artifact_type = self.effective_artifact_type().map(str::to_owned);
        if !self.annotations.is_empty() {
            descriptor.annotations = Some(self.annotations.clone());
        }
        descriptor
    }
}

impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manifest")
            .field("kind", &self.kind)
            .field("digest", &self.digest)
            .field("size", &self.raw.len())
            .field("references", &self.references().count())
            .finish()
    }
}

fn declared_kind(content_type: Option<&str>) -> Result<Option<ManifestKind>> {
    let Some(content_type) = content_type.map(media_type::essence) else {
        return Ok(None);
    };
    if media_type::is_schema1(content_type) {
        return Err(schema1());
    }
    if GENERIC_CONTENT_TYPES.contains(&content_type) {
        return Ok(None);
    }
    ManifestKind::from_media_type(content_type).map(Some).ok_or_else(|| Error::UnsupportedManifest {
        reason: format!("content type {content_type:?} is not a manifest media type"),
    })
}

fn invalid(reason: String) -> Error {
    Error::InvalidManifest { reason }
}

fn schema1() -> Error {
    Error::UnsupportedManifest {
        reason: "Docker schema 1 manifests are not supported; push the image again with a current client \
                 to get schema 2 or OCI"
            .into(),
    }
}

/// The platform object as the image spec spells it. `oci-spec`'s own serde names two fields
/// `os_version` and `os_features` where the spec (and every registry) writes `os.version` and
/// `os.features`, so a platform goes through these fields instead.
mod platform_fields {
    use oci_spec::image::{Arch, Os, Platform};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Fields {
        architecture: String,
        os: String,
        #[serde(rename = "os.version", default, skip_serializing_if = "Option::is_none")]
        os_version: Option<String>,
        #[serde(rename = "os.features", default, skip_serializing_if = "Option::is_none")]
        os_features: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        variant: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        features: Option<Vec<String>>,
    }

    pub(super) fn serialize<S: Serializer>(platform: &Option<Platform>, serializer: S) -> Result<S::Ok, S::Error> {
        platform
            .as_ref()
            .map(|p| Fields {
                architecture: p.architecture().to_string(),
                os: p.os().to_string(),
                os_version: p.os_version().clone(),
                os_features: p.os_features().clone(),
                variant: p.variant().clone(),
                features: p.features().clone(),
            })
            .serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Platform>, D::Error> {
        Ok(Option::<Fields>::deserialize(deserializer)?.map(|fields| {
            let mut platform = Platform::default();
            platform
                .set_architecture(Arch::from(fields.architecture.as_str()))
                .set_os(Os::from(fields.os.as_str()))
                .set_os_version(fields.os_version)
                .set_os_features(fields.os_features)
                .set_variant(fields.variant)
                .set_features(fields.features);
            platform
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media_type::*;

    fn digest_of(s: &str) -> Digest {
        Digest::sha256(s.as_bytes())
    }

    fn descriptor_json(media_type: &str, content: &str) -> String {
        format!(r#"{{"mediaType":"{media_type}","digest":"{}","size":{}}}"#, digest_of(content), content.len())
    }

    fn image(media_type: Option<&str>) -> String {
        let media_type = media_type.map(|t| format!(r#""mediaType":"{t}","#)).unwrap_or_default();
        format!(
            r#"{{"schemaVersion":2,{media_type}"config":{},"layers":[{},{}]}}"#,
            descriptor_json(OCI_IMAGE_CONFIG, "config"),
            descriptor_json(OCI_LAYER_TAR_GZIP, "layer one"),
            descriptor_json(OCI_LAYER_TAR_GZIP, "layer two"),
        )
    }

    fn index(media_type: Option<&str>) -> String {
        let media_type = media_type.map(|t| format!(r#""mediaType":"{t}","#)).unwrap_or_default();
        format!(
            r#"{{"schemaVersion":2,{media_type}"manifests":[{}]}}"#,
            descriptor_json(OCI_IMAGE_MANIFEST, "child").replacen(
                '}',
                r#","platform":{"architecture":"amd64","os":"linux"}}"#,
                1
            ),
        )
    }

    fn error(raw: &str, content_type: Option<&str>) -> Error {
        match Manifest::parse(raw.to_owned(), content_type) {
            Ok(m) => panic!("{raw} should be refused, parsed as {m:?}"),
            Err(e) => e,
        }
    }

    fn invalid_reason(raw: &str, content_type: Option<&str>) -> String {
        match error(raw, content_type) {
            Error::InvalidManifest { reason } => reason,
            other => panic!("{raw}: expected InvalidManifest, got {other}"),
        }
    }

    #[test]
    fn platforms_keep_the_specs_dotted_fields() {
        let raw = index(Some(OCI_IMAGE_INDEX)).replace(
            r#""os":"linux"}"#,
            r#""os":"windows","os.version":"10.0.17763.6659","os.features":["win32k"],"variant":"v1"}"#,
        );
        let manifest = Manifest::parse(raw, None).unwrap();
        let platform = manifest.manifests()[0].platform.as_ref().unwrap();
        assert_eq!(platform.os().to_string(), "windows");
        assert_eq!(platform.os_version().as_deref(), Some("10.0.17763.6659"));
        assert_eq!(platform.os_features().as_deref(), Some(&["win32k".to_owned()][..]));
        assert_eq!(platform.variant().as_deref(), Some("v1"));
        let written = serde_json::to_value(&manifest.manifests()[0]).unwrap();
        assert_eq!(
            written["platform"],
            serde_json::json!({"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.6659",
                "os.features": ["win32k"], "variant": "v1"})
        );
        let again: Descriptor = serde_json::from_value(written).unwrap();
        assert_eq!(&again, &manifest.manifests()[0]);
    }

    #[test]
    fn recognises_each_kind_from_document_or_content_type() {
        let cases = [
            (image(Some(OCI_IMAGE_MANIFEST)), None, ManifestKind::OciImage),
            (image(None), Some(OCI_IMAGE_MANIFEST), ManifestKind::OciImage),
            (image(None), None, ManifestKind::OciImage),
            (image(Some(DOCKER_MANIFEST)), Some(DOCKER_MANIFEST), ManifestKind::DockerImage),
            (image(Some(DOCKER_MANIFEST)), Some("application/json"), ManifestKind::DockerImage),
            (index(Some(OCI_IMAGE_INDEX)), Some(OCI_IMAGE_INDEX), ManifestKind::OciIndex),
            (index(None), None, ManifestKind::OciIndex),
            (index(Some(DOCKER_MANIFEST_LIST)), None, ManifestKind::DockerManifestList),
            (index(None), Some(&format!("{DOCKER_MANIFEST_LIST}; charset=utf-8")), ManifestKind::DockerManifestList),
        ];
        for (raw, content_type, kind) in cases {
            let manifest = Manifest::parse(raw.clone(), content_type).unwrap();
            assert_eq!(manifest.kind(), kind, "{raw}");
            assert_eq!(manifest.media_type(), kind.media_type());
            assert_eq!(manifest.raw(), raw.as_bytes());
            assert_eq!(manifest.digest(), &digest_of(&raw));
        }
    }

    #[test]
    fn exposes_descriptors() {
        let manifest = Manifest::parse(image(None), None).unwrap();
        assert_eq!(manifest.config().unwrap().digest, digest_of("config"));
        assert_eq!(manifest.layers().len(), 2);
        assert_eq!(manifest.layers()[1].size, 9);
        assert!(manifest.manifests().is_empty());
        let digests: Vec<_> = manifest.references().map(|d| d.digest.clone()).collect();
        assert_eq!(digests, [digest_of("config"), digest_of("layer one"), digest_of("layer two")]);
        assert_eq!(manifest.effective_artifact_type(), Some(OCI_IMAGE_CONFIG));

        let index = Manifest::parse(index(None), None).unwrap();
        assert!(index.config().is_none() && index.layers().is_empty());
        assert_eq!(index.manifests()[0].platform.as_ref().unwrap().os().to_string(), "linux");
        assert_eq!(index.references().count(), 1);
        assert_eq!(index.effective_artifact_type(), None);
    }

    #[test]
    fn artifacts_with_subject() {
        let raw = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_IMAGE_MANIFEST}","artifactType":"application/vnd.example.sbom",
               "config":{},"layers":[{}],"subject":{},"annotations":{{"org.example":"yes"}}}}"#,
            descriptor_json(OCI_EMPTY, "{}"),
            descriptor_json("application/spdx+json", "sbom"),
            descriptor_json(OCI_IMAGE_MANIFEST, "the image"),
        );
        let manifest = Manifest::parse(raw.clone(), None).unwrap();
        assert_eq!(manifest.artifact_type(), Some("application/vnd.example.sbom"));
        assert_eq!(manifest.subject().unwrap().digest, digest_of("the image"));
        assert_eq!(manifest.references().count(), 3);
        assert_eq!(manifest.references().last().unwrap().digest, digest_of("the image"));
        let descriptor = manifest.descriptor();
        assert_eq!(descriptor.digest, digest_of(&raw));
        assert_eq!(descriptor.size, raw.len() as u64);
        assert_eq!(descriptor.artifact_type.as_deref(), Some("application/vnd.example.sbom"));
        assert_eq!(descriptor.annotations.unwrap()["org.example"], "yes");
    }

    #[test]
    fn unknown_fields_survive_in_raw() {
        let raw = image(None).replacen('{', r#"{"zzz":{"nested":[1,2]}, "aaa":true,"#, 1);
        let manifest = Manifest::parse(raw.clone(), None).unwrap();
        assert_eq!(manifest.raw(), raw.as_bytes());
        assert_eq!(manifest.digest(), &digest_of(&raw));
    }

    #[test]
    fn sha512_digests_in_descriptors_and_of_the_manifest() {
        let raw = image(None).replace(&digest_of("config").to_string(), Digest::sha512(b"config").as_str());
        let manifest = Manifest::parse(raw.clone(), None).unwrap();
        assert_eq!(manifest.config().unwrap().digest.algorithm(), Algorithm::Sha512);
        assert_eq!(manifest.digest_with(Algorithm::Sha512), Digest::sha512(raw.as_bytes()));
    }

    #[test]
    fn schema1_is_refused_with_a_message() {
        let schema1_doc = r#"{"schemaVersion":1,"name":"a","tag":"b","fsLayers":[]}"#;
        for (raw, content_type) in [
            (schema1_doc, None),
            (schema1_doc, Some(DOCKER_SCHEMA1_SIGNED_MANIFEST)),
            (&image(None) as &str, Some(DOCKER_SCHEMA1_MANIFEST)),
        ] {
            match error(raw, content_type) {
                Error::UnsupportedManifest { reason } => {
                    assert!(reason.contains("schema 1"), "{reason}");
                }
                other => panic!("{other}"),
            }
        }
        let with_type = format!(r#"{{"schemaVersion":1,"mediaType":"{DOCKER_SCHEMA1_MANIFEST}"}}"#);
        assert!(matches!(error(&with_type, None), Error::UnsupportedManifest { .. }));
    }

    #[test]
    fn conflicts_between_document_and_content_type() {
        let err = error(&image(Some(OCI_IMAGE_MANIFEST)), Some(DOCKER_MANIFEST));
        assert_eq!(
            err,
            Error::MediaTypeConflict { document: OCI_IMAGE_MANIFEST.into(), content_type: DOCKER_MANIFEST.into() }
        );
        assert!(matches!(
            error(&index(Some(OCI_IMAGE_INDEX)), Some(OCI_IMAGE_MANIFEST)),
            Error::MediaTypeConflict { .. }
        ));
    }

    #[test]
    fn unsupported_media_types() {
        let err = error(&image(None), Some(OCI_IMAGE_CONFIG));
        assert!(matches!(&err, Error::UnsupportedManifest { reason } if reason.contains("content type")), "{err}");
        let err = error(&image(Some("application/vnd.example+json")), None);
        assert!(matches!(&err, Error::UnsupportedManifest { reason } if reason.contains("mediaType")), "{err}");
    }

    #[test]
    fn structural_rejections_name_the_field() {
        let good = image(None);
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "JSON object"),
            ("[2]".into(), "JSON object"),
            ("{".into(), "malformed JSON"),
            (format!("{good} x"), "trailing"),
            (good.replace(r#""schemaVersion":2,"#, ""), "schemaVersion is missing"),
            (good.replace(r#""schemaVersion":2"#, r#""schemaVersion":3"#), "must be 2"),
            (good.replace(r#""schemaVersion":2"#, r#""schemaVersion":"2""#), "schemaVersion"),
            (r#"{"schemaVersion":2}"#.into(), "neither config nor manifests"),
            (image(Some(OCI_IMAGE_MANIFEST)).replace(r#""config""#, r#""cfg""#), "config is missing"),
            (image(Some(OCI_IMAGE_MANIFEST)).replace(r#""layers""#, r#""lyrs""#), "layers is missing"),
            (
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}"#.into(),
                "manifests is missing",
            ),
            (good.replacen('{', r#"{"manifests":[],"#, 1), "cannot tell an image from an index"),
            (image(Some(OCI_IMAGE_MANIFEST)).replacen('{', r#"{"manifests":[],"#, 1), "cannot have manifests"),
            (index(Some(OCI_IMAGE_INDEX)).replacen('{', r#"{"layers":[],"#, 1), "cannot have config or layers"),
            (
                good.replace(&format!(r#""digest":"{}""#, digest_of("layer two")), r#""digest":"sha256:abc""#),
                "layers[1].digest",
            ),
            (good.replace(&format!(r#""digest":"{}""#, digest_of("config")), r#""digest":"md5:abc""#), "config.digest"),
            (good.replace(r#""size":6"#, r#""size":-6"#), "config.size"),
            (good.replace(r#""size":6"#, r#""size":"6""#), "config.size"),
            (good.replace(OCI_IMAGE_CONFIG, "not a media type"), "config: mediaType"),
            (good.replacen('{', r#"{"artifactType":"bad","#, 1), "artifactType"),
            (good.replacen('{', r#"{"config":null,"#, 1), "duplicate field"),
            (good.replace(r#""size":6"#, &format!(r#""size":{}"#, u64::MAX)), "larger than"),
        ];
        for (raw, expected) in cases {
            let reason = invalid_reason(&raw, None);
            assert!(reason.contains(expected), "{raw}\n  gave {reason:?}, expected it to mention {expected:?}");
        }
    }

    #[test]
    fn invalid_utf8_in_an_unknown_field_is_refused() {
        let mut raw = image(None).replacen('{', r#"{"x-unknown":"ab","#, 1).into_bytes();
        let at = raw.iter().position(|&b| b == b'b').unwrap();
        raw[at] = 0xE1;
        match Manifest::parse(raw, None) {
            Err(Error::InvalidManifest { reason }) => assert!(reason.contains("UTF-8"), "{reason}"),
            other => panic!("expected a UTF-8 error, got {other:?}"),
        }
    }

    #[test]
    fn descriptor_content_checks() {
        let with_config = |config: &str| format!(r#"{{"schemaVersion":2,"config":{config},"layers":[]}}"#);
        let empty = format!(r#"{{"mediaType":"{OCI_EMPTY}","digest":"{OCI_EMPTY_DIGEST}","size":2,"data":"e30="}}"#);
        Manifest::parse(with_config(&empty), None).unwrap();
        let reason = invalid_reason(&with_config(&empty.replace(r#""size":2"#, r#""size":3"#)), None);
        assert!(reason.contains("2 bytes"), "{reason}");
        let reason = invalid_reason(&with_config(&empty.replace("e30=", "e3s=")), None);
        assert!(reason.contains("does not match"), "{reason}");
        let reason = invalid_reason(&with_config(&empty.replace("e30=", "!!")), None);
        assert!(reason.contains("base64"), "{reason}");
        let empty_layer = format!(r#"{{"mediaType":"{OCI_LAYER_TAR}","digest":"{EMPTY_SHA256}","size":1}}"#);
        let reason = invalid_reason(&with_config(&empty_layer), None);
        assert!(reason.contains("0 bytes"), "{reason}");
    }

    #[test]
    fn oci_spec_descriptor_round_trip() {
        let mut ours = Descriptor::new(OCI_LAYER_TAR_GZIP, digest_of("x"), 1);
        ours.annotations = Some(BTreeMap::from([("a".into(), "b".into())]));
        ours.artifact_type = Some("application/vnd.example".into());
        let theirs = oci_spec::image::Descriptor::from(ours.clone());
        assert_eq!(theirs.digest().to_string(), ours.digest.to_string());
        assert_eq!(Descriptor::try_from(theirs).unwrap(), ours);
    }
}
