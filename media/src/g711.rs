//! G.711 A-law and µ-law (ITU-T G.711 §2, Tables 1a/1b and 2a/2b) on 16-bit linear PCM.
//!
//! Encoding is the segment search done with bit arithmetic (one `leading_zeros`), decoding
//! a 256-entry table built at compile time; both are branch-light and allocation-free.
//! A-law works on the 13 most significant bits, µ-law on 14, as G.711 specifies: the low
//! bits of a 16-bit sample are dropped by the encoder and decoded values are the centres
//! of the quantization intervals. Negative samples are reduced by one's complement, the
//! convention of ITU-T G.191's G.711 tools, so every 16-bit value encodes as they do.

/// A-law code of the smallest negative value (-8): what an idle A-law channel carries.
pub const ALAW_SILENCE: u8 = 0x55;
/// µ-law code of zero: what an idle µ-law channel carries.
pub const ULAW_SILENCE: u8 = 0xFF;

/// A slice to encode or decode does not fit the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("output of {have} samples for {need} input samples")]
pub struct G711Error {
    /// Samples to write.
    pub need: usize,
    /// Room in the output.
    pub have: usize,
}

/// A-law code of a 16-bit sample.
pub fn alaw_encode(sample: i16) -> u8 {
    // G.711 A-law: sign bit 1 for positive; negative values use the one's complement so
    // that -1 falls in the first interval like 0 does (codes 0x55 and 0xD5).
    let (sign, m) = if sample >= 0 {
        (0x80u8, (sample >> 4) as u16)
    } else {
        (0x00u8, ((!sample) >> 4) as u16)
    };
    // m is the 11-bit magnitude; segment 0 and 1 both have step 1 in these units.
    let code = if m < 16 {
        m as u8
    } else {
        let seg = (16 - m.leading_zeros() - 4) as u8; // 1..=7
        (seg << 4) | ((m >> (seg - 1)) as u8 & 0x0f)
    };
    // Even bits inverted on the line (G.711 Table 1a note).
    (sign | code) ^ 0x55
}

const fn alaw_decode_const(code: u8) -> i16 {
    let a = code ^ 0x55;
    let seg = (a >> 4) & 0x07;
    let mant = (a & 0x0f) as i16;
    let mag13 = if seg == 0 {
        (mant << 1) | 1
    } else {
        ((mant << 1) + 33) << (seg - 1)
    };
    let v = mag13 << 3;
    if a & 0x80 != 0 {
        v
    } else {
        -v
    }
}

const fn ulaw_decode_const(code: u8) -> i16 {
    let u = !code;
    let exp = (u >> 4) & 0x07;
    let mant = (u & 0x0f) as i16;
    let v = (((mant << 3) + 0x84) << exp) - 0x84;
    if u & 0x80 != 0 {
        -v
    } else {
        v
    }
}

const fn table(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw {
            alaw_decode_const(i as u8)
        } else {
            ulaw_decode_const(i as u8)
        };
        i += 1;
    }
    t
}

static ALAW_TABLE: [i16; 256] = table(true);
static ULAW_TABLE: [i16; 256] = table(false);

/// 16-bit sample of an A-law code.
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_TABLE[usize::from(code)]
}

/// µ-law code of a 16-bit sample.
pub fn ulaw_encode(sample: i16) -> u8 {
    // G.711 µ-law on the 14-bit value, negatives by one's complement as in ITU-T G.191's
    // reference tools: the magnitude plus the bias 33 makes every segment start at a power
    // of two, so the segment is the position of the top bit.
    let (sign, m) = if sample < 0 {
        (0x80u8, ((!sample) >> 2) as u16)
    } else {
        (0x00u8, (sample >> 2) as u16)
    };
    let biased = (m + 33).min(0x1FFF);
    let exp = (16 - biased.leading_zeros() - 6) as u8; // top bit 5..=12 -> 0..=7
    let mant = ((biased >> (exp + 1)) & 0x0f) as u8;
    !(sign | (exp << 4) | mant)
}

/// 16-bit sample of a µ-law code.
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_TABLE[usize::from(code)]
}

/// A-law to µ-law for one code (G.711 Table 3 does this through the linear value too).
pub fn alaw_to_ulaw(code: u8) -> u8 {
    ulaw_encode(alaw_decode(code))
}

/// µ-law to A-law for one code.
pub fn ulaw_to_alaw(code: u8) -> u8 {
    alaw_encode(ulaw_decode(code))
}

fn check(need: usize, have: usize) -> Result<(), G711Error> {
    if have < need {
        return Err(G711Error { need, have });
    }
    Ok(())
}

/// Encodes `pcm` into `out` as A-law; returns the number of codes written.
pub fn alaw_encode_slice(pcm: &[i16], out: &mut [u8]) -> Result<usize, G711Error> {
    check(pcm.len(), out.len())?;
    for (o, &s) in out.iter_mut().zip(pcm) {
        *o = alaw_encode(s);
    }
    Ok(pcm.len())
}

/// Decodes A-law `codes` into `out`; returns the number of samples written.
pub fn alaw_decode_slice(codes: &[u8], out: &mut [i16]) -> Result<usize, G711Error> {
    check(codes.len(), out.len())?;
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = alaw_decode(c);
    }
    Ok(codes.len())
}

/// Encodes `pcm` into `out` as µ-law; returns the number of codes written.
pub fn ulaw_encode_slice(pcm: &[i16], out: &mut [u8]) -> Result<usize, G711Error> {
    check(pcm.len(), out.len())?;
    for (o, &s) in out.iter_mut().zip(pcm) {
        *o = ulaw_encode(s);
    }
    Ok(pcm.len())
}

/// Decodes µ-law `codes` into `out`; returns the number of samples written.
pub fn ulaw_decode_slice(codes: &[u8], out: &mut [i16]) -> Result<usize, G711Error> {
    check(codes.len(), out.len())?;
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = ulaw_decode(c);
    }
    Ok(codes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // Idle channels and the ends of the scale (G.711 Tables 1a/2a: A-law ±4032 and
        // µ-law ±8031 in 13/14-bit units, i.e. ±32256 and ±32124 in 16 bits).
        assert_eq!(alaw_decode(ALAW_SILENCE), -8);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_decode(0xAA), 32_256);
        assert_eq!(alaw_decode(0x2A), -32_256);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        assert_eq!(ulaw_decode(ULAW_SILENCE), 0);
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_decode(0x80), 32_124);
        assert_eq!(ulaw_decode(0x00), -32_124);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        // First segment boundaries: A-law step 16, µ-law step 8 around zero.
        assert_eq!(alaw_decode(alaw_encode(15)), 8);
        assert_eq!(alaw_decode(alaw_encode(16)), 24);
        assert_eq!(ulaw_decode(ulaw_encode(3)), 0);
        assert_eq!(ulaw_decode(ulaw_encode(5)), 8);
        // 1000 in 16 bits: A-law segment 2 (step 32) centre 1008, µ-law exp 2 (step 32).
        assert_eq!(alaw_decode(alaw_encode(1000)), 1008);
        assert_eq!(ulaw_decode(ulaw_encode(1000)), 988);
    }

    #[test]
    fn every_code_round_trips() {
        for c in 0..=255u8 {
            assert_eq!(alaw_encode(alaw_decode(c)), c, "A-law {c:#04x}");
            // µ-law has two zeros (0x7F and 0xFF); zero encodes to 0xFF.
            if c != 0x7F {
                assert_eq!(ulaw_encode(ulaw_decode(c)), c, "µ-law {c:#04x}");
            }
        }
        assert_eq!(alaw_to_ulaw(0xD5), 0xFF - 1);
        for c in 0..=255u8 {
            // Converting across and back lands on the code of the nearest value.
            let back = ulaw_to_alaw(alaw_to_ulaw(c));
            let (a, b) = (i32::from(alaw_decode(c)), i32::from(alaw_decode(back)));
            assert!((a - b).abs() <= (a.abs() / 16).max(16), "{c:#04x} {a} {b}");
        }
    }

    #[test]
    fn every_sample_within_half_a_step_and_monotonic() {
        let mut prev = (i16::MIN, i16::MIN);
        for x in i16::MIN..=i16::MAX {
            let xi = i32::from(x);
            let a = alaw_decode(alaw_encode(x));
            let u = ulaw_decode(ulaw_encode(x));
            let a_err = (i32::from(a) - xi).abs();
            let u_err = (i32::from(u) - xi).abs();
            assert!(a_err <= (xi.abs() / 32).max(8) + 1, "A-law {x} -> {a}");
            assert!(u_err <= (xi.abs() + 132) / 32 + 1, "µ-law {x} -> {u}");
            assert!(a >= prev.0 && u >= prev.1, "not monotonic at {x}");
            prev = (a, u);
        }
    }

    #[test]
    fn slices() {
        let pcm = [0i16, -1, 1000, i16::MIN];
        let mut codes = [0u8; 4];
        assert_eq!(alaw_encode_slice(&pcm, &mut codes), Ok(4));
        assert_eq!(codes[..2], [0xD5, 0x55]);
        let mut back = [0i16; 4];
        assert_eq!(alaw_decode_slice(&codes, &mut back), Ok(4));
        assert_eq!(back, [8, -8, 1008, -32_256]);
        assert_eq!(ulaw_encode_slice(&pcm, &mut codes), Ok(4));
        assert_eq!(ulaw_decode_slice(&codes, &mut back), Ok(4));
        assert_eq!(back, [0, 0, 988, -32_124]);
        assert_eq!(
            alaw_encode_slice(&pcm, &mut codes[..3]),
            Err(G711Error { need: 4, have: 3 })
        );
        assert_eq!(
            ulaw_decode_slice(&codes, &mut back[..1]),
            Err(G711Error { need: 4, have: 1 })
        );
    }
}
