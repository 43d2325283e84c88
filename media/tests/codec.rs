//! The opencore-amr / vo-amrwbenc backend against the codec contract (issue 12): a tone
//! through every mode of AMR-NB and AMR-WB and both RFC 4867 payload formats, DTX on
//! silence, lost and damaged frames.

#![cfg(feature = "opencore")]

use media::amr::{frame_octets, sid_frame_type, AmrFrame, FT_NO_DATA, FT_SPEECH_LOST};
use media::codec::testing::{
    dtx_silence, lost_and_damaged, tone_roundtrip, tone_switching_modes, DtxCounts, TONE_DBFS,
    TONE_HZ,
};
use media::codec::{self, frame_samples, Backend, CodecError, MAX_FRAME_OCTETS};
use proptest::prelude::*;
use sdp::AmrKind;

const FREQ_TOLERANCE: f64 = 0.02;
const LEVEL_TOLERANCE_DB: f64 = 3.0;

/// Every (encoder backend, decoder backend) of this build that has `kind`: opencore with
/// itself, and for AMR-NB also Rust → opencore, opencore → Rust and Rust → Rust, so each
/// backend decodes the other's frames (issue 12 acceptance).
fn backend_pairs(kind: AmrKind) -> Vec<(Backend, Backend)> {
    let all = Backend::available();
    let pairs: Vec<_> = all
        .iter()
        .flat_map(|&e| all.iter().map(move |&d| (e, d)))
        .filter(|&(e, d)| codec::encoder(kind, e, false).is_ok() && codec::decoder(kind, d).is_ok())
        .collect();
    assert!(pairs.contains(&(Backend::Opencore, Backend::Opencore)));
    if kind == AmrKind::Nb {
        for cross in [
            (Backend::Rust, Backend::Opencore),
            (Backend::Opencore, Backend::Rust),
            (Backend::Rust, Backend::Rust),
        ] {
            assert!(pairs.contains(&cross), "{cross:?} missing");
        }
    }
    pairs
}

fn tone_every_mode(kind: AmrKind) {
    for (eb, db) in backend_pairs(kind) {
        for mode in 0..=kind.max_mode() {
            for octet_aligned in [false, true] {
                let mut enc = codec::encoder(kind, eb, false).unwrap();
                let mut dec = codec::decoder(kind, db).unwrap();
                let m = tone_roundtrip(enc.as_mut(), dec.as_mut(), mode, octet_aligned);
                assert!(
                    m.is_within(TONE_HZ, FREQ_TOLERANCE, TONE_DBFS, LEVEL_TOLERANCE_DB),
                    "{kind:?} {eb:?} → {db:?} mode {mode} octet-aligned {octet_aligned}: {m:?}"
                );
            }
        }
    }
}

#[test]
fn tone_across_mode_changes() {
    for kind in [AmrKind::Nb, AmrKind::Wb] {
        for (eb, db) in backend_pairs(kind) {
            for octet_aligned in [false, true] {
                let mut enc = codec::encoder(kind, eb, false).unwrap();
                let mut dec = codec::decoder(kind, db).unwrap();
                let m = tone_switching_modes(enc.as_mut(), dec.as_mut(), octet_aligned);
                assert!(
                    m.is_within(TONE_HZ, FREQ_TOLERANCE, TONE_DBFS, LEVEL_TOLERANCE_DB),
                    "{kind:?} {eb:?} → {db:?} octet-aligned {octet_aligned}: {m:?}"
                );
            }
        }
    }
}

#[test]
fn amr_nb_tone_every_mode_both_formats() {
    tone_every_mode(AmrKind::Nb);
}

#[test]
fn amr_wb_tone_every_mode_both_formats() {
    tone_every_mode(AmrKind::Wb);
}

fn dtx(kind: AmrKind, enc: Backend, dec: Backend, mode: u8) -> DtxCounts {
    let mut enc = codec::encoder(kind, enc, true).unwrap();
    let mut dec = codec::decoder(kind, dec).unwrap();
    dtx_silence(enc.as_mut(), dec.as_mut(), mode)
}

#[test]
fn dtx_on_silence_sends_sid_and_no_data() {
    use Backend::{Opencore, Rust};
    for (kind, enc, dec, mode) in [
        (AmrKind::Nb, Opencore, Opencore, 7),
        (AmrKind::Nb, Opencore, Opencore, 0),
        (AmrKind::Wb, Opencore, Opencore, 2),
        (AmrKind::Wb, Opencore, Opencore, 8),
        // The Rust encoder's DTX, played by both decoders.
        (AmrKind::Nb, Rust, Opencore, 7),
        (AmrKind::Nb, Rust, Opencore, 0),
        (AmrKind::Nb, Rust, Rust, 7),
        (AmrKind::Nb, Rust, Rust, 4),
    ] {
        let c = dtx(kind, enc, dec, mode);
        // After a hangover of 7 speech frames: SID_FIRST, then a SID_UPDATE every 8th frame
        // (TS 26.093 / TS 26.193 for AMR-WB), NO_DATA between.
        let what = format!("{kind:?} {enc:?} → {dec:?} mode {mode}: {c:?}");
        assert!(c.speech <= 10, "{what}");
        assert!(c.sid >= 8, "{what}");
        assert!(c.no_data >= 70, "{what}");
        // Digital silence in, (near) silence out: the comfort noise follows the input.
        assert!(c.decoded_dbfs < -60.0, "{what}");
    }
}

#[test]
fn with_dtx_a_tone_is_speech() {
    for (kind, backend, mode) in [
        (AmrKind::Nb, Backend::Opencore, 7),
        (AmrKind::Wb, Backend::Opencore, 2),
        (AmrKind::Nb, Backend::Rust, 7),
        (AmrKind::Nb, Backend::Rust, 0),
    ] {
        let mut enc = codec::encoder(kind, backend, true).unwrap();
        let mut dec = codec::decoder(kind, Backend::Opencore).unwrap();
        // tone_roundtrip checks every frame is a speech frame of `mode`.
        let m = tone_roundtrip(enc.as_mut(), dec.as_mut(), mode, false);
        assert!(
            m.is_within(TONE_HZ, FREQ_TOLERANCE, TONE_DBFS, LEVEL_TOLERANCE_DB),
            "{kind:?} {backend:?}: {m:?}"
        );
    }
}

#[test]
fn without_dtx_silence_is_speech() {
    for (kind, backend) in [
        (AmrKind::Nb, Backend::Opencore),
        (AmrKind::Wb, Backend::Opencore),
        (AmrKind::Nb, Backend::Rust),
    ] {
        let mut enc = codec::encoder(kind, backend, false).unwrap();
        let mut out = [0u8; MAX_FRAME_OCTETS];
        let silence = vec![0i16; frame_samples(kind)];
        for _ in 0..50 {
            let e = enc.encode(&silence, 1, &mut out).unwrap();
            assert_eq!((e.frame_type, Some(e.len)), (1, frame_octets(kind, 1)));
        }
    }
}

#[test]
fn lost_and_damaged_frames_are_concealed() {
    for (kind, mode) in [
        (AmrKind::Nb, 7),
        (AmrKind::Nb, 0),
        (AmrKind::Wb, 2),
        (AmrKind::Wb, 8),
    ] {
        let mut enc = codec::encoder(kind, Backend::Opencore, false).unwrap();
        let mut dec = codec::decoder(kind, Backend::Opencore).unwrap();
        let mut reference = codec::decoder(kind, Backend::Opencore).unwrap();
        let c = lost_and_damaged(enc.as_mut(), dec.as_mut(), reference.as_mut(), mode);
        // One frame in six bad: the decoder attenuates after each (TS 26.091 §6, strongly at
        // the low modes: ~19 dB at 4.75) but the tone stays the main part of the signal, and
        // every damaged frame was treated as bad.
        assert!(
            c.tone_dbfs > TONE_DBFS - 25.0,
            "{kind:?} mode {mode}: {c:?}"
        );
        assert!(
            c.rms_dbfs - c.tone_dbfs < 6.0,
            "{kind:?} mode {mode}: {c:?}"
        );
        assert_eq!(c.damaged_differs, c.damaged, "{kind:?} mode {mode}: {c:?}");
        assert!(c.damaged >= 3);
    }
}

#[test]
fn decoder_takes_every_frame_kind_without_speech() {
    for kind in [AmrKind::Nb, AmrKind::Wb] {
        let mut dec = codec::decoder(kind, Backend::Opencore).unwrap();
        let mut pcm = vec![0i16; frame_samples(kind)];
        // Lost and NO_DATA frames from the start, a damaged SID, a (zero) SID, WB SPEECH_LOST.
        dec.decode(None, &mut pcm).unwrap();
        dec.decode(Some(&AmrFrame::no_data(kind)), &mut pcm)
            .unwrap();
        let sid = [0u8; 5];
        let ft = sid_frame_type(kind);
        for q in [false, true] {
            let f = AmrFrame::from_octets(kind, ft, q, &sid).unwrap();
            dec.decode(Some(&f), &mut pcm).unwrap();
        }
        if kind == AmrKind::Wb {
            let f = AmrFrame::from_octets(kind, FT_SPEECH_LOST, true, &[]).unwrap();
            dec.decode(Some(&f), &mut pcm).unwrap();
        }
        let f = AmrFrame::from_octets(kind, FT_NO_DATA, false, &[]).unwrap();
        dec.decode(Some(&f), &mut pcm).unwrap();
    }
}

#[test]
fn factories_check_arguments() {
    let mut enc = codec::encoder(AmrKind::Wb, Backend::Opencore, false).unwrap();
    let mut out = [0u8; MAX_FRAME_OCTETS];
    assert_eq!(enc.kind(), AmrKind::Wb);
    assert_eq!(
        enc.encode(&[0; 320], 9, &mut out),
        Err(CodecError::Mode {
            kind: AmrKind::Wb,
            mode: 9
        })
    );
    assert_eq!(
        enc.encode(&[0; 160], 0, &mut out),
        Err(CodecError::Buffer {
            need: 320,
            got: 160
        })
    );
    let mut dec = codec::decoder(AmrKind::Wb, Backend::Opencore).unwrap();
    let nb = AmrFrame::no_data(AmrKind::Nb);
    assert_eq!(
        dec.decode(Some(&nb), &mut [0; 320]),
        Err(CodecError::Kind {
            want: AmrKind::Wb,
            got: AmrKind::Nb
        })
    );
    assert!(Backend::available().contains(&Backend::Opencore));
}

/// One codec per direction of a call, on threads of a runtime: the handles must move, and
/// codecs running at the same time on several threads must not share state (the `Send`
/// promise): each gives bit for bit what one alone gives.
#[test]
fn codecs_on_parallel_threads_match_one_alone() {
    let run = |kind: AmrKind, mode: u8| {
        let mut enc = codec::encoder(kind, Backend::Opencore, false).unwrap();
        let mut dec = codec::decoder(kind, Backend::Opencore).unwrap();
        tone_roundtrip(enc.as_mut(), dec.as_mut(), mode, true)
    };
    let alone = [run(AmrKind::Nb, 7), run(AmrKind::Wb, 2)];
    let start = std::sync::Barrier::new(4);
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    // Half the threads NB then WB, half the other way round, so both
                    // codecs of each library run concurrently with themselves and the other.
                    let order = if t % 2 == 0 { [0, 1] } else { [1, 0] };
                    for _ in 0..3 {
                        for i in order {
                            let m = if i == 0 {
                                run(AmrKind::Nb, 7)
                            } else {
                                run(AmrKind::Wb, 2)
                            };
                            assert_eq!(m, alone[i], "thread {t}");
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever arrives from the network, decoding is a bounded call that returns: random
    /// speech bits for every frame type of both codecs, random Q bits and losses.
    #[test]
    fn decoders_take_any_bits(
        wideband: bool,
        frames in proptest::collection::vec(
            (0u8..16, any::<bool>(), any::<bool>(), proptest::collection::vec(any::<u8>(), MAX_FRAME_OCTETS)),
            1..40,
        ),
    ) {
        let kind = if wideband { AmrKind::Wb } else { AmrKind::Nb };
        let mut dec = codec::decoder(kind, Backend::Opencore).unwrap();
        let mut pcm = vec![0i16; frame_samples(kind)];
        for (ft, quality, lost, bits) in &frames {
            let Some(n) = frame_octets(kind, *ft) else { continue };
            let f = AmrFrame::from_octets(kind, *ft, *quality, &bits[..n]).unwrap();
            prop_assert!(dec.decode((!lost).then_some(&f), &mut pcm).is_ok());
        }
    }
}
