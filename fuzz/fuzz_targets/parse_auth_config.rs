//! Docker and podman credential files: any text gives a credential, none, or a refusal that
//! names the file; a `user:password` read from `auth` splits at the first colon.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use wharf_client::{Credential, Error, stored_credential};

fuzz_target!(|data: &[u8]| {
    for host in ["127.0.0.1:5000", "docker.io", "quay.io"] {
        match stored_credential(data, host, Path::new("fuzz.json")) {
            Ok(Some(Credential::Basic { username, .. })) => assert!(!username.contains(':') || data.contains(&b':')),
            Ok(_) => {}
            Err(Error::Credentials { source_name, reason }) => {
                assert_eq!(source_name, "fuzz.json");
                assert!(!reason.is_empty());
            }
            Err(other) => panic!("unexpected error kind: {other}"),
        }
    }
});
