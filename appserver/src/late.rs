//! Late-registration call state (sans-IO): a subscriber whose phone was away while a call
//! came in — cancelled by the caller, or answered on another of their devices — learns of
//! it when that device registers again shortly afterwards.
//!
//! ```text
//!  ISC proxy: call to X ends Cancelled / AnsweredElsewhere ──▶ LateCalls::call_ended
//!  third-party REGISTER for X (Expires > 0, TS 24.229 §5.4.1.7) ──▶ LateCalls::registered
//!         └─ the calls that ended within `window` before it, each once
//! ```
//!
//! The ISC core turns what [`LateCalls::registered`] returns into requests toward X
//! (through the S-CSCF): a pager-mode MESSAGE (RFC 3428) on the call's Call-ID saying who
//! called, or an INVITE on
//! the call's original Call-ID followed by a CANCEL — with `Reason: SIP;cause=200` (RFC
//! 3326) when another device answered, plain when the call was missed — so the phone's own
//! call log shows the call as its other devices do.

use serde::Deserialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How a late-registering device is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LateMode {
    /// A SIP MESSAGE (text/plain) naming the caller and the outcome.
    #[default]
    Message,
    /// An INVITE on the original Call-ID, then a CANCEL (with `Reason: SIP;cause=200` for
    /// answered elsewhere).
    Cancel,
}

/// `[late]`: the late-registration call state of the ISC service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LateConfig {
    /// Tell late-registering devices about calls they missed. Default true: it only acts
    /// for subscribers whose iFCs send their REGISTERs (third-party) to this AS, which is a
    /// choice made in the HSS already.
    pub enabled: bool,
    /// Seconds after a call's end within which a registration still hears of it. Default
    /// 30: a phone that was out of coverage for the call re-registers within seconds of
    /// coming back; much later the news is stale.
    pub window: u64,
    /// `"message"` (default: every phone shows a MESSAGE) or `"cancel"` (INVITE + CANCEL
    /// on the original Call-ID: the phone's own call log records it, but only phones
    /// that honour RFC 3326 Reason tell "answered elsewhere" from "missed").
    pub mode: LateMode,
    /// Cancel mode: milliseconds to wait for the phone's first provisional response
    /// before the CANCEL goes anyway (after at least the S-CSCF's 100, RFC 3261 §9.1).
    /// Default 2000: long enough for the INVITE to reach a phone over a radio link.
    pub cancel_delay_ms: u64,
}

impl Default for LateConfig {
    fn default() -> Self {
        LateConfig {
            enabled: true,
            window: 30,
            mode: LateMode::Message,
            cancel_delay_ms: 2000,
        }
    }
}

impl LateConfig {
    /// The window as a duration.
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window)
    }

    /// The cancel-mode delay as a duration.
    pub fn cancel_delay(&self) -> Duration {
        Duration::from_millis(self.cancel_delay_ms)
    }
}

/// The `[late]` section as the example configuration documents it.
pub const EXAMPLE: &str = r#"# Late-registration call state: a device that registers again soon after a call
# to it was cancelled or answered on another device is told about that call.
[late]
# Off: nothing is remembered or sent.
enabled = true
# Seconds after the call's end within which a registration still hears of it.
window = 30
# "message": a SIP MESSAGE naming the caller; "cancel": an INVITE on the original
# Call-ID followed by CANCEL (Reason: SIP;cause=200 when answered elsewhere).
mode = "message"
# cancel mode: wait this long for the phone's 180 before the CANCEL goes anyway.
cancel_delay_ms = 2000
"#;

/// How a call to the subscriber ended, as the late notification says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LateKind {
    /// Nobody answered: the caller gave up.
    Missed,
    /// Another of the subscriber's devices answered.
    AnsweredElsewhere,
}

/// A call the subscriber may still have to hear about.
#[derive(Debug, Clone)]
pub struct EndedCall {
    /// The call's Call-ID.
    pub call_id: String,
    /// The called identity (Request-URI of the terminating INVITE).
    pub callee: String,
    /// Who called, for people (`Alice (+4930123)`, `Anonymous`).
    pub caller: String,
    /// How it ended.
    pub kind: LateKind,
    /// The INVITE as we forwarded it (cancel mode replays its From, To, Call-ID, CSeq
    /// number, identity headers and offer).
    pub invite: sip::Message,
}

impl EndedCall {
    /// The text of the MESSAGE that tells the subscriber.
    pub fn text(&self) -> String {
        match self.kind {
            LateKind::Missed => format!("Missed call from {}", self.caller),
            LateKind::AnsweredElsewhere => {
                format!("Call from {} was answered on another device", self.caller)
            }
        }
    }
}

/// The calls waiting for their callee to register, by identity key ([`sip::Uri::aor`]).
#[derive(Debug, Default)]
pub struct LateCalls {
    window: Duration,
    waiting: HashMap<String, Vec<(Instant, EndedCall)>>,
}

impl LateCalls {
    /// An empty table that keeps calls for `window`.
    pub fn new(window: Duration) -> LateCalls {
        LateCalls {
            window,
            waiting: HashMap::new(),
        }
    }

    /// A call to the identity `key` ended at `now` the way `call.kind` says. A Call-ID
    /// already waiting is not added twice (each call is told at most once).
    pub fn call_ended(&mut self, key: String, call: EndedCall, now: Instant) {
        let list = self.waiting.entry(key).or_default();
        if list.iter().any(|(_, c)| c.call_id == call.call_id) {
            return;
        }
        list.push((now, call));
    }

    /// The identity `key` registered at `now`: the calls to it that ended within the
    /// window, oldest first. They are forgotten (told once); older ones go too.
    pub fn registered(&mut self, key: &str, now: Instant) -> Vec<EndedCall> {
        let Some(list) = self.waiting.remove(key) else {
            return Vec::new();
        };
        list.into_iter()
            .filter(|(at, _)| now.saturating_duration_since(*at) <= self.window)
            .map(|(_, c)| c)
            .collect()
    }

    /// Forgets the call `call_id` (it was answered after all).
    pub fn forget(&mut self, call_id: &str) {
        self.waiting.retain(|_, l| {
            l.retain(|(_, c)| c.call_id != call_id);
            !l.is_empty()
        });
    }

    /// When [`LateCalls::handle_timeout`] must next be called: the oldest call's end of
    /// window.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.waiting
            .values()
            .flat_map(|l| l.iter().map(|(at, _)| *at + self.window))
            .min()
    }

    /// Forgets the calls whose window has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let window = self.window;
        self.waiting.retain(|_, l| {
            l.retain(|(at, _)| *at + window > now);
            !l.is_empty()
        });
    }

    /// Calls waiting.
    pub fn len(&self) -> usize {
        self.waiting.values().map(Vec::len).sum()
    }

    /// True when no call waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str, kind: LateKind) -> EndedCall {
        let invite = sip::Message::parse(
            b"INVITE sip:bob@ims.test SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\
              From: <sip:alice@ims.test>;tag=1\r\nTo: <sip:bob@ims.test>\r\nCall-ID: c\r\n\
              CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        EndedCall {
            call_id: id.into(),
            callee: "sip:bob@ims.test".into(),
            caller: "Alice (+4930123)".into(),
            kind,
            invite,
        }
    }

    #[test]
    fn a_registration_within_the_window_hears_of_each_call_once() {
        let t0 = Instant::now();
        let mut l = LateCalls::new(Duration::from_secs(30));
        l.call_ended("sip:bob@ims.test".into(), call("a", LateKind::Missed), t0);
        l.call_ended("sip:bob@ims.test".into(), call("a", LateKind::Missed), t0);
        l.call_ended(
            "sip:bob@ims.test".into(),
            call("b", LateKind::AnsweredElsewhere),
            t0 + Duration::from_secs(5),
        );
        assert_eq!(l.len(), 2);
        assert!(l.registered("sip:carol@ims.test", t0).is_empty());
        let told = l.registered("sip:bob@ims.test", t0 + Duration::from_secs(30));
        let ids: Vec<&str> = told.iter().map(|c| c.call_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(told[0].text(), "Missed call from Alice (+4930123)");
        assert_eq!(
            told[1].text(),
            "Call from Alice (+4930123) was answered on another device"
        );
        assert!(l
            .registered("sip:bob@ims.test", t0 + Duration::from_secs(31))
            .is_empty());
        assert!(l.is_empty());
    }

    #[test]
    fn a_registration_after_the_window_hears_nothing_and_timers_forget() {
        let t0 = Instant::now();
        let mut l = LateCalls::new(Duration::from_secs(30));
        l.call_ended("k".into(), call("a", LateKind::Missed), t0);
        l.call_ended(
            "k".into(),
            call("b", LateKind::Missed),
            t0 + Duration::from_secs(20),
        );
        assert_eq!(l.poll_timeout(), Some(t0 + Duration::from_secs(30)));
        l.handle_timeout(t0 + Duration::from_secs(30));
        assert_eq!(l.len(), 1);
        assert_eq!(l.poll_timeout(), Some(t0 + Duration::from_secs(50)));
        let told = l.registered("k", t0 + Duration::from_secs(51));
        assert!(told.is_empty(), "{told:?}");
        l.call_ended("k".into(), call("c", LateKind::Missed), t0);
        l.call_ended(
            "k".into(),
            call("d", LateKind::Missed),
            t0 + Duration::from_secs(55),
        );
        l.forget("d");
        l.handle_timeout(t0 + Duration::from_secs(60));
        assert!(l.is_empty());
        assert_eq!(l.poll_timeout(), None);
    }
}
