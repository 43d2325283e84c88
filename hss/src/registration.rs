//! Registration state per implicit registration set (IRS) and what a SAR does to it.
//!
//! The HSS keeps the registration state and the assigned S-CSCF per IRS, not per private
//! identity (TS 29.228 §6.1.2, TS 23.228 §5.2.1a): one subscriber may have one set registered
//! and another not, and a terminating request to an IMPU of the unregistered set makes its
//! S-CSCF send SAR UNREGISTERED_USER for that set alone. [`sar_transition`] is the pure
//! decision table of TS 29.228 §6.1.2.1 / TS 29.229 §6.3.15 over one set's current state;
//! the store applies it inside its group-commit transaction.

use crate::store::RegState;
use diameter::enums::server_assignment_type as sat;

/// The state of one implicit registration set.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct IrsRegistration {
    /// Implicit registration set number ([`crate::store::Impu::irs`]).
    pub irs: u32,
    /// Registered, unregistered (served for unregistered services) or not registered.
    pub state: RegState,
    /// The assigned S-CSCF's SIP URI (Server-Name).
    pub scscf_name: Option<String>,
    /// Diameter Origin-Host of that S-CSCF (target of RTR/PPR).
    pub scscf_host: Option<String>,
    /// Diameter Origin-Realm of that S-CSCF.
    pub scscf_realm: Option<String>,
}

impl IrsRegistration {
    /// The state of set `irs` when nothing is stored: not registered, no S-CSCF.
    pub fn none(irs: u32) -> Self {
        Self {
            irs,
            ..Self::default()
        }
    }

    /// Whether this is the state of a set the HSS need not store.
    pub fn is_empty(&self) -> bool {
        self.state == RegState::NotRegistered && self.scscf_name.is_none()
    }
}

/// The S-CSCF that sent a SAR.
#[derive(Debug, Clone, Copy)]
pub struct Assigner<'a> {
    /// Server-Name (SIP URI).
    pub name: &'a str,
    /// Origin-Host.
    pub host: Option<&'a str>,
    /// Origin-Realm.
    pub realm: Option<&'a str>,
}

/// What a SAR does to one set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The set's new state (`None`: unchanged).
    pub new: Option<IrsRegistration>,
    /// Whether the SAA carries User-Data (TS 29.229 §6.1.3).
    pub with_data: bool,
}

/// Why a SAR is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SarRefusal {
    /// Another S-CSCF is assigned (DIAMETER_ERROR_IDENTITY_ALREADY_REGISTERED, 5005).
    #[error("another S-CSCF is assigned")]
    AlreadyAssigned,
    /// A Server-Assignment-Type this HSS does not know (DIAMETER_INVALID_AVP_VALUE).
    #[error("Server-Assignment-Type {0}")]
    UnknownType(i32),
}

/// The effect of a SAR of type `t` from `by` on a set in state `cur` (TS 29.228 §6.1.2.1).
pub fn sar_transition(
    t: i32,
    cur: &IrsRegistration,
    by: Assigner<'_>,
) -> Result<Transition, SarRefusal> {
    let set = |state: RegState, keep_name: bool| IrsRegistration {
        irs: cur.irs,
        state,
        scscf_name: keep_name.then(|| by.name.to_string()),
        scscf_host: keep_name.then(|| by.host.map(str::to_string)).flatten(),
        scscf_realm: keep_name.then(|| by.realm.map(str::to_string)).flatten(),
    };
    let tr = |new: Option<IrsRegistration>, with_data| Ok(Transition { new, with_data });
    match t {
        sat::REGISTRATION | sat::RE_REGISTRATION => tr(Some(set(RegState::Registered, true)), true),
        // A terminating request to a user not registered: the S-CSCF serves the set in state
        // "unregistered" and gets the profile for its unregistered-case iFCs. A registered set
        // stays registered (the S-CSCF only asks because it lost the registration).
        sat::UNREGISTERED_USER if cur.state == RegState::Registered => tr(None, true),
        sat::UNREGISTERED_USER => tr(Some(set(RegState::Unregistered, true)), true),
        sat::NO_ASSIGNMENT | sat::AAA_USER_DATA_REQUEST => {
            // Only the assigned S-CSCF may fetch the profile this way.
            if cur.scscf_name.as_deref().is_some_and(|n| n != by.name) {
                return Err(SarRefusal::AlreadyAssigned);
            }
            tr(None, true)
        }
        sat::TIMEOUT_DEREGISTRATION
        | sat::USER_DEREGISTRATION
        | sat::ADMINISTRATIVE_DEREGISTRATION
        | sat::DEREGISTRATION_TOO_MUCH_DATA => tr(Some(IrsRegistration::none(cur.irs)), false),
        sat::TIMEOUT_DEREGISTRATION_STORE_SERVER_NAME
        | sat::USER_DEREGISTRATION_STORE_SERVER_NAME => {
            tr(Some(set(RegState::NotRegistered, true)), false)
        }
        // A registered set keeps its S-CSCF; otherwise the name is cleared.
        sat::AUTHENTICATION_FAILURE | sat::AUTHENTICATION_TIMEOUT
            if cur.state != RegState::Registered =>
        {
            tr(Some(IrsRegistration::none(cur.irs)), false)
        }
        sat::AUTHENTICATION_FAILURE | sat::AUTHENTICATION_TIMEOUT => tr(None, false),
        sat::PGW_UPDATE | sat::RESTORATION => tr(None, false),
        other => Err(SarRefusal::UnknownType(other)),
    }
}

/// The subscriber-level summary of its sets, kept in the `subscribers` row for listings and
/// gauges: registered if any set is, else unregistered if any set is served so, else the
/// first set with a stored S-CSCF name; the S-CSCF is the one of that set.
pub fn summary(sets: &[IrsRegistration]) -> IrsRegistration {
    let rank = |r: &IrsRegistration| match r.state {
        RegState::Registered => 3,
        RegState::Unregistered => 2,
        RegState::NotRegistered if r.scscf_name.is_some() => 1,
        RegState::NotRegistered => 0,
    };
    sets.iter()
        .filter(|r| rank(r) > 0)
        // Highest rank; among equals the lowest set number.
        .min_by_key(|r| (std::cmp::Reverse(rank(r)), r.irs))
        .cloned()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BY: Assigner<'static> = Assigner {
        name: "sip:scscf1",
        host: Some("scscf1.lab"),
        realm: Some("lab"),
    };

    fn reg(irs: u32, state: RegState, name: Option<&str>) -> IrsRegistration {
        IrsRegistration {
            irs,
            state,
            scscf_name: name.map(str::to_string),
            ..IrsRegistration::none(irs)
        }
    }

    #[test]
    fn registration_stores_the_assigner() {
        let t = sar_transition(sat::REGISTRATION, &IrsRegistration::none(4), BY).unwrap();
        let n = t.new.unwrap();
        assert_eq!(n.irs, 4);
        assert_eq!(n.state, RegState::Registered);
        assert_eq!(n.scscf_host.as_deref(), Some("scscf1.lab"));
        assert!(t.with_data);
    }

    #[test]
    fn unregistered_user_serves_a_not_registered_set_only() {
        let t = sar_transition(sat::UNREGISTERED_USER, &IrsRegistration::none(1), BY).unwrap();
        assert_eq!(t.new.unwrap().state, RegState::Unregistered);
        assert!(t.with_data);
        let cur = reg(1, RegState::Registered, Some("sip:scscf1"));
        let t = sar_transition(sat::UNREGISTERED_USER, &cur, BY).unwrap();
        assert_eq!(t.new, None, "a registered set stays registered");
        assert!(t.with_data);
    }

    #[test]
    fn deregistration_and_auth_failure() {
        let cur = reg(0, RegState::Registered, Some("sip:scscf1"));
        let t = sar_transition(sat::USER_DEREGISTRATION, &cur, BY).unwrap();
        assert!(t.new.unwrap().is_empty());
        assert!(!t.with_data);
        let t = sar_transition(sat::USER_DEREGISTRATION_STORE_SERVER_NAME, &cur, BY).unwrap();
        let n = t.new.unwrap();
        assert_eq!(
            (n.state, n.scscf_name.as_deref()),
            (RegState::NotRegistered, Some("sip:scscf1"))
        );
        assert_eq!(
            sar_transition(sat::AUTHENTICATION_FAILURE, &cur, BY)
                .unwrap()
                .new,
            None
        );
        let unreg = reg(0, RegState::Unregistered, Some("sip:scscf1"));
        let t = sar_transition(sat::AUTHENTICATION_TIMEOUT, &unreg, BY).unwrap();
        assert!(t.new.unwrap().is_empty());
    }

    #[test]
    fn only_the_assigned_scscf_fetches_data() {
        let cur = reg(0, RegState::Registered, Some("sip:other"));
        assert_eq!(
            sar_transition(sat::NO_ASSIGNMENT, &cur, BY),
            Err(SarRefusal::AlreadyAssigned)
        );
        assert!(sar_transition(sat::AAA_USER_DATA_REQUEST, &IrsRegistration::none(0), BY).is_ok());
        assert_eq!(
            sar_transition(99, &cur, BY),
            Err(SarRefusal::UnknownType(99))
        );
    }

    #[test]
    fn summary_prefers_registered_then_lowest_set() {
        assert!(summary(&[]).is_empty());
        let s = summary(&[
            reg(0, RegState::Unregistered, Some("sip:a")),
            reg(2, RegState::Registered, Some("sip:b")),
            reg(1, RegState::Registered, Some("sip:c")),
        ]);
        assert_eq!((s.irs, s.scscf_name.as_deref()), (1, Some("sip:c")));
        let s = summary(&[reg(3, RegState::NotRegistered, Some("sip:d"))]);
        assert_eq!(s.scscf_name.as_deref(), Some("sip:d"));
    }
}
