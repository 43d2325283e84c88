//! SCTP transport (feature `sctp`). This kernel has no SCTP: the error must say so
//! clearly. Where SCTP exists, a loopback CER/CEA and one request must work.
#![cfg(feature = "sctp")]

use diameter::transport::sctp::serve_sctp;
use diameter::transport::NoHandler;
use diameter::{Message, PeerConfig, PeerHandle, TransportError};

#[tokio::test]
async fn sctp_works_or_reports_missing_kernel_support() {
    let addr = "127.0.0.1:0".parse().unwrap();
    let handler = |req: Message| async move { Message::answer_for(&req).with_result_code(2001) };
    match serve_sctp(addr, PeerConfig::cx("hss.ims.lab", "ims.lab"), handler) {
        Err(TransportError::SctpUnsupported(e)) => {
            let text = TransportError::SctpUnsupported(e).to_string();
            assert!(
                text.contains("SCTP is not supported by this kernel"),
                "{text}"
            );
            eprintln!("kernel without SCTP, as expected here: {text}");
            let r = PeerHandle::connect_sctp(
                "127.0.0.1:3868".parse().unwrap(),
                PeerConfig::cx("c.lab", "lab"),
                NoHandler,
            )
            .await;
            assert!(
                matches!(r, Err(TransportError::SctpUnsupported(_))),
                "{r:?}"
            );
        }
        Err(e) => panic!("unexpected SCTP error: {e}"),
        Ok((srv, _task)) => {
            let c = PeerHandle::connect_sctp(
                srv.local_addr(),
                PeerConfig::cx("c.lab", "lab"),
                NoHandler,
            )
            .await
            .unwrap();
            let a = c
                .request(Message::request(
                    diameter::app::CX,
                    diameter::cmd::USER_AUTHORIZATION,
                ))
                .await
                .unwrap();
            assert_eq!(a.result().map(|r| r.code()), Some(2001));
        }
    }
}
