//! Wireshark's Diameter dissector over a loopback capture of our own traffic: CER/CEA,
//! Cx MAR/MAA, UAR/UAA, SAR/SAA, LIR/LIA, RTR/RTA, PPR/PPA, DWR/DWA, error answers and
//! DPR/DPA must all dissect with zero malformed packets.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{free_port, require_binary};
use diameter::{
    app, avp, cmd, enums, result, Avp, FindAvp, Message, PeerConfig, PeerHandle, Server,
    VENDOR_3GPP,
};
use tokio::io::{AsyncBufReadExt, BufReader};

fn cx_req(c: &PeerHandle, code: u32) -> Message {
    Message::request(app::CX, code)
        .with(Avp::utf8(avp::SESSION_ID, c.new_session_id()))
        .with(Avp::vendor_specific_auth_app(VENDOR_3GPP, app::CX))
        .with(Avp::enumerated(
            avp::AUTH_SESSION_STATE,
            enums::NO_STATE_MAINTAINED,
        ))
        .with(Avp::utf8(avp::DESTINATION_REALM, "ims.lab"))
        .with(Avp::utf8(avp::USER_NAME, "001010000000001@ims.lab"))
        .with(Avp::utf8(
            avp::PUBLIC_IDENTITY,
            "sip:001010000000001@ims.lab",
        ))
}

async fn hss(req: Message) -> Message {
    let a = Message::answer_for(&req)
        .with(Avp::vendor_specific_auth_app(VENDOR_3GPP, app::CX))
        .with(Avp::enumerated(
            avp::AUTH_SESSION_STATE,
            enums::NO_STATE_MAINTAINED,
        ));
    match req.code {
        cmd::MULTIMEDIA_AUTH => a
            .with(Avp::utf8(
                avp::USER_NAME,
                req.get_utf8(avp::USER_NAME).unwrap_or(""),
            ))
            .with(Avp::u32(avp::SIP_NUMBER_AUTH_ITEMS, 1))
            .with(Avp::grouped(
                avp::SIP_AUTH_DATA_ITEM,
                [
                    Avp::u32(avp::SIP_ITEM_NUMBER, 1),
                    Avp::utf8(avp::SIP_AUTHENTICATION_SCHEME, "Digest-AKAv1-MD5"),
                    Avp::octets(avp::SIP_AUTHENTICATE, vec![0x5a; 32]),
                    Avp::octets(avp::SIP_AUTHORIZATION, vec![0xa5; 8]),
                    Avp::octets(avp::CONFIDENTIALITY_KEY, vec![0x11; 16]),
                    Avp::octets(avp::INTEGRITY_KEY, vec![0x22; 16]),
                ],
            ))
            .with_result_code(result::SUCCESS),
        cmd::USER_AUTHORIZATION => a
            .with(Avp::utf8(avp::SERVER_NAME, "sip:scscf.ims.lab:6060"))
            .with_experimental_result(VENDOR_3GPP, result::cx::FIRST_REGISTRATION),
        cmd::SERVER_ASSIGNMENT => a
            .with(Avp::octets(
                avp::USER_DATA,
                &b"<?xml version=\"1.0\"?><IMSSubscription/>"[..],
            ))
            .with(Avp::grouped(
                avp::CHARGING_INFORMATION,
                [Avp::utf8(
                    avp::PRIMARY_EVENT_CHARGING_FUNCTION_NAME,
                    "aaa://ocs.ims.lab",
                )],
            ))
            .with_result_code(result::SUCCESS),
        cmd::LOCATION_INFO => a
            .with(Avp::grouped(
                avp::SERVER_CAPABILITIES,
                [
                    Avp::u32(avp::MANDATORY_CAPABILITY, 1),
                    Avp::u32(avp::OPTIONAL_CAPABILITY, 2),
                ],
            ))
            .with_experimental_result(VENDOR_3GPP, result::cx::UNREGISTERED_SERVICE),
        _ => a.with_result_code(result::UNABLE_TO_COMPLY),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tshark_finds_no_malformed_packets() {
    if !require_binary("tshark") {
        return;
    }
    let port = free_port();
    // Negative control: a second port carries one deliberately broken message, so the
    // malformed filter is shown to match something.
    let bad_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("cx.pcap");
    let mut cap = tokio::process::Command::new("tshark")
        .args([
            "-i",
            "lo",
            "-f",
            &format!("tcp port {port} or tcp port {bad_port}"),
            "-w",
        ])
        .arg(&pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // tshark says "Capturing on 'Loopback: lo'" once the filter is live.
    let mut lines = BufReader::new(cap.stderr.take().unwrap()).lines();
    let started = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(l)) = lines.next_line().await {
            if l.contains("Capturing on") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    if !started {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("tshark could not capture on lo");
        }
        eprintln!("SKIPPED: tshark cannot capture on lo here");
        return;
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    // dumpcap announces itself slightly before the socket filter is attached.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let server = Server::bind(
        ("127.0.0.1", port),
        PeerConfig::cx("hss.ims.lab", "ims.lab"),
        hss,
    )
    .await
    .unwrap();
    let (srv, _task) = server.spawn();
    let mut conf = PeerConfig::cx("scscf.ims.lab", "ims.lab");
    conf.watchdog_interval = Duration::from_millis(700);
    conf.watchdog_jitter = Duration::ZERO;
    let client =
        PeerHandle::connect_with_handler(("127.0.0.1", port), conf, |req: Message| async move {
            Message::answer_for(&req).with_result_code(result::SUCCESS)
        })
        .await
        .unwrap();
    for code in [
        cmd::USER_AUTHORIZATION,
        cmd::MULTIMEDIA_AUTH,
        cmd::SERVER_ASSIGNMENT,
        cmd::LOCATION_INFO,
    ] {
        let mut r = cx_req(&client, code);
        if code == cmd::MULTIMEDIA_AUTH {
            r = r
                .with(Avp::u32(avp::SIP_NUMBER_AUTH_ITEMS, 1))
                .with(Avp::grouped(
                    avp::SIP_AUTH_DATA_ITEM,
                    [Avp::utf8(
                        avp::SIP_AUTHENTICATION_SCHEME,
                        "Digest-AKAv1-MD5",
                    )],
                ))
                .with(Avp::utf8(avp::SERVER_NAME, "sip:scscf.ims.lab:6060"));
        }
        let a = client.request(r).await.unwrap();
        assert!(a.result().unwrap().is_success(), "{a:?}");
    }
    // Error answers: unknown command (3001, E bit) and unknown mandatory AVP (5001).
    let a = client.request(cx_req(&client, 399)).await.unwrap();
    assert_eq!(a.result().unwrap().code(), result::COMMAND_UNSUPPORTED);
    let a = client
        .request(cx_req(&client, cmd::MULTIMEDIA_AUTH).with(Avp::raw(4242, 0, 0x40, &b"xx"[..])))
        .await
        .unwrap();
    assert_eq!(a.result().unwrap().code(), result::AVP_UNSUPPORTED);
    // Server-initiated RTR and PPR.
    for code in [cmd::REGISTRATION_TERMINATION, cmd::PUSH_PROFILE] {
        let mut r = Message::request(app::CX, code)
            .with(Avp::utf8(avp::SESSION_ID, "hss.ims.lab;1;1"))
            .with(Avp::vendor_specific_auth_app(VENDOR_3GPP, app::CX))
            .with(Avp::enumerated(
                avp::AUTH_SESSION_STATE,
                enums::NO_STATE_MAINTAINED,
            ))
            .with(Avp::utf8(avp::DESTINATION_HOST, "scscf.ims.lab"))
            .with(Avp::utf8(avp::DESTINATION_REALM, "ims.lab"))
            .with(Avp::utf8(avp::USER_NAME, "001010000000001@ims.lab"));
        if code == cmd::REGISTRATION_TERMINATION {
            r.add(Avp::grouped(
                avp::DEREGISTRATION_REASON,
                [
                    Avp::enumerated(avp::REASON_CODE, 0),
                    Avp::utf8(avp::REASON_INFO, "admin"),
                ],
            ));
        }
        let a = srv.request("scscf.ims.lab", r).await.unwrap();
        assert!(a.result().unwrap().is_success());
    }
    // A second server on the control port gets one malformed MAR after CER/CEA; its
    // 5014 answer (with Failed-AVP) must dissect cleanly while the request is flagged.
    let bad_server = Server::bind(
        ("127.0.0.1", bad_port),
        PeerConfig::cx("hss2.ims.lab", "ims.lab"),
        hss,
    )
    .await
    .unwrap();
    let _bad = bad_server.spawn();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", bad_port))
        .await
        .unwrap();
    let mut cer = Message::request(app::COMMON, cmd::CAPABILITIES_EXCHANGE)
        .with(Avp::utf8(avp::ORIGIN_HOST, "raw.ims.lab"))
        .with(Avp::utf8(avp::ORIGIN_REALM, "ims.lab"))
        .with(Avp::address(
            avp::HOST_IP_ADDRESS,
            "127.0.0.1".parse().unwrap(),
        ))
        .with(Avp::u32(avp::VENDOR_ID, 0))
        .with(Avp::utf8(avp::PRODUCT_NAME, "raw"))
        .with(Avp::vendor_specific_auth_app(VENDOR_3GPP, app::CX));
    cer.hop_by_hop = 1;
    let mut broken = cx_req(&client, cmd::MULTIMEDIA_AUTH);
    broken.hop_by_hop = 2;
    let mut broken = broken.encode();
    broken[20 + 7] = 0xf0; // first AVP's length overruns the message
    let mut wire = cer.encode();
    wire.extend_from_slice(&broken);
    tokio::io::AsyncWriteExt::write_all(&mut s, &wire)
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut answers = Vec::new();
    while answers.len() < 2 {
        let mut b = [0u8; 4096];
        let n = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(&mut s, &mut b),
        )
        .await
        .expect("answers from the control server")
        .unwrap();
        assert!(n > 0, "control server closed early");
        got.extend_from_slice(&b[..n]);
        while let Ok(Some(len)) = diameter::frame_length(&got, 1 << 20) {
            if got.len() < len {
                break;
            }
            answers.push(Message::decode_slice(&got[..len]).unwrap());
            got.drain(..len);
        }
    }
    assert_eq!(
        answers[1].result().unwrap().code(),
        result::INVALID_AVP_LENGTH
    );
    assert!(answers[1].find(avp::FAILED_AVP).is_some());
    drop(s);
    // Let the watchdog fire once (DWR/DWA), then DPR/DPA.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    client.disconnect().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = cap.id().unwrap();
    let _ = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    let _ = tokio::time::timeout(Duration::from_secs(10), cap.wait()).await;

    if let Ok(keep) = std::env::var("DIAMETER_KEEP_PCAP") {
        let _ = std::fs::copy(&pcap, keep);
    }
    let tshark = |filter: &str| -> Vec<String> {
        let out = Command::new("tshark")
            .arg("-r")
            .arg(&pcap)
            .args([
                "-d",
                &format!("tcp.port=={port},diameter"),
                "-d",
                &format!("tcp.port=={bad_port},diameter"),
                "-Y",
                filter,
                "-T",
                "fields",
                "-e",
                "frame.number",
                "-e",
                "diameter.cmd.code",
                "-e",
                "diameter.flags.request",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tshark -Y {filter}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    };
    let all = tshark(&format!("diameter && tcp.port == {port}"));
    let malformed = tshark(&format!(
        "tcp.port == {port} && (_ws.malformed || _ws.expert.severity == error)"
    ));
    let control = tshark(&format!(
        "tcp.dstport == {bad_port} && (_ws.malformed || _ws.expert.severity == error)"
    ));
    let error_answers = tshark(&format!(
        "tcp.srcport == {bad_port} && (_ws.malformed || _ws.expert.severity == error)"
    ));
    assert!(
        error_answers.is_empty(),
        "our 5014 answer is flagged: {error_answers:?}"
    );
    assert!(
        !control.is_empty(),
        "the negative control was not flagged: the filter proves nothing"
    );
    let codes: std::collections::BTreeSet<String> = all
        .iter()
        .filter_map(|l| l.split('\t').nth(1).map(str::to_string))
        .collect();
    eprintln!(
        "diameter frames: {}, command codes: {codes:?}, malformed: {malformed:?}",
        all.len()
    );
    assert!(malformed.is_empty(), "malformed frames: {malformed:?}");
    for c in [
        "257", "280", "282", "300", "301", "302", "303", "304", "305", "399",
    ] {
        assert!(
            codes.iter().any(|x| x.split(',').any(|y| y == c)),
            "command {c} not seen: {codes:?}"
        );
    }
}
