//! `rtpengine` fixture (Debian `rtpengine-daemon` 10.5, userspace only): the media proxy
//! as a reference engine for the media bridge benchmark (issue 12), and a client of its
//! "ng" control protocol.
//!
//! The daemon runs in the foreground with `--table=-1` (no kernel forwarding module, so
//! every packet goes through its userspace path, the one that transcodes), one RTP
//! interface on 127.0.0.1, a private port range and an ng listener on a free loopback UDP
//! port; it logs to a file in a [`TestDir`].
//!
//! The ng protocol (rtpengine's documentation, "ng control protocol"): each request is one
//! UDP datagram `<cookie> <bencoded dictionary>`; the reply repeats the cookie. Commands
//! used here: `ping`, `offer` (call-id, from-tag, SDP of the offerer, `codec` and `flags`
//! options), `answer` (plus to-tag and the answerer's SDP) and `delete`. The SDP in each
//! reply is what the other side must get, with rtpengine's own addresses in it.
//!
//! # What Debian's build can transcode (measured, 10.5.3.5-1+deb12u1)
//! `rtpengine --codecs` says AMR and AMR-WB are "supported for decoding only". In practice
//! the daemon builds a transcoder only for codecs it can both decode and encode (a codec
//! lacking either is treated as unknown when the codec handlers are set up), so **AMR is
//! never transcoded, in either direction**: with `codec: {transcode: [PCMA], mask: [AMR]}`
//! (or strip, accept, `always transcode`, `allow asymmetric codecs`) the PCMA side gets
//! PCMA in its SDP, the answer to the AMR side says PCMA too, and the AMR packets are
//! forwarded untouched (payload type 96 on a leg that negotiated only PCMA). What does
//! transcode: codecs marked "fully supported", e.g. G.729 (bcg729, a CELP codec at 8 kHz
//! like AMR-NB) ⇄ PCMA in both directions, and PCMU ⇄ PCMA. Sequence numbers survive
//! relay and transcoding; the SSRC is replaced when transcoding; PCMA → G.729 shifts the
//! timestamp by 80 (the encoder's look-ahead).
//!
//! Ask first: `testkit::require_bin("rtpengine")`.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::rtpload::{ChannelAddrs, CodecSpec, Engine, LoadError, Scenario};
use crate::{find_bin, free_port, ChildGuard, Error, TestDir, LOOPBACK};

/// Deepest nesting of lists and dictionaries [`Bencode::decode`] accepts (ng replies are
/// three or four levels deep; the bound keeps a hostile reply from exhausting the stack).
const MAX_DEPTH: usize = 32;

/// A bencoded value (the BitTorrent encoding rtpengine's ng protocol uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bencode {
    /// `i<n>e`.
    Int(i64),
    /// `<len>:<bytes>`.
    Bytes(Vec<u8>),
    /// `l…e`.
    List(Vec<Bencode>),
    /// `d…e`, keys in byte order as the encoding requires.
    Dict(BTreeMap<Vec<u8>, Bencode>),
}

/// Why a bencoded text could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BencodeError {
    /// The text ended inside a value.
    #[error("bencode ends early at byte {0}")]
    Truncated(usize),
    /// A byte that starts no value, or a malformed number.
    #[error("bencode: unexpected byte {byte:#04x} at {at}")]
    Unexpected {
        /// The byte.
        byte: u8,
        /// Its offset.
        at: usize,
    },
    /// An integer or length that does not fit.
    #[error("bencode: number out of range at {0}")]
    Range(usize),
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("bencode nested deeper than {MAX_DEPTH}")]
    TooDeep,
    /// Bytes after the value.
    #[error("bencode: {0} trailing bytes")]
    Trailing(usize),
    /// A dictionary key that is not a byte string.
    #[error("bencode: dictionary key at {0} is not a string")]
    Key(usize),
}

impl Bencode {
    /// A byte string from text.
    pub fn str(s: &str) -> Self {
        Bencode::Bytes(s.as_bytes().to_vec())
    }

    /// A list of byte strings from texts.
    pub fn strs(items: &[&str]) -> Self {
        Bencode::List(items.iter().map(|s| Bencode::str(s)).collect())
    }

    /// A dictionary from text keys.
    pub fn dict<'a>(items: impl IntoIterator<Item = (&'a str, Bencode)>) -> Self {
        Bencode::Dict(
            items
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    /// Appends the encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Bencode::Int(n) => out.extend_from_slice(format!("i{n}e").as_bytes()),
            Bencode::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Bencode::List(items) => {
                out.push(b'l');
                for i in items {
                    i.encode_into(out);
                }
                out.push(b'e');
            }
            Bencode::Dict(map) => {
                out.push(b'd');
                for (k, v) in map {
                    Bencode::Bytes(k.clone()).encode_into(out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    /// The encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Decodes exactly one value filling all of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Self, BencodeError> {
        let (v, end) = Self::decode_at(buf, 0, 0)?;
        if end != buf.len() {
            return Err(BencodeError::Trailing(buf.len() - end));
        }
        Ok(v)
    }

    fn decode_at(buf: &[u8], at: usize, depth: usize) -> Result<(Self, usize), BencodeError> {
        if depth > MAX_DEPTH {
            return Err(BencodeError::TooDeep);
        }
        let &first = buf.get(at).ok_or(BencodeError::Truncated(at))?;
        match first {
            b'i' => {
                let end = find(buf, at + 1, b'e')?;
                let text = std::str::from_utf8(&buf[at + 1..end]).map_err(|_| {
                    BencodeError::Unexpected {
                        byte: buf[at + 1],
                        at: at + 1,
                    }
                })?;
                let n = text.parse::<i64>().map_err(|_| BencodeError::Range(at))?;
                Ok((Bencode::Int(n), end + 1))
            }
            b'l' => {
                let mut items = Vec::new();
                let mut i = at + 1;
                loop {
                    match buf.get(i) {
                        None => return Err(BencodeError::Truncated(i)),
                        Some(b'e') => return Ok((Bencode::List(items), i + 1)),
                        Some(_) => {
                            let (v, next) = Self::decode_at(buf, i, depth + 1)?;
                            items.push(v);
                            i = next;
                        }
                    }
                }
            }
            b'd' => {
                let mut map = BTreeMap::new();
                let mut i = at + 1;
                loop {
                    match buf.get(i) {
                        None => return Err(BencodeError::Truncated(i)),
                        Some(b'e') => return Ok((Bencode::Dict(map), i + 1)),
                        Some(b'0'..=b'9') => {
                            let (k, next) = Self::decode_at(buf, i, depth + 1)?;
                            let Bencode::Bytes(k) = k else {
                                return Err(BencodeError::Key(i));
                            };
                            let (v, next) = Self::decode_at(buf, next, depth + 1)?;
                            map.insert(k, v);
                            i = next;
                        }
                        Some(_) => return Err(BencodeError::Key(i)),
                    }
                }
            }
            b'0'..=b'9' => {
                let colon = find(buf, at, b':')?;
                let len: usize = std::str::from_utf8(&buf[at..colon])
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .ok_or(BencodeError::Range(at))?;
                let start = colon + 1;
                let end = start.checked_add(len).ok_or(BencodeError::Range(at))?;
                if end > buf.len() {
                    return Err(BencodeError::Truncated(buf.len()));
                }
                Ok((Bencode::Bytes(buf[start..end].to_vec()), end))
            }
            byte => Err(BencodeError::Unexpected { byte, at }),
        }
    }

    /// The value under `key` of a dictionary.
    pub fn get(&self, key: &str) -> Option<&Bencode> {
        match self {
            Bencode::Dict(m) => m.get(key.as_bytes()),
            _ => None,
        }
    }

    /// The value as UTF-8 text, if it is a byte string holding some.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Bencode::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
}

/// The offset of the first `byte` at or after `from`.
fn find(buf: &[u8], from: usize, byte: u8) -> Result<usize, BencodeError> {
    buf.get(from..)
        .and_then(|rest| rest.iter().position(|&b| b == byte))
        .map(|p| from + p)
        .ok_or(BencodeError::Truncated(buf.len()))
}

/// Why an ng command failed.
#[derive(Debug, thiserror::Error)]
pub enum NgError {
    /// Sending or receiving the datagram failed (a timeout included).
    #[error("ng {command}: {source}")]
    Io {
        /// The command.
        command: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The reply was not `<cookie> <bencode>` with our cookie.
    #[error("ng {command}: malformed reply: {detail}")]
    Reply {
        /// The command.
        command: String,
        /// What was wrong.
        detail: String,
    },
    /// rtpengine answered `result: error` (or something other than ok/pong).
    #[error("ng {command}: rtpengine says {result}: {reason}")]
    Refused {
        /// The command.
        command: String,
        /// The `result` value.
        result: String,
        /// Its `error-reason`.
        reason: String,
    },
}

/// A client of the ng control protocol over UDP (one request at a time).
#[derive(Debug)]
pub struct NgClient {
    sock: UdpSocket,
    server: SocketAddr,
    next_cookie: u64,
}

impl NgClient {
    /// A client of the ng listener at `server`; each reply is awaited at most `timeout`.
    pub fn new(server: SocketAddr, timeout: Duration) -> Result<Self, Error> {
        let sock = UdpSocket::bind((LOOPBACK, 0))
            .map_err(|e| Error::io("bind ng client socket".into(), e))?;
        sock.set_read_timeout(Some(timeout))
            .map_err(|e| Error::io("ng client timeout".into(), e))?;
        // rtpengine caches each reply under its cookie and answers a repeated cookie from
        // that cache, so cookies must never repeat, across clients of one process too.
        static CLIENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let client = CLIENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(NgClient {
            sock,
            server,
            next_cookie: (u64::from(std::process::id()) << 40) | (client << 24),
        })
    }

    /// Sends `request` (a dictionary with `command`) and returns the reply dictionary if
    /// its `result` is `ok` or `pong`. Replies with another cookie (late answers to an
    /// earlier request that timed out) are skipped.
    pub fn command(&mut self, request: &Bencode) -> Result<Bencode, NgError> {
        let command = request
            .get("command")
            .and_then(Bencode::as_str)
            .unwrap_or("?")
            .to_string();
        self.next_cookie += 1;
        let cookie = format!("{:x}", self.next_cookie);
        let mut msg = format!("{cookie} ").into_bytes();
        request.encode_into(&mut msg);
        let io = |source| NgError::Io {
            command: command.clone(),
            source,
        };
        self.sock.send_to(&msg, self.server).map_err(io)?;
        let mut buf = vec![0u8; 65536];
        // Bounded: each recv waits at most the read timeout, and stale replies are few.
        for _ in 0..16 {
            let (n, from) = self.sock.recv_from(&mut buf).map_err(io)?;
            if from != self.server {
                continue;
            }
            let reply = &buf[..n];
            let Some(space) = reply.iter().position(|&b| b == b' ') else {
                return Err(NgError::Reply {
                    command,
                    detail: "no cookie".into(),
                });
            };
            if &reply[..space] != cookie.as_bytes() {
                continue;
            }
            let dict = Bencode::decode(&reply[space + 1..]).map_err(|e| NgError::Reply {
                command: command.clone(),
                detail: e.to_string(),
            })?;
            let result = dict
                .get("result")
                .and_then(Bencode::as_str)
                .unwrap_or("")
                .to_string();
            if result == "ok" || result == "pong" {
                return Ok(dict);
            }
            let reason = dict
                .get("error-reason")
                .and_then(Bencode::as_str)
                .unwrap_or("")
                .to_string();
            return Err(NgError::Refused {
                command,
                result,
                reason,
            });
        }
        Err(NgError::Reply {
            command,
            detail: "only replies to other requests".into(),
        })
    }

    /// `ping` → `pong`.
    pub fn ping(&mut self) -> Result<(), NgError> {
        self.command(&Bencode::dict([("command", Bencode::str("ping"))]))
            .map(|_| ())
    }

    /// `offer`: the offerer's SDP with `options` (e.g. `codec`, `flags`) merged in; returns
    /// the SDP for the answerer.
    pub fn offer(
        &mut self,
        call_id: &str,
        from_tag: &str,
        sdp: &str,
        options: &[(&str, Bencode)],
    ) -> Result<String, NgError> {
        let mut req = vec![
            ("command", Bencode::str("offer")),
            ("call-id", Bencode::str(call_id)),
            ("from-tag", Bencode::str(from_tag)),
            ("sdp", Bencode::str(sdp)),
        ];
        req.extend(options.iter().cloned());
        self.sdp_of("offer", &Bencode::dict(req))
    }

    /// `answer`: the answerer's SDP; returns the SDP for the offerer.
    pub fn answer(
        &mut self,
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
        sdp: &str,
        options: &[(&str, Bencode)],
    ) -> Result<String, NgError> {
        let mut req = vec![
            ("command", Bencode::str("answer")),
            ("call-id", Bencode::str(call_id)),
            ("from-tag", Bencode::str(from_tag)),
            ("to-tag", Bencode::str(to_tag)),
            ("sdp", Bencode::str(sdp)),
        ];
        req.extend(options.iter().cloned());
        self.sdp_of("answer", &Bencode::dict(req))
    }

    /// `delete` of the whole call.
    pub fn delete(&mut self, call_id: &str, from_tag: &str) -> Result<(), NgError> {
        self.command(&Bencode::dict([
            ("command", Bencode::str("delete")),
            ("call-id", Bencode::str(call_id)),
            ("from-tag", Bencode::str(from_tag)),
        ]))
        .map(|_| ())
    }

    fn sdp_of(&mut self, command: &str, req: &Bencode) -> Result<String, NgError> {
        let reply = self.command(req)?;
        reply
            .get("sdp")
            .and_then(Bencode::as_str)
            .map(str::to_string)
            .ok_or_else(|| NgError::Reply {
                command: command.into(),
                detail: "no sdp in the reply".into(),
            })
    }
}

/// The first `c=` address and `m=audio` port of an SDP: where that side receives RTP.
pub fn sdp_audio_addr(sdp: &str) -> Option<SocketAddr> {
    let mut ip = None;
    let mut port = None;
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(c) = line.strip_prefix("c=IN IP4 ") {
            ip = ip.or_else(|| c.trim().parse().ok());
        } else if let Some(m) = line.strip_prefix("m=audio ") {
            port = port.or_else(|| m.split_whitespace().next().and_then(|p| p.parse().ok()));
        }
    }
    Some(SocketAddr::new(std::net::IpAddr::V4(ip?), port?))
}

/// A one-codec audio SDP for a side receiving RTP at `at` (RTCP on the next port).
pub fn audio_sdp(at: SocketAddr, session: u64, codec: &CodecSpec) -> String {
    let mut sdp = format!(
        "v=0\r\no=- {session} 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {pt}\r\na=rtpmap:{pt} {name}/{rate}\r\n",
        ip = at.ip(),
        port = at.port(),
        pt = codec.payload_type,
        name = codec.name,
        rate = codec.clock_rate,
    );
    if let Some(fmtp) = codec.fmtp {
        sdp.push_str(&format!("a=fmtp:{} {fmtp}\r\n", codec.payload_type));
    }
    sdp.push_str(&format!(
        "a=ptime:{}\r\na=sendrecv\r\n",
        codec.samples_per_frame * 1000 / codec.clock_rate.max(1)
    ));
    sdp
}

/// How [`Rtpengine::start`] runs the daemon.
#[derive(Debug, Clone)]
pub struct RtpengineConfig {
    /// First RTP port (even).
    pub port_min: u16,
    /// Last RTP port.
    pub port_max: u16,
    /// `--num-threads` (worker threads; its default is the number of CPUs).
    pub threads: Option<u32>,
    /// `--log-level` (6 = info; 7 logs every codec decision, too much under load).
    pub log_level: u8,
}

impl Default for RtpengineConfig {
    fn default() -> Self {
        // A range away from the lab's media range (20000–29999) and the kernel's ephemeral
        // ports (32768+): 2 ports per stream, 2 streams per call.
        RtpengineConfig {
            port_min: 30000,
            port_max: 32700,
            threads: None,
            log_level: 5,
        }
    }
}

/// A running rtpengine daemon and an ng client to it.
#[derive(Debug)]
pub struct Rtpengine {
    child: ChildGuard,
    ng: NgClient,
    ng_addr: SocketAddr,
    _dir: TestDir,
    /// Live calls by channel: (call-id, from-tag).
    calls: BTreeMap<usize, (String, String)>,
    /// Counter for unique call-ids and SDP session ids.
    serial: u64,
}

impl Rtpengine {
    /// Starts the daemon and waits (≤ 10 s) until it answers an ng `ping`.
    pub fn start(cfg: &RtpengineConfig) -> Result<Self, Error> {
        let bin = find_bin("rtpengine").ok_or_else(|| Error::Failed {
            what: "find rtpengine".into(),
            detail: "rtpengine is not installed (apt-get install rtpengine-daemon)".into(),
        })?;
        let dir = TestDir::new("rtpengine")?;
        let ng_addr = SocketAddr::new(LOOPBACK, free_port());
        let mut cmd = Command::new(bin);
        cmd.arg("--table=-1")
            .arg("--foreground")
            .arg("--log-stderr")
            .arg(format!("--log-level={}", cfg.log_level))
            .arg("--interface=127.0.0.1")
            .arg(format!("--listen-ng={ng_addr}"))
            .arg(format!("--port-min={}", cfg.port_min))
            .arg(format!("--port-max={}", cfg.port_max))
            // The benchmark deletes its calls; nothing should linger for the next step.
            .arg("--delete-delay=0")
            .arg(format!("--pidfile={}", dir.join("rtpengine.pid").display()));
        if let Some(n) = cfg.threads {
            cmd.arg(format!("--num-threads={n}"));
        }
        let mut child = ChildGuard::spawn("rtpengine", &mut cmd, &dir.join("rtpengine.log"))?;
        let mut ng = NgClient::new(ng_addr, Duration::from_millis(200))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match ng.ping() {
                Ok(()) => break,
                Err(e) => {
                    if !child.is_running() {
                        return Err(Error::Exited {
                            name: "rtpengine".into(),
                            status: "exited".into(),
                            detail: child.log_tail(30),
                        });
                    }
                    if Instant::now() > deadline {
                        return Err(Error::Timeout {
                            what: format!("rtpengine ng ping ({e})"),
                            after: Duration::from_secs(10),
                            detail: child.log_tail(30),
                        });
                    }
                }
            }
        }
        let ng = NgClient::new(ng_addr, Duration::from_secs(2))?;
        Ok(Rtpengine {
            child,
            ng,
            ng_addr,
            _dir: dir,
            calls: BTreeMap::new(),
            serial: 0,
        })
    }

    /// The daemon's pid (for `/proc/<pid>/stat`).
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// The ng listener's address.
    pub fn ng_addr(&self) -> SocketAddr {
        self.ng_addr
    }

    /// The ng client.
    pub fn ng(&mut self) -> &mut NgClient {
        &mut self.ng
    }

    /// The last lines of the daemon's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.child.log_tail(lines)
    }
}

/// The `codec` option that makes rtpengine offer only `b` to the answerer while still
/// accepting `a` from the offerer: transcoding when they differ (`mask` keeps `a`
/// acceptable, `transcode` adds `b`), plain relay when they are the same.
fn codec_options(scenario: &Scenario) -> Vec<(&'static str, Bencode)> {
    if scenario.a.name.eq_ignore_ascii_case(scenario.b.name) {
        return Vec::new();
    }
    vec![(
        "codec",
        Bencode::dict([
            ("mask", Bencode::strs(&[scenario.a.name])),
            ("transcode", Bencode::strs(&[scenario.b.name])),
        ]),
    )]
}

impl Engine for Rtpengine {
    fn name(&self) -> String {
        "rtpengine".into()
    }

    fn allocate(
        &mut self,
        channel: usize,
        scenario: &Scenario,
        a_peer: SocketAddr,
        b_peer: SocketAddr,
    ) -> Result<ChannelAddrs, LoadError> {
        self.serial += 1;
        let call_id = format!("bench-{}-{channel}", self.serial);
        let from_tag = format!("a{channel}");
        let engine_err = |e: NgError| LoadError::Engine {
            engine: "rtpengine".into(),
            detail: e.to_string(),
        };
        let offer = audio_sdp(a_peer, self.serial, &scenario.a);
        let to_b = self
            .ng
            .offer(&call_id, &from_tag, &offer, &codec_options(scenario))
            .map_err(engine_err)?;
        let answer = audio_sdp(b_peer, self.serial, &scenario.b);
        let to_a = self
            .ng
            .answer(&call_id, &from_tag, &format!("b{channel}"), &answer, &[])
            .map_err(engine_err)?;
        self.calls.insert(channel, (call_id, from_tag));
        let parse = |what: &str, sdp: &str| {
            sdp_audio_addr(sdp).ok_or_else(|| LoadError::Engine {
                engine: "rtpengine".into(),
                detail: format!("no audio address in the {what} SDP:\n{sdp}"),
            })
        };
        Ok(ChannelAddrs {
            a: parse("answer", &to_a)?,
            b: parse("offer", &to_b)?,
        })
    }

    fn release(&mut self, channel: usize) -> Result<(), LoadError> {
        if let Some((call_id, from_tag)) = self.calls.remove(&channel) {
            self.ng
                .delete(&call_id, &from_tag)
                .map_err(|e| LoadError::Engine {
                    engine: "rtpengine".into(),
                    detail: e.to_string(),
                })?;
        }
        Ok(())
    }

    fn cpu_seconds(&self) -> Option<f64> {
        crate::rtpload::process_cpu_seconds(self.child.pid())
    }

    fn keeps_sequence(&self) -> bool {
        // Measured above: relay and transcoding both pass the sequence numbers through.
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bencode_round_trips_an_ng_request() {
        let req = Bencode::dict([
            ("command", Bencode::str("offer")),
            ("flags", Bencode::strs(&["trust-address"])),
            ("n", Bencode::Int(-12)),
        ]);
        let enc = req.encode();
        assert_eq!(
            enc,
            b"d7:command5:offer5:flagsl13:trust-addresse1:ni-12ee".to_vec()
        );
        assert_eq!(Bencode::decode(&enc).unwrap(), req);
    }

    #[test]
    fn bencode_rejects_malformed_input_without_panicking() {
        for bad in [
            &b""[..],
            b"i12",
            b"5:abc",
            b"99999999999999999999999:x",
            b"d3:keyi1e",
            b"di1ei2ee",
            b"x",
            b"iabce",
            b"i1ei2e",
            b"l",
        ] {
            assert!(Bencode::decode(bad).is_err(), "{bad:?}");
        }
        let deep = [vec![b'l'; 100], vec![b'e'; 100]].concat();
        assert_eq!(Bencode::decode(&deep), Err(BencodeError::TooDeep));
    }

    #[test]
    fn sdp_audio_addr_reads_c_and_m() {
        let sdp = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 30002 RTP/AVP 8\r\n";
        assert_eq!(
            sdp_audio_addr(sdp),
            Some("127.0.0.1:30002".parse().unwrap())
        );
        assert_eq!(sdp_audio_addr("v=0\r\nm=audio 1 RTP/AVP 8\r\n"), None);
    }
}
