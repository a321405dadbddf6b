//! Notifications: an event for each push, pull, mount and delete the API answers with
//! success, queued durably for the configured endpoints before the answer goes out.

use wharf_mirror::notify::{Action, ActorRecord, Event, RequestRecord, SourceRecord, Target};

use super::*;

/// What of a request its event tells, read before the handler takes the request.
pub(super) struct Asked {
    method: Method,
    headers: HeaderMap,
    query: Option<String>,
    client: Option<std::net::SocketAddr>,
}

impl Asked {
    pub(super) fn of(request: &Request) -> Asked {
        Asked {
            method: request.method().clone(),
            headers: request.headers().clone(),
            query: request.uri().query().map(str::to_owned),
            client: request
                .extensions()
                .get::<axum::extract::ConnectInfo<crate::layer::ClientAddress>>()
                .map(|info| info.0.0),
        }
    }

    fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    }
}

/// What of an answer its event tells.
pub(super) struct Answer {
    status: StatusCode,
    headers: HeaderMap,
}

impl Answer {
    pub(super) fn of(response: &Response) -> Answer {
        Answer { status: response.status(), headers: response.headers().clone() }
    }
}

fn response_header(response: &Answer, name: &str) -> String {
    response.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

impl Api {
    /// Queues the event of a request answered with `response`, if it makes one.
    pub(super) async fn notify(&self, route: &Route, asked: &Asked, response: &Answer, user: Option<&str>) {
        if !response.status.is_success() {
            return;
        }
        let Some((action, target)) = self.target(route, asked, response).await else { return };
        let event = Event {
            id: uuid::Uuid::new_v4().to_string(),
            timestamp: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
            action,
            target,
            request: RequestRecord {
                id: uuid::Uuid::new_v4().simple().to_string(),
                addr: asked.client.map(|a| a.to_string()).unwrap_or_default(),
                host: asked.header("host"),
                method: asked.method.to_string(),
                useragent: asked.header("user-agent"),
            },
            actor: ActorRecord { name: user.unwrap_or_default().to_owned() },
            source: SourceRecord { addr: String::new(), instance_id: self.instance.clone() },
        };
        if let Some(notifier) = &self.options.notifier
            && let Err(e) = notifier.notify(&event).await
        {
            tracing::warn!(error = %e, action = action.as_str(), repository = %event.target.repository, "an event was not queued");
        }
        if let Some(replicator) = &self.options.replicator
            && let Err(e) = replicator.on_event(&event).await
        {
            tracing::warn!(error = %e, repository = %event.target.repository, "a replication was not queued");
        }
    }

    /// The action and target of a successful request, `None` for requests without events
    /// (HEADs, listings, uploads under way).
    async fn target(&self, route: &Route, asked: &Asked, response: &Answer) -> Option<(Action, Target)> {
        let digest = response_header(response, CONTENT_DIGEST.as_str());
        let length = |text: String| text.parse::<u64>().unwrap_or(0);
        let blob_size = |name: &RepositoryName, digest: &str| {
            let (repository, digest) = (self.repository(name), digest.parse::<Digest>().ok());
            async move {
                match digest {
                    Some(digest) => repository.stat_blob(&digest).await.map(|info| info.size).unwrap_or(0),
                    None => 0,
                }
            }
        };
        let (action, name, mut target) = match (route, &asked.method) {
            (Route::Manifest { name, reference }, &Method::GET) => {
                let tag = if reference.parse::<Digest>().is_ok() { String::new() } else { reference.clone() };
                let size = length(response_header(response, "content-length"));
                let media_type = response_header(response, "content-type");
                (Action::Pull, name, Target { media_type, digest, size, tag, ..Target::default() })
            }
            (Route::Manifest { name, reference }, &Method::PUT) => {
                let tag = if reference.parse::<Digest>().is_ok() { String::new() } else { reference.clone() };
                let size = length(asked.header("content-length"));
                let media_type = asked.header("content-type");
                (Action::Push, name, Target { media_type, digest, size, tag, ..Target::default() })
            }
            (Route::Manifest { name, reference }, &Method::DELETE) => {
                let (digest, tag) = match reference.parse::<Digest>() {
                    Ok(_) => (reference.clone(), String::new()),
                    Err(_) => (digest, reference.clone()),
                };
                (Action::Delete, name, Target { digest, tag, ..Target::default() })
            }
            (Route::Blob { name, digest }, &Method::GET) => {
                let size = blob_size(name, digest).await;
                let media_type = "application/octet-stream".to_owned();
                (Action::Pull, name, Target { media_type, digest: digest.clone(), size, ..Target::default() })
            }
            (Route::Blob { name, digest }, &Method::DELETE) => {
                (Action::Delete, name, Target { digest: digest.clone(), ..Target::default() })
            }
            (Route::Upload { name, .. }, &Method::PUT) if response.status == StatusCode::CREATED => {
                let size = blob_size(name, &digest).await;
                let media_type = "application/octet-stream".to_owned();
                (Action::Push, name, Target { media_type, digest, size, ..Target::default() })
            }
            (Route::Uploads { name }, &Method::POST) if response.status == StatusCode::CREATED => {
                let query = Query::parse(asked.query.as_deref());
                let size = blob_size(name, &digest).await;
                let (action, from) = match query.get("mount") {
                    Some(_) => (Action::Mount, query.get("from").unwrap_or_default().to_owned()),
                    None => (Action::Push, String::new()),
                };
                let media_type = "application/octet-stream".to_owned();
                (action, name, Target { media_type, digest, size, from_repository: from, ..Target::default() })
            }
            _ => return None,
        };
        target.length = target.size;
        target.repository = name.to_string();
        if self.options.event_references
            && matches!(route, Route::Manifest { .. })
            && matches!(action, Action::Push | Action::Pull)
            && let Ok(digest) = target.digest.parse::<Digest>()
            && let Ok(stored) = self.repository(name).get_manifest(&ManifestReference::Digest(digest)).await
            && let Ok(manifest) = Manifest::parse(stored.content, Some(&stored.media_type))
        {
            target.references = manifest
                .references()
                .map(|d| wharf_mirror::notify::Reference {
                    media_type: d.media_type.clone(),
                    digest: d.digest.to_string(),
                    size: d.size,
                })
                .collect();
        }
        let kind = if matches!(route, Route::Manifest { .. }) { "manifests" } else { "blobs" };
        if !target.digest.is_empty() {
            let host = asked.header("host");
            target.url = format!("http://{host}/v2/{name}/{kind}/{}", target.digest);
        }
        Some((action, target))
    }
}
