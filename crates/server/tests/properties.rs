//! Property tests of what the server parses: request paths and its configuration.

use proptest::prelude::*;
use wharf_server::{Config, ConfigError, ErrorCode, Route};

fn name() -> impl Strategy<Value = String> {
    proptest::collection::vec("[a-z0-9]{1,4}([._-][a-z0-9]{1,3})?", 1..4).prop_map(|parts| parts.join("/"))
}

fn route() -> impl Strategy<Value = Route> {
    let segment = "[ -~]{1,20}".prop_filter("not an endpoint keyword on its own", |s| !s.is_empty());
    (name(), segment, 0..7u8).prop_map(|(name, segment, kind)| {
        let name = name.parse().expect("generated names are valid");
        match kind {
            0 => Route::Blob { name, digest: segment },
            1 => Route::Uploads { name },
            2 => Route::Upload { name, id: segment },
            3 => Route::Manifest { name, reference: segment },
            4 => Route::Tags { name },
            5 => Route::Referrers { name, digest: segment },
            _ => Route::Catalog,
        }
    })
}

proptest! {
    /// A route's path reads back as the route, whatever its last segment holds.
    #[test]
    fn routes_round_trip(route in route()) {
        let path = route.path();
        prop_assert_eq!(Route::parse(&path).map_err(|e| e.to_string()), Ok(route), "{}", path);
    }

    /// Any path either names an endpoint whose name is valid, or is refused with
    /// `NAME_INVALID` or `NOT_FOUND`; and what parses, prints to a path that parses the same.
    #[test]
    fn any_path_parses_or_is_refused(path in "/v2(/[a-zA-Z0-9._%:-]{0,12}){0,6}/?") {
        match Route::parse(&path) {
            Ok(route) => prop_assert_eq!(Route::parse(&route.path()).ok(), Some(route)),
            Err(e) => prop_assert!(matches!(e.code, ErrorCode::NameInvalid | ErrorCode::NotFound), "{:?}", e),
        }
    }

    /// Encoded dots and slashes never escape a segment: a name with one is refused.
    #[test]
    fn encoded_traversal_is_refused(prefix in name(), sneaky in prop::sample::select(vec!["%2e%2e", "%2E%2E", "..", "%2f", "%2F", "a%2Fb", ".%2e"])) {
        let path = format!("/v2/{prefix}/{sneaky}/manifests/latest");
        let e = Route::parse(&path).expect_err("a traversal parsed");
        prop_assert_eq!(e.code, ErrorCode::NameInvalid);
    }

    /// Configuration text never panics the loader, and a refusal names a key.
    #[test]
    fn config_refusals_name_a_key(text in "(version: 0.1\n)?(storage:\n  (inmemory|filesystem): \\{[a-z: 0-9]{0,12}\\}\n)?(http:\n  (addr|prefix|relativeurls|draintimeout): [a-z:0-9.]{0,8}\n)?(log:\n  (level|formatter): [a-z]{0,6}\n)?") {
        match Config::from_yaml(&text, "generated", Vec::new()) {
            Ok(_) | Err(ConfigError::Syntax { .. }) => {}
            Err(ConfigError::Invalid { key, .. }) => prop_assert!(!key.is_empty()),
            Err(other) => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}
