//! Manifests by digest, kept in memory: a manifest's bytes never change under its digest, so
//! a hit needs no read of the store (whether the repository has it is still read each time).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use wharf_oci::Digest;

/// At most this many bytes of manifests are kept; the oldest go first.
const CAPACITY: usize = 8 << 20;

#[derive(Debug, Default)]
pub(crate) struct ManifestCache {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<Digest, (String, Bytes)>,
    order: VecDeque<Digest>,
    bytes: usize,
}

impl ManifestCache {
    /// The media type and bytes of a manifest seen before.
    pub(crate) fn get(&self, digest: &Digest) -> Option<(String, Bytes)> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).entries.get(digest).cloned()
    }

    pub(crate) fn insert(&self, digest: Digest, media_type: String, content: Bytes) {
        if content.len() > CAPACITY / 8 {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.entries.contains_key(&digest) {
            return;
        }
        state.bytes += content.len();
        state.order.push_back(digest.clone());
        state.entries.insert(digest, (media_type, content));
        while state.bytes > CAPACITY {
            let Some(oldest) = state.order.pop_front() else { break };
            if let Some((_, content)) = state.entries.remove(&oldest) {
                state.bytes -= content.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_within_capacity() {
        let cache = ManifestCache::default();
        let big = Bytes::from(vec![b'x'; CAPACITY / 8]);
        let digests: Vec<Digest> = (0..10u8).map(|i| Digest::sha256(&[i])).collect();
        for digest in &digests {
            cache.insert(digest.clone(), "m".into(), big.clone());
        }
        assert!(cache.get(&digests[0]).is_none() && cache.get(&digests[1]).is_none());
        assert!(digests[2..].iter().all(|d| cache.get(d).is_some()));
        cache.insert(Digest::sha256(b"huge"), "m".into(), Bytes::from(vec![0; CAPACITY]));
        assert!(cache.get(&Digest::sha256(b"huge")).is_none());
    }
}
