//! A mirror's pinned images (`proxy.pinned`): whatever is read names a valid repository and
//! a valid tag or digest, and reads back the same from the text it came from; anything else
//! is refused with the text quoted, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_mirror::pinned_image;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match pinned_image(text) {
        Ok((repository, reference)) => {
            assert!(repository.parse::<wharf_oci::RepositoryName>().is_ok());
            assert!(reference.parse::<wharf_oci::Digest>().is_ok() || reference.parse::<wharf_oci::Tag>().is_ok());
            let separator = if text.contains('@') { '@' } else { ':' };
            assert_eq!(format!("{repository}{separator}{reference}"), text);
        }
        Err(reason) => assert!(reason.contains(&format!("{text:?}")), "{reason}"),
    }
});
