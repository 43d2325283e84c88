//! `imslab aka`: AKA debugging in the spirit of osmo-auc-gen, for IMS.
//!
//! Lab registrations mostly fail on AKA: a wrong Ki/OPc in the HSS, an SQN the card refuses,
//! an AMF with the separation bit wrong. These commands recompute every value from the
//! card's secrets so they can be compared with a pcap.

use crate::hexarg::{hex, parse_hex_n, parse_number, ArgError};
use akav1::digest::{Challenge, Credentials, Qop, QopInput, ResponseInput, AKAV1_MD5};
use akav1::{nonce, AuthFailure, Milenage, Sqn, SqnPolicy, Usim, UsimSqnState};
use clap::{Args, Subcommand};
use std::fmt::Write as _;

/// AKA computations from a subscriber's K and OP/OPc.
#[derive(Debug, Args)]
pub struct AkaArgs {
    #[command(subcommand)]
    command: AkaCommand,
}

/// The subscriber secrets every subcommand needs.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("operator-key").required(true).multiple(false))]
struct Keys {
    /// Subscriber key K (Ki), 32 hex digits.
    #[arg(short = 'k', long = "k", value_name = "HEX")]
    k: String,
    /// Operator variant OP, 32 hex digits (OPc is derived from it).
    #[arg(long, value_name = "HEX", group = "operator-key")]
    op: Option<String>,
    /// Derived operator variant OPc, 32 hex digits (what most cards are programmed with).
    #[arg(long, value_name = "HEX", group = "operator-key")]
    opc: Option<String>,
    /// Width of IND in bits (TS 33.102 Annex C), for showing SQN as SEQ/IND.
    #[arg(long, default_value_t = 5, value_name = "BITS")]
    ind_bits: u8,
}

impl Keys {
    fn milenage(&self) -> Result<Milenage, ArgError> {
        let k = parse_hex_n::<16>("K", &self.k)?;
        match (&self.op, &self.opc) {
            (Some(op), _) => Ok(Milenage::from_op(&k, &parse_hex_n::<16>("OP", op)?)),
            (None, Some(opc)) => Ok(Milenage::new(&k, &parse_hex_n::<16>("OPc", opc)?)),
            // clap's group makes one of them required.
            (None, None) => Err(ArgError::Length {
                what: "OP/OPc",
                expected: 16,
                got: 0,
            }),
        }
    }

    fn policy(&self) -> anyhow::Result<SqnPolicy> {
        Ok(SqnPolicy::with_ind_bits(self.ind_bits)?)
    }
}

#[derive(Debug, Subcommand)]
enum AkaCommand {
    /// Network side: compute an authentication vector and the IMS nonce.
    ///
    /// Example (TS 35.208 test set 1):
    ///   imslab aka vector -k 465b5ce8b199b49faa5f0a2ee238a6bc
    ///     --op cdc202d5123e20f62b6d676ac72cb318 --sqn 0xff9bb4d0b607 --amf b9b9
    ///     --rand 23553cbe9637a89d218ae64dae47bf35
    Vector {
        #[command(flatten)]
        keys: Keys,
        /// SQN, decimal or 0x-hex (48 bits).
        #[arg(long, value_name = "N")]
        sqn: String,
        /// AMF, 4 hex digits. 8000 sets the separation bit EPS/IMS cards expect.
        #[arg(long, default_value = "8000", value_name = "HEX")]
        amf: String,
        /// RAND, 32 hex digits; random if omitted.
        #[arg(long, value_name = "HEX")]
        rand: Option<String>,
    },
    /// Network side: verify an AUTS (MAC-S) and recover the card's SQN_MS.
    ///
    /// AUTS may be given as 28 hex digits or as the base64 value of the `auts=` parameter.
    Resync {
        #[command(flatten)]
        keys: Keys,
        /// RAND of the challenge the card refused, 32 hex digits.
        #[arg(long, value_name = "HEX")]
        rand: String,
        /// AUTS, hex or base64.
        #[arg(long, value_name = "AUTS")]
        auts: String,
        /// IND slot of the HSS, to show the next SQN it would issue.
        #[arg(long, default_value_t = 0, value_name = "IND")]
        ind: u32,
    },
    /// UE side: build the AUTS a card with highest accepted SQN_MS sends for RAND.
    Auts {
        #[command(flatten)]
        keys: Keys,
        /// RAND, 32 hex digits.
        #[arg(long, value_name = "HEX")]
        rand: String,
        /// The card's highest accepted SQN, decimal or 0x-hex.
        #[arg(long, value_name = "N")]
        sqn_ms: String,
    },
    /// UE side: answer a 401 challenge like an ISIM would, printing the Authorization header.
    ///
    /// Verifies AUTN (MAC-A, then SQN freshness against --sqn-ms) and computes the AKAv1-MD5
    /// digest response with RES as the password. On an SQN failure it prints the AUTS and
    /// the Authorization header with `auts=` (empty password, RFC 3310 §3.4).
    Response {
        #[command(flatten)]
        keys: Keys,
        /// The WWW-Authenticate header value (`Digest realm=..., nonce=..., ...`).
        #[arg(long, value_name = "HEADER")]
        challenge: String,
        /// Private identity (IMPI), the digest username.
        #[arg(long, value_name = "IMPI")]
        impi: String,
        /// digest-uri: the REGISTER's Request-URI, e.g. sip:ims.mnc001.mcc001.3gppnetwork.org.
        #[arg(long, value_name = "URI")]
        uri: String,
        /// SIP method.
        #[arg(long, default_value = "REGISTER")]
        method: String,
        /// The card's highest accepted SQN (0 = fresh card), decimal or 0x-hex.
        #[arg(long, default_value = "0", value_name = "N")]
        sqn_ms: String,
        /// Client nonce for qop (hex/any token); random if omitted.
        #[arg(long)]
        cnonce: Option<String>,
        /// Nonce count for qop.
        #[arg(long, default_value_t = 1)]
        nc: u32,
    },
    /// Network side: check a UE's Authorization header against K/OPc (is the phone's
    /// response right for the key in our HSS?).
    Check {
        #[command(flatten)]
        keys: Keys,
        /// The Authorization header value the UE sent.
        #[arg(long, value_name = "HEADER")]
        authorization: String,
        /// SIP method of that request.
        #[arg(long, default_value = "REGISTER")]
        method: String,
    },
}

/// Run one `imslab aka` subcommand, returning what to print. An `Err` is a usage or input
/// error; an AKA failure the user asked to see (e.g. a MAC mismatch) is too, so scripts can
/// test the exit code.
pub fn run(args: &AkaArgs) -> anyhow::Result<String> {
    let mut out = String::new();
    match &args.command {
        AkaCommand::Vector {
            keys,
            sqn,
            amf,
            rand,
        } => {
            let m = keys.milenage()?;
            let policy = keys.policy()?;
            let sqn = Sqn::new(parse_number("SQN", sqn)?)?;
            let amf = parse_hex_n::<2>("AMF", amf)?;
            let rand = match rand {
                Some(r) => parse_hex_n::<16>("RAND", r)?,
                None => rand::random(),
            };
            let v = m.vector(&rand, sqn, amf);
            let f = m.f2345(&rand);
            line(&mut out, "OPc", &hex(&m.opc()));
            line(&mut out, "SQN", &describe_sqn(sqn, policy));
            line(&mut out, "AMF", &hex(&amf));
            line(&mut out, "RAND", &hex(&v.rand));
            line(&mut out, "AUTN", &hex(&v.autn));
            line(&mut out, "XRES", &hex(&v.xres));
            line(&mut out, "CK", &hex(&v.ck));
            line(&mut out, "IK", &hex(&v.ik));
            line(&mut out, "AK", &hex(&f.ak));
            line(&mut out, "MAC-A", &hex(&v.autn[8..]));
            line(&mut out, "IMS nonce", &nonce::encode(&v.rand, &v.autn, &[]));
        }
        AkaCommand::Resync {
            keys,
            rand,
            auts,
            ind,
        } => {
            let m = keys.milenage()?;
            let policy = keys.policy()?;
            let rand = parse_hex_n::<16>("RAND", rand)?;
            let auts = parse_auts(auts)?;
            let sqn_ms = m.resync(&rand, &auts)?;
            line(&mut out, "MAC-S", "ok");
            line(&mut out, "SQN_MS", &describe_sqn(sqn_ms, policy));
            let next = policy.next(sqn_ms, *ind)?;
            line(&mut out, "next SQN", &describe_sqn(next, policy));
        }
        AkaCommand::Auts { keys, rand, sqn_ms } => {
            let m = keys.milenage()?;
            let rand = parse_hex_n::<16>("RAND", rand)?;
            let sqn_ms = Sqn::new(parse_number("SQN_MS", sqn_ms)?)?;
            let auts = m.auts(&rand, sqn_ms);
            line(&mut out, "AUTS", &hex(&auts));
            line(&mut out, "auts", &nonce::encode_auts(&auts));
        }
        AkaCommand::Response {
            keys,
            challenge,
            impi,
            uri,
            method,
            sqn_ms,
            cnonce,
            nc,
        } => {
            let policy = keys.policy()?;
            let ch = Challenge::parse(challenge.trim_start_matches("WWW-Authenticate:").trim())?;
            let n = nonce::decode(&ch.nonce)?;
            let sqn_ms = Sqn::new(parse_number("SQN_MS", sqn_ms)?)?;
            let mut usim =
                Usim::with_state(keys.milenage()?, UsimSqnState::with_highest(policy, sqn_ms));
            let qop = ch.qop.first().copied().map(|_| Qop::Auth);
            let cnonce = cnonce
                .clone()
                .unwrap_or_else(|| hex(&rand::random::<[u8; 8]>()));
            let nc = format!("{nc:08x}");
            line(&mut out, "RAND", &hex(&n.rand));
            line(&mut out, "AUTN", &hex(&n.autn));
            let (password, auts) = match usim.authenticate(&n.rand, &n.autn) {
                Ok(r) => {
                    line(&mut out, "result", "ok (MAC-A verified, SQN fresh)");
                    line(&mut out, "SQN", &describe_sqn(r.sqn, policy));
                    line(&mut out, "RES", &hex(&r.res));
                    line(&mut out, "CK", &hex(&r.ck));
                    line(&mut out, "IK", &hex(&r.ik));
                    (r.res.to_vec(), None)
                }
                Err(AuthFailure::SyncFailure { auts, reason }) => {
                    line(&mut out, "result", &format!("SQN failure: {reason}"));
                    line(&mut out, "AUTS", &hex(&auts));
                    (Vec::new(), Some(nonce::encode_auts(&auts)))
                }
                Err(e @ AuthFailure::MacFailure) => {
                    anyhow::bail!("{e}: the network's K/OPc differ from the ones given")
                }
            };
            let creds = Credentials {
                username: impi.clone(),
                realm: ch.realm.clone(),
                nonce: ch.nonce.clone(),
                uri: uri.clone(),
                algorithm: Some(ch.algorithm.clone().unwrap_or_else(|| AKAV1_MD5.into())),
                cnonce: qop.map(|_| cnonce.clone()),
                opaque: ch.opaque.clone(),
                qop,
                nc: qop.map(|_| nc.clone()),
                auts,
                ..Default::default()
            };
            let input = ResponseInput {
                username: impi,
                realm: &ch.realm,
                nonce: &ch.nonce,
                method,
                uri,
                qop: qop.map(|q| QopInput {
                    qop: q,
                    cnonce: &cnonce,
                    nc: &nc,
                }),
                body: b"",
            };
            let response = akav1::digest::response(&password, &input);
            let creds = Credentials { response, ..creds };
            line(&mut out, "Authorization", &creds.to_header());
        }
        AkaCommand::Check {
            keys,
            authorization,
            method,
        } => {
            let m = keys.milenage()?;
            let policy = keys.policy()?;
            let c = Credentials::parse(authorization.trim_start_matches("Authorization:").trim())?;
            let n = nonce::decode(&c.nonce)?;
            if let Some(a) = &c.auts {
                let auts = nonce::decode_auts(a)?;
                let sqn_ms = m.resync(&n.rand, &auts)?;
                line(&mut out, "result", "resynchronisation request, MAC-S ok");
                line(&mut out, "SQN_MS", &describe_sqn(sqn_ms, policy));
                return Ok(out);
            }
            let f = m.f2345(&n.rand);
            line(&mut out, "XRES", &hex(&f.res));
            if c.verify(&f.res, method, b"") {
                line(&mut out, "result", "response matches XRES");
            } else {
                anyhow::bail!(
                    "response {} does not match XRES {} for this K/OPc (wrong key, or a \
                     different method/uri/nonce than the UE used)",
                    c.response,
                    hex(&f.res)
                );
            }
        }
    }
    Ok(out)
}

fn parse_auts(s: &str) -> Result<[u8; 14], ArgError> {
    let t = s.trim();
    // An even run of hex digits is hex: base64 of 14 octets is 19 characters plus padding,
    // so it can never be mistaken for it.
    if t.len() % 2 == 0 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return parse_hex_n::<14>("AUTS", t);
    }
    nonce::decode_auts(t).map_err(|e| match e {
        nonce::NonceError::AutsLength(n) => ArgError::Length {
            what: "AUTS",
            expected: 14,
            got: n,
        },
        e => ArgError::Base64 {
            what: "AUTS",
            reason: e.to_string(),
        },
    })
}

fn describe_sqn(sqn: Sqn, p: SqnPolicy) -> String {
    format!(
        "{} (0x{}, SEQ {} IND {} with {} IND bits)",
        sqn.value(),
        hex(&sqn.to_bytes()),
        p.seq(sqn),
        p.ind(sqn),
        p.ind_bits
    )
}

fn line(out: &mut String, name: &str, value: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "{:<15}{}", format!("{name}:"), value);
}
