//! The pure-Rust AMR-NB decoder (`amrnb` crate) on arbitrary input: a stream of frames, each
//! a control octet (frame type, Q bit, "lost") and up to 31 speech octets. Decoding never
//! panics, returns a typed error only for reserved frame types and short input, and every
//! parameter set that unpacks packs back to the same bits.
#![no_main]
use amrnb::bits::{pack, unpack};
use amrnb::{frame_octets, AmrError, Decoder, Mode, FRAME_SAMPLES, MAX_PARAMS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::new();
    let mut pcm = [0i16; FRAME_SAMPLES];
    let mut rest = data;
    // Bounded: at most 200 frames per input.
    for _ in 0..200 {
        let Some((&ctl, tail)) = rest.split_first() else {
            break;
        };
        let ft = ctl & 15;
        let q = ctl & 16 != 0;
        let take = usize::from(ctl >> 5) * 5;
        let (bits, next) = tail.split_at(take.min(tail.len()));
        rest = next;
        if ctl & 0xe0 == 0xe0 {
            d.decode_lost(&mut pcm);
            continue;
        }
        match d.decode(ft, q, bits, &mut pcm) {
            Ok(()) => assert!(frame_octets(ft).is_some_and(|n| bits.len() >= n)),
            Err(AmrError::FrameType(t)) => assert!(frame_octets(t).is_none()),
            Err(AmrError::Short { need, got, .. }) => assert!(got < need),
            Err(e) => panic!("unexpected error {e}"),
        }
        if let Some(mode) = Mode::from_frame_type(ft) {
            let mut prm = [0i16; MAX_PARAMS];
            if unpack(mode, bits, &mut prm).is_ok() {
                let mut out = [0u8; 31];
                let n = pack(mode, &prm, &mut out).expect("packs");
                let mut back = [0i16; MAX_PARAMS];
                unpack(mode, &out[..n], &mut back).expect("own output unpacks");
                assert_eq!(prm, back);
            }
        }
    }
});
