//! Reads: pooled buffers lent out as the chunks of a read stream.

use super::*;

/// How many spare read buffers the driver keeps.
const SPARE_BUFFERS: usize = 4;

/// Read buffers the driver reuses: a chunk handed to a reader comes back here when its last
/// handle drops (once the socket has sent it). A stream of large reads then keeps touching the
/// same few buffers. Buffers freshly allocated for each chunk were slower, and spread spare
/// memory over one allocator arena per blocking thread (`benches/README.md`).
#[derive(Debug, Default)]
pub(super) struct BufferPool {
    pub(super) spare: std::sync::Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// A buffer of `READ_CHUNK` bytes: zeroed when new, old content when reused.
    pub(super) fn take(&self) -> Vec<u8> {
        let spare = self.spare.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        spare.unwrap_or_else(|| vec![0; READ_CHUNK])
    }
}

/// A read buffer whose first `filled` bytes were read, lent out as `Bytes`; back to its pool
/// when dropped.
pub(super) struct PooledChunk {
    pub(super) data: Vec<u8>,
    pub(super) filled: usize,
    pub(super) pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for PooledChunk {
    fn as_ref(&self) -> &[u8] {
        &self.data[..self.filled]
    }
}

impl Drop for PooledChunk {
    fn drop(&mut self) {
        let data = std::mem::take(&mut self.data);
        if data.len() == READ_CHUNK {
            let mut spare = self.pool.spare.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if spare.len() < SPARE_BUFFERS {
                spare.push(data);
            }
        }
    }
}
