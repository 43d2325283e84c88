//! `kill -9` during a MAR load: no SQN may ever be issued twice for a subscriber.
//!
//! Spawns the real `hss` binary on a temporary database, runs a bounded MAR load from several
//! concurrent requests, SIGKILLs the process mid-load, restarts it on the same database and
//! continues. Every AUTN received is decoded (SQN = AUTN[0..6] ⊕ AK) and checked.
mod common;
use common::*;
use diameter::transport::PeerHandle;
use diameter::{app, avp, cmd, result, Avp, FindAvp, Message, PeerConfig, VENDOR_3GPP};
use hss::store::{Durability, Store};
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Hss(Child);
impl Drop for Hss {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(config: &std::path::Path) -> (Hss, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hss"))
        .args(["-c", config.to_str().unwrap(), "run"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn hss");
    let out = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).unwrap();
    assert!(
        line.starts_with("hss ready "),
        "unexpected first line {line:?}"
    );
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("diameter="))
        .unwrap()
        .parse()
        .unwrap();
    (Hss(child), addr)
}

fn mar(c: &PeerHandle, n: u32) -> Message {
    let s = sub(n);
    Message::request(app::CX, cmd::MULTIMEDIA_AUTH)
        .with(Avp::utf8(avp::SESSION_ID, c.new_session_id()))
        .with(Avp::vendor_specific_auth_app(VENDOR_3GPP, app::CX))
        .with(Avp::enumerated(avp::AUTH_SESSION_STATE, 1))
        .with(Avp::utf8(avp::ORIGIN_HOST, "scscf.ims.lab"))
        .with(Avp::utf8(avp::ORIGIN_REALM, "ims.lab"))
        .with(Avp::utf8(avp::DESTINATION_REALM, "ims.lab"))
        .with(Avp::utf8(avp::USER_NAME, &s.impi))
        .with(Avp::utf8(avp::PUBLIC_IDENTITY, &s.impus[0].uri))
        .with(Avp::u32(avp::SIP_NUMBER_AUTH_ITEMS, 1 + n % 2))
        .with(Avp::grouped(
            avp::SIP_AUTH_DATA_ITEM,
            [Avp::utf8(
                avp::SIP_AUTHENTICATION_SCHEME,
                "Digest-AKAv1-MD5",
            )],
        ))
}

type Seen = Arc<Mutex<Vec<(u32, u64, u32)>>>; // (subscriber, sqn, phase)

fn record(a: &Message, n: u32, phase: u32, seen: &Seen) {
    assert_eq!(a.get_u32(avp::RESULT_CODE).unwrap(), result::SUCCESS);
    let m = akav1::Milenage::new(&K, &OPC);
    for item in a.find_all(avp::SIP_AUTH_DATA_ITEM) {
        let g = item.as_grouped().unwrap();
        let au = g.get_octets(avp::SIP_AUTHENTICATE).unwrap();
        let rand: [u8; 16] = au[..16].try_into().unwrap();
        let ak = m.f2345(&rand).ak;
        let mut b = [0u8; 6];
        for i in 0..6 {
            b[i] = au[16 + i] ^ ak[i];
        }
        seen.lock()
            .unwrap()
            .push((n, akav1::Sqn::from_bytes(&b).value(), phase));
    }
}

/// Runs up to `max` MARs over `conc` workers; stops early (without failing) when the
/// connection dies. Returns how many were answered.
async fn load(addr: SocketAddr, phase: u32, max: u32, conc: u32, seen: Seen) -> u32 {
    let c = PeerHandle::connect(addr, PeerConfig::cx("scscf.ims.lab", "ims.lab"))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for w in 0..conc {
        let c = c.clone();
        let seen = seen.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0;
            for i in 0..max / conc {
                let n = 1 + (w + i) % 3;
                match c.request(mar(&c, n)).await {
                    Ok(a) => {
                        record(&a, n, phase, &seen);
                        ok += 1;
                    }
                    Err(_) => break,
                }
            }
            ok
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_never_reuses_an_sqn() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hss.db");
    let conf = dir.path().join("hss.toml");
    std::fs::write(
        &conf,
        format!(
            "[diameter]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\ndurability = \"full\"\n",
            db.display()
        ),
    )
    .unwrap();
    {
        let mut s = Store::open(&db, Durability::Full).unwrap();
        for n in 1..=3 {
            s.add(&sub(n)).unwrap();
        }
    }
    let seen: Seen = Arc::default();

    // Phase 1: load, and SIGKILL while it runs.
    let (mut hss, addr) = spawn(&conf);
    let l = tokio::spawn(load(addr, 1, 200_000, 16, seen.clone()));
    // Kill once a good number of answers went out (bounded wait).
    for _ in 0..2000 {
        if seen.lock().unwrap().len() >= 2000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let st = Command::new("kill")
        .args(["-9", &hss.0.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let _ = hss.0.wait();
    let answered1 = tokio::time::timeout(Duration::from_secs(30), l)
        .await
        .unwrap()
        .unwrap();
    assert!(
        answered1 > 0 && answered1 < 200_000,
        "kill happened mid-load ({answered1} answered)"
    );

    // Phase 2: restart on the same database and continue.
    let (_hss2, addr2) = spawn(&conf);
    let answered2 = load(addr2, 2, 3000, 8, seen.clone()).await;
    assert_eq!(answered2, 3000);

    let seen = seen.lock().unwrap();
    let mut uniq = HashSet::new();
    for &(n, sqn, _) in seen.iter() {
        assert!(
            uniq.insert((n, sqn)),
            "SQN {sqn} issued twice to subscriber {n}"
        );
    }
    for n in 1..=3 {
        let max1 = seen
            .iter()
            .filter(|x| x.0 == n && x.2 == 1)
            .map(|x| x.1)
            .max()
            .unwrap_or(0);
        let min2 = seen
            .iter()
            .filter(|x| x.0 == n && x.2 == 2)
            .map(|x| x.1)
            .min()
            .unwrap();
        assert!(
            min2 > max1,
            "after restart subscriber {n} got SQN {min2} <= {max1} issued before the kill"
        );
    }
    eprintln!(
        "durability: {} vectors before kill -9, {} after restart, all SQNs unique",
        answered1, answered2
    );
}

fn sar(c: &PeerHandle, n: u32, k: u32) -> Message {
    let s = sub(n);
    Message::request(app::CX, cmd::SERVER_ASSIGNMENT)
        .with(Avp::utf8(avp::SESSION_ID, c.new_session_id()))
        .with(Avp::vendor_specific_auth_app(VENDOR_3GPP, app::CX))
        .with(Avp::enumerated(avp::AUTH_SESSION_STATE, 1))
        .with(Avp::utf8(avp::ORIGIN_HOST, "scscf.ims.lab"))
        .with(Avp::utf8(avp::ORIGIN_REALM, "ims.lab"))
        .with(Avp::utf8(avp::DESTINATION_REALM, "ims.lab"))
        .with(Avp::utf8(avp::USER_NAME, &s.impi))
        .with(Avp::utf8(avp::PUBLIC_IDENTITY, &s.impus[0].uri))
        .with(Avp::utf8(
            avp::SERVER_NAME,
            format!("sip:scscf-{k}.ims.lab"),
        ))
        .with(Avp::enumerated(avp::SERVER_ASSIGNMENT_TYPE, 1))
        .with(Avp::enumerated(avp::USER_DATA_ALREADY_AVAILABLE, 0))
}

fn k_of(name: Option<&str>) -> u32 {
    name.and_then(|n| n.strip_prefix("sip:scscf-"))
        .and_then(|n| n.strip_suffix(".ims.lab"))
        .and_then(|k| k.parse().ok())
        .unwrap_or(0)
}

/// SARs go through the same group commit as SQNs: an S-CSCF assignment whose SAA arrived
/// must be on disk. One worker per subscriber assigns it `sip:scscf-<k>` with k rising, one
/// SAR at a time, with MARs of the other subscribers in the same batches; after a SIGKILL
/// mid-load the stored k of every subscriber (and of its implicit set) is at least the last
/// k answered. An HSS that answered before its commit would lose the newest assignments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_keeps_every_answered_sar() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hss.db");
    let conf = dir.path().join("hss.toml");
    std::fs::write(
        &conf,
        format!(
            "[diameter]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\ndurability = \"full\"\n",
            db.display()
        ),
    )
    .unwrap();
    const SUBS: u32 = 6;
    {
        let mut s = Store::open(&db, Durability::Full).unwrap();
        for n in 1..=SUBS + 3 {
            s.add(&sub(n)).unwrap();
        }
    }
    let (mut hss, addr) = spawn(&conf);
    let c = PeerHandle::connect(addr, PeerConfig::cx("scscf.ims.lab", "ims.lab"))
        .await
        .unwrap();
    let last: Arc<Mutex<Vec<u32>>> = Arc::new(Mutex::new(vec![0; SUBS as usize + 1]));
    let mut tasks = Vec::new();
    for n in 1..=SUBS {
        let c = c.clone();
        let last = last.clone();
        tasks.push(tokio::spawn(async move {
            for k in 1..=200_000u32 {
                match c.request(sar(&c, n, k)).await {
                    Ok(a) => {
                        assert_eq!(a.get_u32(avp::RESULT_CODE).unwrap(), result::SUCCESS);
                        last.lock().unwrap()[n as usize] = k;
                    }
                    Err(_) => break,
                }
            }
        }));
    }
    // MAR load on other subscribers shares the batches.
    let seen: Seen = Arc::default();
    let mars = tokio::spawn(load(addr, 1, 100_000, 4, seen.clone()));
    for _ in 0..2000 {
        if last.lock().unwrap().iter().sum::<u32>() >= 3000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let st = Command::new("kill")
        .args(["-9", &hss.0.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let _ = hss.0.wait();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .unwrap()
            .unwrap();
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), mars).await;
    let last = last.lock().unwrap().clone();
    assert!(last[1..].iter().all(|&k| k > 0 && k < 200_000), "{last:?}");
    let s = Store::open(&db, Durability::Full).unwrap();
    for n in 1..=SUBS {
        let got = s.get(&sub(n).impi).unwrap().unwrap();
        let stored = k_of(got.scscf_name.as_deref());
        assert!(
            stored >= last[n as usize],
            "subscriber {n}: SAA for scscf-{} was sent, but the store has scscf-{stored}",
            last[n as usize]
        );
        let set = s.registration_of(&sub(n).impus[0].uri).unwrap().unwrap();
        assert_eq!(k_of(set.scscf_name.as_deref()), stored);
    }
    eprintln!("durability: SARs answered before kill -9: {last:?}, all on disk");
}
