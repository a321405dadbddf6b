//! Notifications: events queued durably in the store by several instances at once, each
//! number given once; delivered in order to an HTTP endpoint served by the test, with
//! Distribution's media type and the endpoint's headers; the endpoint down for a while and
//! the notifier restarted meanwhile, every event delivered afterwards; filters; and a store
//! that fails while an event is queued.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use wharf_mirror::notify::{Action, EVENTS_MEDIA_TYPE, Endpoint, Envelope, Event, Notifier, Queue, Target};
use wharf_storage::{Fault, FaultInjector, MemoryDriver, Operation, StorageDriver};

fn event(n: usize, action: Action) -> Event {
    Event {
        id: format!("event-{n}"),
        timestamp: "2026-12-07T10:00:00Z".to_owned(),
        action,
        target: Target {
            media_type: "application/vnd.oci.image.manifest.v1+json".to_owned(),
            digest: format!("sha256:{n:064x}"),
            size: 100,
            length: 100,
            repository: "team/app".to_owned(),
            ..Target::default()
        },
        request: Default::default(),
        actor: Default::default(),
        source: Default::default(),
    }
}

/// What the endpoint received: each POST's events' ids, with its headers checked.
#[derive(Default)]
struct Received {
    posts: Mutex<Vec<Vec<String>>>,
    up: AtomicBool,
}

async fn endpoint(received: Arc<Received>) -> String {
    let router = Router::new().fallback(move |request: Request| {
        let received = received.clone();
        async move {
            if !received.up.load(Ordering::SeqCst) {
                return StatusCode::SERVICE_UNAVAILABLE;
            }
            let headers = request.headers().clone();
            assert_eq!(headers["content-type"], EVENTS_MEDIA_TYPE);
            assert_eq!(headers["authorization"], "Bearer listener-token");
            let body = axum::body::to_bytes(request.into_body(), usize::MAX).await.unwrap();
            let envelope: Envelope = serde_json::from_slice(&body).unwrap();
            received.posts.lock().unwrap().push(envelope.events.into_iter().map(|e| e.id).collect());
            StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

fn listener_endpoint(url: &str) -> Endpoint {
    let mut endpoint = Endpoint::new("listener", url);
    endpoint.headers.push(("authorization".to_owned(), "Bearer listener-token".to_owned()));
    endpoint
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_queueing_at_once_never_share_a_number() {
    let driver: Arc<dyn StorageDriver> = Arc::new(MemoryDriver::new());
    let (one, two) = (Queue::new(driver.clone(), "e").unwrap(), Queue::new(driver.clone(), "e").unwrap());
    let pushes = (0..40).map(|n| {
        let queue = if n % 2 == 0 { one.clone() } else { two.clone() };
        tokio::spawn(async move { queue.push(&event(n, Action::Push)).await.unwrap() })
    });
    let mut numbers: Vec<u64> = futures::future::join_all(pushes).await.into_iter().map(Result::unwrap).collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), 40, "each event its own number");
    let pending = one.pending(100).await.unwrap();
    assert_eq!(pending.len(), 40);
    assert!(pending.windows(2).all(|w| w[0].number < w[1].number), "oldest first");
    let mut ids: Vec<String> = pending.into_iter().map(|q| q.event.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40, "every event once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_in_order_after_the_endpoint_and_the_notifier_come_back() {
    let received = Arc::new(Received::default());
    let url = endpoint(received.clone()).await;
    let driver: Arc<dyn StorageDriver> = Arc::new(MemoryDriver::new());
    let notifier = Notifier::new(driver.clone(), vec![listener_endpoint(&url)], "instance-1").unwrap();
    for n in 0..5 {
        notifier.notify(&event(n, Action::Push)).await.unwrap();
    }
    // The endpoint is down: nothing goes, nothing is lost.
    let failed = notifier.deliver(0).await.unwrap_err();
    assert!(failed.contains("503"), "{failed}");
    for n in 5..8 {
        notifier.notify(&event(n, Action::Push)).await.unwrap();
    }
    // The registry restarts (a new notifier over the same store, under the same instance
    // name, so it takes its lease back at once; under another it would wait out the lease's
    // term) and the endpoint comes back.
    drop(notifier);
    received.up.store(true, Ordering::SeqCst);
    let restarted = Notifier::new(driver.clone(), vec![listener_endpoint(&url)], "instance-1").unwrap();
    assert_eq!(restarted.deliver(0).await.unwrap(), 8);
    let delivered: Vec<String> = received.posts.lock().unwrap().iter().flatten().cloned().collect();
    let expected: Vec<String> = (0..8).map(|n| format!("event-{n}")).collect();
    assert_eq!(delivered, expected, "every event, once, in order");
    // Nothing left to send.
    assert_eq!(restarted.deliver(0).await.unwrap(), 0);

    // Another instance holding the lease delivers instead of this one.
    let other = Notifier::new(driver.clone(), vec![listener_endpoint(&url)], "instance-2").unwrap();
    other.notify(&event(8, Action::Push)).await.unwrap();
    assert_eq!(other.deliver(0).await.unwrap(), 0, "instance-1 holds the lease");
    // Given up (a graceful stop), it passes to the other at once.
    restarted.release().await;
    assert_eq!(other.deliver(0).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignored_actions_and_media_types_are_not_queued() {
    let received = Arc::new(Received::default());
    received.up.store(true, Ordering::SeqCst);
    let url = endpoint(received.clone()).await;
    let mut filtered = listener_endpoint(&url);
    filtered.ignored_actions.push(Action::Pull);
    filtered.ignored_media_types.push("application/octet-stream".to_owned());
    let notifier = Notifier::new(Arc::new(MemoryDriver::new()), vec![filtered], "i").unwrap();
    notifier.notify(&event(0, Action::Pull)).await.unwrap();
    let mut blob = event(1, Action::Push);
    blob.target.media_type = "application/octet-stream".to_owned();
    notifier.notify(&blob).await.unwrap();
    notifier.notify(&event(2, Action::Delete)).await.unwrap();
    assert_eq!(notifier.deliver(0).await.unwrap(), 1);
    assert_eq!(*received.posts.lock().unwrap(), [vec!["event-2".to_owned()]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_fails_while_queueing_says_so_and_loses_nothing_queued() {
    let faulty = Arc::new(FaultInjector::new(MemoryDriver::new()));
    let driver: Arc<dyn StorageDriver> = faulty.clone();
    let received = Arc::new(Received::default());
    received.up.store(true, Ordering::SeqCst);
    let url = endpoint(received.clone()).await;
    let notifier = Notifier::new(driver, vec![listener_endpoint(&url)], "i").unwrap();
    notifier.notify(&event(0, Action::Push)).await.unwrap();
    faulty.inject(Fault::fail(Operation::PutIf).on_paths_containing("/events/").times(1));
    let error = notifier.notify(&event(1, Action::Push)).await.unwrap_err();
    assert!(error.contains("endpoint listener"), "{error}");
    notifier.notify(&event(2, Action::Push)).await.unwrap();
    // Delivery with the cursor's write failing once: the batch is sent again after.
    faulty.inject(Fault::fail(Operation::PutContent).on_paths_containing("/delivered").times(1));
    assert!(notifier.deliver(0).await.is_err());
    assert_eq!(notifier.deliver(0).await.unwrap(), 2);
    let delivered: Vec<String> = received.posts.lock().unwrap().iter().flatten().cloned().collect();
    assert_eq!(
        delivered,
        ["event-0", "event-2", "event-0", "event-2"],
        "at least once: the batch whose receipt was not recorded is sent again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_delivers_what_is_queued_later() {
    let received = Arc::new(Received::default());
    received.up.store(true, Ordering::SeqCst);
    let url = endpoint(received.clone()).await;
    let notifier = Notifier::new(Arc::new(MemoryDriver::new()), vec![listener_endpoint(&url)], "i").unwrap();
    let running = tokio::spawn(notifier.clone().run(Duration::from_millis(20)));
    for n in 0..3 {
        notifier.notify(&event(n, Action::Push)).await.unwrap();
    }
    wharf_testing::eventually("the events delivered", Duration::from_secs(5), async || {
        received.posts.lock().unwrap().iter().flatten().count() == 3
    })
    .await;
    running.abort();
}

#[tokio::test]
async fn a_queue_whose_numbers_ran_out_says_so_rather_than_wrap() {
    let driver: Arc<dyn StorageDriver> = Arc::new(MemoryDriver::new());
    driver.put_content("/wharf/notifications/e/delivered", bytes::Bytes::from(u64::MAX.to_string())).await.unwrap();
    let error = Queue::new(driver, "e").unwrap().push(&event(0, Action::Push)).await.unwrap_err();
    assert!(error.to_string().contains("used every number"), "{error}");
}
