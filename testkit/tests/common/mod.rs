//! A deliberately tiny Cx responder for testkit's own self-tests: just enough
//! Diameter (RFC 6733 framing, CER/CEA, DWR/DWA, DPR/DPA) and Cx (TS 29.229
//! MAR/MAA with one Milenage vector, SAR/SAA with minimal User-Data) to prove
//! that the Kamailio and SIPp fixtures work before the real `hss` exists.
//! Not a product: the real codec lives in the `diameter` crate.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const CX_APP: u32 = 16_777_216;
pub const TGPP: u32 = 10_415;

#[derive(Clone, Debug)]
pub struct Avp {
    pub code: u32,
    pub vendor: u32,
    pub data: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct Msg {
    pub flags: u8,
    pub cmd: u32,
    pub app: u32,
    pub hbh: u32,
    pub e2e: u32,
    pub avps: Vec<Avp>,
}

impl Msg {
    pub fn avp(&self, code: u32) -> Option<&Avp> {
        self.avps.iter().find(|a| a.code == code)
    }
    pub fn u32(&self, code: u32) -> Option<u32> {
        self.avp(code)
            .and_then(|a| a.data.get(..4))
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn str(&self, code: u32) -> Option<String> {
        self.avp(code)
            .map(|a| String::from_utf8_lossy(&a.data).into_owned())
    }
}

pub fn avp(code: u32, vendor: u32, data: &[u8]) -> Vec<u8> {
    let mut flags = 0x40u8; // M
    let hl = if vendor != 0 {
        flags |= 0x80;
        12
    } else {
        8
    };
    let len = hl + data.len();
    let mut v = Vec::with_capacity(len + 3);
    v.extend_from_slice(&code.to_be_bytes());
    v.push(flags);
    v.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    if vendor != 0 {
        v.extend_from_slice(&vendor.to_be_bytes());
    }
    v.extend_from_slice(data);
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v
}

pub fn avp_u32(code: u32, vendor: u32, x: u32) -> Vec<u8> {
    avp(code, vendor, &x.to_be_bytes())
}

pub fn encode(flags: u8, cmd: u32, app: u32, hbh: u32, e2e: u32, avps: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = avps.concat();
    let len = 20 + body.len();
    let mut v = Vec::with_capacity(len);
    v.push(1);
    v.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    v.push(flags);
    v.extend_from_slice(&cmd.to_be_bytes()[1..]);
    v.extend_from_slice(&app.to_be_bytes());
    v.extend_from_slice(&hbh.to_be_bytes());
    v.extend_from_slice(&e2e.to_be_bytes());
    v.extend_from_slice(&body);
    v
}

fn parse_avps(mut b: &[u8]) -> Option<Vec<Avp>> {
    let mut out = Vec::new();
    while b.len() >= 8 {
        let code = u32::from_be_bytes(b[0..4].try_into().ok()?);
        let flags = b[4];
        let len = u32::from_be_bytes([0, b[5], b[6], b[7]]) as usize;
        let (vendor, hl) = if flags & 0x80 != 0 {
            (u32::from_be_bytes(b.get(8..12)?.try_into().ok()?), 12)
        } else {
            (0, 8)
        };
        if len < hl || len > b.len() {
            return None;
        }
        out.push(Avp {
            code,
            vendor,
            data: b[hl..len].to_vec(),
        });
        let padded = (len + 3) & !3;
        b = &b[padded.min(b.len())..];
    }
    Some(out)
}

pub fn parse(b: &[u8]) -> Option<Msg> {
    if b.len() < 20 || b[0] != 1 {
        return None;
    }
    Some(Msg {
        flags: b[4],
        cmd: u32::from_be_bytes([0, b[5], b[6], b[7]]),
        app: u32::from_be_bytes(b[8..12].try_into().ok()?),
        hbh: u32::from_be_bytes(b[12..16].try_into().ok()?),
        e2e: u32::from_be_bytes(b[16..20].try_into().ok()?),
        avps: parse_avps(&b[20..])?,
    })
}

pub fn read_msg(s: &mut TcpStream) -> Option<(Vec<u8>, Msg)> {
    let mut h = [0u8; 4];
    s.read_exact(&mut h).ok()?;
    let len = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
    if !(20..=1 << 20).contains(&len) {
        return None;
    }
    let mut rest = vec![0u8; len - 4];
    s.read_exact(&mut rest).ok()?;
    let mut all = h.to_vec();
    all.extend_from_slice(&rest);
    let m = parse(&all)?;
    Some((all, m))
}

/// What the stub saw, for assertions.
#[derive(Debug, Default)]
pub struct Seen {
    /// Request command codes in arrival order.
    pub commands: Vec<u32>,
    /// Server-Assignment-Type of each SAR.
    pub sar_types: Vec<u32>,
    /// RANDs handed out in MAAs.
    pub rands: Vec<[u8; 16]>,
    /// Every CER received.
    pub cers: Vec<Msg>,
    /// SIP-Authorization (RAND ‖ AUTS) of resync MARs.
    pub resync_auths: Vec<Vec<u8>>,
}

#[derive(Clone)]
pub struct Subscriber {
    pub impi: String,
    pub impu: String,
    pub k: [u8; 16],
    pub op: [u8; 16],
    pub amf: [u8; 2],
}

pub struct StubHss {
    pub port: u16,
    pub seen: Arc<Mutex<Seen>>,
    /// RANDs to use first (then random ones).
    pub forced_rands: Arc<Mutex<Vec<[u8; 16]>>>,
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Whether RES for `rand` contains a zero byte (SIPp 3.6.1 then fails).
pub fn res_has_zero(sub: &Subscriber, rand: &[u8; 16]) -> bool {
    let mut m = milenage::Milenage::new_with_op(sub.k, sub.op);
    let (res, _, _, _) = m.f2345(rand);
    res.contains(&0)
}

impl StubHss {
    /// Listens on 127.0.0.1:<free port>; answers until the process ends.
    /// With `avoid_zero_res`, random RANDs whose RES has a 0x00 byte are skipped.
    pub fn start(sub: Subscriber, avoid_zero_res: bool) -> StubHss {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let forced = Arc::new(Mutex::new(Vec::new()));
        let (seen2, forced2) = (seen.clone(), forced.clone());
        std::thread::spawn(move || {
            let sqn = Arc::new(Mutex::new(32u64));
            for conn in l.incoming() {
                let Ok(mut s) = conn else { break };
                let (sub, seen, forced, sqn) =
                    (sub.clone(), seen2.clone(), forced2.clone(), sqn.clone());
                std::thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
                    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(port);
                    while let Some((_, m)) = read_msg(&mut s) {
                        if m.flags & 0x80 == 0 {
                            continue; // an answer (to nothing we sent)
                        }
                        {
                            let mut sn = seen.lock().unwrap();
                            sn.commands.push(m.cmd);
                            if m.cmd == 257 {
                                sn.cers.push(m.clone());
                            }
                        }
                        let ans = answer(&m, &sub, avoid_zero_res, &mut rng, &seen, &forced, &sqn);
                        if s.write_all(&ans).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        StubHss {
            port,
            seen,
            forced_rands: forced,
        }
    }
}

const HOST: &[u8] = b"hss.ims.lab";
const REALM: &[u8] = b"ims.lab";

fn base(m: &Msg) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    if let Some(sid) = m.avp(263) {
        v.push(avp(263, 0, &sid.data));
    }
    v
}

#[allow(clippy::too_many_arguments)]
fn answer(
    m: &Msg,
    sub: &Subscriber,
    avoid_zero_res: bool,
    rng: &mut u64,
    seen: &Mutex<Seen>,
    forced: &Mutex<Vec<[u8; 16]>>,
    sqn: &Mutex<u64>,
) -> Vec<u8> {
    let ok = avp_u32(268, 0, 2001);
    let oh = avp(264, 0, HOST);
    let or = avp(296, 0, REALM);
    match m.cmd {
        257 => {
            let vsai = avp(
                260,
                0,
                &[avp_u32(266, 0, TGPP), avp_u32(258, 0, CX_APP)].concat(),
            );
            let avps = vec![
                ok,
                oh,
                or,
                avp(257, 0, &[0, 1, 127, 0, 0, 1]),
                avp_u32(266, 0, 0),
                avp(269, 0, b"testkit-stub-hss"),
                avp_u32(265, 0, TGPP),
                vsai,
            ];
            encode(0, 257, 0, m.hbh, m.e2e, &avps)
        }
        280 | 282 => encode(0, m.cmd, 0, m.hbh, m.e2e, &[ok, oh, or]),
        303 => {
            // MAR → MAA with one AKA vector (TS 29.229 §6.1.8, TS 33.203).
            // A resync MAR carries SIP-Authorization = RAND ‖ AUTS in its item.
            if let Some(item) = m.avp(612).and_then(|a| parse_avps(&a.data)) {
                if let Some(auth) = item.iter().find(|a| a.code == 610) {
                    seen.lock().unwrap().resync_auths.push(auth.data.clone());
                }
            }
            let rand = {
                let mut f = forced.lock().unwrap();
                if !f.is_empty() {
                    f.remove(0)
                } else {
                    loop {
                        let mut r = [0u8; 16];
                        r[..8].copy_from_slice(&xorshift(rng).to_be_bytes());
                        r[8..].copy_from_slice(&xorshift(rng).to_be_bytes());
                        if !avoid_zero_res || !res_has_zero(sub, &r) {
                            break r;
                        }
                    }
                }
            };
            let s = {
                let mut s = sqn.lock().unwrap();
                *s += 32;
                *s
            };
            let sqn_b: [u8; 6] = s.to_be_bytes()[2..].try_into().unwrap();
            let mut mil = milenage::Milenage::new_with_op(sub.k, sub.op);
            let (res, ck, ik, ak) = mil.f2345(&rand);
            let mac = mil.f1(&rand, &sqn_b, &sub.amf);
            let mut autn = Vec::new();
            for i in 0..6 {
                autn.push(sqn_b[i] ^ ak[i]);
            }
            autn.extend_from_slice(&sub.amf);
            autn.extend_from_slice(&mac);
            seen.lock().unwrap().rands.push(rand);
            let item = [
                avp_u32(613, TGPP, 1),
                avp(608, TGPP, b"Digest-AKAv1-MD5"),
                avp(609, TGPP, &[rand.to_vec(), autn].concat()),
                avp(610, TGPP, &res),
                avp(625, TGPP, &ck),
                avp(626, TGPP, &ik),
            ]
            .concat();
            let mut avps = base(m);
            avps.extend([
                avp_u32(277, 0, 1),
                oh,
                or,
                ok,
                avp(1, 0, sub.impi.as_bytes()),
                avp(601, TGPP, sub.impu.as_bytes()),
                avp_u32(607, TGPP, 1),
                avp(612, TGPP, &item),
            ]);
            encode(0x40, 303, CX_APP, m.hbh, m.e2e, &avps)
        }
        301 => {
            // SAR → SAA; User-Data on registration types (TS 29.228 CxDataType).
            let sat = m.u32(614).unwrap_or(0);
            seen.lock().unwrap().sar_types.push(sat);
            let mut avps = base(m);
            avps.extend([
                avp_u32(277, 0, 1),
                oh,
                or,
                ok,
                avp(1, 0, sub.impi.as_bytes()),
            ]);
            if sat == 1 || sat == 2 {
                let xml = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><IMSSubscription><PrivateID>{}</PrivateID><ServiceProfile><PublicIdentity><Identity>{}</Identity></PublicIdentity></ServiceProfile></IMSSubscription>",
                    sub.impi, sub.impu
                );
                avps.push(avp(606, TGPP, xml.as_bytes()));
            }
            encode(0x40, 301, CX_APP, m.hbh, m.e2e, &avps)
        }
        other => {
            // DIAMETER_COMMAND_UNSUPPORTED.
            encode(
                0x20,
                other,
                m.app,
                m.hbh,
                m.e2e,
                &[avp_u32(268, 0, 3001), oh, or],
            )
        }
    }
}

/// A hand-driven UE over UDP for flows SIPp cannot do (AUTS resync).
pub mod raw_ue {
    use base64::Engine;
    use md5::{Digest, Md5};
    use std::net::{SocketAddr, UdpSocket};
    use std::time::Duration;

    fn md5_hex(parts: &[&[u8]]) -> String {
        let mut h = Md5::new();
        for p in parts {
            h.update(p);
        }
        hex::encode(h.finalize())
    }

    pub struct RawUe {
        pub sock: UdpSocket,
        pub impi: String,
        pub impu: String,
        pub domain: String,
        pub call_id: String,
        pub cseq: u32,
        /// Extra header lines (each ending in CRLF), e.g. a P-CSCF's Path.
        pub extra_headers: String,
    }

    /// Header value of `name` in a SIP message (first occurrence).
    pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
        msg.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// `param="value"` or `param=value` from a header value.
    pub fn param(h: &str, name: &str) -> Option<String> {
        h.split(',').find_map(|p| {
            let p = p.trim().trim_start_matches("Digest ").trim();
            let (k, v) = p.split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"').to_string())
        })
    }

    impl RawUe {
        pub fn new(impi: &str, impu: &str, domain: &str) -> RawUe {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            RawUe {
                sock,
                impi: impi.into(),
                impu: impu.into(),
                domain: domain.into(),
                call_id: format!("raw-ue-{}", std::process::id()),
                cseq: 0,
                extra_headers: String::new(),
            }
        }

        /// Sends a REGISTER with `authorization` and returns the final response.
        pub fn register(&mut self, to: SocketAddr, authorization: &str) -> String {
            self.cseq += 1;
            let local = self.sock.local_addr().unwrap();
            let msg = format!(
                "REGISTER sip:{d} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-raw-{c}\r\n\
                 Max-Forwards: 70\r\nFrom: <{u}>;tag=raw1\r\nTo: <{u}>\r\nCall-ID: {cid}\r\n\
                 CSeq: {c} REGISTER\r\nContact: <sip:ue@{local}>;expires=600\r\nExpires: 600\r\n\
                 Authorization: {authorization}\r\n{extra}Content-Length: 0\r\n\r\n",
                d = self.domain,
                u = self.impu,
                c = self.cseq,
                cid = self.call_id,
                extra = self.extra_headers,
            );
            self.sock.send_to(msg.as_bytes(), to).unwrap();
            let mut buf = [0u8; 8192];
            loop {
                let n = self.sock.recv(&mut buf).expect("response from S-CSCF");
                let r = String::from_utf8_lossy(&buf[..n]).into_owned();
                if !r.starts_with("SIP/2.0 1") {
                    return r;
                }
            }
        }

        pub fn empty_auth(&self) -> String {
            format!(
                "Digest username=\"{}\", realm=\"{}\", nonce=\"\", uri=\"sip:{}\", response=\"\"",
                self.impi, self.domain, self.domain
            )
        }

        /// Authorization answering a challenge with `auts` (resync, RFC 3310
        /// §3.4): the digest is computed with an empty password. Kamailio's
        /// ims_auth only looks for `auts` after the response failed to match.
        pub fn auts_auth(&self, nonce: &str, auts: &[u8]) -> String {
            let auts = base64::engine::general_purpose::STANDARD.encode(auts);
            format!("{}, auts=\"{auts}\"", self.res_auth(nonce, b""))
        }

        /// Authorization answering a challenge with RES as the password (qop=auth).
        pub fn res_auth(&self, nonce: &str, res: &[u8]) -> String {
            let uri = format!("sip:{}", self.domain);
            let ha1 = md5_hex(&[
                self.impi.as_bytes(),
                b":",
                self.domain.as_bytes(),
                b":",
                res,
            ]);
            let ha2 = md5_hex(&[b"REGISTER:", uri.as_bytes()]);
            let (nc, cnonce) = ("00000001", "0a4f113b");
            let response = md5_hex(&[
                ha1.as_bytes(),
                b":",
                nonce.as_bytes(),
                b":",
                nc.as_bytes(),
                b":",
                cnonce.as_bytes(),
                b":auth:",
                ha2.as_bytes(),
            ]);
            format!(
                "Digest username=\"{}\", realm=\"{}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=AKAv1-MD5, qop=auth, nc={nc}, cnonce=\"{cnonce}\"",
                self.impi, self.domain
            )
        }
    }
}
