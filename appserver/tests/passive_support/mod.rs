//! A recording [`CallObserver`] for the passive-input tests: keeps every offer and
//! progress report, answers `Block` for callers on its list, and normalises SIP and MGCP
//! callers to one comparable shape.

#![allow(dead_code)]

use std::sync::Mutex;
use std::time::SystemTime;

use appserver::event::{CallObserver, Offer, Progress, RawCaller, Verdict};

/// A caller as both SIP and MGCP can express it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Who {
    pub number: Option<String>,
    pub name: Option<String>,
    pub anonymous: bool,
}

/// The caller of an offer: From's user part and display name for SIP (Privacy `id` or
/// `user`/`header` withholds both), the fields as given for MGCP.
pub fn who(o: &Offer) -> Who {
    match &o.caller {
        RawCaller::Sip { from, privacy, .. } => {
            let anonymous = privacy.as_deref().is_some_and(|p| {
                p.split(';')
                    .any(|v| matches!(v.trim(), "id" | "user" | "header"))
            });
            if anonymous {
                return Who {
                    number: None,
                    name: None,
                    anonymous,
                };
            }
            let na = sip::NameAddr::parse(from).expect("From parses");
            Who {
                number: na.uri.user.clone(),
                name: na.display.clone(),
                anonymous,
            }
        }
        RawCaller::Plain {
            number,
            name,
            anonymous,
        } => Who {
            number: number.clone(),
            name: name.clone(),
            anonymous: *anonymous,
        },
    }
}

#[derive(Default)]
pub struct Recorder {
    pub offers: Mutex<Vec<Offer>>,
    pub progress: Mutex<Vec<(String, Progress, SystemTime)>>,
    /// Numbers (SIP From user part or MGCP number) to block.
    pub block: Vec<String>,
}

impl Recorder {
    pub fn blocking(numbers: &[&str]) -> Recorder {
        Recorder {
            block: numbers.iter().map(|s| s.to_string()).collect(),
            ..Recorder::default()
        }
    }

    pub fn offers(&self) -> Vec<Offer> {
        self.offers.lock().unwrap().clone()
    }

    /// Each distinct call once (first offer), in order.
    pub fn calls(&self) -> Vec<Offer> {
        let mut seen = Vec::<Offer>::new();
        for o in self.offers() {
            if !seen.iter().any(|s| s.call_id == o.call_id) {
                seen.push(o);
            }
        }
        seen
    }

    /// Progress of one call, in order.
    pub fn progress_of(&self, call_id: &str) -> Vec<Progress> {
        self.progress
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, _, _)| c == call_id)
            .map(|(_, p, _)| *p)
            .collect()
    }
}

impl CallObserver for Recorder {
    fn offer(&self, offer: Offer) -> Verdict {
        let w = who(&offer);
        self.offers.lock().unwrap().push(offer);
        match w.number {
            Some(n) if self.block.contains(&n) => Verdict::Block { rule: n },
            _ => Verdict::Ring,
        }
    }

    fn progress(&self, call_id: &str, progress: Progress, at: SystemTime) {
        self.progress
            .lock()
            .unwrap()
            .push((call_id.to_string(), progress, at));
    }
}
