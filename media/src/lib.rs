//! `media`: the media plane of IMS Lab Core, sans-IO and allocation-free per packet.
//!
//! - [`rtp`]: RTP packets (RFC 3550 §5.1) parsed into borrowed views and written into caller
//!   buffers, plus in-place header rewriting for a relay.
//! - [`rtcp`]: SR, RR, SDES (CNAME), BYE and compound packets (RFC 3550 §6).
//! - [`stats`]: sequence validation, loss and jitter of a received source (RFC 3550 A.1/A.8)
//!   with the report block about it, and a sender's counters and NTP time for its SRs.
//! - [`rewrite`]: the per-leg sequence/timestamp/SSRC rewriter of a B2BUA, for RTP and for
//!   the RTCP it relays, converting timestamps when the legs' clock rates differ.
//! - [`telephone_event`]: DTMF events (RFC 4733 §2.3) and their clock-rate conversion.
//! - [`amr`]: AMR and AMR-WB payloads (RFC 4867 §4.3, §4.4), both payload formats, the
//!   conversion between them that a bridge makes when its legs disagree on `octet-align`,
//!   and `.amr` storage files (§5) for a UE simulator to play.
//! - [`g711`]: A-law and µ-law (ITU-T G.711).
//! - [`bridge`]: one bridged call's media, sans-IO: the legs' parameters from their SDPs,
//!   relay or transcode between them with jitter buffer, DTMF, per-leg RTCP and timeout.
//! - [`pattern`]: a deterministic test pattern in AMR speech frames (not audio) that a
//!   receiver checks bit for bit: the codec-free integrity check of UE and bridge tests.
//! - [`tone`]: sine test tones and their measurement (frequency, level in dBFS), for tests
//!   that check audio crossed a bridge.
//!
//! - [`codec`]: AMR-NB/AMR-WB speech encoders and decoders behind one interface, pure Rust
//!   or opencore-amr over FFI (feature `opencore`).
//!
//! Every parser takes outside bytes and returns a typed error, never panics (the fuzz target
//! `media_rtp_amr` checks it).
//!
//! ```
//! use media::amr::{AmrFormat, AmrPayload};
//! use media::rtp::{RtpHeader, RtpPacket};
//! use sdp::AmrKind;
//!
//! // An octet-aligned AMR-NB 12.2 kbit/s frame (CMR 15, ToC 0x3C, 31 speech bytes) ...
//! let mut oa = vec![0xF0, 0x3C];
//! oa.extend_from_slice(&[0x5A; 31]);
//! let mut datagram = [0u8; 64];
//! let n = RtpHeader::new(99, 1, 160, 7).write_packet(&oa, &mut datagram)?;
//!
//! // ... arrives; the other leg wants bandwidth-efficient, which is one byte shorter.
//! let rtp = RtpPacket::parse(&datagram[..n])?;
//! let payload = AmrPayload::parse(AmrFormat::octet_aligned(AmrKind::Nb), rtp.payload())?;
//! let mut be = [0u8; 64];
//! let cmr = payload.mode_request().unwrap_or(media::amr::CMR_NONE);
//! let m = payload.write(AmrFormat::bandwidth_efficient(AmrKind::Nb), cmr, &mut be)?;
//! assert_eq!(m, 32);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod amr;
pub mod bridge;
pub mod codec;
pub mod g711;
pub mod pattern;
pub mod rewrite;
pub mod rtcp;
pub mod rtp;
pub mod stats;
pub mod telephone_event;
pub mod tone;
