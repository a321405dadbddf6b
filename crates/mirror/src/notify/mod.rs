//! Notifications: CNCF Distribution's `notifications.endpoints`, with its event envelope,
//! but with a queue that is durable in the registry's store: an event is delivered at least
//! once, in order per endpoint, across restarts and whichever instance saw it.

mod event;
mod queue;

use std::sync::Arc;
use std::time::Duration;

pub use event::{
    Action, ActorRecord, EVENTS_MEDIA_TYPE, Envelope, Event, Reference, RequestRecord, SourceRecord, Target,
};
pub use queue::{Queue, Queued};
use wharf_storage::StorageDriver;

/// Events sent in one POST at most.
const BATCH: usize = 64;

/// The term of the lease that lets one instance deliver to an endpoint: how long delivery
/// waits after an instance that held it stopped without giving it up.
const LEASE_TERM: Duration = Duration::from_secs(15);

/// An endpoint events are sent to (an entry of `notifications.endpoints`).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Its name, which names its queue too.
    pub name: String,
    /// Where events are POSTed.
    pub url: String,
    /// Headers sent with each POST.
    pub headers: Vec<(String, String)>,
    /// How long a POST may take.
    pub timeout: Duration,
    /// Failures in a row before delivery waits `backoff` between tries.
    pub threshold: u32,
    /// The wait between tries once `threshold` failures came in a row.
    pub backoff: Duration,
    /// Events whose target has one of these media types are not sent.
    pub ignored_media_types: Vec<String>,
    /// Events of these actions are not sent.
    pub ignored_actions: Vec<Action>,
}

impl Endpoint {
    /// An endpoint at `url`, with Distribution's defaults: a 1 s timeout, a threshold of 10
    /// and a backoff of 1 s.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Endpoint {
        Endpoint {
            name: name.into(),
            url: url.into(),
            headers: Vec::new(),
            timeout: Duration::from_secs(1),
            threshold: 10,
            backoff: Duration::from_secs(1),
            ignored_media_types: Vec::new(),
            ignored_actions: Vec::new(),
        }
    }

    /// Whether the endpoint takes `event`: neither its action nor its media type is ignored.
    pub fn takes(&self, event: &Event) -> bool {
        !self.ignored_actions.contains(&event.action) && !self.ignored_media_types.contains(&event.target.media_type)
    }
}

/// Queues events for endpoints, and delivers them.
#[derive(Debug, Clone)]
pub struct Notifier {
    endpoints: Arc<Vec<(Endpoint, Queue)>>,
    instance: String,
    http: reqwest::Client,
    stats: Arc<crate::Stats>,
}

impl Notifier {
    /// A notifier for `endpoints`, queueing in `driver`; `instance` names this process among
    /// those that share the store (Distribution's `source.instanceID`).
    ///
    /// # Errors
    /// An endpoint whose name cannot name its queue, in words.
    pub fn new(driver: Arc<dyn StorageDriver>, endpoints: Vec<Endpoint>, instance: &str) -> Result<Notifier, String> {
        let endpoints = endpoints
            .into_iter()
            .map(|endpoint| Ok((Queue::new(driver.clone(), &endpoint.name)?, endpoint)).map(|(q, e)| (e, q)))
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Notifier {
            endpoints: Arc::new(endpoints),
            instance: instance.to_owned(),
            http: reqwest::Client::new(),
            stats: Arc::default(),
        })
    }

    /// The same notifier, counting its deliveries in `stats`.
    #[must_use]
    pub fn with_stats(mut self, stats: Arc<crate::Stats>) -> Notifier {
        self.stats = stats;
        self
    }

    /// The name of this process among those that share the store.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Queues `event` for every endpoint that takes it; it is durable when this returns.
    ///
    /// # Errors
    /// The first storage error, naming the endpoint; the endpoints before it have the event.
    pub async fn notify(&self, event: &Event) -> Result<(), String> {
        for (endpoint, queue) in self.endpoints.iter().filter(|(endpoint, _)| endpoint.takes(event)) {
            queue.push(event).await.map_err(|e| format!("queueing an event for endpoint {}: {e}", endpoint.name))?;
        }
        Ok(())
    }

    /// Delivers what endpoint `index` has queued, oldest first, until its queue is empty;
    /// answers how many events went. Another instance holding the endpoint's lease delivers
    /// instead (0 here).
    ///
    /// # Errors
    /// What failed: the store, or the endpoint (its status or the transport error). What
    /// was delivered before stays delivered.
    pub async fn deliver(&self, index: usize) -> Result<usize, String> {
        let Some((endpoint, queue)) = self.endpoints.get(index) else { return Ok(0) };
        let what = |e: &dyn std::fmt::Display| format!("endpoint {}: {e}", endpoint.name);
        if !queue.lease(&self.instance, LEASE_TERM).await.map_err(|e| what(&e))? {
            return Ok(0);
        }
        let mut sent = 0;
        loop {
            let batch = queue.pending(BATCH).await.map_err(|e| what(&e))?;
            let Some(last) = batch.last().map(|q| q.number) else { return Ok(sent) };
            let envelope = Envelope { events: batch.into_iter().map(|q| q.event).collect() };
            let mut request = self
                .http
                .post(&endpoint.url)
                .timeout(endpoint.timeout)
                .header("content-type", EVENTS_MEDIA_TYPE)
                .body(serde_json::to_vec(&envelope).unwrap_or_default());
            for (name, value) in &endpoint.headers {
                request = request.header(name, value);
            }
            let response = request.send().await.map_err(|e| what(&e))?;
            if !response.status().is_success() {
                return Err(what(&format!("{} answered {}", endpoint.url, response.status())));
            }
            queue.delivered(last).await.map_err(|e| what(&e))?;
            sent += envelope.events.len();
            // Renew the lease for the next batch.
            if !queue.lease(&self.instance, LEASE_TERM).await.map_err(|e| what(&e))? {
                return Ok(sent);
            }
        }
    }

    /// Gives up this instance's leases, so that another delivers at once: for a process that
    /// stops gracefully.
    pub async fn release(&self) {
        for (endpoint, queue) in self.endpoints.iter() {
            if let Err(e) = queue.release(&self.instance).await {
                tracing::warn!(endpoint = %endpoint.name, error = %e, "the notification lease was not given up");
            }
        }
    }

    /// Delivers to every endpoint for as long as it runs: each looks at its queue every
    /// `poll`, and after `threshold` failures in a row waits its `backoff` between tries.
    pub async fn run(self, poll: Duration) {
        let tasks = (0..self.endpoints.len()).map(|index| {
            let notifier = self.clone();
            async move {
                let endpoint = notifier.endpoints[index].0.clone();
                let mut failures = 0u32;
                loop {
                    match notifier.deliver(index).await {
                        Ok(sent) => {
                            crate::Stats::add(&notifier.stats.notifications_delivered, sent as u64);
                            failures = 0;
                            tokio::time::sleep(poll).await;
                        }
                        Err(e) => {
                            crate::Stats::add(&notifier.stats.notification_failures, 1);
                            failures = failures.saturating_add(1);
                            tracing::warn!(endpoint = %endpoint.name, failures, error = %e, "notification delivery failed");
                            let wait = if failures >= endpoint.threshold { endpoint.backoff } else { poll };
                            tokio::time::sleep(wait).await;
                        }
                    }
                }
            }
        });
        futures::future::join_all(tasks).await;
    }
}
