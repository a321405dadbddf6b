//! A repository of the registry; each concern has a module of its own.

use std::fmt;
use std::sync::Arc;

use wharf_oci::RepositoryName;
use wharf_storage::StorageDriver;

use crate::Registry;

/// One repository of a [`Registry`].
#[derive(Clone)]
pub struct Repository {
    pub(crate) registry: Registry,
    pub(crate) name: RepositoryName,
}

impl fmt::Debug for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository").field("name", &self.name).finish()
    }
}

impl Repository {
    /// The repository's name.
    pub fn name(&self) -> &RepositoryName {
        &self.name
    }

    pub(crate) fn driver(&self) -> &Arc<dyn StorageDriver> {
        &self.registry.inner.driver
    }
}
