//! Issue 5 acceptance, real kernel: IMS registration with the kernel IPsec backend on both
//! ends. The host kernel lacks ESP, so Debian's packaged kernel boots under qemu TCG
//! (lab/vm/run.sh) and runs lab/vm/scenarios/registration.sh: `imslab net serve --ipsec
//! kernel` (HSS + P-CSCF) in one network namespace, two `imslab ue register --ipsec kernel`
//! UEs (lab subscribers 0 and 1) in one namespace each, joined by veth pairs. Both UEs
//! register, re-register and deregister side by side; between the steps the kernel's per-SA
//! ESP packet counters must have risen in every namespace, and at the end no SA and no policy
//! may be left anywhere. The core namespace's side of both veths is captured (dumpcap in the
//! VM), and tshark on the host, given only the esp_sa keys the P-CSCF exported, decrypts the
//! kernel's ESP: every ICV correct, every protected REGISTER/401/200 dissected, and the only
//! plaintext SIP is the two initial REGISTERs and their 401s on port 5060. The call's INVITE
//! and the protected REGISTERs are larger than 1300 bytes: RFC 3261 §18.1.1 sends them over
//! TCP, and tshark finds that TCP inside the kernel's ESP on both legs. Then
//! lab/vm/scenarios/xfrm-tags.sh (issue 8): two P-CSCF processes in one namespace and UE
//! processes sharing another keep their own tagged SAs and policies through each other's
//! starts, stops, crashes and restarts; a restarted one flushes exactly its own leftovers.
//!
//! One command: `cargo test -p lab --release --test vm_registration`. Needs qemu-system-x86_64,
//! busybox (static), cpio, gzip, xz, apt-get/dpkg-deb (to fetch the kernel package), iproute2,
//! dumpcap and tshark on the host; no root, no KVM. About 30 s with a warm kernel cache.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Host tools the harness needs; each goes through the skip-or-fail policy.
const TOOLS: [&str; 10] = [
    "qemu-system-x86_64",
    "busybox",
    "cpio",
    "gzip",
    "xz",
    "apt-get",
    "dpkg-deb",
    "ip",
    "dumpcap",
    "tshark",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn vm_cache() -> PathBuf {
    std::env::var_os("VM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/vm-cache"))
}

/// The `REGTEST` lines of the serial log, without the console's carriage returns.
fn regtest_lines(log: &str) -> Vec<String> {
    log.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| l.starts_with("REGTEST "))
        .map(str::to_string)
        .collect()
}

/// `key=value` from a REGTEST line (values end at a space or `]`).
fn num(line: &str, key: &str) -> u64 {
    line.split(|c: char| c.is_whitespace() || c == '[' || c == ']')
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric {key}= in {line:?}"))
}

#[test]
fn registration_with_kernel_ipsec_in_vm() {
    if !TOOLS.iter().all(|t| testkit::require_bin(t).is_some()) {
        return;
    }
    let Some(dumpcap) = testkit::require_bin("dumpcap") else {
        return;
    };
    let cache = vm_cache();
    let work = cache.join("run-registration");
    let log = work.join("serial.log");
    let out_dir = work.join("out");
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_dir_all(&out_dir);

    // The payload: the imslab binary (HSS, P-CSCF and UE in one) and the scenario.
    let payload = tempfile::tempdir().expect("tempdir");
    std::fs::copy(env!("CARGO_BIN_EXE_imslab"), payload.path().join("imslab"))
        .expect("copy imslab");
    for script in ["registration.sh", "xfrm-tags.sh"] {
        std::fs::copy(
            repo().join("lab/vm/scenarios").join(script),
            payload.path().join(script),
        )
        .expect("copy the scenario");
    }

    let start = Instant::now();
    let out = Command::new(repo().join("lab/vm/run.sh"))
        .arg(payload.path())
        .arg("registration.sh")
        .env("VM_CACHE", &cache)
        .env("VM_WORK", &work)
        .env("VM_LOG", &log)
        .env("VM_OUT", &out_dir)
        .env("VM_QUIET", "1")
        // the host's dumpcap, copied into the VM with its libraries
        .env("VM_EXTRA_BINS", &dumpcap)
        // the budget: ≤ 5 min in CI, boot and kernel cache included
        .env("VM_TIMEOUT", "240")
        .output()
        .expect("run lab/vm/run.sh");
    let elapsed = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let serial = std::fs::read_to_string(&log).unwrap_or_default();
    let lines = regtest_lines(&serial);
    for l in stderr.lines().filter(|l| l.starts_with("vm/run:")) {
        eprintln!("{l}");
    }
    for l in &lines {
        eprintln!("{l}");
    }
    eprintln!("vm_registration: {:.1}s wall", elapsed.as_secs_f64());

    let failed: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("REGTEST FAIL"))
        .collect();
    assert!(
        failed.is_empty(),
        "checks failed in the VM:\n{}\n(serial log {}, logs in {})",
        failed
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        log.display(),
        out_dir.display()
    );
    assert!(
        out.status.success(),
        "run.sh failed ({}):\n{stderr}\nserial log {}:\n{}",
        out.status,
        log.display(),
        serial
            .lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        serial
            .lines()
            .any(|l| l.starts_with("IMSLAB-VM-RESULT ") && l.contains(" PASS ")),
        "no PASS result line in {}",
        log.display()
    );

    let pass = |name: &str| -> String {
        let found: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with(&format!("REGTEST PASS {name} ")))
            .collect();
        assert_eq!(found.len(), 1, "one PASS line for {name} in:\n{lines:#?}");
        found[0].clone()
    };
    let ready = pass("net-ready");
    assert!(
        ready.contains("ipsec=kernel"),
        "P-CSCF on kernel XFRM: {ready}"
    );
    pass("pcscf-backend");
    pass("ues-registered");
    pass("ues-reregistered");

    // Registered: 4 SAs per UE on each side; the protected REGISTER and its 200 OK went
    // through kernel ESP, so on each side at least the two SAs per UE they used counted.
    let installed = pass("sa-sets-installed");
    assert_eq!(num(&installed, "core_states"), 8, "{installed}");
    assert_eq!(num(&installed, "ue0_states"), 4, "{installed}");
    assert_eq!(num(&installed, "ue1_states"), 4, "{installed}");
    for name in ["esp-counters-registered", "esp-counters-reregistered"] {
        let l = pass(name);
        assert!(num(&l, "core_active") >= 4, "{l}");
        assert!(num(&l, "core_packets") >= 4, "{l}");
        for ue in ["ue0", "ue1"] {
            assert!(num(&l, &format!("{ue}_active")) >= 2, "{l}");
            assert!(num(&l, &format!("{ue}_packets")) >= 2, "{l}");
        }
    }
    for ue in ["ue0-exit", "ue1-exit"] {
        let l = pass(ue);
        assert!(l.contains("rc=0"), "{l}");
        for step in ["registered in", "re-registered in", "deregistered in"] {
            assert!(l.contains(step), "{ue}: no {step:?}: {l}");
        }
    }
    let left = pass("nothing-left-after-deregistration");
    assert_eq!(num(&left, "states"), 0, "{left}");
    assert!(left.contains("policies=0] ue0[states=0"), "{left}");
    assert!(left.contains("policies=0] ue1[states=0"), "{left}");
    assert!(left.ends_with("policies=0]"), "{left}");
    // Issue 9: a call between the two UEs over kernel ESP on both ends.
    let caller = pass("call-caller");
    assert!(
        caller.contains("rc=0") && caller.contains("answered after"),
        "{caller}"
    );
    let callee = pass("call-callee");
    assert!(
        callee.contains("rc=0") && callee.contains("incoming call"),
        "{callee}"
    );
    let stopped = pass("net-stopped");
    assert!(stopped.contains("rc=0"), "{stopped}");
    assert_eq!(num(&stopped, "registrations"), 6, "{stopped}");
    assert_eq!(num(&stopped, "deregistrations"), 4, "{stopped}");
    assert_eq!(num(&stopped, "rejections"), 0, "{stopped}");
    pass("pcscf-counters");
    pass("nothing-left-after-stop");
    let summary = lines
        .iter()
        .find(|l| l.starts_with("REGTEST SUMMARY "))
        .expect("summary line");
    assert_eq!(num(summary, "failed"), 0, "{summary}");
    assert_eq!(num(summary, "passed"), 31, "{summary}");
    pass("capture-started");
    pass("capture-stopped");
    xfrm_tags_phase(&pass);

    // Logs handed back through /out: the UEs' ladders show the protected exchanges, and
    // the SA dumps show the kernel's ESP states with their algorithms.
    for i in 0..2 {
        let ue = std::fs::read_to_string(out_dir.join(format!("ue{i}.log")))
            .unwrap_or_else(|e| panic!("ue{i}.log from /out: {e}"));
        assert!(ue.contains("IPsec backend: kernel"), "ue{i}.log:\n{ue}");
        assert!(ue.contains("deregistered in"), "ue{i}.log:\n{ue}");
    }
    let xfrm_ue = std::fs::read_to_string(out_dir.join("xfrm-imslab-reg-ue0.log"))
        .expect("xfrm dump of the UE namespace from /out");
    assert!(xfrm_ue.contains("proto esp"), "{xfrm_ue}");
    let net = std::fs::read_to_string(out_dir.join("net.log")).expect("net.log from /out");
    assert!(net.contains("imslab net: stopped on SIGTERM"), "{net}");
    tshark_decrypts_the_registrations(&out_dir);
}

/// Issue 8 (lab/vm/scenarios/xfrm-tags.sh): two P-CSCF processes in one namespace and UE
/// processes sharing another, each with its own XFRM tag. `pass(name)` is the check's PASS line.
fn xfrm_tags_phase(pass: &dyn Fn(&str) -> String) {
    pass("tags-namespaces");
    let ready = pass("tags-pcscfs-ready");
    assert_ne!(
        num(&ready, "pcscfA_uid"),
        num(&ready, "pcscfB_uid"),
        "{ready}"
    );
    let ues = pass("tags-ues-registered");
    assert_ne!(num(&ues, "ueA_uid"), num(&ues, "ueB_uid"), "{ues}");
    // Four instances, one SA set each, every one of them under its own tag.
    let by = pass("tags-state-by-instance");
    assert!(
        by.contains(" pcscfA=4/4 pcscfB=4/4 ueA=4/4 ueB=4/4 "),
        "{by}"
    );
    // A crashed UE leaves its state; restarted, it flushes exactly that, and the other UE
    // keeps its SAs through the crash, the restart and a third UE's start and stop.
    assert!(pass("tags-ue-crash-leftovers").contains("ueA=4/4 ueB unchanged"));
    assert!(pass("tags-ue-restart").contains("ueA=4/4 (none of the old SPIs) ueB unchanged"));
    let stop = pass("tags-ue-stop");
    assert!(stop.contains("rc=0") && stop.contains("ueC=0/0"), "{stop}");
    // A P-CSCF stopping or starting leaves the other's SAs exactly as they were; a crashed
    // one's leftovers are flushed by its restart, and only those.
    let stop = pass("tags-pcscf-stop");
    assert!(stop.contains("rc=0 pcscfB=0/0 pcscfA unchanged"), "{stop}");
    pass("tags-pcscf-start");
    assert!(!pass("tags-pcscf-crash-leftovers").contains("=0/0"));
    assert!(pass("tags-pcscf-restart").contains("pcscfA=0/0 after its restart"));
    assert!(pass("tags-nothing-left").contains("states=0 policies=0"));
}

/// tshark, given only the keys the P-CSCF exported (its esp_sa file), decrypts what the
/// kernel put on the wire: an independent check of algorithms, keys (TS 33.203 Annex I),
/// SPIs and ports.
fn tshark_decrypts_the_registrations(out_dir: &Path) {
    let conf = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(conf.path().join("wireshark")).expect("mkdir");
    std::fs::copy(
        out_dir.join("pcscf.esp_sa"),
        conf.path().join("wireshark/esp_sa"),
    )
    .expect("pcscf.esp_sa from /out");
    let out = Command::new("tshark")
        .env("XDG_CONFIG_HOME", conf.path())
        .env("HOME", conf.path())
        .arg("-r")
        .arg(out_dir.join("core.pcapng"))
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
            "esp.icv_good",
            "-e",
            "esp.icv_bad",
            "-e",
            "udp.srcport",
            "-e",
            "udp.dstport",
            "-e",
            "sip.Method",
            "-e",
            "sip.Status-Code",
            "-e",
            "_ws.malformed",
            "-e",
            "sip.CSeq.seq",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
        ])
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split('|').collect())
        .filter(|r: &Vec<&str>| r.len() == 11)
        .collect();
    let yes = |v: &str| v == "1" || v == "True";
    let esp: Vec<&Vec<&str>> = rows.iter().filter(|r| !r[0].is_empty()).collect();
    let plain_sip: Vec<&Vec<&str>> = rows
        .iter()
        .filter(|r| r[0].is_empty() && (!r[5].is_empty() || !r[6].is_empty()))
        .collect();
    let good = esp.iter().filter(|r| yes(r[1])).count();
    let bad = rows.iter().filter(|r| yes(r[2])).count();
    let count = |rs: &[&Vec<&str>], col: usize, v: &str| rs.iter().filter(|r| r[col] == v).count();
    let malformed = rows.iter().filter(|r| !r[7].is_empty()).count();
    // Under a loaded host the slow guest may retransmit a protected REGISTER (timer E) and
    // the P-CSCF answer it again: the same row (SPI, ports, method or status, CSeq) twice,
    // counted once, so that the counts below are of messages, not of transmissions.
    let mut messages: Vec<&Vec<&str>> = Vec::new();
    for r in &esp {
        if !messages.contains(r) {
            messages.push(r);
        }
    }
    let (reg, c401, c200) = (
        count(&messages, 5, "REGISTER"),
        count(&messages, 6, "401"),
        count(&messages, 6, "200"),
    );
    eprintln!(
        "tshark on the kernel's ESP: {} frames, {} ESP, {good} ICV good, {bad} ICV bad; \
         protected: {reg} REGISTER, {c401} 401, {c200} 200; plaintext SIP: {}; {malformed} malformed",
        rows.len(),
        esp.len(),
        plain_sip.len()
    );
    assert!(
        !esp.is_empty() && good == esp.len() && bad == 0,
        "ICVs:\n{text}"
    );
    // Registration phase, per UE: the REGISTER with the AKA response, the re-registration's
    // two (challenged on the old set, answered on the new one) and the deregistration; call
    // phase, per UE: the REGISTER with the response and the deregistration. All protected;
    // 401 only for the two re-authentications; 200 for every procedure, and more for the
    // call and the reg-event subscriptions.
    assert_eq!((reg, c401), (12, 2), "protected SIP:\n{text}");
    assert!(c200 >= 10, "protected SIP:\n{text}");
    // The call, on both legs (ue0 ⇄ core, core ⇄ ue1), inside ESP.
    for m in ["INVITE", "ACK", "BYE"] {
        assert!(count(&messages, 5, m) >= 2, "{m} inside ESP:\n{text}");
    }
    // RFC 3261 §18.1.1 inside the SAs: the INVITE (~1,800 bytes) and every protected
    // REGISTER (~1,750) are over TCP, from the sender's protected client port to the
    // receiver's protected server port, on both legs: the INVITE under two SAs (ue0 → core
    // on ue0's set, core → ue1 on ue1's), each one with TCP inside the ESP.
    let over_tcp = |r: &&Vec<&str>| !r[9].is_empty() && r[3].is_empty();
    let invites: Vec<&&Vec<&str>> = messages.iter().filter(|r| r[5] == "INVITE").collect();
    assert!(
        invites.iter().all(|r| over_tcp(r)),
        "INVITE over TCP:\n{text}"
    );
    let mut invite_spis: Vec<&str> = invites.iter().map(|r| r[0]).collect();
    invite_spis.sort_unstable();
    invite_spis.dedup();
    assert_eq!(invite_spis.len(), 2, "INVITE on both legs:\n{text}");
    assert!(
        messages.iter().filter(|r| r[5] == "REGISTER").all(over_tcp),
        "protected REGISTERs over TCP:\n{text}"
    );
    // In the clear: only each UE's initial REGISTER (CSeq 1) and its 401, on the unprotected
    // port. Under a loaded host the slow TCG guest may retransmit the initial REGISTER (timer
    // E, RFC 3261 §17.1.2.2) before its 401 arrives, and the 401 with it: the same messages
    // again, still nothing else in the clear.
    let initial = |r: &&Vec<&str>| r[8] == "1";
    assert!(
        count(&plain_sip, 5, "REGISTER") >= 2 && count(&plain_sip, 6, "401") >= 2,
        "{text}"
    );
    assert_eq!(
        count(&plain_sip, 5, "REGISTER") + count(&plain_sip, 6, "401"),
        plain_sip.len(),
        "{text}"
    );
    assert!(plain_sip.iter().all(initial), "{text}");
    // (over UDP or, for the ~1,300-byte initial REGISTER, TCP: either way port 5060)
    let port = |r: &&Vec<&str>, udp: usize, tcp: usize| {
        if r[udp].is_empty() {
            r[tcp].to_string()
        } else {
            r[udp].to_string()
        }
    };
    assert!(
        plain_sip
            .iter()
            .all(|r| port(r, 3, 9) == "5060" && port(r, 4, 10) == "5060"),
        "plaintext SIP off the unprotected port:\n{text}"
    );
    assert_eq!(malformed, 0, "{text}");
}
