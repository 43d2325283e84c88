//! The pipeline as the inputs drive it: offers and progress reports in, events on the bus
//! and rows in the SQLite call log out, for every outcome, privacy, blocking, the phonebook
//! and a reverse lookup served by a real HTTP server on loopback.

use appserver::blocklist::BlocklistConfig;
use appserver::calllog::{CallLogConfig, CallRecord, Filter};
use appserver::event::{
    CallEvent, CallEventKind, CallObserver, NameSource, Offer, Outcome, Progress, RawCaller,
    Source, Verdict,
};
use appserver::phonebook::PhonebookConfig;
use appserver::pipeline::{self, Pipeline, Sections};
use appserver::reverse::ReverseConfig;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::broadcast::Receiver;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("appserver-pipeline-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn sip_offer(id: &str, pai: &[&str], from: &str, privacy: Option<&str>, at: SystemTime) -> Offer {
    Offer {
        call_id: id.into(),
        caller: RawCaller::Sip {
            p_asserted_identity: pai.iter().map(|s| s.to_string()).collect(),
            from: from.into(),
            privacy: privacy.map(str::to_string),
            trusted: true,
        },
        callee: "sip:+4930999@ims.example.com;user=phone".into(),
        source: Source::Isc,
        at,
    }
}

fn sections(dir: &std::path::Path) -> Sections {
    let book = dir.join("book.vcf");
    std::fs::write(
        &book,
        "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Alice Example\r\nTEL;VALUE=uri:tel:+49-30-1111\r\nEND:VCARD\r\n",
    )
    .unwrap();
    Sections {
        phonebook: PhonebookConfig {
            file: Some(book),
            poll_seconds: 1,
        },
        blocklist: BlocklistConfig {
            entries: vec!["0900*".into()],
            ..Default::default()
        },
        calllog: CallLogConfig {
            path: dir.join("calls.db"),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn next(rx: &mut Receiver<Arc<CallEvent>>) -> Arc<CallEvent> {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("an event within 5 s")
        .expect("bus open")
}

fn rows(p: &Pipeline) -> Vec<CallRecord> {
    let log = p.calllog().expect("call log");
    assert!(log.flush(Duration::from_secs(5)));
    log.query(&Filter::default()).unwrap()
}

fn row(p: &Pipeline, id: &str) -> CallRecord {
    rows(p)
        .into_iter()
        .find(|r| r.call_id == id)
        .unwrap_or_else(|| panic!("no row for {id}"))
}

#[tokio::test]
async fn every_outcome_reaches_the_bus_and_the_call_log() {
    let dir = temp_dir("outcomes");
    let (bus, mut rx) = tokio::sync::broadcast::channel(64);
    let p = pipeline::start(&sections(&dir), bus).unwrap();
    let obs: Arc<dyn CallObserver> = p.clone();

    // Answered, then ended: Ring, Connect, End{Answered, 42 s}. Phonebook name over the
    // display name, number from the tel: PAI.
    let v = obs.offer(sip_offer(
        "answered",
        &[
            "\"Display\" <sip:+49301111@ims.example.com;user=phone>",
            "<tel:+49301111>",
        ],
        "<sip:x@example.com>;tag=1",
        None,
        t(0),
    ));
    assert_eq!(v, Verdict::Ring);
    let ring = next(&mut rx).await;
    assert_eq!(ring.kind, CallEventKind::Ring);
    assert_eq!(ring.caller.number.as_deref(), Some("+49301111"));
    assert_eq!(ring.caller.name.as_deref(), Some("Alice Example"));
    assert_eq!(ring.caller.name_source, NameSource::Phonebook);
    assert_eq!(ring.callee.number.as_deref(), Some("+4930999"));
    assert_eq!((ring.conn, ring.started, ring.at), (0, t(0), t(0)));
    obs.progress("answered", Progress::Answered, t(3));
    let connect = next(&mut rx).await;
    assert_eq!(
        (connect.kind, connect.conn, connect.at),
        (CallEventKind::Connect, 0, t(3))
    );
    obs.progress("answered", Progress::Ended, t(45));
    let end = next(&mut rx).await;
    assert_eq!(
        end.kind,
        CallEventKind::End {
            outcome: Outcome::Answered,
            talk: Duration::from_secs(42)
        }
    );
    assert_eq!(end.caller, ring.caller);
    let r = row(&p, "answered");
    assert_eq!(r.outcome.as_deref(), Some("answered"));
    assert_eq!(r.talk_seconds, 42);
    assert_eq!(r.caller_name.as_deref(), Some("Alice Example"));
    assert_eq!(r.name_source, "phonebook");
    assert_eq!(r.answered_at, Some(appserver::calllog::unix_ms(t(3))));
    assert_eq!(r.ended_at, Some(appserver::calllog::unix_ms(t(45))));

    // Failures, a cancel, answered elsewhere: Ring then End with the mapped outcome.
    let cases = [
        ("busy", Progress::Failed(486), Outcome::Missed),
        ("unavailable", Progress::Failed(480), Outcome::Missed),
        ("timeout", Progress::Failed(408), Outcome::Missed),
        ("cancel", Progress::Cancelled, Outcome::Cancelled),
        (
            "elsewhere",
            Progress::AnsweredElsewhere,
            Outcome::AnsweredElsewhere,
        ),
    ];
    for (id, progress, outcome) in cases {
        obs.offer(sip_offer(
            id,
            &[],
            "\"Bob\" <sip:030-2222@example.com>;tag=2",
            None,
            t(100),
        ));
        let ring = next(&mut rx).await;
        assert_eq!((ring.kind, ring.conn), (CallEventKind::Ring, 0), "{id}");
        assert_eq!(ring.caller.name.as_deref(), Some("Bob"));
        assert_eq!(ring.caller.name_source, NameSource::Display);
        obs.progress(id, progress, t(110));
        // A late report for an ended call changes nothing.
        obs.progress(id, Progress::Answered, t(111));
        let end = next(&mut rx).await;
        assert_eq!(
            end.kind,
            CallEventKind::End {
                outcome,
                talk: Duration::ZERO
            },
            "{id}"
        );
        let r = row(&p, id);
        assert_eq!(r.outcome.as_deref(), Some(outcome.as_str()), "{id}");
        assert_eq!(r.caller_number.as_deref(), Some("+49302222"));
        assert_eq!(r.answered_at, None);
    }

    // Privacy: id hides the caller everywhere.
    obs.offer(sip_offer(
        "private",
        &["<tel:+49301111>"],
        "\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=3",
        Some("id"),
        t(200),
    ));
    let ring = next(&mut rx).await;
    assert!(ring.caller.anonymous);
    assert_eq!(ring.caller.number, None);
    assert_eq!(ring.caller.name.as_deref(), Some("Anonymous"));
    obs.progress("private", Progress::Failed(603), t(201));
    next(&mut rx).await;
    let r = row(&p, "private");
    assert!(r.anonymous);
    assert_eq!(r.caller_number, None);
    assert_eq!(r.name_source, "anonymous");

    // Blocked: one Blocked event, no Ring; the row names the rule; repeats are silent.
    let blocked = Verdict::Block {
        rule: "0900*".into(),
    };
    let offer = sip_offer(
        "spam",
        &["<tel:+49900123>"],
        "<sip:a@b>;tag=4",
        None,
        t(300),
    );
    assert_eq!(obs.offer(offer.clone()), blocked);
    assert_eq!(obs.offer(offer), blocked);
    let ev = next(&mut rx).await;
    assert_eq!(ev.kind, CallEventKind::Blocked);
    assert_eq!(ev.caller.number.as_deref(), Some("+49900123"));
    obs.progress("spam", Progress::Cancelled, t(301));
    let r = row(&p, "spam");
    assert_eq!(r.outcome.as_deref(), Some("blocked"));
    assert_eq!(r.block_rule.as_deref(), Some("0900*"));

    // Nothing else was published (the repeat, the late reports).
    assert!(rx.try_recv().is_err());
    assert_eq!(rows(&p).len(), 8);
    let m = p.render_metrics();
    assert!(
        m.contains("appserver_offers_total{source=\"isc\"} 8"),
        "{m}"
    );
    assert!(
        m.contains("appserver_blocked_total{source=\"isc\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("appserver_events_total{kind=\"end\",source=\"isc\"} 7"),
        "{m}"
    );
    assert!(m.contains("appserver_offer_repeats_total 1"), "{m}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A directory service on loopback: `/fast` answers at once, `/slow` after 400 ms.
async fn directory() -> String {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/fast", get(|| async { "Fast Name" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                "Slow Name"
            }),
        );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_reverse_name_waits_for_the_ring_at_most_ring_delay() {
    let base = directory().await;
    let dir = temp_dir("reverse");

    // ring_delay 1 s, fast answer: the Ring carries the name.
    let mut s = sections(&dir);
    s.reverse = ReverseConfig {
        url: Some(format!("{base}/fast?n={{number}}")),
        ring_delay_ms: 1000,
        ..Default::default()
    };
    let (bus, mut rx) = tokio::sync::broadcast::channel(64);
    let p = pipeline::start(&s, bus).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(
        p.offer(sip_offer(
            "r1",
            &["<tel:+4940123>"],
            "<sip:a@b>;tag=1",
            None,
            t(0)
        )),
        Verdict::Ring
    );
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "offer returns at once"
    );
    let ring = next(&mut rx).await;
    assert_eq!(ring.caller.name.as_deref(), Some("Fast Name"));
    assert_eq!(ring.caller.name_source, NameSource::Reverse);
    // The next call from the number is named from the cache, at once.
    p.offer(sip_offer(
        "r2",
        &["<tel:+4940123>"],
        "<sip:a@b>;tag=1",
        None,
        t(1),
    ));
    let ring = next(&mut rx).await;
    assert_eq!(ring.caller.name.as_deref(), Some("Fast Name"));
    drop(p);

    // ring_delay 0, slow answer: the Ring goes out nameless at once; the name arrives in
    // the call log and the End event.
    let dir = temp_dir("reverse-slow");
    let mut s = sections(&dir);
    s.reverse = ReverseConfig {
        url: Some(format!("{base}/slow?n={{number}}")),
        ..Default::default()
    };
    let (bus, mut rx) = tokio::sync::broadcast::channel(64);
    let p = pipeline::start(&s, bus).unwrap();
    p.offer(sip_offer(
        "s1",
        &["<tel:+4940777>"],
        "<sip:a@b>;tag=1",
        None,
        t(0),
    ));
    let ring = tokio::time::timeout(Duration::from_millis(200), rx.recv())
        .await
        .expect("the Ring does not wait")
        .unwrap();
    assert_eq!(ring.caller.name, None);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(row(&p, "s1").caller_name.as_deref(), Some("Slow Name"));
    p.progress("s1", Progress::Failed(486), t(5));
    let end = next(&mut rx).await;
    assert_eq!(end.caller.name.as_deref(), Some("Slow Name"));
    assert_eq!(end.caller.name_source, NameSource::Reverse);

    // ring_delay 100 ms, slow answer: the Ring goes out after the delay without the name.
    let dir = temp_dir("reverse-delay");
    let mut s = sections(&dir);
    s.reverse = ReverseConfig {
        url: Some(format!("{base}/slow?n={{number}}")),
        ring_delay_ms: 100,
        ..Default::default()
    };
    let (bus, mut rx) = tokio::sync::broadcast::channel(64);
    let p = pipeline::start(&s, bus).unwrap();
    let started = std::time::Instant::now();
    p.offer(sip_offer(
        "d1",
        &["<tel:+4940888>"],
        "<sip:a@b>;tag=1",
        None,
        t(0),
    ));
    let ring = next(&mut rx).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(100) && waited < Duration::from_millis(390),
        "{waited:?}"
    );
    assert_eq!(ring.caller.name, None);
    let _ = std::fs::remove_dir_all(&dir);
}
