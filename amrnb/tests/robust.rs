//! Garbage never panics: random frame types, Q bits, bit patterns of any length and lost frames
//! in any order decode to bounded 16-bit PCM or a typed error.

use amrnb::{frame_octets, AmrError, Decoder, FRAME_SAMPLES};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Event {
    Frame { ft: u8, q: bool, bits: Vec<u8> },
    Lost,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        8 => (0u8..16, any::<bool>(), proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(ft, q, bits)| Event::Frame { ft, q, bits }),
        1 => Just(Event::Lost),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_sequence_decodes_or_errs(events in proptest::collection::vec(event(), 1..60)) {
        let mut d = Decoder::new();
        let mut pcm = [0i16; FRAME_SAMPLES];
        for e in events {
            match e {
                Event::Lost => d.decode_lost(&mut pcm),
                Event::Frame { ft, q, bits } => match d.decode(ft, q, &bits, &mut pcm) {
                    Ok(()) => {
                        let need = frame_octets(ft);
                        prop_assert!(need.is_some_and(|n| bits.len() >= n));
                    }
                    Err(AmrError::FrameType(t)) => prop_assert!(frame_octets(t).is_none()),
                    Err(AmrError::Short { need, got, .. }) => prop_assert!(got < need),
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                },
            }
        }
    }

    #[test]
    fn full_length_garbage_in_every_mode(ft in 0u8..8, frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 31), 1..30)) {
        let mut d = Decoder::new();
        let mut pcm = [0i16; FRAME_SAMPLES];
        for bits in frames {
            prop_assert!(d.decode(ft, true, &bits, &mut pcm).is_ok());
        }
    }
}
