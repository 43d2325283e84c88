//! `baresip` fixture (Debian `baresip-core` 1.0): a real SIP phone, headless, on a free
//! loopback port: G.711 A-law only, auto-answer, a WAV file as its microphone.
//!
//! The phone runs from a generated config dir (`baresip -f <dir>`), so nothing of the
//! user's `~/.baresip` is read. Modules: `g711` (codec; the account allows only
//! `PCMA/8000/1`), `aufile` (audio source: the WAV, by default a generated 1 kHz tone),
//! `aubridge` (player and alert: a sink that needs no sound card), `account`, `menu`
//! (auto-answer), `ctrl_tcp` (commands as netstring JSON: [`Baresip::command`],
//! [`Baresip::hangup`], [`Baresip::dial`]); with [`BaresipConfig::record`] also `sndfile`,
//! which writes what the phone sends and receives as WAV files ([`Baresip::recordings`]).
//! `net_interface 127.0.0.1` keeps its SDP on loopback (1.0 refuses the name `lo`).
//!
//! baresip 1.0 routes an incoming INVITE to the account whose user part equals the
//! Request-URI's (else 404): give [`BaresipConfig::user`] the number the test dials.
//!
//! Ask first: `testkit::require_bin("baresip")`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::{free_port, wait_for_tcp, ChildGuard, Error, TestDir, LOOPBACK};

/// How the phone is set up.
#[derive(Debug, Clone)]
pub struct BaresipConfig {
    /// The account's user part (the number it answers to). Default `"bridge"`.
    pub user: String,
    /// Audio played into calls (mono 16-bit WAV). Default none: a generated 1 kHz tone
    /// at −10 dBFS, 8000 Hz, 10 s (aufile plays it once per call).
    pub audio_file: Option<PathBuf>,
    /// Frequency of the generated tone, Hz. Default 1000.
    pub tone_hz: f64,
    /// Answer calls automatically. Default true.
    pub auto_answer: bool,
    /// Record the call's audio both ways with the `sndfile` module. Default false.
    pub record: bool,
}

impl Default for BaresipConfig {
    fn default() -> Self {
        BaresipConfig {
            user: "bridge".into(),
            audio_file: None,
            tone_hz: 1000.0,
            auto_answer: true,
            record: false,
        }
    }
}

/// A running phone.
#[derive(Debug)]
pub struct Baresip {
    child: ChildGuard,
    sip_port: u16,
    ctrl_port: u16,
    user: String,
    dir: TestDir,
}

impl Baresip {
    /// Starts a phone answering to `user` with the defaults.
    pub fn start(user: &str) -> Result<Self, Error> {
        Self::start_with(BaresipConfig {
            user: user.into(),
            ..BaresipConfig::default()
        })
    }

    /// Starts a phone as `cfg` says and waits (≤ 10 s) until it is ready and its control
    /// port accepts connections.
    pub fn start_with(cfg: BaresipConfig) -> Result<Self, Error> {
        let dir = TestDir::new("baresip")?;
        let (sip_port, ctrl_port) = (free_port(), free_port());
        let audio = match &cfg.audio_file {
            Some(p) => p.clone(),
            None => dir.write("tone.wav", tone_wav(cfg.tone_hz, 8000, 10))?,
        };
        let rec = dir.join("rec");
        let mut conf = format!(
            "poll_method epoll\n\
             sip_listen 127.0.0.1:{sip_port}\n\
             net_interface 127.0.0.1\n\
             call_local_timeout 120\n\
             audio_player aubridge,sink\n\
             audio_alert aubridge,sink\n\
             audio_source aufile,{}\n\
             ausrc_srate 8000\n\
             auplay_srate 8000\n\
             module_path /usr/lib/baresip/modules\n\
             module g711.so\n\
             module aufile.so\n\
             module aubridge.so\n\
             module_tmp account.so\n\
             module_app menu.so\n\
             module_app ctrl_tcp.so\n\
             ctrl_tcp_listen 127.0.0.1:{ctrl_port}\n",
            audio.display()
        );
        if cfg.record {
            std::fs::create_dir_all(&rec).map_err(|e| Error::io("create rec dir".into(), e))?;
            conf.push_str(&format!("module sndfile.so\nsnd_path {}\n", rec.display()));
        }
        dir.write("config", conf)?;
        let answer = if cfg.auto_answer { "auto" } else { "manual" };
        dir.write(
            "accounts",
            format!(
                "<sip:{}@127.0.0.1:{sip_port}>;regint=0;answermode={answer};audio_codecs=PCMA/8000/1\n",
                cfg.user
            ),
        )?;
        let mut cmd = Command::new("baresip");
        cmd.arg("-f").arg(dir.path());
        let mut child = ChildGuard::spawn("baresip", &mut cmd, &dir.join("baresip.log"))?;
        child.wait_for_log("baresip is ready", Duration::from_secs(10))?;
        wait_for_tcp(
            SocketAddr::new(LOOPBACK, ctrl_port),
            Duration::from_secs(10),
        )
        .map_err(|e| e.with_detail(child.log_tail(30)))?;
        Ok(Baresip {
            child,
            sip_port,
            ctrl_port,
            user: cfg.user,
            dir,
        })
    }

    /// Where the phone receives SIP (UDP and TCP).
    pub fn sip_addr(&self) -> SocketAddr {
        SocketAddr::new(LOOPBACK, self.sip_port)
    }

    /// The account's URI (`sip:<user>@127.0.0.1:<port>`).
    pub fn uri(&self) -> String {
        format!("sip:{}@127.0.0.1:{}", self.user, self.sip_port)
    }

    /// The phone's log so far.
    pub fn log(&self) -> String {
        self.child.log()
    }

    /// Waits until the log contains `needle` (e.g. `"Call established"`), at most
    /// `timeout`.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<(), Error> {
        self.child.wait_for_log(needle, timeout)
    }

    /// Waits until `needle` occurs at least `n` times in the log (the `n`-th call's
    /// `"Call established"`), at most `timeout`.
    pub fn wait_for_log_count(
        &mut self,
        needle: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<(), Error> {
        let what = format!("baresip to log {needle:?} {n} times");
        crate::wait_until(&what, timeout, || {
            self.child.log().matches(needle).count() >= n
        })
        .map_err(|e| e.with_detail(self.child.log_tail(40)))
    }

    /// Runs a `ctrl_tcp` command (`{"command": …, "params": …}` in a netstring) and
    /// returns the JSON response.
    pub fn command(&self, command: &str, params: &str) -> Result<String, Error> {
        let io = |what: &str, e| Error::io(format!("baresip ctrl_tcp {what}"), e);
        let mut s = TcpStream::connect((LOOPBACK, self.ctrl_port)).map_err(|e| io("connect", e))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| io("timeout", e))?;
        let json =
            serde_json::json!({ "command": command, "params": params, "token": "t" }).to_string();
        s.write_all(format!("{}:{json},", json.len()).as_bytes())
            .map_err(|e| io("write", e))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        // One netstring back; bounded by the read timeout and its announced length.
        for _ in 0..64 {
            let n = s.read(&mut chunk).map_err(|e| io("read", e))?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(body) = netstring(&buf) {
                return Ok(body);
            }
        }
        Err(Error::Parse {
            what: "baresip ctrl_tcp response".into(),
            detail: String::from_utf8_lossy(&buf).into_owned(),
        })
    }

    /// Hangs up the current call (BYE, or CANCEL/486 before the answer).
    pub fn hangup(&self) -> Result<String, Error> {
        self.command("hangup", "")
    }

    /// Calls `uri`.
    pub fn dial(&self, uri: &str) -> Result<String, Error> {
        self.command("dial", uri)
    }

    /// The WAV files `sndfile` wrote so far (with [`BaresipConfig::record`]).
    pub fn recordings(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.dir.join("rec"))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

/// The body of a complete netstring at the start of `buf` (`len:body,`).
fn netstring(buf: &[u8]) -> Option<String> {
    let colon = buf.iter().position(|&b| b == b':')?;
    let len: usize = std::str::from_utf8(&buf[..colon]).ok()?.parse().ok()?;
    let body = buf.get(colon + 1..colon + 1 + len)?;
    Some(String::from_utf8_lossy(body).into_owned())
}

/// A mono 16-bit PCM WAV of a sine at `hz`, −10 dBFS, `secs` seconds at `rate`.
pub fn tone_wav(hz: f64, rate: u32, secs: u32) -> Vec<u8> {
    let n = rate * secs;
    let amp = 32767.0 * 10f64.powf(-10.0 / 20.0);
    let data_len = n * 2;
    let mut w = Vec::with_capacity(44 + data_len as usize);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data_len).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&(rate * 2).to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..n {
        let t = f64::from(i) / f64::from(rate);
        let s = (amp * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16;
        w.extend_from_slice(&s.to_le_bytes());
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netstring_needs_the_whole_body() {
        assert_eq!(netstring(b"5:hello,").as_deref(), Some("hello"));
        assert_eq!(netstring(b"5:hel"), None);
        assert_eq!(netstring(b"x:hello,"), None);
    }

    #[test]
    fn tone_wav_has_a_valid_header_and_length() {
        let w = tone_wav(1000.0, 8000, 1);
        assert_eq!(&w[..4], b"RIFF");
        assert_eq!(w.len(), 44 + 16000);
        assert_eq!(u32::from_le_bytes([w[40], w[41], w[42], w[43]]), 16000);
        // A quarter period of 1 kHz at 8 kHz is 2 samples: the peak, near −10 dBFS.
        let s = i16::from_le_bytes([w[44 + 4], w[45 + 4]]);
        assert!((10000..=10400).contains(&s), "{s}");
    }
}
