//! Platforms (`os[(os.version)]/architecture[/variant]`): whatever parses prints back to the
//! same text, and that text parses to the same platform.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_client::PlatformSpec;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(spec) = text.parse::<PlatformSpec>() {
        let printed = spec.to_string();
        assert_eq!(printed, text);
        let again: PlatformSpec = printed.parse().unwrap_or_else(|e| panic!("{printed:?} does not parse: {e}"));
        assert_eq!(again, spec);
    }
});
