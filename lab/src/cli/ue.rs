//! `imslab ue`: a simulated IMS UE on the command line.
//!
//! The quickest way to see whether a P-CSCF and HSS accept a subscriber: the UE offers
//! sec-agree, checks the network's AUTN with the card's K/OPc, answers SQN failures with
//! AUTS, installs its half of the IPsec SAs and prints every step with its timing.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use secagree::AlgPrefs;
use ue::{
    ladder_line, ue_tag, AnswerMode, IoConfig, IsimKeys, LocalSecurity, Step, UeConfig, UeHandle,
    UeHost, UeHostError,
};
use xfrm::{EncryptionAlg, IntegrityAlg};

use super::IpsecChoice;
use crate::hexarg::{parse_hex_n, parse_number};

/// A simulated IMS UE (ISIM credentials, sec-agree, IPsec).
#[derive(Debug, Args)]
pub struct UeArgs {
    // boxed: the arguments of a UE are much larger than those of the other commands
    #[command(subcommand)]
    command: Box<UeCommand>,
}

// The variants differ in size (`call` has the media options), but the enum is built once
// per run and lives behind `UeArgs`'s box: nothing large is moved around.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum UeCommand {
    /// Register one UE with IMS AKA and IPsec, then optionally re-register/deregister.
    ///
    /// The flow (TS 24.229 §5.1.1, TS 33.203 §7): an unprotected REGISTER with
    /// Security-Client and an empty Authorization; the 401's AUTN is checked with K/OPc
    /// (a wrong K/OPc in the HSS shows as "AUTN MAC mismatch"; a stale SQN is answered with
    /// AUTS); the UE installs its half of the four ESP SAs and sends the second REGISTER
    /// from its protected client port to the P-CSCF's protected server port with the
    /// AKAv1-MD5 response; the 200 OK promotes the SAs.
    ///
    /// Needs root for IPsec (userspace ESP uses a raw socket; kernel XFRM needs
    /// CAP_NET_ADMIN). Exits non-zero if any step fails.
    ///
    /// Example (P-CSCF on 127.0.0.1:5060, subscriber provisioned in the HSS):
    ///   imslab ue register --impi 001010000000001@ims.mnc001.mcc001.3gppnetwork.org
    ///     --impu sip:001010000000001@ims.mnc001.mcc001.3gppnetwork.org
    ///     --domain ims.mnc001.mcc001.3gppnetwork.org
    ///     -k 465b5ce8b199b49faa5f0a2ee238a6bc --opc cd63cb71954a9f4e48a5994e37a02baf
    ///     --then reregister,deregister
    #[command(verbatim_doc_comment)]
    Register(RegisterArgs),
    /// Register, then place a call (or send a MESSAGE), or wait for one, then deregister.
    ///
    /// Every request goes over the SA from the protected client port to the P-CSCF's
    /// protected server port, with `Route: <sip:P-CSCF:port-s;lr>` plus the Service-Route
    /// (TS 24.229 §5.1.2A); the Contact is the registered one, so calls arrive on the
    /// protected server port. The INVITE offers AMR-WB and AMR (both payload formats) and
    /// telephone-event. Once answered, RTP flows both ways (plain UDP from --rtp-port, not
    /// through the SAs): by default a test pattern in speech frames of the negotiated mode,
    /// which the other side checks bit for bit (it is not audio), an AMR file
    /// (--audio-file), or a tone (--tone 1000@-20) encoded with the speech codec of
    /// --codec-backend. Received speech that is not the pattern is decoded and the tone in
    /// its last 2 s measured. The packet counts (and the tone received) are printed when the
    /// call ends. Exits non-zero if the call fails.
    ///
    /// Example (call, talk 5 s, hang up):
    ///   imslab ue call --impi … --impu sip:alice@ims.test --domain ims.test -k … --opc …
    ///     --to sip:bob@ims.test --hold-ms 5000
    /// Example (the other phone: wait for a call, answer after 2 s):
    ///   imslab ue call --impi … --impu sip:bob@ims.test … --local-ip 127.0.0.3
    ///     --answer auto:2000 --wait-ms 60000
    #[command(verbatim_doc_comment)]
    Call(CallArgs),
}

/// Arguments of `imslab ue call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    #[command(flatten)]
    ue: RegisterArgs,
    /// Whom to call (`sip:user@domain` or `tel:+number`); without it the UE waits for an
    /// incoming call.
    #[arg(long, value_name = "URI")]
    to: Option<String>,
    /// Send this text as a MESSAGE (RFC 3428) to `--to` instead of calling.
    #[arg(long, value_name = "TEXT", requires = "to")]
    message: Option<String>,
    /// How long an answered call lasts before we hang up (BYE), in milliseconds.
    #[arg(long, default_value_t = 3000, value_name = "MS")]
    hold_ms: u64,
    /// What to do with incoming calls: `auto:<ms>` (ring, answer after ms), `reject:<code>`
    /// (486 busy, 603 decline …) or `ring` (until the caller gives up).
    #[arg(long, default_value = "auto:1000", value_name = "MODE")]
    answer: String,
    /// Without `--to`: how long to wait for an incoming call, in milliseconds.
    #[arg(long, default_value_t = 60_000, value_name = "MS")]
    wait_ms: u64,
    /// Cancel an outgoing call nobody answers after this many milliseconds.
    #[arg(long, default_value_t = 60_000, value_name = "MS")]
    no_answer_ms: u64,
    /// P-Preferred-Identity of our requests (one of our P-Associated-URIs).
    #[arg(long, value_name = "URI")]
    preferred_identity: Option<String>,
    /// Offer QoS preconditions (RFC 3312) like a VoLTE handset: 183 with 100rel, PRACK,
    /// UPDATE with the reserved segment, then 180/200.
    #[arg(long)]
    preconditions: bool,
    /// The UE's RTP port (on --local-ip), announced in the SDP; 0 picks a free one.
    #[arg(long, default_value_t = 40000, value_name = "PORT")]
    rtp_port: u16,
    /// Send this AMR or AMR-WB storage file (`#!AMR` / `#!AMR-WB`, RFC 4867 §5) in a loop
    /// instead of the test pattern (used when the call negotiates that codec).
    #[arg(long, value_name = "FILE", conflicts_with = "no_media")]
    audio_file: Option<std::path::PathBuf>,
    /// Send a sine tone of HZ at DBFS (default -20; at most 0), encoded with the negotiated
    /// codec, instead of the test pattern: `--tone 1000@-20`. Below 4000 Hz to fit AMR-NB.
    #[arg(long, value_name = "HZ[@DBFS]", conflicts_with_all = ["no_media", "audio_file"])]
    tone: Option<String>,
    /// The speech codec that encodes --tone and decodes what arrives: `rust` or
    /// `opencore` (default: opencore when this build has it, else rust).
    #[arg(long, value_name = "BACKEND")]
    codec_backend: Option<String>,
    /// No RTP at all (SDP only).
    #[arg(long)]
    no_media: bool,
    /// Do not compare received frames with the test pattern (the peer sends real speech,
    /// e.g. a phone or `--audio-file`): they are counted as unchecked, not bad.
    #[arg(long)]
    no_pattern_check: bool,
    /// Report the peer silent after this many milliseconds without RTP.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    media_timeout_ms: u64,
    /// DTMF digits to send as RFC 4733 telephone-events once the call is answered
    /// (`0`–`9`, `*`, `#`, `A`–`D`), 300 ms apart, within --hold-ms.
    #[arg(long, value_name = "DIGITS", requires = "to")]
    dtmf: Option<String>,
}

/// Parses `--answer`.
fn answer_mode(s: &str) -> anyhow::Result<AnswerMode> {
    let bad = || anyhow::anyhow!("--answer {s:?}: use auto:<ms>, reject:<code> or ring");
    match s.split_once(':') {
        None if s == "ring" => Ok(AnswerMode::Ring),
        Some(("auto", ms)) => Ok(AnswerMode::Auto(Duration::from_millis(
            ms.parse().map_err(|_| bad())?,
        ))),
        Some(("reject", code)) => match code.parse::<u16>() {
            Ok(c) if (300..700).contains(&c) => Ok(AnswerMode::Reject(c)),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

impl CallArgs {
    /// The UE configuration: the registration's plus how to call and answer.
    pub fn config(&self) -> anyhow::Result<UeConfig> {
        if !self.ue.then.is_empty() {
            bail!("--then belongs to `imslab ue register`; `ue call` deregisters after the call");
        }
        let mut cfg = self.ue.config()?;
        cfg.calls.answer = answer_mode(&self.answer)?;
        cfg.calls.no_answer_timeout = Duration::from_millis(self.no_answer_ms);
        cfg.calls.preferred_identity = self.preferred_identity.clone();
        cfg.calls.preconditions = self.preconditions;
        cfg.calls.rtp_port = self.rtp_port;
        cfg.media.enabled = !self.no_media;
        cfg.media.check_pattern = !self.no_pattern_check;
        cfg.media.timeout = Duration::from_millis(self.media_timeout_ms);
        if let Some(path) = &self.audio_file {
            let bytes =
                std::fs::read(path).with_context(|| format!("--audio-file {}", path.display()))?;
            cfg.media.source = ue::AudioSource::AmrFile(bytes.into());
            // a file the peer cannot check against the test pattern
        }
        if let Some(t) = &self.tone {
            cfg.media.source = format!("tone:{t}")
                .parse()
                .with_context(|| format!("--tone {t}"))?;
        }
        if let Some(b) = &self.codec_backend {
            cfg.media.codec_backend = ue::media::parse_backend(b)
                .with_context(|| format!("--codec-backend {b:?}: use rust or opencore"))?;
        }
        if let Some(d) = &self.dtmf {
            if let Some(bad) = d.chars().find(|c| !ue::media::is_dtmf_digit(*c)) {
                bail!("--dtmf: {bad:?} is not a DTMF digit (0-9, *, #, A-D)");
            }
        }
        let what = match &cfg.media.source {
            ue::AudioSource::AmrFile(_) => "--audio-file is not an AMR/AMR-WB storage file",
            ue::AudioSource::Tone { .. } => "--tone cannot be sent with this --codec-backend",
            ue::AudioSource::TestPattern => "the UE configuration",
        };
        cfg.validate().with_context(|| what)?;
        Ok(cfg)
    }

    fn plan(&self) -> Plan {
        match (&self.to, &self.message) {
            (Some(to), Some(text)) => Plan::Message {
                to: to.clone(),
                text: text.clone(),
            },
            (Some(to), None) => Plan::Call {
                to: to.clone(),
                hold: Duration::from_millis(self.hold_ms),
                dtmf: self.dtmf.clone().unwrap_or_default(),
            },
            (None, _) => Plan::Await {
                wait: Duration::from_millis(self.wait_ms),
            },
        }
    }
}

/// What a run does once the UE is up.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    /// registration steps (`imslab ue register`)
    Steps(Vec<Step>),
    /// register, call, hold (sending DTMF digits), hang up, deregister
    Call {
        to: String,
        hold: Duration,
        dtmf: String,
    },
    /// register, MESSAGE, deregister
    Message { to: String, text: String },
    /// register, wait for a call and its end, deregister
    Await { wait: Duration },
}

/// Arguments of `imslab ue register`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("operator-key").required(true).multiple(false))]
pub struct RegisterArgs {
    /// Private user identity (IMPI), the digest username; on a real ISIM usually
    /// `<IMSI>@ims.mnc<MNC>.mcc<MCC>.3gppnetwork.org`.
    #[arg(long, value_name = "IMPI")]
    impi: String,
    /// Public user identity to register: `sip:user@domain` or `tel:+number`.
    #[arg(long, value_name = "URI")]
    impu: String,
    /// Home network domain: the REGISTER Request-URI and the realm of the first
    /// Authorization.
    #[arg(long, value_name = "DOMAIN")]
    domain: String,
    /// Subscriber key K (Ki), 32 hex digits, as programmed on the card and in the HSS.
    #[arg(short = 'k', long = "k", value_name = "HEX")]
    k: String,
    /// Operator variant OP, 32 hex digits (OPc is derived).
    #[arg(long, value_name = "HEX", group = "operator-key")]
    op: Option<String>,
    /// Derived operator variant OPc, 32 hex digits (what most cards store).
    #[arg(long, value_name = "HEX", group = "operator-key")]
    opc: Option<String>,
    /// The card's SQN_MS: the highest SQN it accepted so far (decimal or 0x-hex). A value
    /// above the HSS's makes the first challenge fail with a resynchronisation (AUTS).
    #[arg(long, default_value = "0", value_name = "N")]
    sqn: String,
    /// The UE's own IP address. Every UE needs its own; on loopback 127.0.0.2, 127.0.0.3 …
    /// (127.0.0.1 is usually the P-CSCF).
    #[arg(long, default_value = "127.0.0.2", value_name = "IP")]
    local_ip: IpAddr,
    /// Unprotected SIP port of the UE (the initial REGISTER and its 401).
    #[arg(long, default_value_t = 5060, value_name = "PORT")]
    port: u16,
    /// Protected client port (port-c): the UE sends requests from here through the SAs.
    /// A re-authentication uses this port + 2 for its new set, then back.
    #[arg(long = "port-c", default_value_t = 5102, value_name = "PORT")]
    port_c: u16,
    /// Protected server port (port-s): the UE's Contact, where the P-CSCF sends requests.
    #[arg(long = "port-s", default_value_t = 5103, value_name = "PORT")]
    port_s: u16,
    /// SPI the UE receives on from the P-CSCF's server port (spi-c); random if omitted.
    #[arg(long = "spi-c", value_name = "N")]
    spi_c: Option<String>,
    /// SPI the UE receives on from the P-CSCF's client port (spi-s); random if omitted.
    #[arg(long = "spi-s", value_name = "N")]
    spi_s: Option<String>,
    /// The P-CSCF's unprotected SIP address (what the PCO gives a real phone).
    #[arg(long, default_value = "127.0.0.1:5060", value_name = "IP:PORT")]
    pcscf: SocketAddr,
    /// Integrity algorithms to offer, most preferred first (hmac-sha-1-96, hmac-md5-96).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "hmac-sha-1-96,hmac-md5-96",
        value_name = "ALG,…"
    )]
    alg: Vec<String>,
    /// Encryption algorithms to offer, most preferred first (aes-cbc, null, des-ede3-cbc).
    /// Security-Client gets one mechanism per alg/ealg pair, as handsets send it.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "aes-cbc,null,des-ede3-cbc",
        value_name = "EALG,…"
    )]
    ealg: Vec<String>,
    /// IPsec backend: `auto` (kernel XFRM if the kernel can do ESP, else userspace ESP),
    /// `kernel`, `userspace`, or `off` (sec-agree is still negotiated but the protected
    /// ports are plain UDP: nothing is encrypted; only for P-CSCFs also running without
    /// IPsec).
    #[arg(long, value_enum, default_value_t = IpsecChoice::Auto)]
    ipsec: IpsecChoice,
    /// Do not offer sec-agree at all: a plain AKAv1-MD5 digest UE (like SIPp), for a
    /// P-CSCF with `ipsec = "optional"`.
    #[arg(long)]
    no_sec_agree: bool,
    /// Requested registration expiry in seconds.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    expires: u32,
    /// Do not re-register before the registration expires (to watch the P-CSCF expire
    /// the binding and delete its SAs: `--expires 60 --no-refresh --then pause:70000`).
    #[arg(long)]
    no_refresh: bool,
    /// Do not subscribe to the own registration state (reg event, TS 24.229 §5.1.1.3)
    /// after registering; without it the UE does not learn of a network deregistration.
    #[arg(long)]
    no_reg_event: bool,
    /// When the network deactivates the registration (reg event NOTIFY, e.g. after an RTR
    /// from the HSS), register again at once (TS 24.229 §5.1.1.7).
    #[arg(long, conflicts_with = "no_reg_event")]
    reregister_on_deactivation: bool,
    /// What to do after registering, comma-separated: reregister, deregister, expire
    /// (wait until the registration runs out; use with --no-refresh), `pause:<ms>`.
    /// Example: `--then reregister,pause:500,deregister`.
    #[arg(long, value_delimiter = ',', value_name = "STEP,…")]
    then: Vec<String>,
    /// How long a retired SA set stays before deletion, in milliseconds.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    sa_grace_ms: u64,
    /// SIP timer T1 in milliseconds (retransmission base; the whole transaction times
    /// out after 64·T1).
    #[arg(long, default_value_t = 500, value_name = "MS")]
    t1_ms: u64,
    /// `+sip.instance` of the Contact, e.g. `<urn:gsma:imei:35000000-000000-0>`; default: a
    /// UUID URN derived from the IMPI (stable across runs).
    #[arg(long, value_name = "URN")]
    instance: Option<String>,
    /// Write the Wireshark `esp_sa` UAT of every SA set used to this file (decrypts a
    /// capture of the run: copy it to ~/.config/wireshark/esp_sa).
    #[arg(long, value_name = "FILE")]
    esp_sa: Option<std::path::PathBuf>,
}

/// `--ipsec` values.
fn integrity(s: &str) -> anyhow::Result<IntegrityAlg> {
    IntegrityAlg::from_str(s).map_err(|e| anyhow::anyhow!("--alg: {e}"))
}

fn encryption(s: &str) -> anyhow::Result<EncryptionAlg> {
    EncryptionAlg::from_str(s).map_err(|e| anyhow::anyhow!("--ealg: {e}"))
}

impl RegisterArgs {
    /// The UE configuration these arguments describe.
    pub fn config(&self) -> anyhow::Result<UeConfig> {
        let k = parse_hex_n::<16>("K", &self.k)?;
        let keys = match (&self.op, &self.opc) {
            (Some(op), _) => IsimKeys::from_op(k, parse_hex_n::<16>("OP", op)?),
            (None, Some(opc)) => IsimKeys::new(k, parse_hex_n::<16>("OPc", opc)?),
            (None, None) => bail!("give --op or --opc"),
        };
        let sqn = akav1::Sqn::new(parse_number("SQN", &self.sqn)?)?;
        let keys = keys.with_sqn(akav1::UsimSqnState::with_highest(
            akav1::SqnPolicy::default(),
            sqn,
        ));
        let mut cfg = UeConfig::new(
            &self.impi,
            &self.impu,
            &self.domain,
            keys,
            self.local_ip,
            self.pcscf,
        );
        let mut sec = LocalSecurity::random(self.port_c, self.port_s);
        if let Some(s) = &self.spi_c {
            sec.spi_uc = u32::try_from(parse_number("spi-c", s)?).context("spi-c above 2^32")?;
        }
        if let Some(s) = &self.spi_s {
            sec.spi_us = u32::try_from(parse_number("spi-s", s)?).context("spi-s above 2^32")?;
        }
        cfg.security = sec;
        cfg.port = self.port;
        cfg.sec_agree = !self.no_sec_agree;
        cfg.algorithms = AlgPrefs {
            integrity: self
                .alg
                .iter()
                .map(|a| integrity(a))
                .collect::<Result<_, _>>()?,
            encryption: self
                .ealg
                .iter()
                .map(|a| encryption(a))
                .collect::<Result<_, _>>()?,
        };
        cfg.expires = self.expires;
        cfg.auto_refresh = !self.no_refresh;
        cfg.reg_event = !self.no_reg_event;
        cfg.reregister_on_deactivation = self.reregister_on_deactivation;
        cfg.sa_grace = Duration::from_millis(self.sa_grace_ms);
        cfg.timers.t1 = Duration::from_millis(self.t1_ms.max(1));
        if self.instance.is_some() {
            cfg.instance_id = self.instance.clone();
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// The I/O of the UE `cfg` ([`RegisterArgs::config`]): its XFRM tag comes from its
    /// address ([`ue_tag`]), so `imslab ue` processes sharing a namespace keep apart.
    fn io(&self, cfg: &UeConfig) -> anyhow::Result<IoConfig> {
        Ok(IoConfig {
            mode: self.ipsec.mode(),
            tag: ue_tag(std::slice::from_ref(cfg)),
            ..IoConfig::default()
        })
    }

    fn steps(&self) -> anyhow::Result<Vec<Step>> {
        let mut steps = vec![Step::Register];
        for s in &self.then {
            steps.push(Step::from_str(s).map_err(|e| anyhow::anyhow!("--then: {e}"))?);
        }
        Ok(steps)
    }
}

/// Runs `imslab ue …`. The ladder is printed while it happens; the summary is returned.
pub fn run(args: &UeArgs) -> anyhow::Result<String> {
    match args.command.as_ref() {
        UeCommand::Register(r) => {
            let cfg = r.config()?;
            let io = r.io(&cfg)?;
            let steps = r.steps()?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("tokio runtime")?;
            rt.block_on(session(cfg, io, Plan::Steps(steps), r.esp_sa.clone()))
        }
        UeCommand::Call(c) => {
            let cfg = c.config()?;
            let io = c.ue.io(&cfg)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("tokio runtime")?;
            rt.block_on(session(cfg, io, c.plan(), c.ue.esp_sa.clone()))
        }
    }
}

/// A call, a MESSAGE or waiting for a call, between registration and deregistration.
async fn converse(ue: &UeHandle, plan: Plan, summary: &mut String) -> Result<(), UeHostError> {
    ue.register().await?;
    match plan {
        Plan::Steps(_) => {}
        Plan::Message { to, text } => {
            let code = ue.send_message(&to, &text).await?;
            *summary += &format!("MESSAGE to {to}: {code}\n");
            if !(200..300).contains(&code) {
                ue.deregister().await?;
                return Err(UeHostError::MessageUnanswered);
            }
        }
        Plan::Call { to, hold, dtmf } => {
            let call = ue.call(&to).await?;
            let t = Instant::now();
            if let Err(e) = ue.wait_answered(call).await {
                let _ = ue.deregister().await;
                return Err(e);
            }
            *summary += &format!(
                "call to {to} answered after {:.1} ms\n",
                t.elapsed().as_secs_f64() * 1000.0
            );
            let held = Instant::now();
            for d in dtmf.chars() {
                if let Err(e) = ue.send_dtmf(call, d).await {
                    *summary += &format!("DTMF {d}: {e}\n");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            tokio::time::sleep(hold.saturating_sub(held.elapsed())).await;
            // the peer may have hung up meanwhile
            let _ = ue.hangup(call).await;
            let end = ue.wait_ended(call).await?;
            *summary += &format!("call ended: {end}\n");
        }
        Plan::Await { wait } => {
            let Ok(call) = tokio::time::timeout(wait, ue.wait_incoming()).await else {
                *summary += "no incoming call\n";
                ue.deregister().await?;
                return Ok(());
            };
            let call = call?;
            let end = ue.wait_ended(call).await?;
            *summary += &format!("incoming call ended: {end}\n");
        }
    }
    ue.deregister().await?;
    Ok(())
}

async fn session(
    cfg: UeConfig,
    io: IoConfig,
    plan: Plan,
    esp_sa: Option<std::path::PathBuf>,
) -> anyhow::Result<String> {
    let tag = io.tag;
    let host = UeHost::start(io)
        .await
        .context("starting SIP/IPsec I/O (IPsec needs root)")?;
    let backend = host.io().backend_name();
    if backend == "off" && cfg.sec_agree {
        eprintln!(
            "imslab: WARNING: IPsec is off: sec-agree is negotiated but nothing is encrypted"
        );
    }
    let t0 = Instant::now();
    let mut events = host.take_events();
    let printer = tokio::spawn(async move {
        // the RTP counts of each call, for the summary
        let mut media = String::new();
        if let Some(rx) = events.as_mut() {
            while let Some(e) = rx.recv().await {
                println!("{}", ladder_line(t0, "UE", &e.event));
                if let ue::EventKind::CallMedia { call, stats } = &e.event.kind {
                    media += &format!("{call} RTP ({}, {}): {stats}\n", stats.codec, stats.source);
                }
            }
        }
        media
    });
    println!(
        "UE {} at {} → P-CSCF {} (IPsec backend: {backend}; XFRM state tagged {tag})",
        cfg.impu, cfg.local_ip, cfg.pcscf
    );
    let grace = cfg.sa_grace;
    let ue = host.add(cfg).await?;
    let mut summary = String::new();
    let mut failure: Option<UeHostError> = None;
    let mut last_dereg = false;
    let steps = match plan {
        Plan::Steps(steps) => steps,
        other => {
            last_dereg = true;
            if let Err(e) = converse(&ue, other, &mut summary).await {
                failure = Some(e);
            }
            Vec::new()
        }
    };
    for step in steps {
        let r = match &step {
            // One UE: nobody to wait for.
            Step::Sync => Ok(()),
            Step::Call { to, hold } => ue::fleet::call(&ue, to, *hold).await.map(|d| {
                summary += &format!(
                    "call to {to} answered in {:.1} ms\n",
                    d.as_secs_f64() * 1000.0
                );
            }),
            Step::Message { to, text } => ue.send_message(to, text).await.map(|code| {
                summary += &format!("MESSAGE to {to}: {code}\n");
            }),
            Step::Register => ue.register().await.map(|r| {
                summary += &format!(
                    "registered in {:.1} ms (expires {} s, Service-Route {:?}, P-Associated-URI {:?})\n",
                    r.took.as_secs_f64() * 1000.0,
                    r.expires,
                    r.service_route,
                    r.associated_uris
                );
            }),
            Step::Reregister => ue.reregister().await.map(|r| {
                summary += &format!(
                    "re-registered in {:.1} ms (expires {} s)\n",
                    r.took.as_secs_f64() * 1000.0,
                    r.expires
                );
            }),
            Step::Deregister => ue.deregister().await.map(|d| {
                summary += &format!("deregistered in {:.1} ms\n", d.as_secs_f64() * 1000.0);
            }),
            Step::Pause(d) => {
                tokio::time::sleep(*d).await;
                Ok(())
            }
            Step::AwaitExpiry => ue.await_expiry().await.map(|at| {
                summary += &format!(
                    "registration expired {:.1} s after the start\n",
                    at.saturating_duration_since(t0).as_secs_f64()
                );
            }),
        };
        last_dereg = matches!(step, Step::Deregister | Step::AwaitExpiry);
        if let Err(e) = r {
            failure = Some(e);
            break;
        }
    }
    if last_dereg && failure.is_none() {
        // let the retired SAs' grace pass so the ladder shows their deletion
        tokio::time::sleep(grace + Duration::from_millis(100)).await;
    }
    if let Some(path) = &esp_sa {
        std::fs::write(path, host.io().esp_sa_history())
            .with_context(|| format!("writing {}", path.display()))?;
        summary += &format!("esp_sa keys written to {}\n", path.display());
    }
    host.shutdown().await;
    drop(host);
    if let Ok(media) = printer.await {
        summary += &media;
    }
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(summary),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use secagree::IpsecMode;

    fn parse(extra: &[&str]) -> RegisterArgs {
        let mut v = vec![
            "imslab",
            "ue",
            "register",
            "--impi",
            "001010000000001@ims.test",
            "--impu",
            "tel:+491701234567",
            "--domain",
            "ims.test",
            "-k",
            "465b5ce8b199b49faa5f0a2ee238a6bc",
            "--op",
            "cdc202d5123e20f62b6d676ac72cb318",
        ];
        v.extend_from_slice(extra);
        match crate::cli::Cli::try_parse_from(v).unwrap().command {
            crate::cli::Command::Ue(UeArgs { command }) => match *command {
                UeCommand::Register(r) => r,
                other => panic!("parsed as {other:?}"),
            },
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn arguments_become_a_configuration() {
        let c = parse(&["--spi-c", "0x1000", "--spi-s", "4097", "--sqn", "0x20"])
            .config()
            .unwrap();
        assert_eq!((c.security.spi_uc, c.security.spi_us), (0x1000, 4097));
        assert_eq!(c.keys.sqn.highest().value(), 0x20);
        // OP given: OPc derived (TS 35.208 test set 1)
        assert_eq!(c.keys.opc[..4], [0xcd, 0x63, 0xcb, 0x71]);
        assert!(c.instance_id.as_deref().unwrap().starts_with("<urn:uuid:"));
        assert_eq!(c.algorithms, AlgPrefs::default());
        assert!(c.sec_agree);
        let c = parse(&[
            "--alg",
            "hmac-md5-96",
            "--ealg",
            "null",
            "--no-sec-agree",
            "--instance",
            "<urn:gsma:imei:35000000-000000-0>",
        ])
        .config()
        .unwrap();
        assert_eq!(c.algorithms.integrity, vec![IntegrityAlg::HmacMd5_96]);
        assert_eq!(c.algorithms.encryption, vec![EncryptionAlg::Null]);
        assert!(!c.sec_agree);
        assert_eq!(
            c.instance_id.as_deref(),
            Some("<urn:gsma:imei:35000000-000000-0>")
        );
        for bad in [
            &["--alg", "hmac-sha-256"][..],
            &["--spi-c", "12"],
            &["--spi-c", "0x100000000"],
            &["--port-c", "5060"],
        ] {
            assert!(parse(bad).config().is_err(), "{bad:?}");
        }
        let r = parse(&["--then", "rereg,pause:10,dereg", "--ipsec", "off"]);
        assert_eq!(
            r.steps().unwrap(),
            vec![
                Step::Register,
                Step::Reregister,
                Step::Pause(Duration::from_millis(10)),
                Step::Deregister
            ]
        );
        let cfg = r.config().unwrap();
        let io = r.io(&cfg).unwrap();
        assert_eq!(io.mode, IpsecMode::Off);
        // The XFRM tag is the UE's own: stable for its address, different for another.
        assert_eq!(io.tag, r.io(&cfg).unwrap().tag);
        assert_ne!(io.tag, ue::UE_TAG);
        let other = parse(&["--local-ip", "127.0.0.3"]);
        assert_ne!(other.io(&other.config().unwrap()).unwrap().tag, io.tag);
        assert!(parse(&["--then", "call"]).steps().is_err());
    }

    fn parse_call(extra: &[&str]) -> Result<CallArgs, clap::Error> {
        let mut v = vec![
            "imslab",
            "ue",
            "call",
            "--impi",
            "alice@ims.test",
            "--impu",
            "sip:alice@ims.test",
            "--domain",
            "ims.test",
            "-k",
            "465b5ce8b199b49faa5f0a2ee238a6bc",
            "--opc",
            "cd63cb71954a9f4e48a5994e37a02baf",
        ];
        v.extend_from_slice(extra);
        match crate::cli::Cli::try_parse_from(v)?.command {
            crate::cli::Command::Ue(UeArgs { command }) => match *command {
                UeCommand::Call(c) => Ok(c),
                other => panic!("parsed as {other:?}"),
            },
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn call_arguments() {
        let c = parse_call(&[
            "--to",
            "sip:bob@ims.test",
            "--hold-ms",
            "10",
            "--preconditions",
        ])
        .unwrap();
        assert_eq!(
            c.plan(),
            Plan::Call {
                to: "sip:bob@ims.test".into(),
                hold: Duration::from_millis(10),
                dtmf: String::new(),
            }
        );
        let cfg = c.config().unwrap();
        assert_eq!(cfg.calls.answer, AnswerMode::Auto(Duration::from_secs(1)));
        // RTP by default: the test pattern from port 40000
        assert!(cfg.media.enabled);
        assert_eq!(cfg.media.source, ue::AudioSource::TestPattern);
        assert_eq!(cfg.calls.rtp_port, 40000);
        assert_eq!(cfg.impu, "sip:alice@ims.test");
        assert!(cfg.calls.preconditions);
        let c = parse_call(&["--answer", "reject:486", "--wait-ms", "5"]).unwrap();
        assert_eq!(c.config().unwrap().calls.answer, AnswerMode::Reject(486));
        assert_eq!(
            c.plan(),
            Plan::Await {
                wait: Duration::from_millis(5)
            }
        );
        let c = parse_call(&["--to", "tel:+4930", "--message", "hi"]).unwrap();
        assert_eq!(
            c.plan(),
            Plan::Message {
                to: "tel:+4930".into(),
                text: "hi".into()
            }
        );
        assert!(parse_call(&["--message", "no recipient"]).is_err());
        for bad in ["reject:200", "auto:x", "answer", "reject:"] {
            let c = parse_call(&["--answer", bad]).unwrap();
            assert!(c.config().is_err(), "{bad}");
        }
        assert_eq!(answer_mode("ring").unwrap(), AnswerMode::Ring);
        let c = parse_call(&["--to", "sip:bob@ims.test", "--then", "dereg"]).unwrap();
        assert!(c.config().is_err());
    }

    #[test]
    fn media_arguments() {
        let c = parse_call(&[
            "--to",
            "sip:bob@ims.test",
            "--rtp-port",
            "0",
            "--media-timeout-ms",
            "2500",
            "--dtmf",
            "12#",
        ])
        .unwrap();
        let cfg = c.config().unwrap();
        assert_eq!(cfg.calls.rtp_port, 0);
        assert_eq!(cfg.media.timeout, Duration::from_millis(2500));
        assert!(matches!(c.plan(), Plan::Call { dtmf, .. } if dtmf == "12#"));
        let c = parse_call(&["--to", "sip:bob@ims.test", "--dtmf", "1x"]).unwrap();
        assert!(c.config().is_err(), "x is no DTMF digit");
        assert!(parse_call(&["--dtmf", "1"]).is_err(), "DTMF needs --to");
        let c = parse_call(&["--no-media"]).unwrap();
        assert!(!c.config().unwrap().media.enabled);
        assert!(c.config().unwrap().media.check_pattern);
        let c = parse_call(&["--no-pattern-check"]).unwrap();
        assert!(!c.config().unwrap().media.check_pattern);
        // an AMR-NB storage file with one NO_DATA frame plays; other files are refused
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("a.amr");
        std::fs::write(&good, b"#!AMR\n\x7c").unwrap();
        let c = parse_call(&["--audio-file", good.to_str().unwrap()]).unwrap();
        assert!(matches!(
            c.config().unwrap().media.source,
            ue::AudioSource::AmrFile(_)
        ));
        let bad = dir.path().join("b.wav");
        std::fs::write(&bad, b"RIFF....WAVE").unwrap();
        let c = parse_call(&["--audio-file", bad.to_str().unwrap()]).unwrap();
        assert!(c.config().is_err());
        let c = parse_call(&["--audio-file", "/nonexistent/x.amr"]).unwrap();
        assert!(c.config().is_err());
        assert!(parse_call(&["--audio-file", "x.amr", "--no-media"]).is_err());
    }

    #[test]
    fn tone_arguments() {
        let c = parse_call(&["--tone", "700@-3"]).unwrap();
        // CI builds the opencore backend, the default then; a build with no encoder at all
        // refuses the tone
        if ue::media::default_backend() == ue::media::Backend::Opencore {
            let cfg = c.config().unwrap();
            assert_eq!(
                cfg.media.source,
                ue::AudioSource::Tone {
                    frequency_hz: 700,
                    level_dbfs: -3
                }
            );
            assert_eq!(cfg.media.codec_backend, ue::media::Backend::Opencore);
        }
        for bad in [
            &["--tone", "1000@+3"][..],
            &["--tone", "loud"],
            &["--tone", "9000"],
            &["--tone", "1000", "--codec-backend", "ffmpeg"],
        ] {
            assert!(parse_call(bad).unwrap().config().is_err(), "{bad:?}");
        }
        assert!(parse_call(&["--tone", "1000", "--no-media"]).is_err());
        assert!(parse_call(&["--tone", "1000", "--audio-file", "x.amr"]).is_err());
        // the pattern needs no codec, whatever the backend
        for (name, backend) in [
            ("opencore", ue::media::Backend::Opencore),
            ("Rust", ue::media::Backend::Rust),
        ] {
            let c = parse_call(&["--codec-backend", name]).unwrap();
            assert_eq!(c.config().unwrap().media.codec_backend, backend);
        }
    }
}
