//! The `qos` precondition status of one media stream in the segmented model 3GPP uses
//! (RFC 3312 §5, TS 24.229 §6.1.2), and how offers, answers and UPDATEs carry it.
//!
//! Each side writes from its own point of view: its access network is `local`, the peer's is
//! `remote`. Reading the peer's SDP therefore swaps the two (and `send`/`recv` within a
//! segment), which [`QosStatus::answer`] does.

use crate::attr::{Attribute, DesiredStatus, PrecondDirection, StatusLine, StatusType, Strength};
use crate::session::Media;

/// What one side says about one access segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// `a=curr`: resources reserved now.
    pub current: PrecondDirection,
    /// Strength of `a=des`.
    pub strength: Strength,
    /// Direction of `a=des`.
    pub desired: PrecondDirection,
    /// `a=conf`: the writer asks to be told when these resources are reserved.
    pub confirm: Option<PrecondDirection>,
}

impl Segment {
    /// Does the current status meet a mandatory desire? (Optional and weaker desires never
    /// block, RFC 3312 §5.1.)
    pub fn met(&self) -> bool {
        self.strength != Strength::Mandatory || self.current.covers(self.desired)
    }

    fn mirrored(self) -> Segment {
        Segment {
            current: self.current.mirrored(),
            strength: self.strength,
            desired: self.desired.mirrored(),
            confirm: self.confirm.map(PrecondDirection::mirrored),
        }
    }
}

/// The `qos` precondition lines of one media description, from the writer's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QosStatus {
    /// The writer's access segment.
    pub local: Segment,
    /// The peer's access segment.
    pub remote: Segment,
}

impl QosStatus {
    /// What a VoLTE handset offers in its INVITE before its dedicated bearer is up:
    /// `curr:qos local none`, `curr:qos remote none`, `des:qos mandatory local sendrecv`,
    /// `des:qos optional remote sendrecv`.
    pub fn ue_initial_offer() -> Self {
        QosStatus {
            local: Segment {
                current: PrecondDirection::None,
                strength: Strength::Mandatory,
                desired: PrecondDirection::SendRecv,
                confirm: None,
            },
            remote: Segment {
                current: PrecondDirection::None,
                strength: Strength::Optional,
                desired: PrecondDirection::SendRecv,
                confirm: None,
            },
        }
    }

    /// The same status with the writer's own resources now `current`, as a UE sends in the
    /// UPDATE once its bearer is up (`curr:qos local sendrecv`). Confirmation requests are
    /// dropped: they were answered by this very message.
    pub fn with_local_current(mut self, current: PrecondDirection) -> Self {
        self.local.current = current;
        self.local.confirm = None;
        self.remote.confirm = None;
        self
    }

    /// Reads the `qos` lines with status `local`/`remote` of a media description; `None`
    /// when it has no `a=curr:qos` or `a=des:qos` line. Missing lines count as `none`;
    /// `e2e` lines are skipped, as IMS uses the segmented model (TS 24.229 §6.1.2).
    pub fn from_media(media: &Media) -> Option<Self> {
        let none = Segment {
            current: PrecondDirection::None,
            strength: Strength::None,
            desired: PrecondDirection::None,
            confirm: None,
        };
        let mut s = QosStatus {
            local: none,
            remote: none,
        };
        let mut seen = false;
        for a in media.attributes() {
            let (seg, status) = match a {
                Attribute::Curr(c) | Attribute::Conf(c) if c.precondition == "qos" => {
                    (Self::slot(&mut s, c.status), c)
                }
                Attribute::Des(d) if d.precondition == "qos" => {
                    if let Some(seg) = Self::slot(&mut s, d.status) {
                        seg.strength = d.strength;
                        seg.desired = d.direction;
                        seen = true;
                    }
                    continue;
                }
                _ => continue,
            };
            let Some(seg) = seg else { continue };
            if matches!(a, Attribute::Curr(_)) {
                seg.current = status.direction;
                seen = true;
            } else {
                seg.confirm = Some(status.direction);
            }
        }
        seen.then_some(s)
    }

    fn slot(s: &mut QosStatus, st: StatusType) -> Option<&mut Segment> {
        match st {
            StatusType::Local => Some(&mut s.local),
            StatusType::Remote => Some(&mut s.remote),
            StatusType::E2e => None,
        }
    }

    /// The answerer's status for an offered one (RFC 3312 §6): the offerer's `local`
    /// becomes our `remote`, our own segment has `local_current` reserved and a desired
    /// strength no weaker than the offer asked of it (an answer may only upgrade), at least
    /// `min_strength`. While the offerer's mandatory segment is not met we ask it to confirm
    /// (`conf:qos remote sendrecv`), so its UPDATE tells us when to alert.
    pub fn answer(&self, local_current: PrecondDirection, min_strength: Strength) -> Self {
        let remote = self.local.mirrored();
        let asked = self.remote.mirrored();
        let strength = asked.strength.max(min_strength);
        let desired = if asked.desired == PrecondDirection::None || strength > asked.strength {
            PrecondDirection::SendRecv
        } else {
            asked.desired
        };
        let mut remote = Segment {
            confirm: None,
            ..remote
        };
        if !remote.current.covers(remote.desired) && remote.strength >= Strength::Optional {
            remote.confirm = Some(remote.desired);
        }
        QosStatus {
            local: Segment {
                current: local_current,
                strength,
                desired,
                confirm: None,
            },
            remote,
        }
    }

    /// Are all mandatory preconditions met (the callee may alert, RFC 3312 §5.1)?
    pub fn met(&self) -> bool {
        self.local.met() && self.remote.met()
    }

    /// The lines in the usual handset order: curr local, curr remote, des local, des
    /// remote, then any conf.
    pub fn to_attributes(&self) -> Vec<Attribute> {
        let segs = [
            (StatusType::Local, &self.local),
            (StatusType::Remote, &self.remote),
        ];
        let mut v: Vec<Attribute> = segs
            .iter()
            .map(|(st, s)| Attribute::Curr(StatusLine::qos(*st, s.current)))
            .collect();
        v.extend(
            segs.iter()
                .map(|(st, s)| Attribute::Des(DesiredStatus::qos(s.strength, *st, s.desired))),
        );
        v.extend(
            segs.iter()
                .filter_map(|(st, s)| s.confirm.map(|d| Attribute::Conf(StatusLine::qos(*st, d)))),
        );
        v
    }
}

impl Media {
    /// Replaces the `qos` curr/des/conf lines with `status` (appended after the other
    /// attributes); other precondition types are kept.
    pub fn set_qos(&mut self, status: &QosStatus) {
        self.retain_attributes(|a| match a {
            Attribute::Curr(s) | Attribute::Conf(s) => s.precondition != "qos",
            Attribute::Des(d) => d.precondition != "qos",
            _ => true,
        });
        for a in status.to_attributes() {
            self.push_attribute(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MediaLine;

    fn lines(q: &QosStatus) -> Vec<String> {
        q.to_attributes().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn ue_offer_then_update() {
        let offer = QosStatus::ue_initial_offer();
        assert_eq!(
            lines(&offer),
            [
                "curr:qos local none",
                "curr:qos remote none",
                "des:qos mandatory local sendrecv",
                "des:qos optional remote sendrecv",
            ]
        );
        assert!(!offer.met());
        let update = offer.with_local_current(PrecondDirection::SendRecv);
        assert_eq!(lines(&update)[0], "curr:qos local sendrecv");
        assert!(update.met());
    }

    #[test]
    fn answer_mirrors_segments_and_asks_for_confirmation() {
        let offer = QosStatus::ue_initial_offer();
        let a = offer.answer(PrecondDirection::SendRecv, Strength::Mandatory);
        assert_eq!(
            lines(&a),
            [
                "curr:qos local sendrecv",
                "curr:qos remote none",
                "des:qos mandatory local sendrecv",
                "des:qos mandatory remote sendrecv",
                "conf:qos remote sendrecv",
            ]
        );
        assert!(!a.met());
        // An answer never weakens what the offer asked of our segment.
        let weak = offer.answer(PrecondDirection::None, Strength::None);
        assert_eq!(weak.local.strength, Strength::Optional);
        // Offerer reports its send-only resources: they are our receive direction.
        let mut half = offer;
        half.local.current = PrecondDirection::Send;
        let a = half.answer(PrecondDirection::SendRecv, Strength::Mandatory);
        assert_eq!(a.remote.current, PrecondDirection::Recv);
    }

    #[test]
    fn read_back_from_media_and_replace() {
        let mut m = Media::new(MediaLine::audio(4000, &[0]));
        m.push_attribute(Attribute::Ptime(20));
        assert_eq!(QosStatus::from_media(&m), None);
        let q =
            QosStatus::ue_initial_offer().answer(PrecondDirection::SendRecv, Strength::Mandatory);
        m.set_qos(&q);
        assert_eq!(QosStatus::from_media(&m), Some(q));
        let later = q.with_local_current(PrecondDirection::SendRecv);
        m.set_qos(&later);
        assert_eq!(QosStatus::from_media(&m), Some(later));
        assert_eq!(m.curr().count(), 2);
        assert_eq!(m.conf().count(), 0);
        assert_eq!(m.ptime(), Some(20));
    }
}
