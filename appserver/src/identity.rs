//! Who is calling, from what an input saw: P-Asserted-Identity (RFC 3325), From, Privacy
//! (RFC 3323), or an MGCP device's number and name.
//!
//! The result is an [`event::Caller`] whose name is the caller's display name (or
//! "Anonymous"); the pipeline then replaces it with a phonebook or reverse-lookup name.
//!
//! Choices:
//! - P-Asserted-Identity only when the input says it is `trusted` (TS 24.229 §5.7.1.1:
//!   outside a trust domain anyone can write one). Among several, the `tel:` one gives the
//!   number (it is the E.164 one by construction), then a `sip:` one whose user part is a
//!   number, then any; without a usable one, From.
//! - Privacy `id`, `header` or `user` (RFC 3323 §4.2) hides the caller entirely: no number
//!   is kept, so nothing downstream can leak it. `none` (or `session`/`critical` alone) does
//!   not.
//! - A From of `sip:anonymous@anonymous.invalid` (RFC 3323 §4.1.1.3) is anonymous even when
//!   a trusted PAI names the caller: the caller asked not to be shown and withholding is the
//!   safe side. A display name "Anonymous" with no number anywhere is anonymous too.
//! - Unparsable headers never fail the call: they yield a caller with no number.

use crate::event::{Caller, NameSource, RawCaller};
use crate::numbers::NumberPlan;
use sip::uri::{Scheme, Uri};
use sip::NameAddr;

/// The name shown for a withheld caller.
pub const ANONYMOUS: &str = "Anonymous";

/// Whether a `Privacy` header value (RFC 3323 §4.2, `;`-separated priv-values) asks to
/// withhold the caller's identity.
pub fn privacy_hides(privacy: &str) -> bool {
    privacy.split([';', ',']).map(str::trim).any(|v| {
        ["id", "header", "user"]
            .iter()
            .any(|p| v.eq_ignore_ascii_case(p))
    })
}

/// The anonymous caller: no number, the name "Anonymous".
pub fn anonymous() -> Caller {
    Caller {
        number: None,
        name: Some(ANONYMOUS.into()),
        name_source: NameSource::Anonymous,
        anonymous: true,
    }
}

fn parse_all(values: &[String]) -> Vec<NameAddr> {
    values
        .iter()
        .filter_map(|v| NameAddr::parse_list(v).ok())
        .flatten()
        .collect()
}

/// A SIP URI's user part names a number: `user=phone` (RFC 3261 §19.1.6) or digits.
fn sip_user_is_number(plan: &NumberPlan, u: &Uri) -> bool {
    matches!(u.scheme, Scheme::Sip | Scheme::Sips)
        && (u
            .params
            .get("user")
            .is_some_and(|v| v.eq_ignore_ascii_case("phone"))
            || plan.from_uri(u).is_some())
}

fn is_anonymous_uri(u: &Uri) -> bool {
    u.user
        .as_deref()
        .is_some_and(|x| x.eq_ignore_ascii_case("anonymous"))
        && u.host.eq_ignore_ascii_case("anonymous.invalid")
}

/// What number to show for a URI: E.164 when it holds one, else its user part as given.
fn number_of(plan: &NumberPlan, u: &Uri) -> Option<String> {
    plan.from_uri(u).or_else(|| {
        u.user
            .as_deref()
            .filter(|x| !x.is_empty())
            .map(str::to_string)
    })
}

fn display_of(na: &NameAddr) -> Option<String> {
    na.display
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(str::to_string)
}

/// Interprets what an input saw as a [`Caller`]. Never fails: garbage yields a caller with
/// no number and no name.
pub fn identify(raw: &RawCaller, plan: &NumberPlan) -> Caller {
    match raw {
        RawCaller::Plain {
            number,
            name,
            anonymous: anon,
        } => {
            if *anon {
                return anonymous();
            }
            let number = number
                .as_deref()
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(|n| plan.normalize(n).unwrap_or_else(|| n.to_string()));
            let name = name
                .as_deref()
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string);
            named(number, name)
        }
        RawCaller::Sip {
            p_asserted_identity,
            from,
            privacy,
            trusted,
        } => {
            if privacy.as_deref().is_some_and(privacy_hides) {
                return anonymous();
            }
            let from = NameAddr::parse(from).ok();
            if from.as_ref().is_some_and(|f| is_anonymous_uri(&f.uri)) {
                return anonymous();
            }
            let pai = if *trusted {
                parse_all(p_asserted_identity)
            } else {
                Vec::new()
            };
            let chosen = pai
                .iter()
                .find(|p| p.uri.scheme == Scheme::Tel && plan.from_uri(&p.uri).is_some())
                .or_else(|| pai.iter().find(|p| sip_user_is_number(plan, &p.uri)))
                .or_else(|| pai.first())
                .or(from.as_ref());
            let number = chosen.and_then(|c| number_of(plan, &c.uri));
            // The display name travels on whichever header the caller's network filled in;
            // a tel: PAI usually has none while the sip: one or From does.
            let display = chosen
                .and_then(display_of)
                .or_else(|| pai.iter().find_map(display_of))
                .or_else(|| from.as_ref().and_then(display_of));
            if number.is_none()
                && display
                    .as_deref()
                    .is_some_and(|d| d.eq_ignore_ascii_case(ANONYMOUS))
            {
                return anonymous();
            }
            named(number, display)
        }
    }
}

fn named(number: Option<String>, name: Option<String>) -> Caller {
    Caller {
        number,
        name_source: if name.is_some() {
            NameSource::Display
        } else {
            NameSource::None
        },
        name,
        anonymous: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(pai: &[&str], from: &str, privacy: Option<&str>, trusted: bool) -> Caller {
        let raw = RawCaller::Sip {
            p_asserted_identity: pai.iter().map(|s| s.to_string()).collect(),
            from: from.into(),
            privacy: privacy.map(str::to_string),
            trusted,
        };
        identify(&raw, &NumberPlan::default())
    }

    #[test]
    fn trusted_pai_prefers_tel_for_the_number_and_keeps_a_display_name() {
        let c = sip(
            &[
                "\"Alice\" <sip:+49301111@ims.example.com;user=phone>",
                "<tel:+49301112>",
            ],
            "\"Someone\" <sip:x@example.com>;tag=1",
            None,
            true,
        );
        assert_eq!(c.number.as_deref(), Some("+49301112"));
        assert_eq!(c.name.as_deref(), Some("Alice"));
        assert_eq!(c.name_source, NameSource::Display);
        assert!(!c.anonymous);
    }

    #[test]
    fn comma_separated_pai_values_and_numeric_sip_users_count() {
        let c = sip(
            &["<sip:alice@ims.example.com>, <sip:0301234@ims.example.com>"],
            "<sip:bob@example.com>;tag=1",
            None,
            true,
        );
        assert_eq!(c.number.as_deref(), Some("+49301234"));
        assert_eq!(c.name, None);
        assert_eq!(c.name_source, NameSource::None);
    }

    #[test]
    fn untrusted_pai_is_ignored_for_from() {
        let c = sip(
            &["<tel:+49301112>"],
            "\"Bob\" <sip:030-999@example.com>;tag=1",
            None,
            false,
        );
        assert_eq!(c.number.as_deref(), Some("+4930999"));
        assert_eq!(c.name.as_deref(), Some("Bob"));
    }

    #[test]
    fn a_non_numeric_user_part_is_kept_as_given() {
        let c = sip(&[], "<sip:alice@example.com>;tag=1", None, true);
        assert_eq!(c.number.as_deref(), Some("alice"));
    }

    #[test]
    fn privacy_id_header_user_hide_and_none_does_not() {
        for p in ["id", "header", "user", "none;id", "critical; id", "HEADER"] {
            let c = sip(&["<tel:+49301112>"], "<sip:a@b>;tag=1", Some(p), true);
            assert_eq!(c, anonymous(), "{p}");
        }
        for p in ["none", "session", ""] {
            let c = sip(&["<tel:+49301112>"], "<sip:a@b>;tag=1", Some(p), true);
            assert_eq!(c.number.as_deref(), Some("+49301112"), "{p}");
        }
    }

    #[test]
    fn anonymous_from_is_anonymous() {
        let c = sip(
            &["<tel:+49301112>"],
            "\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=1",
            None,
            true,
        );
        assert_eq!(c, anonymous());
        let c = sip(
            &[],
            "\"Anonymous\" <sip:host.example.com>;tag=1",
            None,
            false,
        );
        assert_eq!(c, anonymous());
        // A display name "Anonymous" with a number is just a name.
        let c = sip(&[], "\"Anonymous\" <sip:0301@h>;tag=1", None, false);
        assert_eq!(c.number.as_deref(), Some("+49301"));
        assert!(!c.anonymous);
    }

    #[test]
    fn garbage_yields_a_caller_with_no_number() {
        for from in ["", "<<<", "\"unterminated <sip:a@b>", "sip:", "\u{0}\u{ff}"] {
            let c = sip(&["<garbage"], from, None, true);
            assert_eq!(c.number, None, "{from:?}");
            assert!(!c.anonymous);
        }
    }

    #[test]
    fn plain_callers_map_directly() {
        let plan = NumberPlan::default();
        let c = identify(
            &RawCaller::Plain {
                number: Some("0301234".into()),
                name: Some("Carol".into()),
                anonymous: false,
            },
            &plan,
        );
        assert_eq!(c.number.as_deref(), Some("+49301234"));
        assert_eq!(c.name.as_deref(), Some("Carol"));
        let c = identify(
            &RawCaller::Plain {
                number: Some("0301234".into()),
                name: None,
                anonymous: true,
            },
            &plan,
        );
        assert_eq!(c, anonymous());
        let c = identify(
            &RawCaller::Plain {
                number: Some("O".into()),
                name: Some(" ".into()),
                anonymous: false,
            },
            &plan,
        );
        assert_eq!(c.number.as_deref(), Some("O"));
        assert_eq!(c.name, None);
    }
}
