//! Request paths: what parses names a valid repository and prints to a path that parses to
//! the same route; what does not is refused as a bad name or no endpoint.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_server::{ErrorCode, Route};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Route::parse(text) {
        Ok(route) => {
            let path = route.path();
            assert_eq!(Route::parse(&path).ok(), Some(route), "{path}");
        }
        Err(e) => assert!(matches!(e.code, ErrorCode::NameInvalid | ErrorCode::NotFound), "{e}"),
    }
});
