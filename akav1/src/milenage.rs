//! The Milenage algorithm set, 3GPP TS 35.206 §4.1.
//!
//! All seven functions share one AES-128 key (the subscriber key K). The expensive part of
//! AES in software is the key schedule, so [`Milenage`] expands it once per subscriber and
//! keeps it; every function afterwards is a handful of block encryptions on the stack.
//! f1..f5 for a vector need six blocks, four of which depend only on `TEMP` and are encrypted
//! together so that AES-NI can pipeline them.

use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};
use aes::Aes128;

/// The Milenage constants c1..c5 and rotations r1..r5 (TS 35.206 §4.1).
///
/// Operators may choose their own; the defaults are the ones of TS 35.206 §4.1 that every
/// commercial card and test set uses. Rotations are in bits and must be below 128.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MilenageConstants {
    /// c1..c5, 128 bits each.
    pub c: [[u8; 16]; 5],
    /// r1..r5 in bits (0..=127).
    pub r: [u8; 5],
}

impl Default for MilenageConstants {
    fn default() -> Self {
        let mut c = [[0u8; 16]; 5];
        // c1 = 0, c2 = ..01, c3 = ..02, c4 = ..04, c5 = ..08 (TS 35.206 §4.1).
        c[1][15] = 1;
        c[2][15] = 2;
        c[3][15] = 4;
        c[4][15] = 8;
        Self {
            c,
            r: [64, 0, 32, 64, 96],
        }
    }
}

/// Output of f2, f3, f4 and f5 for one RAND (TS 35.206 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct F2345 {
    /// f2: RES / XRES (64 bits).
    pub res: [u8; 8],
    /// f3: cipher key CK.
    pub ck: [u8; 16],
    /// f4: integrity key IK.
    pub ik: [u8; 16],
    /// f5: anonymity key AK (48 bits).
    pub ak: [u8; 6],
}

/// A subscriber's Milenage instance: K's AES key schedule plus OPc.
///
/// Construction costs one key expansion (and one more block for [`Milenage::from_op`]);
/// clone it rather than rebuilding it per vector.
#[derive(Clone)]
pub struct Milenage {
    aes: Aes128,
    opc: [u8; 16],
    consts: MilenageConstants,
}

impl std::fmt::Debug for Milenage {
    // Never print key material by accident.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Milenage").finish_non_exhaustive()
    }
}

/// OPc = OP ⊕ E_K(OP) (TS 35.206 §4.1).
///
/// Cards are usually provisioned with OPc; OP is the operator-wide variant.
pub fn opc_from_op(k: &[u8; 16], op: &[u8; 16]) -> [u8; 16] {
    let aes = Aes128::new(&Array::from(*k));
    compute_opc(&aes, op)
}

fn compute_opc(aes: &Aes128, op: &[u8; 16]) -> [u8; 16] {
    let mut block = Array::from(*op);
    aes.encrypt_block(&mut block);
    xor16(&block.into(), op)
}

#[inline(always)]
fn xor16(a: &[u8; 16], b: &[u8; 16]) -> [u8; 16] {
    let x = u128::from_ne_bytes(*a) ^ u128::from_ne_bytes(*b);
    x.to_ne_bytes()
}

/// Cyclic left rotation of a 128-bit big-endian value by `r` bits ("rot" in TS 35.206).
#[inline(always)]
fn rot(x: &[u8; 16], r: u8) -> [u8; 16] {
    u128::from_be_bytes(*x)
        .rotate_left(u32::from(r))
        .to_be_bytes()
}

impl Milenage {
    /// A Milenage instance from K and OPc with the standard constants.
    pub fn new(k: &[u8; 16], opc: &[u8; 16]) -> Self {
        Self::with_constants(k, opc, MilenageConstants::default())
    }

    /// A Milenage instance from K and OP (OPc is derived once here).
    pub fn from_op(k: &[u8; 16], op: &[u8; 16]) -> Self {
        let aes = Aes128::new(&Array::from(*k));
        let opc = compute_opc(&aes, op);
        Self {
            aes,
            opc,
            consts: MilenageConstants::default(),
        }
    }

    /// A Milenage instance with operator-specific constants.
    ///
    /// Rotations are taken modulo 128.
    pub fn with_constants(k: &[u8; 16], opc: &[u8; 16], consts: MilenageConstants) -> Self {
        let mut consts = consts;
        for r in &mut consts.r {
            *r %= 128;
        }
        Self {
            aes: Aes128::new(&Array::from(*k)),
            opc: *opc,
            consts,
        }
    }

    /// The OPc in use (derived from OP when built with [`Milenage::from_op`]).
    pub fn opc(&self) -> [u8; 16] {
        self.opc
    }

    #[inline(always)]
    fn temp(&self, rand: &[u8; 16]) -> [u8; 16] {
        let mut block = Array::from(xor16(rand, &self.opc));
        self.aes.encrypt_block(&mut block);
        block.into()
    }

    /// Input block of OUT1 before encryption (TS 35.206 §4.1).
    #[inline(always)]
    fn out1_input(&self, temp: &[u8; 16], sqn: &[u8; 6], amf: &[u8; 2]) -> [u8; 16] {
        let mut in1 = [0u8; 16];
        in1[0..6].copy_from_slice(sqn);
        in1[6..8].copy_from_slice(amf);
        in1[8..14].copy_from_slice(sqn);
        in1[14..16].copy_from_slice(amf);
        let rotated = rot(&xor16(&in1, &self.opc), self.consts.r[0]);
        xor16(&xor16(temp, &rotated), &self.consts.c[0])
    }

    /// Input block of OUTi for i in 2..=5 before encryption.
    #[inline(always)]
    fn outn_input(&self, temp: &[u8; 16], i: usize) -> [u8; 16] {
        let rotated = rot(&xor16(temp, &self.opc), self.consts.r[i - 1]);
        xor16(&rotated, &self.consts.c[i - 1])
    }

    #[inline(always)]
    fn finish(&self, block: Array<u8, aes::cipher::consts::U16>) -> [u8; 16] {
        xor16(&block.into(), &self.opc)
    }

    fn out1(&self, rand: &[u8; 16], sqn: &[u8; 6], amf: &[u8; 2]) -> [u8; 16] {
        let temp = self.temp(rand);
        let mut block = Array::from(self.out1_input(&temp, sqn, amf));
        self.aes.encrypt_block(&mut block);
        self.finish(block)
    }

    /// f1: network authentication code MAC-A (TS 35.206 §4.1).
    pub fn f1(&self, rand: &[u8; 16], sqn: &[u8; 6], amf: &[u8; 2]) -> [u8; 8] {
        first8(&self.out1(rand, sqn, amf))
    }

    /// f1*: resynchronisation authentication code MAC-S (TS 35.206 §4.1).
    pub fn f1_star(&self, rand: &[u8; 16], sqn: &[u8; 6], amf: &[u8; 2]) -> [u8; 8] {
        last8(&self.out1(rand, sqn, amf))
    }

    /// f2, f3, f4 and f5 for one RAND.
    pub fn f2345(&self, rand: &[u8; 16]) -> F2345 {
        let temp = self.temp(rand);
        let mut blocks = [
            Array::from(self.outn_input(&temp, 2)),
            Array::from(self.outn_input(&temp, 3)),
            Array::from(self.outn_input(&temp, 4)),
        ];
        self.aes.encrypt_blocks(&mut blocks);
        let [o2, o3, o4] = blocks;
        let out2 = self.finish(o2);
        F2345 {
            res: last8(&out2),
            ck: self.finish(o3),
            ik: self.finish(o4),
            ak: first6(&out2),
        }
    }

    /// f5*: anonymity key for resynchronisation AK* (TS 35.206 §4.1).
    pub fn f5_star(&self, rand: &[u8; 16]) -> [u8; 6] {
        let temp = self.temp(rand);
        let mut block = Array::from(self.outn_input(&temp, 5));
        self.aes.encrypt_block(&mut block);
        first6(&self.finish(block))
    }

    /// f1 and f2..f5 together from one TEMP: what the network needs for a vector.
    ///
    /// Four independent blocks are encrypted in one call so the cipher can interleave them.
    pub fn f12345(&self, rand: &[u8; 16], sqn: &[u8; 6], amf: &[u8; 2]) -> ([u8; 8], F2345) {
        let temp = self.temp(rand);
        let mut blocks = [
            Array::from(self.out1_input(&temp, sqn, amf)),
            Array::from(self.outn_input(&temp, 2)),
            Array::from(self.outn_input(&temp, 3)),
            Array::from(self.outn_input(&temp, 4)),
        ];
        self.aes.encrypt_blocks(&mut blocks);
        let [o1, o2, o3, o4] = blocks;
        let out2 = self.finish(o2);
        (
            first8(&self.finish(o1)),
            F2345 {
                res: last8(&out2),
                ck: self.finish(o3),
                ik: self.finish(o4),
                ak: first6(&out2),
            },
        )
    }
}

#[inline(always)]
fn first8(x: &[u8; 16]) -> [u8; 8] {
    let mut o = [0u8; 8];
    o.copy_from_slice(&x[..8]);
    o
}

#[inline(always)]
fn last8(x: &[u8; 16]) -> [u8; 8] {
    let mut o = [0u8; 8];
    o.copy_from_slice(&x[8..]);
    o
}

#[inline(always)]
fn first6(x: &[u8; 16]) -> [u8; 6] {
    let mut o = [0u8; 6];
    o.copy_from_slice(&x[..6]);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<const N: usize>(s: &str) -> [u8; N] {
        let v: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect();
        v.try_into().unwrap()
    }

    /// One row of TS 35.208 §4.3 (test sets 1–6): inputs and every output.
    struct Set {
        k: &'static str,
        rand: &'static str,
        sqn: &'static str,
        amf: &'static str,
        op: &'static str,
        opc: &'static str,
        f1: &'static str,
        f1s: &'static str,
        f2: &'static str,
        f5: &'static str,
        f3: &'static str,
        f4: &'static str,
        f5s: &'static str,
    }

    const SETS: [Set; 6] = [
        Set {
            k: "465b5ce8b199b49faa5f0a2ee238a6bc",
            rand: "23553cbe9637a89d218ae64dae47bf35",
            sqn: "ff9bb4d0b607",
            amf: "b9b9",
            op: "cdc202d5123e20f62b6d676ac72cb318",
            opc: "cd63cb71954a9f4e48a5994e37a02baf",
            f1: "4a9ffac354dfafb3",
            f1s: "01cfaf9ec4e871e9",
            f2: "a54211d5e3ba50bf",
            f5: "aa689c648370",
            f3: "b40ba9a3c58b2a05bbf0d987b21bf8cb",
            f4: "f769bcd751044604127672711c6d3441",
            f5s: "451e8beca43b",
        },
        Set {
            k: "0396eb317b6d1c36f19c1c84cd6ffd16",
            rand: "c00d603103dcee52c4478119494202e8",
            sqn: "fd8eef40df7d",
            amf: "af17",
            op: "ff53bade17df5d4e793073ce9d7579fa",
            opc: "53c15671c60a4b731c55b4a441c0bde2",
            f1: "5df5b31807e258b0",
            f1s: "a8c016e51ef4a343",
            f2: "d3a628ed988620f0",
            f5: "c47783995f72",
            f3: "58c433ff7a7082acd424220f2b67c556",
            f4: "21a8c1f929702adb3e738488b9f5c5da",
            f5s: "30f1197061c1",
        },
        Set {
            k: "fec86ba6eb707ed08905757b1bb44b8f",
            rand: "9f7c8d021accf4db213ccff0c7f71a6a",
            sqn: "9d0277595ffc",
            amf: "725c",
            op: "dbc59adcb6f9a0ef735477b7fadf8374",
            opc: "1006020f0a478bf6b699f15c062e42b3",
            f1: "9cabc3e99baf7281",
            f1s: "95814ba2b3044324",
            f2: "8011c48c0c214ed2",
            f5: "33484dc2136b",
            f3: "5dbdbb2954e8f3cde665b046179a5098",
            f4: "59a92d3b476a0443487055cf88b2307b",
            f5s: "deacdd848cc6",
        },
        Set {
            k: "9e5944aea94b81165c82fbf9f32db751",
            rand: "ce83dbc54ac0274a157c17f80d017bd6",
            sqn: "0b604a81eca8",
            amf: "9e09",
            op: "223014c5806694c007ca1eeef57f004f",
            opc: "a64a507ae1a2a98bb88eb4210135dc87",
            f1: "74a58220cba84c49",
            f1s: "ac2cc74a96871837",
            f2: "f365cd683cd92e96",
            f5: "f0b9c08ad02e",
            f3: "e203edb3971574f5a94b0d61b816345d",
            f4: "0c4524adeac041c4dd830d20854fc46b",
            f5s: "6085a86c6f63",
        },
        Set {
            k: "4ab1deb05ca6ceb051fc98e77d026a84",
            rand: "74b0cd6031a1c8339b2b6ce2b8c4a186",
            sqn: "e880a1b580b6",
            amf: "9f07",
            op: "2d16c5cd1fdf6b22383584e3bef2a8d8",
            opc: "dcf07cbd51855290b92a07a9891e523e",
            f1: "49e785dd12626ef2",
            f1s: "9e85790336bb3fa2",
            f2: "5860fc1bce351e7e",
            f5: "31e11a609118",
            f3: "7657766b373d1c2138f307e3de9242f9",
            f4: "1c42e960d89b8fa99f2744e0708ccb53",
            f5s: "fe2555e54aa9",
        },
        Set {
            k: "6c38a116ac280c454f59332ee35c8c4f",
            rand: "ee6466bc96202c5a557abbeff8babf63",
            sqn: "414b98222181",
            amf: "4464",
            op: "1ba00a1a7c6700ac8c3ff3e96ad08725",
            opc: "3803ef5363b947c6aaa225e58fae3934",
            f1: "078adfb488241a57",
            f1s: "80246b8d0186bcf1",
            f2: "16c8233f05a0ac28",
            f5: "45b0f69ab06c",
            f3: "3f8c7587fe8e4b233af676aede30ba3b",
            f4: "a7466cc1e6b2a1337d49d3b66e95d7b4",
            f5s: "1f53cd2b1113",
        },
    ];

    #[test]
    fn ts_35_208_test_sets_1_to_6() {
        for (i, s) in SETS.iter().enumerate() {
            let k = h::<16>(s.k);
            let rand = h::<16>(s.rand);
            let sqn = h::<6>(s.sqn);
            let amf = h::<2>(s.amf);
            assert_eq!(
                opc_from_op(&k, &h(s.op)),
                h::<16>(s.opc),
                "set {} OPc",
                i + 1
            );
            let m = Milenage::from_op(&k, &h(s.op));
            assert_eq!(m.opc(), h::<16>(s.opc), "set {} OPc", i + 1);
            assert_eq!(m.f1(&rand, &sqn, &amf), h::<8>(s.f1), "set {} f1", i + 1);
            assert_eq!(
                m.f1_star(&rand, &sqn, &amf),
                h::<8>(s.f1s),
                "set {} f1*",
                i + 1
            );
            let o = m.f2345(&rand);
            assert_eq!(o.res, h::<8>(s.f2), "set {} f2", i + 1);
            assert_eq!(o.ck, h::<16>(s.f3), "set {} f3", i + 1);
            assert_eq!(o.ik, h::<16>(s.f4), "set {} f4", i + 1);
            assert_eq!(o.ak, h::<6>(s.f5), "set {} f5", i + 1);
            assert_eq!(m.f5_star(&rand), h::<6>(s.f5s), "set {} f5*", i + 1);
            let (mac, all) = m.f12345(&rand, &sqn, &amf);
            assert_eq!(mac, h::<8>(s.f1), "set {} f12345 f1", i + 1);
            assert_eq!(all, o, "set {} f12345", i + 1);
            // Built from OPc directly, the same outputs.
            let m2 = Milenage::new(&k, &h(s.opc));
            assert_eq!(m2.f2345(&rand), o);
        }
    }

    #[test]
    fn custom_constants_change_outputs_and_default_constants_do_not() {
        let k = h::<16>(SETS[0].k);
        let opc = h::<16>(SETS[0].opc);
        let rand = h::<16>(SETS[0].rand);
        let std = Milenage::with_constants(&k, &opc, MilenageConstants::default());
        assert_eq!(std.f2345(&rand).res, h::<8>(SETS[0].f2));
        let mut c = MilenageConstants::default();
        c.r[1] = 8;
        let custom = Milenage::with_constants(&k, &opc, c);
        assert_ne!(custom.f2345(&rand).res, h::<8>(SETS[0].f2));
    }

    #[test]
    fn rot_is_cyclic_left_rotation() {
        let mut x = [0u8; 16];
        x[0] = 0x80;
        let r = rot(&x, 1);
        assert_eq!(r[15], 1);
        assert_eq!(r[0], 0);
        assert_eq!(rot(&x, 0), x);
        let r64 = rot(&x, 64);
        assert_eq!(r64[8], 0x80);
    }
}
