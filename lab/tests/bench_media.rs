//! Smoke test of `imslab bench media` (issue 12's media benchmark) so the harness cannot rot:
//! rtpengine, 20 channels × 2 s of each scenario. It checks that packets crossed and that
//! the report says what Debian's rtpengine does with AMR; it times nothing.

use std::time::Duration;

use lab::bench::media::{media_report, media_run, EngineKind, MediaOptions, ScenarioKind};

#[test]
fn twenty_channels_through_rtpengine() {
    if testkit::require_bin("rtpengine").is_none() {
        return;
    }
    let opts = MediaOptions {
        channels: vec![20],
        seconds: 2,
        warmup: Duration::from_millis(500),
        // Loose: this test checks the harness, not the machine.
        p99_limit: Duration::from_millis(500),
        duplex: true,
        engines: vec![EngineKind::Rtpengine],
        scenarios: vec![ScenarioKind::PcmaRelay, ScenarioKind::AmrPcma],
    };
    let steps = media_run(&opts).expect("bench media runs");
    let report = media_report(&opts, &steps);
    eprintln!("{report}");
    assert_eq!(steps.len(), 2, "{report}");
    let relay = &steps[0].report;
    for d in [&relay.a_to_b, relay.b_to_a.as_ref().expect("duplex")] {
        assert_eq!(d.sent, 2000, "{report}");
        assert!(d.received >= 1998, "{report}");
    }
    assert!(relay.engine_cpu.is_some_and(|c| c > 0.0), "{report}");
    // Forwarded untranscoded: every packet arrives in the wrong codec.
    let amr = &steps[1].report;
    assert_eq!(amr.a_to_b.received, 0, "{report}");
    assert!(amr.a_to_b.wrong_pt >= 1998, "{report}");
    assert!(report.contains("forwarded, not transcoded"), "{report}");
}
