//! Userspace ESP between two network namespaces over veth, for every algorithm pair and both
//! IP families: SIP-sized UDP crosses both ways; tshark, given only the exported `esp_sa`
//! file, decrypts the capture, shows the ICVs correct and dissects SIP; a tampered and a
//! replayed packet are dropped and counted.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use xfrm::netns::{have, is_root, require, NetNs};
use xfrm::userspace::Inbound;
use xfrm::{EncryptionAlg, IntegrityAlg, IpsecBackend, SaSet, Side, UserspaceBackend};

type Rx = tokio::sync::mpsc::Receiver<Inbound>;

fn recv(rx: &mut Rx) -> Option<Inbound> {
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if let Ok(m) = rx.try_recv() {
            return Some(m);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

fn sip_register(set: &SaSet, n: usize) -> Vec<u8> {
    let body = format!(
        "REGISTER sip:ims.mnc001.mcc001.3gppnetwork.org SIP/2.0\r\n\
         Via: SIP/2.0/UDP {ue}:{uc};branch=z9hG4bK{n:08}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:001010000000001@ims.mnc001.mcc001.3gppnetwork.org>;tag={n}\r\n\
         To: <sip:001010000000001@ims.mnc001.mcc001.3gppnetwork.org>\r\n\
         Call-ID: reg-{n}@lab\r\n\
         CSeq: {n} REGISTER\r\n\
         Contact: <sip:001010000000001@{ue}:{uc}>;expires=600;+sip.instance=\"<urn:gsma:imei:35000000-000000-0>\"\r\n\
         Security-Verify: ipsec-3gpp;alg={alg};ealg={ealg};spi-c={spc};spi-s={sps};port-c={ppc};port-s={pps}\r\n\
         Authorization: Digest username=\"001010000000001@ims.mnc001.mcc001.3gppnetwork.org\",realm=\"ims.mnc001.mcc001.3gppnetwork.org\",nonce=\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\",uri=\"sip:ims.mnc001.mcc001.3gppnetwork.org\",response=\"00000000000000000000000000000000\",algorithm=AKAv1-MD5\r\n\
         P-Access-Network-Info: 3GPP-E-UTRAN-FDD;utran-cell-id-3gpp=0010100010019B01\r\nUser-Agent: imslab-ue\r\nSupported: path,sec-agree\r\nRequire: sec-agree\r\nProxy-Require: sec-agree\r\n\
         Content-Length: 0\r\n\r\n",
        ue = if set.is_ipv6() { format!("[{}]", set.ue) } else { set.ue.to_string() },
        uc = set.port_uc,
        alg = set.integrity,
        ealg = set.encryption,
        spc = set.spi_pc,
        sps = set.spi_ps,
        ppc = set.port_pc,
        pps = set.port_ps,
    );
    body.into_bytes()
}

fn sip_200(n: usize) -> Vec<u8> {
    format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP ue;branch=z9hG4bK{n:08}\r\nFrom: <sip:a@b>;tag={n}\r\n\
         To: <sip:a@b>;tag=p{n}\r\nCall-ID: reg-{n}@lab\r\nCSeq: {n} REGISTER\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn userspace_esp_over_veth_decrypted_by_tshark() {
    if !require(
        is_root() && have("ip") && have("tshark"),
        "needs root, iproute2 and tshark",
    ) {
        return;
    }
    let pns = NetNs::create("xfrmt-p").unwrap();
    let uns = NetNs::create("xfrmt-u").unwrap();
    let (pdev, _udev) = pns
        .veth_to(
            &uns,
            &["10.77.0.1/24", "fd77::1/64"],
            &["10.77.0.2/24", "fd77::2/64"],
        )
        .unwrap();

    let mut sets = Vec::new();
    let mut base = 0x10000;
    for (ue, p) in [("10.77.0.2", "10.77.0.1"), ("fd77::2", "fd77::1")] {
        for i in IntegrityAlg::ALL {
            for e in EncryptionAlg::ALL {
                sets.push(common::set(ue, p, base, i, e));
                base += 0x10;
            }
        }
    }
    // Every set makes 2 packets, plus one tampered and two replays for the first set.
    let expected_packets = sets.len() * 2 + 3;

    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("esp.pcapng");
    let mut cap = pns
        .command("tshark")
        .args(["-q", "-i", &pdev, "-f", "esp", "-w"])
        .arg(&pcap)
        .args(["-c", &expected_packets.to_string(), "-a", "duration:20"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for "Capturing on" before sending.
    let mut err = cap.stderr.take().unwrap();
    let mut seen = Vec::new();
    let start = Instant::now();
    while !String::from_utf8_lossy(&seen).contains("Capturing on") {
        let mut b = [0u8; 256];
        let n = std::io::Read::read(&mut err, &mut b).unwrap();
        assert!(
            n > 0 && start.elapsed() < Duration::from_secs(30),
            "tshark did not start: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&b[..n]);
    }
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    // tshark announces the interface slightly before its capture filter is live.
    std::thread::sleep(Duration::from_millis(1500));

    let (p, mut prx): (UserspaceBackend, Rx) =
        pns.run(|| UserspaceBackend::start().unwrap()).unwrap();
    let (u, mut urx): (UserspaceBackend, Rx) =
        uns.run(|| UserspaceBackend::start().unwrap()).unwrap();

    for (n, s) in sets.iter().enumerate() {
        let pid = p.install(s, Side::Pcscf).unwrap();
        u.install(s, Side::Ue).unwrap();
        let ue_c = SocketAddr::new(s.ue, s.port_uc);
        let p_s = SocketAddr::new(s.pcscf, s.port_ps);
        let reg = sip_register(s, n);
        assert!(reg.len() > 1000, "SIP-sized: {}", reg.len());
        u.send_udp(ue_c, p_s, &reg).unwrap();
        match recv(&mut prx)
            .unwrap_or_else(|| panic!("no REGISTER for {}/{} {}", s.integrity, s.encryption, s.ue))
        {
            Inbound::Udp {
                src,
                dst,
                payload,
                set,
                ..
            } => {
                assert_eq!((src, dst, set), (ue_c, p_s, pid));
                assert_eq!(payload, reg);
            }
            other => panic!("{other:?}"),
        }
        p.promote(pid, Duration::from_secs(600), Instant::now())
            .unwrap();
        p.send_udp(p_s, ue_c, &sip_200(n)).unwrap();
        match recv(&mut urx).expect("200 OK at the UE") {
            Inbound::Udp { payload, .. } => assert_eq!(payload, sip_200(n)),
            other => panic!("{other:?}"),
        }
    }

    // Tamper and replay, as raw ESP from the UE namespace. All IPv4 sets share addresses and
    // ports, so the UE's newest set (the last IPv4 one) carries it.
    let s0 = &sets[0];
    let ue_c = SocketAddr::new(s0.ue, s0.port_uc);
    let p_s = SocketAddr::new(s0.pcscf, s0.port_ps);
    let good = u
        .endpoint()
        .encrypt_udp(ue_c, p_s, &sip_register(s0, 999))
        .unwrap();
    let mut bad = good.clone();
    let last = bad.len() - 20;
    bad[last] ^= 0x40;
    let before = p.endpoint().counters();
    u.send_raw(s0.ue, s0.pcscf, &bad).unwrap();
    u.send_raw(s0.ue, s0.pcscf, &good).unwrap();
    assert!(recv(&mut prx).is_some(), "the genuine packet is accepted");
    u.send_raw(s0.ue, s0.pcscf, &good).unwrap();
    // The replay from the first REGISTER of set 0 (sequence 1 again) is also refused.
    std::thread::sleep(Duration::from_millis(200));
    let after = p.endpoint().counters();
    assert_eq!(
        after.esp.dropped_icv - before.esp.dropped_icv,
        1,
        "tampered dropped"
    );
    assert_eq!(
        after.esp.dropped_replay - before.esp.dropped_replay,
        1,
        "replay dropped"
    );
    assert!(prx.try_recv().is_err(), "nothing else delivered");

    let status = cap.wait().unwrap();
    assert!(status.success());
    // Export keys from the P-CSCF's live sets and let tshark decrypt with only that file.
    let live: Vec<SaSet> = p.live_sets().into_iter().map(|(_, s, _)| s).collect();
    assert_eq!(live.len(), sets.len());
    let conf = dir.path().join("config");
    std::fs::create_dir_all(conf.join("wireshark")).unwrap();
    xfrm::uat::write_esp_sa_file(&conf.join("wireshark/esp_sa"), live.iter()).unwrap();
    let out = Command::new("tshark")
        .env("XDG_CONFIG_HOME", &conf)
        .env("HOME", dir.path())
        .args(["-r"])
        .arg(&pcap)
        .args([
            "-o",
            "esp.enable_encryption_decode:TRUE",
            "-o",
            "esp.enable_authentication_check:TRUE",
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "esp.spi",
            "-e",
            "esp.sequence",
            "-e",
            "esp.icv_good",
            "-e",
            "esp.icv_bad",
            "-e",
            "sip.Method",
            "-e",
            "sip.Status-Code",
            "-e",
            "udp.checksum.status",
            "-e",
            "_ws.malformed",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(lines.len(), expected_packets, "{text}");
    let good_icv = lines
        .iter()
        .filter(|l| l[2] == "1" || l[2] == "True")
        .count();
    let bad_icv = lines
        .iter()
        .filter(|l| l[3] == "1" || l[3] == "True")
        .count();
    let registers = lines.iter().filter(|l| l[4] == "REGISTER").count();
    let oks = lines.iter().filter(|l| l[5] == "200").count();
    // The tampered packet decrypts to garbage, so only it may be malformed.
    let malformed = lines
        .iter()
        .filter(|l| !l[7].is_empty() && l[3] != "1")
        .count();
    eprintln!("tshark: {} packets, {good_icv} good ICV, {bad_icv} bad ICV, {registers} REGISTER, {oks} 200 OK, {malformed} malformed", lines.len());
    assert_eq!(bad_icv, 1, "exactly the tampered packet:\n{text}");
    assert_eq!(good_icv, expected_packets - 1, "{text}");
    // Every REGISTER (one per set, plus the genuine and the replayed extra) is dissected as SIP;
    // the tampered one too only if decryption happened to give valid text, so count >=.
    assert!(registers >= sets.len() + 2, "{text}");
    assert_eq!(oks, sets.len(), "{text}");
    assert_eq!(malformed, 0, "{text}");
    for s in &sets {
        assert!(
            text.contains(&format!("0x{:08x}", s.spi_ps)),
            "SA 1 of {}/{}",
            s.integrity,
            s.encryption
        );
    }
}
