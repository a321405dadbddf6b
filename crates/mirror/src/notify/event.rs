//! Registry events in CNCF Distribution's envelope (`application/vnd.docker.distribution.
//! events.v1+json`), field for field, so that what listens to Distribution listens to Wharf.

use serde::{Deserialize, Serialize};

/// The media type of an [`Envelope`].
pub const EVENTS_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A manifest or blob was pushed.
    Push,
    /// A manifest or blob was pulled.
    Pull,
    /// A blob was mounted from another repository.
    Mount,
    /// A manifest, tag or blob was deleted.
    Delete,
}

impl Action {
    /// As the envelope and the config's `ignore.actions` write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Push => "push",
            Action::Pull => "pull",
            Action::Mount => "mount",
            Action::Delete => "delete",
        }
    }
}

/// One or more events, as one POST to an endpoint carries them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The events, oldest first.
    pub events: Vec<Event>,
}

/// A registry event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Unique to the event.
    pub id: String,
    /// When it happened, RFC 3339.
    pub timestamp: String,
    /// What happened.
    pub action: Action,
    /// To what.
    pub target: Target,
    /// The request that made it happen.
    pub request: RequestRecord,
    /// Who made the request.
    pub actor: ActorRecord,
    /// The registry instance that saw it.
    pub source: SourceRecord,
}

/// What an event is about: a manifest or a blob of a repository.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// Its media type.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    /// Its digest.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
    /// Its size in bytes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// The same as `size`, as Distribution repeats it for older listeners.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub length: u64,
    /// The repository.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub repository: String,
    /// The repository a mounted blob came from.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from_repository: String,
    /// Where it can be fetched.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// The tag, for a manifest pushed, pulled or deleted by tag.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag: String,
    /// What a manifest references, when the config's `events.includereferences` asks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<Reference>,
}

/// A descriptor a manifest references.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Reference {
    /// Its media type.
    pub media_type: String,
    /// Its digest.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The request behind an event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Unique to the request.
    pub id: String,
    /// The client's address.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub addr: String,
    /// The registry's host as the client named it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// The HTTP method.
    pub method: String,
    /// The client's `User-Agent`.
    pub useragent: String,
}

/// Who made the request: the authenticated user, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorRecord {
    /// The user's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// The registry instance that saw the event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// Its host and port.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub addr: String,
    /// Unique to the process, changing at every start.
    #[serde(default, rename = "instanceID", skip_serializing_if = "String::is_empty")]
    pub instance_id: String,
}

#[expect(clippy::trivially_copy_pass_by_ref, reason = "serde's skip_serializing_if passes a reference")]
fn is_zero(value: &u64) -> bool {
    *value == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_has_distributions_field_names() {
        let event = Event {
            id: "e-1".into(),
            timestamp: "2026-12-07T10:00:00Z".into(),
            action: Action::Mount,
            target: Target {
                media_type: "application/vnd.oci.image.layer.v1.tar".into(),
                digest: "sha256:ab".into(),
                size: 7,
                length: 7,
                repository: "team/app".into(),
                from_repository: "team/base".into(),
                url: "https://registry.example/v2/team/app/blobs/sha256:ab".into(),
                tag: String::new(),
                references: Vec::new(),
            },
            request: RequestRecord {
                id: "r-1".into(),
                addr: "10.0.0.9:51000".into(),
                host: "registry.example".into(),
                method: "POST".into(),
                useragent: "skopeo/1.13".into(),
            },
            actor: ActorRecord { name: "alice".into() },
            source: SourceRecord { addr: "node-1:5000".into(), instance_id: "i-1".into() },
        };
        let json = serde_json::to_value(Envelope { events: vec![event.clone()] }).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"events": [{
                "id": "e-1", "timestamp": "2026-12-07T10:00:00Z", "action": "mount",
                "target": {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:ab",
                           "size": 7, "length": 7, "repository": "team/app", "fromRepository": "team/base",
                           "url": "https://registry.example/v2/team/app/blobs/sha256:ab"},
                "request": {"id": "r-1", "addr": "10.0.0.9:51000", "host": "registry.example",
                            "method": "POST", "useragent": "skopeo/1.13"},
                "actor": {"name": "alice"},
                "source": {"addr": "node-1:5000", "instanceID": "i-1"}
            }]})
        );
        let back: Envelope = serde_json::from_value(json).unwrap();
        assert_eq!(back.events, [event]);
    }
}
