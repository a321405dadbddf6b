//! Golden plans: each folder under `tests/fixtures/golden/` holds a policy, an inventory, an
//! optional in-use list and the plan they make at 2026-12-07T00:00:00Z, as reviewed. A change
//! to the engine that changes a plan fails here; `WHARF_BLESS=1` writes the new plans for
//! review instead.

use std::path::Path;

use wharf_policy::{InUse, Inventory, Policy, plan};

#[test]
fn plans_match_their_golden_copies() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden");
    let bless = std::env::var_os("WHARF_BLESS").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    cases.sort();
    assert!(cases.len() >= 2, "golden cases are missing under {}", root.display());
    for case in cases {
        let read = |name: &str| std::fs::read_to_string(case.join(name));
        let policy = Policy::from_yaml(&read("policy.yaml").unwrap()).unwrap();
        let inventory = Inventory::from_json(&read("inventory.json").unwrap()).unwrap();
        let in_use = read("in-use.txt").map(|text| InUse::parse(&text).unwrap()).unwrap_or_default();
        let planned = plan(&inventory, &policy, &in_use, "2026-12-07T00:00:00Z".parse().unwrap()).to_json() + "\n";
        let golden = case.join("plan.json");
        if bless {
            std::fs::write(&golden, &planned).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_default();
        assert!(
            planned == expected,
            "{}: the plan differs from plan.json (WHARF_BLESS=1 writes it for review):\n{planned}",
            case.display()
        );
    }
}
