//! Storage path validation: an accepted path is absolute, made of non-empty segments of
//! `[A-Za-z0-9._-]` other than `.` and `..`, so it can never leave a filesystem root.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_storage::{validate_dir_path, validate_path};

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let accepted = validate_path("fuzz", path).is_ok();
    if accepted {
        assert!(path.starts_with('/') && path.len() > 1);
        for segment in path[1..].split('/') {
            assert!(!segment.is_empty() && segment != "." && segment != "..", "{path:?}");
            assert!(segment.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)), "{path:?}");
        }
        let joined = std::path::Path::new("/root").join(&path[1..]);
        assert!(joined.starts_with("/root"));
        assert!(
            joined.components().all(|c| matches!(c, std::path::Component::RootDir | std::path::Component::Normal(_)))
        );
    }
    assert_eq!(validate_dir_path("fuzz", path).is_ok(), accepted || path == "/");
});
