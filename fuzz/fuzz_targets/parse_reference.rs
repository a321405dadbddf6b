//! Reference parsing: whatever parses prints in a full and a familiar form that both parse
//! back to the same reference, and the repository alone is a valid `RepositoryName`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_oci::{Reference, RepositoryName};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(reference) = text.parse::<Reference>() {
        let full = reference.to_string();
        assert_eq!(full.parse::<Reference>().unwrap(), reference, "full form {full}");
        let familiar = reference.familiar();
        assert_eq!(familiar.parse::<Reference>().unwrap(), reference, "familiar form {familiar}");
        let name: RepositoryName = reference.repository().parse().unwrap();
        assert_eq!(name.as_str(), reference.repository());
        assert!(reference.repository().len() <= wharf_oci::MAX_REPOSITORY_LEN);
    }
    if let Ok(name) = text.parse::<RepositoryName>() {
        assert_eq!(name.as_str(), text);
        assert!(text.len() <= wharf_oci::MAX_REPOSITORY_LEN);
        assert!(!text.bytes().any(|b| b.is_ascii_uppercase()));
    }
});
