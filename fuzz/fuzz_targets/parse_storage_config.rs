//! The `storage:` section parser: whatever it accepts names exactly one driver with
//! settings the driver can use, and any refusal names the `storage.` key at fault.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use wharf_storage::StorageConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(section) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    match StorageConfig::deserialize(&section) {
        Ok(StorageConfig::Filesystem(fs)) => {
            assert!(fs.max_threads >= 1);
            assert!(section.get("filesystem").is_some());
        }
        Ok(StorageConfig::S3(s3)) => {
            assert!(s3.chunk_size >= 5 << 20);
            assert!(s3.multipart_copy_chunk_size >= 5 << 20);
            assert!(s3.multipart_copy_max_concurrency >= 1);
            assert_eq!(s3.access_key.is_some(), s3.secret_key.is_some());
            assert!(!s3.root_directory.starts_with('/') && !s3.root_directory.ends_with('/'));
        }
        Ok(_) => assert!(section.get("inmemory").is_some()),
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains("storage"), "refusal without a key: {message}");
        }
    }
});
