//! The router and `docs/openapi.yaml` describe the same API: the same
//! operations, and every error code the core can answer.

use std::collections::BTreeSet;

use super::app;

fn spec() -> serde_yaml::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.yaml");
    let text = std::fs::read_to_string(path).expect("docs/openapi.yaml");
    serde_yaml::from_str(&text).expect("docs/openapi.yaml is YAML")
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

#[test]
fn the_spec_and_the_router_list_the_same_operations() {
    let spec = spec();
    assert_eq!(spec["openapi"].as_str(), Some("3.1.0"));
    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_mapping().expect("paths") {
        let path = path.as_str().unwrap();
        for method in METHODS {
            if item.get(method).is_some() {
                documented.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    let routed: BTreeSet<String> = app().routes().map(|(m, p)| format!("{m} {p}")).collect();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from docs/openapi.yaml: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "operations in docs/openapi.yaml no route serves: {unrouted:?}"
    );
}

#[test]
fn every_operation_documents_success_and_problems() {
    let spec = spec();
    for (path, item) in spec["paths"].as_mapping().unwrap() {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let what = format!("{method} {}", path.as_str().unwrap());
            let responses = op["responses"].as_mapping().expect("responses");
            assert!(
                responses
                    .keys()
                    .any(|k| k.as_str().is_some_and(|s| s.starts_with('2'))),
                "{what}: a success response"
            );
            assert!(
                responses.get("default").is_some(),
                "{what}: a default problem response"
            );
            assert!(op["operationId"].as_str().is_some(), "{what}: operationId");
        }
    }
}

#[test]
fn the_spec_lists_every_error_code() {
    let spec = spec();
    let listed: BTreeSet<String> =
        spec["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
            .as_sequence()
            .expect("Problem.code enum")
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
    let answered: BTreeSet<String> = crate::api::error::tests::every_error()
        .into_iter()
        .map(|(_, _, code)| code.to_owned())
        .collect();
    assert_eq!(
        listed, answered,
        "Problem.code in docs/openapi.yaml = every ApiError code"
    );
}
