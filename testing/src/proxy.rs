//! A TCP proxy on a free loopback port that counts the bytes it carries each way and
//! injects faults: it cuts the connection that carries a chosen byte, or answers new
//! connections with a canned HTTP response (429 with `Retry-After`, a 503 burst) before
//! they reach the server.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// A proxy in front of `upstream`; stopped when dropped.
pub struct FaultProxy {
    /// Where clients connect.
    pub address: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct State {
    /// Bytes carried from clients to the server, over every connection.
    upstream: AtomicU64,
    /// Bytes carried from the server to clients.
    downstream: AtomicU64,
    /// The connection carrying this upstream byte (counted over all connections) is cut.
    cut_upstream_at: Mutex<VecDeque<u64>>,
    /// The same for downstream bytes.
    cut_downstream_at: Mutex<VecDeque<u64>>,
    /// Canned answers for the next new connections, one each.
    answers: Mutex<VecDeque<String>>,
    /// Connections accepted.
    connections: AtomicU64,
}

/// Which way bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the client to the server (request bodies).
    Upstream,
    /// From the server to the client (answers).
    Downstream,
}

impl FaultProxy {
    /// Starts a proxy to `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let address = listener.local_addr().expect("the proxy's address");
        let state = Arc::new(State::default());
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                shared.connections.fetch_add(1, Ordering::Relaxed);
                let state = shared.clone();
                tokio::spawn(async move {
                    let answer = state.answers.lock().unwrap().pop_front();
                    match answer {
                        Some(answer) => answer_and_close(client, &answer).await,
                        None => {
                            if let Ok(server) = TcpStream::connect(upstream).await {
                                relay(client, server, &state).await;
                            }
                        }
                    }
                });
            }
        });
        FaultProxy { address, state, task }
    }

    /// `host:port` of the proxy, as a client addresses it.
    pub fn host(&self) -> String {
        self.address.to_string()
    }

    /// Bytes carried so far in `direction`.
    pub fn bytes(&self, direction: Direction) -> u64 {
        match direction {
            Direction::Upstream => self.state.upstream.load(Ordering::Relaxed),
            Direction::Downstream => self.state.downstream.load(Ordering::Relaxed),
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::Relaxed)
    }

    /// Cuts the connection that carries byte `at` (counted from the start of the proxy,
    /// over every connection) in `direction`, after forwarding the bytes before it.
    pub fn cut_at(&self, direction: Direction, at: u64) {
        let cuts = match direction {
            Direction::Upstream => &self.state.cut_upstream_at,
            Direction::Downstream => &self.state.cut_downstream_at,
        };
        let mut cuts = cuts.lock().unwrap();
        cuts.push_back(at);
        cuts.make_contiguous().sort_unstable();
    }

    /// Cuts the connection `after` more bytes from now in `direction`.
    pub fn cut_after(&self, direction: Direction, after: u64) {
        self.cut_at(direction, self.bytes(direction) + after);
    }

    /// Answers the next `count` new connections with `status` (and `Retry-After: seconds`
    /// when given) without reaching the server, closing each.
    pub fn refuse_next(&self, count: usize, status: u16, retry_after: Option<u64>) {
        let retry_after = retry_after.map(|s| format!("Retry-After: {s}\r\n")).unwrap_or_default();
        let answer = format!(
            "HTTP/1.1 {status} Refused by the test proxy\r\n{retry_after}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        self.state.answers.lock().unwrap().extend(std::iter::repeat_n(answer, count));
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads the request head, answers, closes.
async fn answer_and_close(mut client: TcpStream, answer: &str) {
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
    }
    let _ = client.write_all(answer.as_bytes()).await;
    let _ = client.shutdown().await;
}

/// Carries bytes both ways until either side closes or a cut is due.
async fn relay(client: TcpStream, server: TcpStream, state: &Arc<State>) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, state.clone(), Direction::Upstream);
    let down = pump(server_read, client_write, state.clone(), Direction::Downstream);
    // When one way ends or is cut the other goes too: dropping both halves closes the
    // sockets.
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

/// Copies one way until the source closes or a cut is due.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: Arc<State>,
    direction: Direction,
) {
    let (counter, cuts) = match direction {
        Direction::Upstream => (&state.upstream, &state.cut_upstream_at),
        Direction::Downstream => (&state.downstream, &state.cut_downstream_at),
    };
    let mut buffer = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        let start = counter.fetch_add(n as u64, Ordering::Relaxed);
        let cut = {
            let mut cuts = cuts.lock().unwrap();
            match cuts.front() {
                Some(&at) if at < start + n as u64 => {
                    cuts.pop_front();
                    Some(usize::try_from(at.saturating_sub(start)).unwrap_or(0))
                }
                _ => None,
            }
        };
        let keep = cut.unwrap_or(n);
        if to.write_all(&buffer[..keep]).await.is_err() {
            return;
        }
        if cut.is_some() {
            // Count only what got through.
            counter.fetch_sub((n - keep) as u64, Ordering::Relaxed);
            return;
        }
    }
}
