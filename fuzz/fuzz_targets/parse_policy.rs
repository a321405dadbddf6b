//! Policy files, in-use lists and inventories (the first byte says which): each is read or
//! refused with an error that names a place, never a panic; a policy that reads plans an
//! inventory, and an inventory that reads is planned the same in any order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_policy::{InUse, Inventory, Policy, Timestamp, plan};

const POLICY: &str = "version: 1\ndefault: delete\nrules:\n  - {name: keep, tags: {semver: '*'}, keep: {newest: 2, per: major, by: version}}\nuntagged: {delete_older_than: 1d}\n";
const INVENTORY: &str = r#"{"repositories":[{"name":"a","manifests":[{"digest":"sha256:6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d","media_type":"application/vnd.oci.image.manifest.v1+json","size":2,"pushed":"2026-01-01T00:00:00Z"}],"tags":[{"name":"v1.0.0","digest":"sha256:6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d","pushed":"2026-01-01T00:00:00Z"}]}]}"#;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let now: Timestamp = "2026-12-07T00:00:00Z".parse().unwrap();
    match which % 3 {
        0 => match Policy::from_yaml(text) {
            Ok(policy) => {
                let inventory = Inventory::from_json(INVENTORY).unwrap();
                let _ = plan(&inventory, &policy, &InUse::default(), now);
            }
            Err(e) => assert!(e.to_string().starts_with("policy: "), "{e}"),
        },
        1 => {
            if let Err(e) = InUse::parse(text) {
                assert!(e.to_string().starts_with("in-use list, line "), "{e}");
            }
        }
        _ => match Inventory::from_json(text) {
            Ok(inventory) => {
                let policy = Policy::from_yaml(POLICY).unwrap();
                let first = plan(&inventory, &policy, &InUse::default(), now);
                let mut reversed = inventory.clone();
                reversed.repositories.reverse();
                for repository in &mut reversed.repositories {
                    repository.manifests.reverse();
                    repository.tags.reverse();
                }
                assert_eq!(plan(&reversed, &policy, &InUse::default(), now), first);
            }
            Err(e) => assert!(e.to_string().starts_with("inventory: "), "{e}"),
        },
    }
});
