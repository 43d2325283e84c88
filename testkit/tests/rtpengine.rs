//! Debian's rtpengine under the RTP load generator: 20 channels × 2 s per scenario, to keep
//! the media benchmark's anchor from rotting. It checks that packets cross and are counted
//! and what Debian's build does with AMR; it asserts no timing (the figures come from
//! `imslab bench media`).

use std::time::Duration;

use testkit::rtpengine::{Rtpengine, RtpengineConfig};
use testkit::rtpload::{self, LoadOptions, Scenario};

fn opts() -> LoadOptions {
    LoadOptions::new(20, Duration::from_secs(2))
}

fn warm() -> LoadOptions {
    LoadOptions {
        warmup: Duration::from_millis(500),
        ..opts()
    }
}

#[test]
fn rtpengine_relays_and_transcodes_twenty_channels() {
    if testkit::require_bin("rtpengine").is_none() {
        return;
    }
    let mut engine = Rtpengine::start(&RtpengineConfig::default()).expect("rtpengine starts");

    // PCMA ⇄ PCMA: a relay; 100 frames per channel and direction.
    let r = rtpload::run(&mut engine, &Scenario::pcma_relay(true), &opts())
        .unwrap_or_else(|e| panic!("{e}\n{}", engine.log_tail(30)));
    eprintln!("{r:?}");
    for d in [&r.a_to_b, r.b_to_a.as_ref().expect("duplex")] {
        assert_eq!(d.sent, 20 * 100, "{d:?}");
        // Loopback on a loaded machine: allow a stray loss, not more.
        assert!(d.received >= d.sent - 2, "{d:?}");
        assert_eq!((d.wrong_pt, d.unmatched, d.duplicates), (0, 0, 0), "{d:?}");
    }
    let cpu = r.engine_cpu.expect("rtpengine's CPU from /proc");
    assert!(cpu > 0.0 && cpu < 2.0 * r.wall.as_secs_f64(), "{cpu}");

    // G.729 ⇄ PCMA: transcoded both ways (the SDP toward each side has only its codec).
    let r = rtpload::run(&mut engine, &Scenario::g729_to_pcma(true), &warm())
        .unwrap_or_else(|e| panic!("{e}\n{}", engine.log_tail(30)));
    eprintln!("{r:?}");
    for d in [&r.a_to_b, r.b_to_a.as_ref().expect("duplex")] {
        assert!(d.received >= d.sent - 2 && d.sent == 2000, "{d:?}");
        assert_eq!(d.wrong_pt, 0, "{d:?}");
    }

    // AMR-NB → PCMA: Debian's build decodes AMR only, and rtpengine transcodes only what it
    // can decode and encode, so the AMR packets reach the PCMA-only leg untranscoded.
    let amr = rtpload::amr_nb_pattern_frames(7).expect("AMR frames");
    let r = rtpload::run(&mut engine, &Scenario::amr_to_pcma(amr, false), &opts())
        .unwrap_or_else(|e| panic!("{e}\n{}", engine.log_tail(30)));
    eprintln!("{r:?}");
    assert_eq!(r.a_to_b.sent, 2000);
    assert_eq!(
        r.a_to_b.received, 0,
        "AMR transcoded after all? {:?}",
        r.a_to_b
    );
    assert!(r.a_to_b.wrong_pt >= 1998, "{:?}", r.a_to_b);
}
