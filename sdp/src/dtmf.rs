//! The telephone-event format parameter (RFC 4733 §7.1.1): which named events a receiver
//! understands, as a list of numbers and ranges such as `0-15` (the DTMF digits and `*#A-D`).

use std::fmt;

use crate::error::SdpError;

/// A set of RFC 4733 event codes (0–255), kept as the ranges written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelephoneEvents {
    ranges: Vec<(u8, u8)>,
}

impl TelephoneEvents {
    /// `0-15`: the 16 DTMF events, and what a receiver assumes without fmtp (RFC 4733 §2.4.1).
    pub fn dtmf() -> Self {
        TelephoneEvents {
            ranges: vec![(0, 15)],
        }
    }

    /// Parses `0-15`, `0-15,66,70`, … Empty and reversed ranges are errors.
    pub fn parse(s: &str) -> Result<Self, SdpError> {
        const NAME: &str = "telephone-event events";
        let num = |x: &str| {
            x.trim()
                .parse::<u8>()
                .map_err(|_| SdpError::param(NAME, format!("{x:?} is not an event 0-255")))
        };
        let mut ranges = Vec::new();
        for item in s.split(',') {
            let r = match item.split_once('-') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => {
                    let x = num(item)?;
                    (x, x)
                }
            };
            if r.0 > r.1 {
                return Err(SdpError::param(
                    NAME,
                    format!("{item:?} is a reversed range"),
                ));
            }
            ranges.push(r);
        }
        Ok(TelephoneEvents { ranges })
    }

    /// From a set of event codes, as compact ranges.
    pub fn from_events(events: impl IntoIterator<Item = u8>) -> Self {
        let mut seen = [false; 256];
        for e in events {
            seen[usize::from(e)] = true;
        }
        let mut ranges: Vec<(u8, u8)> = Vec::new();
        for e in 0..=255u8 {
            if !seen[usize::from(e)] {
                continue;
            }
            match ranges.last_mut() {
                Some(last) if u16::from(last.1) + 1 == u16::from(e) => last.1 = e,
                _ => ranges.push((e, e)),
            }
        }
        TelephoneEvents { ranges }
    }

    /// Does the set include `event`?
    pub fn contains(&self, event: u8) -> bool {
        self.ranges.iter().any(|&(a, b)| (a..=b).contains(&event))
    }

    /// The events in ascending order, each once.
    pub fn events(&self) -> Vec<u8> {
        (0..=255u8).filter(|&e| self.contains(e)).collect()
    }

    /// No event at all?
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The events both sets have.
    pub fn intersection(&self, other: &TelephoneEvents) -> Self {
        Self::from_events(self.events().into_iter().filter(|&e| other.contains(e)))
    }
}

impl fmt::Display for TelephoneEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(a, b)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if a == b {
                write!(f, "{a}")?;
            } else {
                write!(f, "{a}-{b}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_ranges() {
        let e = TelephoneEvents::parse("0-15").unwrap();
        assert_eq!(e, TelephoneEvents::dtmf());
        assert_eq!(e.events(), (0..=15).collect::<Vec<u8>>());
        let e = TelephoneEvents::parse("0-11, 16 ,32-36").unwrap();
        assert!(e.contains(16) && e.contains(34) && !e.contains(12));
        assert_eq!(e.to_string(), "0-11,16,32-36");
        assert_eq!(TelephoneEvents::parse("255").unwrap().events(), [255]);
    }

    #[test]
    fn bad_lists() {
        for s in ["", "15-0", "0-256", "a", "1,,2", "0-15-16"] {
            assert!(TelephoneEvents::parse(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn intersection_compacts_ranges() {
        let a = TelephoneEvents::parse("0-15").unwrap();
        let b = TelephoneEvents::parse("10-20,3,4,5").unwrap();
        assert_eq!(a.intersection(&b).to_string(), "3-5,10-15");
        let none = TelephoneEvents::parse("100").unwrap().intersection(&a);
        assert!(none.is_empty());
        assert_eq!(
            TelephoneEvents::from_events([255, 254, 0]).to_string(),
            "0,254-255"
        );
    }
}
