//! The TCP fan-out server the NCID and Fritz!Box sinks share: accept many clients, greet
//! each, write every formatted line to every client, read and discard whatever clients
//! send. Formatting stays in the sink modules; this is only the shell.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

use super::{Shutdown, SinkError, SinkHandle, SinkStats, Subscription};
use crate::event::{CallEvent, EventBus};

/// A client that cannot take a line within this long is disconnected: one stuck desktop
/// must not hold the lines of the others (each client has its own queue).
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Lines queued per client before a slow one starts losing them.
const CLIENT_QUEUE: usize = 256;

/// What clients may send us is read into this buffer and dropped: NCID clients send
/// requests we do not serve, and nothing a client sends can grow our memory.
const READ_CHUNK: usize = 512;

/// Starts a line server on `listen`.
pub(crate) async fn spawn<F>(
    name: &'static str,
    listen: SocketAddr,
    greeting: Vec<String>,
    max_clients: usize,
    bus: &EventBus,
    shutdown: Shutdown,
    mut format: F,
) -> Result<SinkHandle, SinkError>
where
    F: FnMut(&CallEvent) -> Vec<String> + Send + 'static,
{
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| SinkError::Bind {
            sink: name,
            addr: listen.to_string(),
            source,
        })?;
    let local = listener.local_addr().ok();
    let stats = Arc::new(SinkStats::default());
    let mut sub = Subscription::new(name, bus, shutdown.clone(), stats.clone());
    let (lines, _) = broadcast::channel::<Arc<str>>(CLIENT_QUEUE);
    let greeting: Arc<[String]> = greeting.into();
    let st = stats.clone();
    let task = tokio::spawn(async move {
        tracing::info!(sink = name, addr = ?local, "listening");
        loop {
            tokio::select! {
                ev = sub.next() => {
                    let Some(ev) = ev else { break };
                    for line in format(&ev) {
                        // No client connected is not an error: the line is simply not heard.
                        let _ = lines.send(line.into());
                    }
                }
                acc = listener.accept() => match acc {
                    Ok((sock, peer)) => {
                        if SinkStats::get(&st.clients) >= max_clients as u64 {
                            tracing::warn!(sink = name, %peer, max_clients, "client refused: too many clients");
                            drop(sock);
                            continue;
                        }
                        st.clients.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(sink = name, %peer, "client connected");
                        let client = Client { name, peer, stats: st.clone() };
                        tokio::spawn(client.run(sock, greeting.clone(), lines.subscribe()));
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning on accept.
                        tracing::warn!(sink = name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        tracing::info!(sink = name, "stopped");
    });
    Ok(SinkHandle {
        name,
        task,
        stats,
        local_addr: local,
    })
}

struct Client {
    name: &'static str,
    peer: SocketAddr,
    stats: Arc<SinkStats>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stats.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Client {
    async fn run(
        self,
        sock: TcpStream,
        greeting: Arc<[String]>,
        mut lines: broadcast::Receiver<Arc<str>>,
    ) {
        let (mut rd, mut wr) = sock.into_split();
        for g in greeting.iter() {
            if !self.write(&mut wr, g).await {
                return;
            }
        }
        let mut buf = [0u8; READ_CHUNK];
        loop {
            tokio::select! {
                l = lines.recv() => match l {
                    Ok(line) => {
                        if !self.write(&mut wr, &line).await {
                            return;
                        }
                        SinkStats::add(&self.stats.sent, 1);
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        SinkStats::add(&self.stats.lost, n);
                        tracing::warn!(sink = self.name, peer = %self.peer, lost = n, "slow client lost lines");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                r = rd.read(&mut buf) => match r {
                    Ok(0) | Err(_) => {
                        tracing::info!(sink = self.name, peer = %self.peer, "client left");
                        return;
                    }
                    Ok(_) => {} // requests are not served; see READ_CHUNK
                },
            }
        }
    }

    async fn write(&self, wr: &mut tokio::net::tcp::OwnedWriteHalf, line: &str) -> bool {
        match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(line.as_bytes())).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::info!(sink = self.name, peer = %self.peer, error = %e, "client gone");
                false
            }
            Err(_) => {
                SinkStats::add(&self.stats.failed, 1);
                tracing::warn!(sink = self.name, peer = %self.peer, "client too slow; disconnected");
                false
            }
        }
    }
}
