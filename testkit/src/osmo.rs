//! `osmo-auc-gen` fixture (Debian `libosmocore-utils`): an independent
//! Milenage (TS 35.206) implementation to cross-check ours.
//!
//! Generate mode runs
//! `osmo-auc-gen -3 -a milenage -k K (-O OP | -o OPc) -f AMF -s SQN -r RAND`
//! (`-s` takes the SQN in **decimal**; the tool prints it in decimal too) and
//! parses lines of the form `NAME:<TAB>hex`: `RAND`, `AUTN`, `IK`, `CK`,
//! `RES`, `IMS nonce` (base64 RAND‖AUTN, as in the SIP `nonce`), `IMS res`,
//! `SRES`, `Kc`, `SQN`, `IND`. The generated AUTN uses the SQN given (checked
//! against TS 35.208 test set 1).
//!
//! Resync mode adds `-A AUTS` (14 bytes hex) with the RAND of the challenge:
//! the tool checks MAC-S (f1* with AMF 0000 per TS 33.102 §6.3.3), recovers
//! SQN_MS with f5*, and prints a new vector whose SQN is derived from SQN_MS
//! (next SEQ in the IND slot given by `-i`, default 0, IND length `-l`,
//! default 5). A wrong MAC-S makes it exit 1 with
//! `AUTS from MS seems incorrect` ([`Error::Failed`]).

use std::path::PathBuf;
use std::process::Command;

use crate::Error;

/// Operator key: OP (the tool derives OPc) or OPc directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// `-O`: OP.
    Op([u8; 16]),
    /// `-o`: OPc.
    Opc([u8; 16]),
}

/// Inputs of one run.
#[derive(Clone, Debug)]
pub struct AucInput {
    /// Subscriber key K.
    pub k: [u8; 16],
    /// OP or OPc.
    pub op: OpKind,
    /// AMF (2 bytes).
    pub amf: [u8; 2],
    /// SQN (48 bits) for generate mode; ignored in resync mode.
    pub sqn: u64,
    /// RAND.
    pub rand: [u8; 16],
    /// Resync: AUTS from the UE (`-A`), with `rand` the challenge's RAND.
    pub auts: Option<[u8; 14]>,
    /// Resync: IND slot for the new SQN (`-i`).
    pub ind: Option<u8>,
}

/// A vector as printed by `osmo-auc-gen`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AucVector {
    /// RAND.
    pub rand: [u8; 16],
    /// AUTN = SQN⊕AK ‖ AMF ‖ MAC-A.
    pub autn: [u8; 16],
    /// IK (f4).
    pub ik: [u8; 16],
    /// CK (f3).
    pub ck: [u8; 16],
    /// RES/XRES (f2), usually 8 bytes.
    pub res: Vec<u8>,
    /// `IMS nonce`: base64(RAND‖AUTN), verbatim.
    pub ims_nonce: Option<String>,
    /// `IMS res`: base64(RES), verbatim.
    pub ims_res: Option<String>,
    /// SQN used in AUTN (decimal in the output).
    pub sqn: Option<u64>,
    /// IND bits of that SQN.
    pub ind: Option<u64>,
    /// Raw `NAME: value` pairs in output order, for anything else.
    pub fields: Vec<(String, String)>,
}

impl AucVector {
    /// AK = (SQN ⊕ AK) ⊕ SQN, when the SQN was printed.
    pub fn ak(&self) -> Option<[u8; 6]> {
        let sqn = self.sqn?.to_be_bytes();
        let mut ak = [0u8; 6];
        for (i, b) in ak.iter_mut().enumerate() {
            *b = self.autn[i] ^ sqn[2 + i];
        }
        Some(ak)
    }

    /// MAC-A (f1), the last 8 bytes of AUTN.
    pub fn mac_a(&self) -> [u8; 8] {
        let mut m = [0u8; 8];
        m.copy_from_slice(&self.autn[8..]);
        m
    }
}

/// Path of `osmo-auc-gen`, if installed.
pub fn bin() -> Option<PathBuf> {
    crate::find_bin("osmo-auc-gen")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The argument list for `input` (without the program name).
pub fn args(input: &AucInput) -> Vec<String> {
    let mut a: Vec<String> = ["-3", "-a", "milenage", "-k"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.push(hex(&input.k));
    match input.op {
        OpKind::Op(op) => a.extend(["-O".into(), hex(&op)]),
        OpKind::Opc(opc) => a.extend(["-o".into(), hex(&opc)]),
    }
    a.extend(["-f".into(), hex(&input.amf)]);
    match input.auts {
        Some(auts) => {
            a.extend(["-A".into(), hex(&auts)]);
            if let Some(ind) = input.ind {
                a.extend(["-i".into(), ind.to_string()]);
            }
        }
        None => a.extend(["-s".into(), input.sqn.to_string()]),
    }
    a.extend(["-r".into(), hex(&input.rand)]);
    a
}

/// Runs `osmo-auc-gen` and parses its vector.
pub fn run(input: &AucInput) -> Result<AucVector, Error> {
    let bin = bin().ok_or_else(|| Error::Failed {
        what: "find osmo-auc-gen".into(),
        detail: "not installed (apt-get install libosmocore-utils)".into(),
    })?;
    let out = Command::new(&bin)
        .args(args(input))
        .output()
        .map_err(|e| Error::io("run osmo-auc-gen".into(), e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(Error::Failed {
            what: format!("osmo-auc-gen {}", args(input).join(" ")),
            detail: format!("{}\n{stdout}{stderr}", out.status),
        });
    }
    parse(&stdout)
}

fn unhex<const N: usize>(name: &str, v: &str) -> Result<[u8; N], Error> {
    let bytes = unhex_vec(name, v)?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| Error::parse(name, format!("{} bytes, want {N}: {v}", b.len())))
}

fn unhex_vec(name: &str, v: &str) -> Result<Vec<u8>, Error> {
    let v = v.trim();
    if v.len() % 2 != 0 || !v.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::parse(name, format!("not hex: {v:?}")));
    }
    (0..v.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&v[i..i + 2], 16).map_err(|e| Error::parse(name, e.to_string()))
        })
        .collect()
}

/// Parses `osmo-auc-gen -3` output (see the module docs). Unknown lines are
/// kept in `fields`; RAND, AUTN, IK, CK and RES are required.
pub fn parse(out: &str) -> Result<AucVector, Error> {
    let mut fields = Vec::new();
    for line in out.lines() {
        if let Some((k, v)) = line.split_once(":\t") {
            fields.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| {
                Error::parse("osmo-auc-gen output", format!("no {name} line in:\n{out}"))
            })
    };
    let dec = |name: &str| -> Result<Option<u64>, Error> {
        match fields.iter().find(|(k, _)| k == name) {
            None => Ok(None),
            Some((_, v)) => v
                .parse()
                .map(Some)
                .map_err(|_| Error::parse(name, format!("not decimal: {v:?}"))),
        }
    };
    let opt = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    Ok(AucVector {
        rand: unhex("RAND", get("RAND")?)?,
        autn: unhex("AUTN", get("AUTN")?)?,
        ik: unhex("IK", get("IK")?)?,
        ck: unhex("CK", get("CK")?)?,
        res: unhex_vec("RES", get("RES")?)?,
        ims_nonce: opt("IMS nonce"),
        ims_res: opt("IMS res"),
        sqn: dec("SQN")?,
        ind: dec("IND")?,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "osmo-auc-gen (C) 2011-2012 by Harald Welte\n\
        This is FREE SOFTWARE with ABSOLUTELY NO WARRANTY\n\n\
        RAND:\t23553cbe9637a89d218ae64dae47bf35\n\
        AUTN:\t55f328b43577b9b94a9ffac354dfafb3\n\
        IK:\tf769bcd751044604127672711c6d3441\n\
        CK:\tb40ba9a3c58b2a05bbf0d987b21bf8cb\n\
        RES:\ta54211d5e3ba50bf\n\
        IMS nonce:\tI1U8vpY3qJ0hiuZNrke/NVXzKLQ1d7m5Sp/6w1Tfr7M=\n\
        IMS res:\tpUIR1eO6UL8=\n\
        SRES:\t46f8416a\n\
        Kc:\teae4be823af9a08b\n\
        SQN:\t281044218590727\n\
        IND:\t7\n";

    #[test]
    fn parses_real_output() {
        let v = parse(OUT).unwrap();
        assert_eq!(hex(&v.res), "a54211d5e3ba50bf");
        assert_eq!(v.sqn, Some(0xff9b_b4d0_b607));
        assert_eq!(hex(&v.ak().unwrap()), "aa689c648370");
        assert_eq!(hex(&v.mac_a()), "4a9ffac354dfafb3");
        assert_eq!(v.ind, Some(7));
    }

    #[test]
    fn rejects_broken_output() {
        assert!(parse("").is_err());
        assert!(parse(&OUT.replace("a54211d5e3ba50bf", "zz")).is_err());
        assert!(parse(&OUT.replace("SQN:\t281044218590727", "SQN:\tx")).is_err());
        assert!(parse(&OUT.replace("23553cbe9637a89d218ae64dae47bf35", "2355")).is_err());
    }

    #[test]
    fn builds_args() {
        let a = args(&AucInput {
            k: [1; 16],
            op: OpKind::Opc([2; 16]),
            amf: [0x80, 0],
            sqn: 32,
            rand: [3; 16],
            auts: None,
            ind: None,
        });
        assert!(a.windows(2).any(|w| w == ["-s", "32"]));
        assert!(a.windows(2).any(|w| w[0] == "-o"));
        assert!(a.windows(2).any(|w| w == ["-f", "8000"]));
    }
}
