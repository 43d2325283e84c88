//! The SIP MESSAGE sink: on every ringing call, a pager-mode MESSAGE (RFC 3428,
//! text/plain) "Call from NAME (NUMBER)" to the callee's public identity — the S-CSCF
//! delivers it to each of their registered devices — or to one configured URI.
//!
//! It goes out through the ISC service ([`crate::isc::Originator`]): from the AS's
//! address to the S-CSCF, which accepts it because the AS is in its `[isc]
//! application_servers` and gives it the terminating treatment of the target.

use crate::event::{CallEvent, CallEventKind};
use crate::isc::Originator;
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::broadcast;

/// `[message]`: the SIP MESSAGE sink.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MessageConfig {
    /// Send a MESSAGE for every ringing call. Default false: a second alert on the phone
    /// that is already ringing is only wanted where the phone shows no caller ID itself.
    pub enabled: bool,
    /// Where the MESSAGE goes: a SIP or tel URI, or none (the default) for the callee's
    /// public identity as the call named it.
    pub to: Option<String>,
}

/// The `[message]` section as the example configuration documents it.
pub const EXAMPLE: &str = r#"# SIP MESSAGE sink: "Call from NAME (NUMBER)" for every ringing call, sent through
# the ISC service and the S-CSCF ([isc] scscf must be set).
[message]
enabled = false
# Default: the callee's public identity (all their registered devices).
# to = "sip:+4930123456@ims.mnc001.mcc001.3gppnetwork.org"
"#;

/// The MESSAGE text for a caller: `Call from NAME (NUMBER)`, `Call from NUMBER`,
/// `Call from NAME`, or `Call from Anonymous`.
pub fn text(event: &CallEvent) -> String {
    let c = &event.caller;
    if c.anonymous {
        return "Call from Anonymous".into();
    }
    match (&c.name, &c.number) {
        (Some(n), Some(num)) => format!("Call from {n} ({num})"),
        (Some(n), None) => format!("Call from {n}"),
        (None, Some(num)) => format!("Call from {num}"),
        (None, None) => "Call from an unknown caller".into(),
    }
}

/// Where the MESSAGE for `event` goes: the configured URI, else the callee's URI when it
/// is a SIP or tel URI (an MGCP endpoint name is not).
pub fn target(cfg: &MessageConfig, event: &CallEvent) -> Option<String> {
    if let Some(t) = &cfg.to {
        return Some(t.clone());
    }
    sip::Uri::parse(&event.callee.uri)
        .ok()
        .filter(|u| {
            matches!(
                u.scheme,
                sip::Scheme::Sip | sip::Scheme::Sips | sip::Scheme::Tel
            )
        })
        .map(|u| u.to_string())
}

/// Runs the sink: reads `events` until the bus closes and hands a MESSAGE per Ring event
/// to `originator`. Does nothing (returns at once) when disabled.
pub fn spawn(
    cfg: MessageConfig,
    mut events: broadcast::Receiver<Arc<CallEvent>>,
    originator: Originator,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if !cfg.enabled {
            return;
        }
        loop {
            let e = match events.recv().await {
                Ok(e) => e,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(lost = n, "SIP MESSAGE sink fell behind");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            };
            if e.kind != CallEventKind::Ring {
                continue;
            }
            let Some(to) = target(&cfg, &e) else {
                tracing::debug!(callee = %e.callee.uri, "no SIP target for the MESSAGE");
                continue;
            };
            if let Err(err) = originator.send_message(&to, &text(&e)) {
                tracing::warn!(%to, "MESSAGE not sent: {err}");
                if err == crate::isc::OriginatorError::Stopped {
                    break;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Callee, Caller, NameSource, Source};
    use std::time::SystemTime;

    fn event(name: Option<&str>, number: Option<&str>, anonymous: bool, callee: &str) -> CallEvent {
        CallEvent {
            conn: 0,
            call_id: "c".into(),
            kind: CallEventKind::Ring,
            at: SystemTime::UNIX_EPOCH,
            started: SystemTime::UNIX_EPOCH,
            caller: Caller {
                number: number.map(str::to_string),
                name: name.map(str::to_string),
                name_source: NameSource::Phonebook,
                anonymous,
            },
            callee: Callee {
                number: None,
                uri: callee.into(),
            },
            source: Source::Isc,
        }
    }

    #[test]
    fn texts_name_the_caller_or_say_anonymous() {
        let b = "sip:bob@ims.test";
        assert_eq!(
            text(&event(Some("Alice"), Some("+4930123"), false, b)),
            "Call from Alice (+4930123)"
        );
        assert_eq!(
            text(&event(None, Some("+4930123"), false, b)),
            "Call from +4930123"
        );
        assert_eq!(
            text(&event(Some("Alice"), None, false, b)),
            "Call from Alice"
        );
        assert_eq!(
            text(&event(Some("Anonymous"), None, true, b)),
            "Call from Anonymous"
        );
    }

    #[test]
    fn target_is_the_callee_or_the_configured_uri() {
        let cfg = MessageConfig::default();
        let e = event(None, None, false, "tel:+4930999");
        assert_eq!(target(&cfg, &e).as_deref(), Some("tel:+4930999"));
        assert_eq!(target(&cfg, &event(None, None, false, "aaln/1@gw")), None);
        let cfg = MessageConfig {
            enabled: true,
            to: Some("sip:desk@ims.test".into()),
        };
        assert_eq!(target(&cfg, &e).as_deref(), Some("sip:desk@ims.test"));
        let parsed: MessageConfig = toml::from_str(
            EXAMPLE
                .lines()
                .filter(|l| !l.starts_with('['))
                .collect::<Vec<_>>()
                .join("\n")
                .as_str(),
        )
        .unwrap();
        assert_eq!(parsed, MessageConfig::default());
    }
}
