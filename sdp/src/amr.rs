//! AMR and AMR-WB format parameters (RFC 4867 §8.1) and the payload-format matching rules of
//! offer/answer (RFC 4867 §8.3.1).

use std::fmt;

use crate::attr::Rtpmap;
use crate::error::SdpError;

/// Which of the two codecs RFC 4867 covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AmrKind {
    /// AMR narrowband, `AMR/8000`, modes 0–7.
    Nb,
    /// AMR wideband, `AMR-WB/16000`, modes 0–8.
    Wb,
}

impl AmrKind {
    /// The rtpmap encoding name.
    pub fn encoding(self) -> &'static str {
        match self {
            AmrKind::Nb => "AMR",
            AmrKind::Wb => "AMR-WB",
        }
    }

    /// The RTP clock rate (RFC 4867 §8.1, §8.2).
    pub fn clock_rate(self) -> u32 {
        match self {
            AmrKind::Nb => 8000,
            AmrKind::Wb => 16000,
        }
    }

    /// The highest speech mode (MR122 = 7, WB 23.85 = 8).
    pub fn max_mode(self) -> u8 {
        match self {
            AmrKind::Nb => 7,
            AmrKind::Wb => 8,
        }
    }

    /// AMR or AMR-WB by rtpmap (encoding name case-insensitive, at its clock rate).
    pub fn of(rtpmap: &Rtpmap) -> Option<AmrKind> {
        [AmrKind::Nb, AmrKind::Wb]
            .into_iter()
            .find(|k| rtpmap.is(k.encoding()) && rtpmap.clock_rate == k.clock_rate())
    }
}

/// The format parameters of an AMR or AMR-WB payload type (RFC 4867 §8.1).
///
/// Each known parameter is `None` when absent so that writing back keeps what was said;
/// the accessor methods apply the RFC defaults. Unknown parameters are kept in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AmrParams {
    /// `octet-align`: octet-aligned payload format when 1, bandwidth-efficient when 0/absent.
    pub octet_align: Option<bool>,
    /// `mode-set`: the speech modes allowed; absent means all.
    pub mode_set: Option<Vec<u8>>,
    /// `mode-change-period`: mode changes only every N frame blocks (1 or 2).
    pub mode_change_period: Option<u32>,
    /// `mode-change-capability`: 2 when the sender can restrict mode changes to every other
    /// frame block; several handsets want 2 in an answer.
    pub mode_change_capability: Option<u8>,
    /// `mode-change-neighbor`: changes only to a neighbouring mode in the set.
    pub mode_change_neighbor: Option<bool>,
    /// `max-red`: maximum redundancy delay in ms; 0 means no redundancy.
    pub max_red: Option<u32>,
    /// `crc`: frame CRCs present (implies octet-aligned).
    pub crc: Option<bool>,
    /// `robust-sorting` (implies octet-aligned).
    pub robust_sorting: Option<bool>,
    /// `interleaving`: maximum frames per interleaving group (implies octet-aligned).
    pub interleaving: Option<u32>,
    /// `channels`: number of audio channels.
    pub channels: Option<u8>,
    /// Other parameters as `(name, value)`, in order.
    pub other: Vec<(String, Option<String>)>,
}

impl AmrParams {
    /// Bandwidth-efficient with nothing else said.
    pub fn bandwidth_efficient() -> Self {
        AmrParams::default()
    }

    /// `octet-align=1` with nothing else said.
    pub fn octet_aligned_format() -> Self {
        AmrParams {
            octet_align: Some(true),
            ..AmrParams::default()
        }
    }

    /// Parses the text of an `a=fmtp` line after the format, e.g.
    /// `octet-align=1;mode-change-capability=2;max-red=0`. Parameter names are
    /// case-insensitive; spaces around `;` are accepted.
    pub fn parse(params: &str, kind: AmrKind) -> Result<Self, SdpError> {
        let mut p = AmrParams::default();
        for item in params.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (item, None),
            };
            let lname = name.to_ascii_lowercase();
            let known = matches!(
                lname.as_str(),
                "octet-align"
                    | "mode-set"
                    | "mode-change-period"
                    | "mode-change-capability"
                    | "mode-change-neighbor"
                    | "max-red"
                    | "crc"
                    | "robust-sorting"
                    | "interleaving"
                    | "channels"
            );
            if !known {
                p.other.push((name.to_owned(), value.map(str::to_owned)));
                continue;
            }
            let v = value.ok_or_else(|| SdpError::param(name, "needs a value"))?;
            let dup = match lname.as_str() {
                "octet-align" => p.octet_align.replace(flag(name, v)?).is_some(),
                "mode-set" => p.mode_set.replace(mode_set(name, v, kind)?).is_some(),
                "mode-change-period" => {
                    let n = number(name, v)?;
                    if !(1..=2).contains(&n) {
                        return Err(SdpError::param(name, "must be 1 or 2"));
                    }
                    p.mode_change_period.replace(n).is_some()
                }
                "mode-change-capability" => {
                    let n = number(name, v)?;
                    if !(1..=2).contains(&n) {
                        return Err(SdpError::param(name, "must be 1 or 2"));
                    }
                    p.mode_change_capability.replace(n as u8).is_some()
                }
                "mode-change-neighbor" => p.mode_change_neighbor.replace(flag(name, v)?).is_some(),
                "max-red" => p.max_red.replace(number(name, v)?).is_some(),
                "crc" => p.crc.replace(flag(name, v)?).is_some(),
                "robust-sorting" => p.robust_sorting.replace(flag(name, v)?).is_some(),
                "interleaving" => p.interleaving.replace(number(name, v)?).is_some(),
                _ => {
                    let n = number(name, v)?;
                    let n = u8::try_from(n)
                        .ok()
                        .filter(|&n| n >= 1)
                        .ok_or_else(|| SdpError::param(name, "must be 1 to 255"))?;
                    p.channels.replace(n).is_some()
                }
            };
            if dup {
                return Err(SdpError::param(name, "given twice"));
            }
        }
        Ok(p)
    }

    /// Octet-aligned payload format? (RFC 4867 §8.1: default bandwidth-efficient.)
    pub fn is_octet_aligned(&self) -> bool {
        self.octet_align == Some(true)
    }

    /// Audio channels (default 1).
    pub fn channel_count(&self) -> u8 {
        self.channels.unwrap_or(1)
    }

    /// Do two parameter sets describe the same payload format configuration? RFC 4867
    /// §8.3.1: octet-align, crc, robust-sorting and interleaving (and the channel count)
    /// must agree for an answer to accept a payload type; the remaining parameters are
    /// negotiated or declarative.
    pub fn same_payload_format(&self, other: &AmrParams) -> bool {
        self.is_octet_aligned() == other.is_octet_aligned()
            && self.crc.unwrap_or(false) == other.crc.unwrap_or(false)
            && self.robust_sorting.unwrap_or(false) == other.robust_sorting.unwrap_or(false)
            && self.interleaving == other.interleaving
            && self.channel_count() == other.channel_count()
    }

    /// The modes both sets allow, ascending; `None` when neither restricts, `Some(empty)`
    /// when they have no mode in common.
    pub fn mode_set_intersection(&self, other: &AmrParams) -> Option<Vec<u8>> {
        let (a, b) = match (&self.mode_set, &other.mode_set) {
            (None, None) => return None,
            (Some(a), None) | (None, Some(a)) => (a, a),
            (Some(a), Some(b)) => (a, b),
        };
        let mut m: Vec<u8> = a.iter().copied().filter(|x| b.contains(x)).collect();
        m.sort_unstable();
        m.dedup();
        Some(m)
    }
}

fn flag(name: &str, v: &str) -> Result<bool, SdpError> {
    match v {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(SdpError::param(name, format!("{v:?} is not 0 or 1"))),
    }
}

fn number(name: &str, v: &str) -> Result<u32, SdpError> {
    v.parse()
        .map_err(|_| SdpError::param(name, format!("{v:?} is not a number")))
}

fn mode_set(name: &str, v: &str, kind: AmrKind) -> Result<Vec<u8>, SdpError> {
    let modes = v
        .split(',')
        .map(|m| match m.trim().parse::<u8>() {
            Ok(x) if x <= kind.max_mode() => Ok(x),
            _ => Err(SdpError::param(
                name,
                format!(
                    "{m:?} is not a mode 0-{} of {}",
                    kind.max_mode(),
                    kind.encoding()
                ),
            )),
        })
        .collect::<Result<Vec<u8>, _>>()?;
    Ok(modes)
}

impl fmt::Display for AmrParams {
    /// RFC 4867 §8.1 parameter order, `;` without spaces, unknown parameters last.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut items: Vec<String> = Vec::new();
        let b = |x: bool| u8::from(x);
        if let Some(x) = self.octet_align {
            items.push(format!("octet-align={}", b(x)));
        }
        if let Some(m) = &self.mode_set {
            let list: Vec<String> = m.iter().map(u8::to_string).collect();
            items.push(format!("mode-set={}", list.join(",")));
        }
        if let Some(x) = self.mode_change_period {
            items.push(format!("mode-change-period={x}"));
        }
        if let Some(x) = self.mode_change_capability {
            items.push(format!("mode-change-capability={x}"));
        }
        if let Some(x) = self.mode_change_neighbor {
            items.push(format!("mode-change-neighbor={}", b(x)));
        }
        if let Some(x) = self.max_red {
            items.push(format!("max-red={x}"));
        }
        if let Some(x) = self.crc {
            items.push(format!("crc={}", b(x)));
        }
        if let Some(x) = self.robust_sorting {
            items.push(format!("robust-sorting={}", b(x)));
        }
        if let Some(x) = self.interleaving {
            items.push(format!("interleaving={x}"));
        }
        if let Some(x) = self.channels {
            items.push(format!("channels={x}"));
        }
        for (name, value) in &self.other {
            items.push(match value {
                Some(v) => format!("{name}={v}"),
                None => name.clone(),
            });
        }
        f.write_str(&items.join(";"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_parses_and_writes_back() {
        let text = "octet-align=1;mode-set=0,2,4,7;mode-change-period=2;mode-change-capability=2;\
mode-change-neighbor=1;max-red=0;crc=0;robust-sorting=0;interleaving=4;channels=1;x-foo=bar;flag";
        let p = AmrParams::parse(text, AmrKind::Nb).unwrap();
        assert_eq!(p.octet_align, Some(true));
        assert_eq!(p.mode_set, Some(vec![0, 2, 4, 7]));
        assert_eq!(p.mode_change_period, Some(2));
        assert_eq!(p.mode_change_capability, Some(2));
        assert_eq!(p.mode_change_neighbor, Some(true));
        assert_eq!(p.max_red, Some(0));
        assert_eq!(p.crc, Some(false));
        assert_eq!(p.robust_sorting, Some(false));
        assert_eq!(p.interleaving, Some(4));
        assert_eq!(p.channels, Some(1));
        assert_eq!(
            p.other,
            [
                ("x-foo".to_owned(), Some("bar".to_owned())),
                ("flag".to_owned(), None)
            ]
        );
        assert_eq!(p.to_string(), text);
    }

    #[test]
    fn lenient_spelling_and_defaults() {
        let p = AmrParams::parse(" Octet-Align = 1 ; MODE-SET=8 ;", AmrKind::Wb).unwrap();
        assert!(p.is_octet_aligned());
        assert_eq!(p.mode_set, Some(vec![8]));
        assert_eq!(p.to_string(), "octet-align=1;mode-set=8");
        let d = AmrParams::parse("", AmrKind::Nb).unwrap();
        assert_eq!(d, AmrParams::bandwidth_efficient());
        assert!(!d.is_octet_aligned());
        assert_eq!(d.channel_count(), 1);
        assert_eq!(d.to_string(), "");
    }

    #[test]
    fn bad_values_are_typed_errors() {
        for (text, kind) in [
            ("octet-align=2", AmrKind::Nb),
            ("octet-align", AmrKind::Nb),
            ("mode-set=8", AmrKind::Nb),
            ("mode-set=9", AmrKind::Wb),
            ("mode-set=0,,2", AmrKind::Nb),
            ("mode-change-period=3", AmrKind::Nb),
            ("mode-change-capability=0", AmrKind::Nb),
            ("max-red=-1", AmrKind::Nb),
            ("channels=0", AmrKind::Nb),
            ("channels=300", AmrKind::Nb),
            ("crc=1;crc=1", AmrKind::Nb),
        ] {
            assert!(
                matches!(AmrParams::parse(text, kind), Err(SdpError::Param { .. })),
                "{text}"
            );
        }
    }

    #[test]
    fn payload_format_configuration_rules() {
        let be = AmrParams::bandwidth_efficient();
        let oa = AmrParams::octet_aligned_format();
        assert!(!be.same_payload_format(&oa));
        // octet-align=0 is the default spelled out.
        let be0 = AmrParams::parse("octet-align=0;max-red=0", AmrKind::Nb).unwrap();
        assert!(be.same_payload_format(&be0));
        let crc = AmrParams::parse("octet-align=1;crc=1", AmrKind::Nb).unwrap();
        assert!(!oa.same_payload_format(&crc));
        let il = AmrParams::parse("octet-align=1;interleaving=2", AmrKind::Nb).unwrap();
        assert!(!oa.same_payload_format(&il));
        let stereo = AmrParams::parse("octet-align=1;channels=2", AmrKind::Nb).unwrap();
        assert!(!oa.same_payload_format(&stereo));
        // mode-set is negotiated, not configuration.
        let ms = AmrParams::parse("octet-align=1;mode-set=7", AmrKind::Nb).unwrap();
        assert!(oa.same_payload_format(&ms));
    }

    #[test]
    fn mode_set_intersection() {
        let p = |s: &str| AmrParams::parse(s, AmrKind::Nb).unwrap();
        assert_eq!(p("").mode_set_intersection(&p("")), None);
        assert_eq!(
            p("mode-set=7,2").mode_set_intersection(&p("")),
            Some(vec![2, 7])
        );
        assert_eq!(
            p("mode-set=0,2,4,7").mode_set_intersection(&p("mode-set=7,5,4")),
            Some(vec![4, 7])
        );
        assert_eq!(
            p("mode-set=0,1").mode_set_intersection(&p("mode-set=7")),
            Some(vec![])
        );
    }

    #[test]
    fn kind_from_rtpmap() {
        let r = |e: &str, c| Rtpmap::new(96, e, c);
        assert_eq!(AmrKind::of(&r("AMR", 8000)), Some(AmrKind::Nb));
        assert_eq!(AmrKind::of(&r("amr-wb", 16000)), Some(AmrKind::Wb));
        assert_eq!(AmrKind::of(&r("AMR", 16000)), None);
        assert_eq!(AmrKind::of(&r("PCMA", 8000)), None);
    }
}
