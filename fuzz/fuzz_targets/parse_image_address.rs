//! Image addresses (`docker://…`, `oci:…`): whatever parses prints as an address that parses
//! back to the same one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_client::ImageAddress;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(address) = text.parse::<ImageAddress>() {
        let printed = address.to_string();
        let again: ImageAddress = printed.parse().unwrap_or_else(|e| panic!("{printed:?} does not parse: {e}"));
        assert_eq!(again, address, "printed as {printed:?}");
    }
});
