//! What maintenance last did: the latest garbage collection's and retention run's summaries,
//! one record of each kind at `_wharf/records/<kind>` (which Distribution ignores), for
//! consoles and reports. A record is soft state: written without a disk flush of its own.

use std::time::SystemTime;

use bytes::Bytes;

use crate::error::Result;
use crate::{Registry, layout};

/// The latest run of one kind of maintenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceRecord {
    /// `gc`, `retention`, or another kind a caller named.
    pub kind: String,
    /// When it was recorded.
    pub at: SystemTime,
    /// What it did, in words.
    pub summary: String,
}

fn records_dir() -> String {
    format!("{}/_wharf/records", layout::ROOT)
}

impl Registry {
    /// Records that maintenance of `kind` (letters, digits, `-`) just did what `summary` says,
    /// replacing the record of the run before.
    ///
    /// # Errors
    /// [`crate::Error::Storage`] when the store fails, or for a `kind` that is not a
    /// path segment of letters, digits and `-`.
    pub async fn record_maintenance(&self, kind: &str, summary: &str) -> Result<()> {
        if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(wharf_storage::Error::InvalidPath {
                driver: "registry",
                path: kind.to_owned(),
                reason: "a maintenance record's kind is letters, digits and '-'",
            }
            .into());
        }
        let at = humantime::format_rfc3339_seconds(SystemTime::now());
        let line = format!("{at} {}", summary.replace(['\n', '\r'], " "));
        self.inner.driver.put_scratch(&format!("{}/{kind}", records_dir()), Bytes::from(line)).await?;
        Ok(())
    }

    /// The latest record of each kind, newest first; records that cannot be read are left
    /// out.
    ///
    /// # Errors
    /// [`crate::Error::Storage`] when the store fails.
    pub async fn maintenance_records(&self) -> Result<Vec<MaintenanceRecord>> {
        let paths = match self.inner.driver.list(&records_dir()).await {
            Ok(paths) => paths,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut records = Vec::new();
        for path in paths {
            let text = match self.inner.driver.get_content(&path).await {
                Ok(text) => text,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            let text = String::from_utf8_lossy(&text);
            let Some((at, summary)) = text.split_once(' ') else { continue };
            let Ok(at) = humantime::parse_rfc3339_weak(at) else { continue };
            let kind = path.rsplit('/').next().unwrap_or_default().to_owned();
            records.push(MaintenanceRecord { kind, at, summary: summary.to_owned() });
        }
        records.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| a.kind.cmp(&b.kind)));
        Ok(records)
    }
}
