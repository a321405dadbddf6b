//! Property tests for every parser of `wharf-oci`: generated valid values survive
//! `Display` → `FromStr`, and arbitrary input never panics.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Value, json};
use wharf_oci::{Algorithm, Digest, Digester, Manifest, ManifestKind, Reference, RepositoryName, media_type};

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop_oneof![Just(Algorithm::Sha256), Just(Algorithm::Sha512)]
}

fn digest() -> impl Strategy<Value = Digest> {
    (algorithm(), prop::collection::vec(any::<u8>(), 64)).prop_map(|(algorithm, bytes)| {
        let len = algorithm.hex_len() / 2;
        Digest::from_raw(algorithm, &bytes[..len]).expect("length matches the algorithm")
    })
}

fn path_component() -> impl Strategy<Value = String> {
    let separator = prop_oneof![Just(".".to_owned()), Just("_".to_owned()), Just("__".to_owned()), "-{1,3}"];
    ("[a-z0-9]{1,6}", prop::collection::vec((separator, "[a-z0-9]{1,4}"), 0..3)).prop_map(|(head, rest)| {
        rest.into_iter().fold(head, |mut component, (separator, word)| {
            component.push_str(&separator);
            component.push_str(&word);
            component
        })
    })
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(path_component(), 1..5).prop_map(|components| components.join("/"))
}

fn registry() -> impl Strategy<Value = String> {
    let domain_component = "[a-zA-Z0-9]([a-zA-Z0-9-]{0,5}[a-zA-Z0-9])?";
    let host = prop_oneof![
        Just("localhost".to_owned()),
        (domain_component, domain_component).prop_map(|(a, b)| format!("{a}.{b}")),
        (0u8..=255, 0u8..=255, 0u8..=255, 0u8..=255).prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
        any::<[u16; 8]>().prop_map(|segments| format!("[{}]", std::net::Ipv6Addr::from(segments))),
    ];
    (host, prop::option::of(0u16..=65535)).prop_map(|(host, port)| match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

fn tag() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_][A-Za-z0-9_.-]{0,40}"
}

/// The parts a reference is made of.
type ReferenceParts = (String, String, Option<String>, Option<Digest>);

/// A reference as a person might type it (with or without a registry, tag and digest), and
/// the path, tag and digest it was made of.
fn reference_text() -> impl Strategy<Value = ReferenceParts> {
    (prop::option::of(registry()), path(), prop::option::of(tag()), prop::option::of(digest()))
        .prop_map(|(registry, path, tag, digest)| {
            let mut text = registry.map(|r| format!("{r}/")).unwrap_or_default();
            text.push_str(&path);
            if let Some(tag) = &tag {
                text.push(':');
                text.push_str(tag);
            }
            if let Some(digest) = &digest {
                text.push('@');
                text.push_str(digest.as_str());
            }
            (text, path, tag, digest)
        })
        // Without a registry, a first component with a '.' or named localhost *is* the
        // registry by Docker's rule: such text says something else than the parts.
        .prop_filter("first component reads as a registry", |(text, path, ..)| {
            let first = path.split('/').next().unwrap_or_default();
            !text.starts_with(path.as_str()) || !path.contains('/') || !(first.contains('.') || first == "localhost")
        })
}

fn descriptor(media_type: &'static str) -> impl Strategy<Value = Value> {
    (digest(), 0u64..1 << 40)
        .prop_map(move |(digest, size)| json!({"mediaType": media_type, "digest": digest.to_string(), "size": size}))
}

/// Arbitrary JSON, biased towards the field names manifests use so the parser's deeper paths
/// are reached.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("schemaVersion".to_owned()),
        Just("mediaType".to_owned()),
        Just("config".to_owned()),
        Just("layers".to_owned()),
        Just("manifests".to_owned()),
        Just("subject".to_owned()),
        Just("digest".to_owned()),
        Just("size".to_owned()),
        Just("data".to_owned()),
        Just("artifactType".to_owned()),
        Just("platform".to_owned()),
        "[a-z]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(Value::from(2)),
        any::<f64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
        prop_oneof![
            Just(media_type::OCI_IMAGE_MANIFEST),
            Just(media_type::OCI_IMAGE_INDEX),
            Just(media_type::DOCKER_MANIFEST),
            Just(media_type::OCI_EMPTY_DIGEST),
        ]
        .prop_map(Value::from),
        digest().prop_map(|d| Value::from(d.to_string())),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/properties.proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn tags_parse_as_the_grammar_says(text in "[A-Za-z0-9_.\\-]{0,130}|\\PC{0,8}") {
        let parsed = text.parse::<wharf_oci::Tag>();
        prop_assert_eq!(parsed.is_ok(), wharf_oci::validate_tag(&text).is_ok());
        if let Ok(tag) = parsed {
            prop_assert_eq!(tag.to_string(), text.as_str());
            prop_assert!(tag == text.as_str() && tag.len() <= 128);
        }
    }

    #[test]
    fn digest_display_then_parse_is_identity(digest in digest()) {
        let text = digest.to_string();
        prop_assert_eq!(&text.parse::<Digest>().unwrap(), &digest);
        prop_assert_eq!(text.len(), digest.algorithm().as_str().len() + 1 + digest.algorithm().hex_len());
    }

    #[test]
    fn digest_parse_accepts_only_canonical_text(input in "(sha256|sha512|md5|SHA256)?:?[0-9a-fA-FxX]{0,130}") {
        if let Ok(digest) = input.parse::<Digest>() {
            prop_assert_eq!(digest.to_string(), input);
        }
    }

    #[test]
    fn digest_parse_never_panics(input in ".*") {
        let _ = input.parse::<Digest>();
    }

    #[test]
    fn digester_save_and_restore_anywhere_gives_the_one_shot_digest(
        algorithm in algorithm(),
        data in prop::collection::vec(any::<u8>(), 0..2048),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
        cuts.sort_unstable();
        let mut digester = Digester::new(algorithm);
        let mut done = 0;
        for cut in cuts {
            digester.update(&data[done..cut]);
            done = cut;
            digester = Digester::restore_state(&digester.save_state()).unwrap();
        }
        digester.update(&data[done..]);
        prop_assert_eq!(digester.len(), data.len() as u64);
        prop_assert_eq!(digester.finalize(), Digest::compute(algorithm, &data));
    }

    #[test]
    fn restore_state_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = Digester::restore_state(&bytes);
    }

    #[test]
    fn repository_name_round_trip(path in path()) {
        let name: RepositoryName = path.parse().unwrap();
        prop_assert_eq!(name.to_string(), path);
    }

    #[test]
    fn reference_display_then_parse_is_identity((text, path, tag, digest) in reference_text()) {
        let reference: Reference = text.parse().unwrap();
        prop_assert!(reference.repository().ends_with(&path), "{} lost its path {}", text, path);
        prop_assert_eq!(reference.tag(), tag.as_deref());
        prop_assert_eq!(reference.digest(), digest.as_ref());
        let full = reference.to_string();
        prop_assert_eq!(&full.parse::<Reference>().unwrap(), &reference, "full form {}", full);
        let familiar = reference.familiar();
        prop_assert_eq!(&familiar.parse::<Reference>().unwrap(), &reference, "familiar form {}", familiar);
    }

    #[test]
    fn official_names_that_read_as_image_ids_keep_their_namespace(
        id in "[0-9a-fA-F]{64}",
        prefix in prop_oneof![Just(""), Just("docker.io/"), Just("index.docker.io/")],
        tag in prop::option::of(tag()),
    ) {
        let id = id.to_ascii_lowercase();
        let suffix = tag.map(|tag| format!(":{tag}")).unwrap_or_default();
        prop_assert!(format!("{id}{suffix}").parse::<Reference>().is_err(), "{} reads as an image ID", id);
        let reference: Reference = format!("{prefix}library/{id}{suffix}").parse().unwrap();
        let familiar = reference.familiar();
        prop_assert_eq!(&familiar, &format!("library/{id}{suffix}"));
        prop_assert_eq!(&familiar.parse::<Reference>().unwrap(), &reference);
    }

    #[test]
    fn reference_parse_never_panics_and_is_stable(input in "[a-zA-Z0-9._:/@\\[\\]-]{0,80}|.{0,40}") {
        if let Ok(reference) = input.parse::<Reference>() {
            let again: Reference = reference.to_string().parse().unwrap();
            prop_assert_eq!(again, reference);
        }
    }

    #[test]
    fn manifest_parse_never_panics_on_json(value in json_value(), content_type in prop::option::of(prop_oneof![
        Just(media_type::OCI_IMAGE_MANIFEST),
        Just(media_type::OCI_IMAGE_INDEX),
        Just(media_type::DOCKER_MANIFEST_LIST),
        Just("application/json"),
    ])) {
        let raw = serde_json::to_vec(&value).unwrap();
        if let Ok(manifest) = Manifest::parse(raw.clone(), content_type) {
            prop_assert_eq!(manifest.raw(), &raw[..]);
            prop_assert_eq!(manifest.digest(), &Digest::sha256(&raw));
        }
    }

    #[test]
    fn manifest_parse_never_panics_on_bytes(raw in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Manifest::parse(raw, None);
    }

    #[test]
    fn generated_image_manifests_parse_with_every_reference(
        config in descriptor(media_type::OCI_IMAGE_CONFIG),
        layers in prop::collection::vec(descriptor(media_type::OCI_LAYER_TAR_GZIP), 0..8),
        subject in prop::option::of(descriptor(media_type::OCI_IMAGE_MANIFEST)),
        pretty in any::<bool>(),
    ) {
        let mut document = json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_IMAGE_MANIFEST,
            "config": config,
            "layers": layers,
        });
        if let Some(subject) = &subject {
            document["subject"] = subject.clone();
        }
        let raw = if pretty { serde_json::to_vec_pretty(&document) } else { serde_json::to_vec(&document) }.unwrap();
        let manifest = Manifest::parse(raw.clone(), None).unwrap();
        prop_assert_eq!(manifest.kind(), ManifestKind::OciImage);
        prop_assert_eq!(manifest.raw(), &raw[..]);
        prop_assert_eq!(manifest.layers().len(), layers.len());
        prop_assert_eq!(manifest.references().count(), 1 + layers.len() + usize::from(subject.is_some()));
        let expected: Vec<String> = std::iter::once(&config).chain(&layers).chain(&subject)
            .map(|d| d["digest"].as_str().unwrap().to_owned()).collect();
        let actual: Vec<String> = manifest.references().map(|d| d.digest.to_string()).collect();
        prop_assert_eq!(actual, expected);
    }
}
