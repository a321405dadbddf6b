//! `WWW-Authenticate` parsing: whatever parses prints as a header that parses back to the
//! same challenges.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_client::Challenge;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(challenges) = Challenge::parse_all(text) {
        let printed = challenges.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        let again = Challenge::parse_all(&printed).unwrap_or_else(|e| panic!("{printed:?} does not parse: {e}"));
        assert_eq!(again, challenges, "printed as {printed:?}");
    }
});
