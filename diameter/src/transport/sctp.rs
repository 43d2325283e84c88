//! Diameter over SCTP (RFC 6733 §2.1), behind the `sctp` feature.
//!
//! The peer core works on a byte stream; tokio-sctp offers message calls only, so each
//! association is bridged to an in-memory duplex pipe by two small tasks. Messages go out
//! on stream 0 with PPID 46 (Diameter, RFC 6733 §2.1). Kernels without SCTP fail with
//! [`TransportError::SctpUnsupported`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;
use tokio_sctp::{SctpListener, SctpStream, SendOptions};

use super::{
    seed, spawn_connection, Handler, PeerHandle, Refusals, Registration, Registry, ServerHandle,
    TransportError,
};
use crate::peer::{CloseReason, Peer, PeerConfig};

/// SCTP payload protocol identifier for Diameter without DTLS.
const PPID_DIAMETER: u32 = 46;

/// The errno behind `e`, looking through tokio-sctp's wrapper error.
fn os_code(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| {
        let inner = e.get_ref()?;
        let src = inner.source()?;
        src.downcast_ref::<io::Error>()?.raw_os_error()
    })
}

fn map_err(e: io::Error) -> TransportError {
    // EPROTONOSUPPORT (93) / ESOCKTNOSUPPORT (94): the kernel has no SCTP module.
    if matches!(os_code(&e), Some(93) | Some(94)) {
        TransportError::SctpUnsupported(e)
    } else {
        TransportError::Io(e)
    }
}

/// Bridges an SCTP association to a duplex pipe the connection driver can read/write.
fn bridge(stream: SctpStream) -> DuplexStream {
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut sr, mut sw) = stream.into_split();
    let (mut pr, mut pw) = tokio::io::split(theirs);
    tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        loop {
            buf.reserve(64 * 1024);
            match sr.recvmsg_buf(&mut buf).await {
                Ok((0, _, _)) | Err(_) => break,
                Ok(_) => {
                    if pw.write_all(&buf).await.is_err() {
                        break;
                    }
                    buf.clear();
                }
            }
        }
        let _ = pw.shutdown().await;
    });
    tokio::spawn(async move {
        let opts = SendOptions {
            ppid: PPID_DIAMETER.to_be(),
            ..SendOptions::default()
        };
        let mut buf = BytesMut::with_capacity(64 * 1024);
        loop {
            buf.clear();
            match pr.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if sw.sendmsg(&buf, None, &opts).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    ours
}

impl PeerHandle {
    /// Connects over SCTP and runs CER/CEA.
    pub async fn connect_sctp<H: Handler>(
        addr: SocketAddr,
        config: PeerConfig,
        handler: H,
    ) -> Result<PeerHandle, TransportError> {
        let stream = SctpStream::connect(addr).await.map_err(map_err)?;
        let local = stream.local_addr().ok().map(|a| a.ip());
        let now = tokio::time::Instant::now().into_std();
        let peer = Peer::connect(Arc::new(config), now, seed(), local);
        let (up_tx, up_rx) = tokio::sync::oneshot::channel();
        let (r, w) = tokio::io::split(bridge(stream));
        spawn_connection(r, w, peer, Arc::new(handler), Some(up_tx), None);
        match up_rx.await {
            Ok(Ok(h)) => Ok(h),
            Ok(Err(reason)) => Err(TransportError::Rejected(reason)),
            Err(_) => Err(TransportError::Rejected(CloseReason::TransportClosed)),
        }
    }
}

/// Serves Diameter over SCTP on `addr`; returns the handle and the accept task.
pub fn serve_sctp<H: Handler>(
    addr: SocketAddr,
    config: PeerConfig,
    handler: H,
) -> Result<(ServerHandle, JoinHandle<io::Result<()>>), TransportError> {
    let listener = SctpListener::bind(addr).map_err(map_err)?;
    let local_addr = listener.local_addr().map_err(map_err)?;
    let registry: Registry = Arc::default();
    let refusals: Arc<Refusals> = Arc::default();
    let handle = ServerHandle {
        registry: registry.clone(),
        refusals: refusals.clone(),
        local_addr,
    };
    let config = Arc::new(config);
    let handler = Arc::new(handler);
    let task = tokio::spawn(async move {
        let mut conn_id = 0u64;
        loop {
            let (stream, remote) = listener.accept().await?;
            conn_id += 1;
            let local_ip = stream.local_addr().ok().map(|a| a.ip());
            let now = tokio::time::Instant::now().into_std();
            let mut peer = Peer::accept(config.clone(), now, seed(), local_ip);
            peer.set_remote_addr(remote.ip());
            let (r, w) = tokio::io::split(bridge(stream));
            spawn_connection(
                r,
                w,
                peer,
                handler.clone(),
                None,
                Some(Registration {
                    registry: registry.clone(),
                    conn_id,
                    refusals: refusals.clone(),
                }),
            );
        }
    });
    Ok((handle, task))
}
