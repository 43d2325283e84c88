//! Builders for the offers our two kinds of endpoints make.

use std::net::IpAddr;

use crate::amr::{AmrKind, AmrParams};
use crate::attr::{Attribute, Direction, Fmtp, Rtpmap};
use crate::dtmf::TelephoneEvents;
use crate::model::{Bandwidth, BwType, Connection, MediaLine, Origin};
use crate::precondition::QosStatus;
use crate::session::{Media, Session};

/// The audio offer of a VoLTE handset (GSMA IR.92 §3.2, TS 26.114 §6.2.2): AMR-WB and AMR,
/// each bandwidth-efficient then octet-aligned, `mode-change-capability=2;max-red=0`,
/// telephone-event at 16000 and 8000 Hz, ptime 20, maxptime 240, `b=AS/RS/RR`, and
/// optionally the RFC 3312 `qos` precondition lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolteOffer {
    /// `o=`.
    pub origin: Origin,
    /// Media address (session-level `c=`).
    pub address: IpAddr,
    /// RTP port.
    pub port: u16,
    /// Payload types in `m=` order: AMR-WB bandwidth-efficient, AMR-WB octet-aligned,
    /// AMR bandwidth-efficient, AMR octet-aligned, telephone-event/16000,
    /// telephone-event/8000.
    pub payload_types: [u8; 6],
    /// `a=ptime`.
    pub ptime: u32,
    /// `a=maxptime`.
    pub maxptime: u32,
    /// `b=AS` (kbit/s), `b=RS` and `b=RR` (bit/s, RFC 3556); `None` leaves them out.
    pub bandwidth: Option<(u64, u64, u64)>,
    /// Precondition lines; [`QosStatus::ue_initial_offer`] for an INVITE before the
    /// dedicated bearer is up.
    pub qos: Option<QosStatus>,
    /// The direction (sendrecv for a call, sendonly to hold).
    pub direction: Direction,
}

impl VolteOffer {
    /// Defaults as handsets send them: payload types 96–101, ptime 20, maxptime 240,
    /// `b=AS:49` (AMR-WB 23.85 with RTP/UDP/IPv6 overhead), `RS:600`, `RR:2000`, the
    /// initial precondition lines, sendrecv.
    pub fn new(origin: Origin, address: IpAddr, port: u16) -> Self {
        VolteOffer {
            origin,
            address,
            port,
            payload_types: [96, 97, 98, 99, 100, 101],
            ptime: 20,
            maxptime: 240,
            bandwidth: Some((49, 600, 2000)),
            qos: Some(QosStatus::ue_initial_offer()),
            direction: Direction::SendRecv,
        }
    }

    /// The offer.
    pub fn build(&self) -> Session {
        let [wb, wb_oa, nb, nb_oa, te16, te8] = self.payload_types;
        let mut s = Session::new(self.origin.clone());
        s.set_connection(Connection::new(self.address));
        let mut m = Media::new(MediaLine::audio(self.port, &self.payload_types));
        if let Some((as_, rs, rr)) = self.bandwidth {
            m.set_bandwidth(Bandwidth::new(BwType::As, as_));
            m.set_bandwidth(Bandwidth::new(BwType::Rs, rs));
            m.set_bandwidth(Bandwidth::new(BwType::Rr, rr));
        }
        for (pt, kind, octet) in [
            (wb, AmrKind::Wb, false),
            (wb_oa, AmrKind::Wb, true),
            (nb, AmrKind::Nb, false),
            (nb_oa, AmrKind::Nb, true),
        ] {
            let mut r = Rtpmap::new(pt, kind.encoding(), kind.clock_rate());
            r.encoding_params = Some(1);
            m.push_attribute(Attribute::Rtpmap(r));
            let p = AmrParams {
                octet_align: octet.then_some(true),
                mode_change_capability: Some(2),
                max_red: Some(0),
                ..AmrParams::default()
            };
            m.push_attribute(Attribute::Fmtp(Fmtp::new(pt, p.to_string())));
        }
        for (pt, rate) in [(te16, 16000), (te8, 8000)] {
            push_telephone_event(&mut m, pt, rate);
        }
        if let Some(q) = &self.qos {
            m.set_qos(q);
        }
        m.push_attribute(Attribute::Direction(self.direction));
        m.push_attribute(Attribute::Ptime(self.ptime));
        m.push_attribute(Attribute::Maxptime(self.maxptime));
        s.push_media(m);
        s
    }
}

fn push_telephone_event(m: &mut Media, pt: u8, rate: u32) {
    m.push_attribute(Attribute::Rtpmap(Rtpmap::new(pt, "telephone-event", rate)));
    m.push_attribute(Attribute::Fmtp(Fmtp::new(
        pt,
        TelephoneEvents::dtmf().to_string(),
    )));
}

/// A plain SIP phone's offer: PCMA (8), PCMU (0), telephone-event/8000 on 101, ptime 20,
/// sendrecv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct G711Offer {
    /// `o=`.
    pub origin: Origin,
    /// Media address.
    pub address: IpAddr,
    /// RTP port.
    pub port: u16,
    /// Offer PCMU before PCMA (North American phones).
    pub pcmu_first: bool,
}

impl G711Offer {
    /// PCMA first.
    pub fn new(origin: Origin, address: IpAddr, port: u16) -> Self {
        G711Offer {
            origin,
            address,
            port,
            pcmu_first: false,
        }
    }

    /// The offer.
    pub fn build(&self) -> Session {
        let mut s = Session::new(self.origin.clone());
        s.set_connection(Connection::new(self.address));
        let pts: [u8; 3] = if self.pcmu_first {
            [0, 8, 101]
        } else {
            [8, 0, 101]
        };
        let mut m = Media::new(MediaLine::audio(self.port, &pts));
        for pt in &pts[..2] {
            let enc = if *pt == 0 { "PCMU" } else { "PCMA" };
            m.push_attribute(Attribute::Rtpmap(Rtpmap::new(*pt, enc, 8000)));
        }
        push_telephone_event(&mut m, 101, 8000);
        m.push_attribute(Attribute::Ptime(20));
        m.push_attribute(Attribute::Direction(Direction::SendRecv));
        s.push_media(m);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin::new("-", "7", 1, "2001:db8::5".parse().unwrap())
    }

    #[test]
    fn volte_offer_text() {
        let s = VolteOffer::new(origin(), "2001:db8::5".parse().unwrap(), 4000).build();
        let text = String::from_utf8(s.to_bytes()).unwrap();
        let expect =
            "v=0\r\no=- 7 1 IN IP6 2001:db8::5\r\ns=-\r\nc=IN IP6 2001:db8::5\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 96 97 98 99 100 101\r\nb=AS:49\r\nb=RS:600\r\nb=RR:2000\r\n\
a=rtpmap:96 AMR-WB/16000/1\r\na=fmtp:96 mode-change-capability=2;max-red=0\r\n\
a=rtpmap:97 AMR-WB/16000/1\r\na=fmtp:97 octet-align=1;mode-change-capability=2;max-red=0\r\n\
a=rtpmap:98 AMR/8000/1\r\na=fmtp:98 mode-change-capability=2;max-red=0\r\n\
a=rtpmap:99 AMR/8000/1\r\na=fmtp:99 octet-align=1;mode-change-capability=2;max-red=0\r\n\
a=rtpmap:100 telephone-event/16000\r\na=fmtp:100 0-15\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n\
a=curr:qos local none\r\na=curr:qos remote none\r\n\
a=des:qos mandatory local sendrecv\r\na=des:qos optional remote sendrecv\r\n\
a=sendrecv\r\na=ptime:20\r\na=maxptime:240\r\n";
        assert_eq!(text, expect);
        // Our output is a valid body that parses to the same thing.
        assert_eq!(Session::parse(expect.as_bytes()).unwrap(), s);
    }

    #[test]
    fn volte_offer_options() {
        let mut b = VolteOffer::new(origin(), "192.0.2.5".parse().unwrap(), 4000);
        b.qos = None;
        b.bandwidth = None;
        b.direction = Direction::SendOnly;
        b.payload_types = [116, 107, 118, 96, 111, 110];
        let s = b.build();
        let m = &s.media()[0];
        assert_eq!(m.line().payload_types(), [116, 107, 118, 96, 111, 110]);
        assert_eq!(m.curr().count() + m.des().count(), 0);
        assert_eq!(m.bandwidths().count(), 0);
        assert_eq!(m.direction(), Some(Direction::SendOnly));
        assert_eq!(
            m.fmtp("107").map(|f| f.params.as_str()),
            Some("octet-align=1;mode-change-capability=2;max-red=0")
        );
        assert_eq!(
            s.connection().map(|c| c.addr_type.to_string()),
            Some("IP4".into())
        );
    }

    #[test]
    fn g711_offer_text() {
        let mut b = G711Offer::new(origin(), "192.0.2.1".parse().unwrap(), 8000);
        let text = String::from_utf8(b.build().to_bytes()).unwrap();
        assert!(text.contains(
            "m=audio 8000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
        ));
        b.pcmu_first = true;
        assert_eq!(b.build().media()[0].line().payload_types(), [0, 8, 101]);
    }
}
