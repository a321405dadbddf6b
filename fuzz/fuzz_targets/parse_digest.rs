//! Digest parsing: whatever parses prints back as the same text, and its parts add up.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_oci::{Digest, Digester};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(digest) = text.parse::<Digest>() {
            assert_eq!(digest.to_string(), text, "a digest is kept in canonical form");
            assert_eq!(digest.hex().len(), digest.algorithm().hex_len());
            assert_eq!(format!("{}:{}", digest.algorithm(), digest.hex()), text);
            let json = serde_json::to_string(&digest).unwrap();
            assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), digest);
        }
    }
    // Saved hash states from untrusted storage must be refused cleanly, and a state that does
    // restore must keep hashing consistently.
    if let Ok(digester) = Digester::restore_state(data) {
        let saved = digester.save_state();
        let again = Digester::restore_state(&saved).expect("a saved state restores");
        assert_eq!(again.len(), digester.len());
        assert_eq!(again.finalize(), digester.finalize());
    }
});
