//! The P-CSCF's subscription to each registered user's reg event (TS 24.229 §5.2.3,
//! RFC 3680): after a registration succeeds we SUBSCRIBE at the S-CSCF to the registered
//! identity, and a NOTIFY that says the registration is terminated — a network-initiated
//! deregistration after an RTR from the HSS, above all — ends our registration and
//! retires its SAs at once, without waiting for the binding to expire.
//!
//! The same whether the S-CSCF is ours in this process or Kamailio over the network: the
//! SUBSCRIBE goes the one way toward the S-CSCF ([`super::Upstream`]); NOTIFYs come back
//! as requests from the S-CSCF addressed to us.

use super::*;
use sip::reginfo::RegInfo;
use sip::{RequestBuilder, Via};

/// What we asked for: long enough to outlive any registration (handsets ask the same).
const EXPIRES: u32 = 600_000;

/// Our subscription to one registered identity's reg event.
pub(super) struct RegSub {
    call_id: String,
}

impl Pcscf {
    fn own_uri(&self) -> String {
        format!(
            "sip:pcscf@{}:{}",
            sip::uri::ip_host(self.cfg.local_ip),
            self.cfg.sip_port
        )
    }

    /// After a registration of `impu` succeeded: subscribe, unless we already are.
    pub(super) fn subscribe_reg_event(&mut self, impu: &str, now: Instant) {
        if !self.upstream.reg_event || self.reg_subs.contains_key(impu) {
            return;
        }
        let host = sip::uri::ip_host(self.cfg.local_ip);
        let call_id = self.ids.call_id(Some(&host));
        let up = self.upstream.clone();
        let own = self.own_uri();
        let mut b = RequestBuilder::new(Method::Subscribe, impu)
            .max_forwards(70)
            .header("From", format!("<{own}>;tag={}", self.ids.tag()))
            .header("To", format!("<{impu}>"))
            .header("Call-ID", &call_id)
            .header("CSeq", "1 SUBSCRIBE")
            .header("Contact", format!("<sip:{host}:{}>", self.cfg.sip_port))
            .header("Event", "reg")
            .header("Accept", "application/reginfo+xml")
            .header("Expires", EXPIRES)
            .header("P-Asserted-Identity", format!("<{own}>"));
        if let Some(r) = &up.route {
            b = b.header("Route", format!("<{r};lr>"));
        }
        let mut msg = b.build();
        let via = Via::new(
            up.protocol.as_str(),
            &host,
            Some(self.cfg.sip_port),
            &self.ids.branch(),
        );
        msg.prepend_header("Via", &via.to_string());
        match self
            .tx
            .send_request(msg, Flow::to(up.address, up.protocol), now)
        {
            Ok(_) => {
                self.reg_subs.insert(impu.to_string(), RegSub { call_id });
            }
            Err(e) => tracing::debug!(%impu, "reg event SUBSCRIBE not sent: {e}"),
        }
    }

    /// Our subscription ends with the registration (the S-CSCF ends its side itself).
    pub(super) fn forget_reg_event(&mut self, impu: &str) {
        self.reg_subs.remove(impu);
    }

    /// The network ended `impu`'s registration: it ends here after the retire grace, not
    /// at once, so that the S-CSCF's NOTIFY to the UE itself (on its way now, perhaps
    /// behind ours) still finds the registration and its SA (TS 24.229 §5.2.5.2: the SAs
    /// go after the UE has been told).
    fn deactivate(&mut self, impu: &str, now: Instant) {
        let generation = self.next_seq();
        let Some(reg) = self.regs.get_mut(impu) else {
            return;
        };
        reg.generation = generation;
        let at = now + self.cfg.retire_grace;
        reg.expires_at = at;
        self.forget_reg_event(impu);
        self.set_timer(
            at,
            TimerKind::Deactivated {
                impu: impu.to_string(),
                generation,
            },
        );
    }

    /// A NOTIFY from the S-CSCF for one of our subscriptions: answered 200 (481 when we
    /// know no such subscription), and every registration it says is terminated ends here,
    /// its SAs retired (TS 24.229 §5.2.3, §5.2.5.2). `false` when it is not ours to take.
    pub(super) fn on_reg_notify(&mut self, tx: TxId, req: &Message, now: Instant) -> bool {
        let is_reg = req.method() == Some(&Method::Notify)
            && req
                .header("Event")
                .is_some_and(|e| e.split(';').next().is_some_and(|p| p.trim() == "reg"));
        if !is_reg || !self.names_us(req) {
            return false;
        }
        let known = req
            .call_id()
            .is_ok_and(|c| self.reg_subs.values().any(|s| s.call_id == c));
        if !known {
            self.simple(tx, req, 481, now);
            return true;
        }
        let body = std::str::from_utf8(req.body()).unwrap_or_default();
        let info = match RegInfo::parse(body) {
            Ok(i) => i,
            Err(e) => {
                tracing::debug!("reg event NOTIFY body: {e}");
                self.simple(tx, req, 400, now);
                return true;
            }
        };
        self.simple(tx, req, 200, now);
        let ended: Vec<String> = self
            .regs
            .iter()
            .filter(|(impu, r)| {
                info.is_terminated(impu) || r.associated.iter().any(|a| info.is_terminated(a))
            })
            .map(|(impu, _)| impu.clone())
            .collect();
        for impu in ended {
            self.deactivate(&impu, now);
        }
        true
    }
}
