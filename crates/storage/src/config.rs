//! Distribution's `storage:` configuration section, and building a driver from it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::de::{self, Deserialize, Deserializer};
use serde_json::{Map, Value};

#[cfg(not(all(feature = "fs", feature = "s3")))]
use crate::error::Error;
use crate::error::Result;
use crate::{MemoryDriver, StorageDriver};

/// Keys of the `storage:` section that belong to the registry, not to a driver.
const REGISTRY_KEYS: [&str; 4] = ["cache", "delete", "maintenance", "redirect"];
/// Drivers Distribution has and Wharf does not.
const OTHER_DRIVERS: [&str; 5] = ["azure", "gcs", "swift", "oss", "s3-aws"];

/// The storage driver chosen by a `storage:` section, with its parameters.
///
/// Deserialises Distribution's section as it is found in `config.yml`:
///
/// ```
/// use wharf_storage::StorageConfig;
///
/// let section = serde_json::json!({
///     "cache": {"blobdescriptor": "inmemory"},
///     "filesystem": {"rootdirectory": "/var/lib/registry", "maxthreads": "50"},
///     "delete": {"enabled": true},
/// });
/// let StorageConfig::Filesystem(fs) = StorageConfig::deserialize(section)? else { unreachable!() };
/// assert_eq!(fs.max_threads, 50);
/// # use serde::Deserialize;
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageConfig {
    /// `storage.filesystem`.
    Filesystem(FilesystemConfig),
    /// `storage.inmemory`.
    InMemory(InMemoryConfig),
    /// `storage.s3`.
    S3(S3Config),
}

/// `storage.filesystem`: files below a root directory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FilesystemConfig {
    /// `rootdirectory`, default `/var/lib/registry`.
    pub root_directory: PathBuf,
    /// `maxthreads`: blocking calls at a time, default 100.
    pub max_threads: usize,
}

impl FilesystemConfig {
    /// The configuration for `root_directory` with default settings.
    pub fn new(root_directory: impl Into<PathBuf>) -> FilesystemConfig {
        FilesystemConfig { root_directory: root_directory.into(), max_threads: DEFAULT_MAX_THREADS }
    }
}

/// `storage.inmemory`: no parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct InMemoryConfig {}

/// `storage.s3`: an S3 bucket (AWS or any S3-compatible server).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct S3Config {
    /// `accesskey`; with `secretkey`, else the standard AWS credential chain is used.
    pub access_key: Option<String>,
    /// `secretkey`.
    pub secret_key: Option<String>,
    /// `region` (required).
    pub region: String,
    /// `regionendpoint`: the URL of an S3-compatible server.
    pub region_endpoint: Option<String>,
    /// `forcepathstyle`: `http://host/bucket/key` rather than `http://bucket.host/key`.
    pub force_path_style: bool,
    /// `bucket` (required).
    pub bucket: String,
    /// `rootdirectory`: a key prefix under which everything is stored.
    pub root_directory: String,
    /// `chunksize`: the multipart part size, at least 5 MiB; default 10 MiB.
    pub chunk_size: u64,
    /// `secure`: use HTTPS for a `regionendpoint` given without a scheme; default true.
    pub secure: bool,
    /// `encrypt`: ask for server-side encryption (AES256); default false.
    pub encrypt: bool,
    /// `multipartcopythresholdsize`: above this size a rename copies in parallel parts;
    /// default 32 MiB.
    pub multipart_copy_threshold_size: u64,
    /// `multipartcopychunksize`: the part size of such copies; default 32 MiB.
    pub multipart_copy_chunk_size: u64,
    /// `multipartcopymaxconcurrency`: parts copied at once; default 100.
    pub multipart_copy_max_concurrency: usize,
    /// `storageclass`: `STANDARD` (default), `REDUCED_REDUNDANCY`, … or `NONE` to send none.
    pub storage_class: String,
}

/// Distribution's default for `maxthreads`.
pub(crate) const DEFAULT_MAX_THREADS: usize = 100;

/// S3's smallest part size, except for the last part.
pub(crate) const MIN_CHUNK_SIZE: u64 = 5 << 20;

impl S3Config {
    /// The configuration for `bucket` in `region` with Distribution's defaults.
    pub fn new(bucket: impl Into<String>, region: impl Into<String>) -> S3Config {
        S3Config {
            access_key: None,
            secret_key: None,
            region: region.into(),
            region_endpoint: None,
            force_path_style: false,
            bucket: bucket.into(),
            root_directory: String::new(),
            chunk_size: 10 << 20,
            secure: true,
            encrypt: false,
            multipart_copy_threshold_size: 32 << 20,
            multipart_copy_chunk_size: 32 << 20,
            multipart_copy_max_concurrency: 100,
            storage_class: "STANDARD".into(),
        }
    }
}

impl StorageConfig {
    /// Builds the configured driver.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) for settings the driver refuses,
    /// [`Error::Backend`](crate::Error::Backend) when it cannot
    /// start (an unusable root directory, say).
    pub async fn build(&self) -> Result<Arc<dyn StorageDriver>> {
        match self {
            StorageConfig::InMemory(_) => Ok(Arc::new(MemoryDriver::new())),
            #[cfg(feature = "fs")]
            StorageConfig::Filesystem(config) => {
                Ok(Arc::new(crate::FilesystemDriver::with_max_threads(&config.root_directory, config.max_threads)?))
            }
            #[cfg(not(feature = "fs"))]
            StorageConfig::Filesystem(_) => {
                Err(Error::Config("storage.filesystem needs wharf-storage's `fs` feature".into()))
            }
            #[cfg(feature = "s3")]
            StorageConfig::S3(config) => Ok(Arc::new(crate::S3Driver::new(config.clone()).await?)),
            #[cfg(not(feature = "s3"))]
            StorageConfig::S3(_) => Err(Error::Config("storage.s3 needs wharf-storage's `s3` feature".into())),
        }
    }
}

impl<'de> Deserialize<'de> for StorageConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A reader that fails inside the section (a number out of range, a key its format
        // gives a meaning of its own) knows no key path; the refusal still names the section.
        let section = Value::deserialize(deserializer).map_err(|e| de::Error::custom(format!("storage: {e}")))?;
        let section = match section {
            Value::Null => BTreeMap::new(),
            Value::Object(map) => map.into_iter().collect(),
            other => {
                return Err(de::Error::custom(format!("storage: expected a map of settings, found {other}")));
            }
        };
        StorageConfig::from_section(section).map_err(de::Error::custom)
    }
}

impl StorageConfig {
    fn from_section(section: BTreeMap<String, Value>) -> Result<StorageConfig, String> {
        let mut drivers = Vec::new();
        for (key, value) in section {
            match key.as_str() {
                _ if REGISTRY_KEYS.contains(&key.as_str()) => {}
                "filesystem" | "inmemory" | "s3" => drivers.push((key, value)),
                _ if OTHER_DRIVERS.contains(&key.as_str()) => {
                    return Err(format!(
                        "storage.{key}: the {key} driver is not supported by Wharf (supported: filesystem, inmemory, s3)"
                    ));
                }
                _ => return Err(format!("storage.{key}: unknown key")),
            }
        }
        let (name, value) = match drivers.len() {
            1 => drivers.remove(0),
            0 => {
                return Err("storage: no driver configured; set one of storage.filesystem, storage.inmemory \
                            or storage.s3"
                    .into());
            }
            _ => {
                let names: Vec<&str> = drivers.iter().map(|(name, _)| name.as_str()).collect();
                return Err(format!("storage: several drivers configured ({}); choose one", names.join(", ")));
            }
        };
        let params = match value {
            Value::Null => Map::new(),
            Value::Object(map) => map,
            other => {
                return Err(format!("storage.{name}: expected a map of parameters, found {other}"));
            }
        };
        let mut params = Params { driver: name.clone(), params };
        let config = match name.as_str() {
            "inmemory" => StorageConfig::InMemory(InMemoryConfig {}),
            "filesystem" => {
                let defaults = FilesystemConfig::new("/var/lib/registry");
                let config = FilesystemConfig {
                    root_directory: params.string("rootdirectory")?.map_or(defaults.root_directory, PathBuf::from),
                    max_threads: params.number("maxthreads")?.map_or(Ok(defaults.max_threads), |n| {
                        usize::try_from(n)
                            .ok()
                            .filter(|&n| n > 0)
                            .ok_or_else(|| "storage.filesystem.maxthreads: expected a number of at least 1".to_owned())
                    })?,
                };
                StorageConfig::Filesystem(config)
            }
            _ => StorageConfig::S3(s3_config(&mut params)?),
        };
        params.finish(match name.as_str() {
            "s3" => S3_UNSUPPORTED,
            _ => &[],
        })?;
        Ok(config)
    }
}

/// Keys of Distribution's S3 driver that Wharf does not support yet.
const S3_UNSUPPORTED: &[&str] = &[
    "keyid",
    "skipverify",
    "v4auth",
    "useragent",
    "usedualstack",
    "accelerate",
    "objectacl",
    "loglevel",
    "sessiontoken",
    "userAgent",
    "checksumdisabled",
    "checksumalgorithm",
];

fn s3_config(params: &mut Params) -> Result<S3Config, String> {
    let bucket = params.string("bucket")?.ok_or("storage.s3.bucket is required")?;
    let region = params.string("region")?.ok_or("storage.s3.region is required")?;
    let mut config = S3Config::new(bucket, region);
    config.access_key = params.string("accesskey")?.filter(|k| !k.is_empty());
    config.secret_key = params.string("secretkey")?.filter(|k| !k.is_empty());
    if config.access_key.is_some() != config.secret_key.is_some() {
        return Err("storage.s3: accesskey and secretkey must be set together".into());
    }
    config.region_endpoint = params.string("regionendpoint")?.filter(|e| !e.is_empty());
    if let Some(v) = params.boolean("forcepathstyle")? {
        config.force_path_style = v;
    }
    if let Some(root) = params.string("rootdirectory")? {
        config.root_directory = root.trim_matches('/').to_owned();
    }
    if let Some(size) = params.number("chunksize")? {
        if size < MIN_CHUNK_SIZE {
            return Err(format!("storage.s3.chunksize: {size} is below S3's minimum part size of {MIN_CHUNK_SIZE}"));
        }
        config.chunk_size = size;
    }
    if let Some(v) = params.boolean("secure")? {
        config.secure = v;
    }
    if let Some(v) = params.boolean("encrypt")? {
        config.encrypt = v;
    }
    if let Some(size) = params.number("multipartcopythresholdsize")? {
        config.multipart_copy_threshold_size = size;
    }
    if let Some(size) = params.number("multipartcopychunksize")? {
        if size < MIN_CHUNK_SIZE {
            return Err(format!("storage.s3.multipartcopychunksize: {size} is below S3's minimum of {MIN_CHUNK_SIZE}"));
        }
        config.multipart_copy_chunk_size = size;
    }
    if let Some(n) = params.number("multipartcopymaxconcurrency")? {
        config.multipart_copy_max_concurrency = usize::try_from(n)
            .ok()
            .filter(|&n| n > 0)
            .ok_or("storage.s3.multipartcopymaxconcurrency: expected a number of at least 1")?;
    }
    if let Some(class) = params.string("storageclass")? {
        config.storage_class = class;
    }
    Ok(config)
}

/// A driver's parameters, taken one by one so that what is left at the end can be named.
struct Params {
    driver: String,
    params: Map<String, Value>,
}

impl Params {
    fn take(&mut self, key: &str) -> Option<Value> {
        self.params.remove(key).filter(|v| !v.is_null())
    }

    fn string(&mut self, key: &str) -> Result<Option<String>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(format!("storage.{}.{key}: expected a string, found {other}", self.driver)),
        }
    }

    /// A non-negative integer, written as a number or as a string (environment overrides).
    fn number(&mut self, key: &str) -> Result<Option<u64>, String> {
        let value = self.take(key);
        let parsed = match &value {
            None => return Ok(None),
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            Some(_) => None,
        };
        parsed.map(Some).ok_or_else(|| {
            format!(
                "storage.{}.{key}: expected a non-negative integer, found {}",
                self.driver,
                value.unwrap_or_default()
            )
        })
    }

    /// A boolean, written as one or as a string (environment overrides).
    fn boolean(&mut self, key: &str) -> Result<Option<bool>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(other) => Err(format!("storage.{}.{key}: expected true or false, found {other}", self.driver)),
        }
    }

    /// Fails on the first key left over, saying whether Wharf lacks it or it is unknown.
    fn finish(self, unsupported: &[&str]) -> Result<(), String> {
        match self.params.keys().next() {
            None => Ok(()),
            Some(key) if unsupported.contains(&key.as_str()) => {
                Err(format!("storage.{}.{key}: not supported by Wharf yet", self.driver))
            }
            Some(key) => Err(format!("storage.{}.{key}: unknown key", self.driver)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(section: Value) -> Result<StorageConfig, String> {
        StorageConfig::deserialize(section).map_err(|e| e.to_string())
    }

    fn refusal(section: &Value) -> String {
        parse(section.clone()).expect_err(&format!("{section} should be refused"))
    }

    #[test]
    fn filesystem_with_registry_keys() {
        let config = parse(json!({
            "cache": {"blobdescriptor": "inmemory"},
            "filesystem": {"rootdirectory": "/data"},
            "delete": {"enabled": true},
            "maintenance": {"uploadpurging": {"enabled": false}},
            "redirect": {"disable": true},
        }))
        .unwrap();
        assert_eq!(
            config,
            StorageConfig::Filesystem(FilesystemConfig { root_directory: "/data".into(), max_threads: 100 })
        );
        let StorageConfig::Filesystem(defaults) = parse(json!({"filesystem": null})).unwrap() else { panic!() };
        assert_eq!(defaults.root_directory, PathBuf::from("/var/lib/registry"));
    }

    #[test]
    fn inmemory_accepts_null_or_empty() {
        assert_eq!(parse(json!({"inmemory": null})).unwrap(), StorageConfig::InMemory(InMemoryConfig {}));
        assert_eq!(parse(json!({"inmemory": {}})).unwrap(), StorageConfig::InMemory(InMemoryConfig {}));
    }

    #[test]
    fn s3_all_keys_and_string_values() {
        let config = parse(json!({"s3": {
            "accesskey": "AK", "secretkey": "SK", "region": "eu-west-1",
            "regionendpoint": "http://127.0.0.1:9000", "forcepathstyle": "true", "bucket": "images",
            "rootdirectory": "/registry/", "chunksize": "5242880", "secure": false, "encrypt": true,
            "multipartcopythresholdsize": 67108864, "multipartcopychunksize": 33554432,
            "multipartcopymaxconcurrency": "10", "storageclass": "REDUCED_REDUNDANCY",
        }}))
        .unwrap();
        let StorageConfig::S3(s3) = config else { panic!("{config:?}") };
        assert_eq!(s3.access_key.as_deref(), Some("AK"));
        assert_eq!(s3.region_endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(s3.force_path_style && !s3.secure && s3.encrypt);
        assert_eq!(s3.root_directory, "registry");
        assert_eq!((s3.chunk_size, s3.multipart_copy_threshold_size), (5 << 20, 64 << 20));
        assert_eq!(s3.multipart_copy_max_concurrency, 10);
        assert_eq!(s3.storage_class, "REDUCED_REDUNDANCY");
    }

    #[test]
    fn a_section_its_reader_cannot_read_is_refused_as_storage() {
        for text in [r#"{"s3": {"bucket": "b", "region": 1e999}}"#, r#"{"filesystem": {"maxthreads": -1e400}}"#] {
            let message = serde_json::from_str::<StorageConfig>(text).expect_err(text).to_string();
            assert!(message.starts_with("storage: "), "{text}: {message}");
        }
    }

    #[test]
    fn refusals_name_the_key() {
        let cases = [
            (json!({}), "no driver configured"),
            (json!({"cache": {}}), "no driver configured"),
            (
                json!({"filesystem": {}, "s3": {"bucket": "b", "region": "r"}}),
                "several drivers configured (filesystem, s3)",
            ),
            (json!({"gcs": {"bucket": "b"}}), "storage.gcs: the gcs driver is not supported"),
            (json!({"filesytem": {}}), "storage.filesytem: unknown key"),
            (json!({"filesystem": {"rootdir": "/x"}}), "storage.filesystem.rootdir: unknown key"),
            (
                json!({"filesystem": {"maxthreads": "many"}}),
                "storage.filesystem.maxthreads: expected a non-negative integer",
            ),
            (json!({"filesystem": {"maxthreads": 0}}), "maxthreads: expected a number of at least 1"),
            (json!({"filesystem": "/x"}), "storage.filesystem: expected a map"),
            (json!(5), "storage: expected a map"),
            (json!({"s3": {"region": "r"}}), "storage.s3.bucket is required"),
            (json!({"s3": {"bucket": "b"}}), "storage.s3.region is required"),
            (json!({"s3": {"bucket": "b", "region": "r", "accesskey": "a"}}), "set together"),
            (json!({"s3": {"bucket": "b", "region": "r", "chunksize": 1024}}), "storage.s3.chunksize: 1024 is below"),
            (
                json!({"s3": {"bucket": "b", "region": "r", "secure": "yes"}}),
                "storage.s3.secure: expected true or false",
            ),
            (
                json!({"s3": {"bucket": "b", "region": "r", "v4auth": true}}),
                "storage.s3.v4auth: not supported by Wharf yet",
            ),
        ];
        for (section, expected) in cases {
            let message = refusal(&section);
            assert!(message.contains(expected), "{section}: {message:?} should contain {expected:?}");
        }
    }

    fn json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let key = prop_oneof![
            Just("filesystem".to_owned()),
            Just("inmemory".to_owned()),
            Just("s3".to_owned()),
            Just("rootdirectory".to_owned()),
            Just("maxthreads".to_owned()),
            Just("bucket".to_owned()),
            Just("region".to_owned()),
            Just("chunksize".to_owned()),
            Just("accesskey".to_owned()),
            Just("secretkey".to_owned()),
            Just("secure".to_owned()),
            Just("delete".to_owned()),
            "[a-z]{1,6}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (0u64..20 << 20).prop_map(Value::from),
            "[a-z0-9/]{0,8}".prop_map(Value::from),
            Just(Value::from("true")),
        ];
        leaf.prop_recursive(3, 32, 6, move |inner| {
            prop::collection::btree_map(key.clone(), inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect()))
        })
    }

    proptest::proptest! {
        #[test]
        fn accepted_sections_are_usable_and_refusals_name_the_section(section in json()) {
            match StorageConfig::deserialize(&section) {
                Ok(StorageConfig::Filesystem(fs)) => proptest::prop_assert!(fs.max_threads >= 1),
                Ok(StorageConfig::S3(s3)) => {
                    proptest::prop_assert!(s3.chunk_size >= MIN_CHUNK_SIZE);
                    proptest::prop_assert_eq!(s3.access_key.is_some(), s3.secret_key.is_some());
                }
                Ok(StorageConfig::InMemory(_)) => {}
                Err(e) => proptest::prop_assert!(e.to_string().starts_with("storage"), "{}", e),
            }
        }
    }

    #[tokio::test]
    async fn builds_drivers() {
        let driver = StorageConfig::InMemory(InMemoryConfig {}).build().await.unwrap();
        assert_eq!(driver.name(), "inmemory");
        #[cfg(feature = "fs")]
        {
            let dir = tempfile::tempdir().unwrap();
            let driver = StorageConfig::Filesystem(FilesystemConfig::new(dir.path())).build().await.unwrap();
            assert_eq!(driver.name(), "filesystem");
        }
    }
}
