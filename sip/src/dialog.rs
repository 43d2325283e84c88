//! Sans-IO SIP dialogs (RFC 3261 §12) for user agents.
//!
//! A [`Dialog`] is the state two UAs share between a dialog-creating request and its end:
//! the dialog id (Call-ID and both tags), the route set, the remote target, and the two
//! CSeq spaces. It never sends anything: it builds in-dialog requests
//! ([`Dialog::request`], [`Dialog::ack`], [`Dialog::prack`]) and checks what arrives
//! ([`Dialog::handle_request`], [`Dialog::handle_response`]), and the caller moves the
//! messages through its transactions.
//!
//! Created as
//! - UAC ([`Dialog::uac`]) from our INVITE and a 101–299 response with a To tag
//!   (§12.1.2): route set = the response's Record-Route reversed, remote target = its
//!   Contact, local CSeq = the INVITE's;
//! - UAS ([`Dialog::uas`]) from a received INVITE and our To tag (§12.1.1): route set =
//!   the request's Record-Route in order, remote target = its Contact, remote CSeq = the
//!   INVITE's.
//!
//! Target refreshes (re-INVITE, UPDATE of RFC 3311) replace the remote target from
//! Contact; the route set is fixed once the dialog is confirmed (§12.2.1.2, §12.2.2),
//! except that the 2xx which confirms an early UAC dialog brings the final one (§13.2.2.4).

use std::fmt;

use thiserror::Error;

use crate::builder::RequestBuilder;
use crate::error::ParseError;
use crate::headers::{NameAddr, Via};
use crate::message::Message;
use crate::method::Method;
use crate::uri::Uri;

/// Why a message cannot create, join or be built in a dialog.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DialogError {
    /// A header the dialog needs does not parse or is missing.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A tag needed for the dialog id is missing (RFC 3261 §12.1: From tag of the
    /// request, To tag of the response).
    #[error("no {0} tag")]
    MissingTag(&'static str),
    /// The response cannot create a dialog (100, or a final failure).
    #[error("a {0} response creates no dialog")]
    NotDialogCreating(u16),
    /// The message is not a request (or not a response) where one was expected.
    #[error("expected a {0}")]
    WrongKind(&'static str),
    /// The message belongs to another dialog.
    #[error("message does not belong to this dialog")]
    Mismatch,
    /// A request with a CSeq lower than (or equal to) the last one (RFC 3261 §12.2.2:
    /// answer 500).
    #[error("CSeq {got} is not above the last remote CSeq {last}")]
    OutOfOrder {
        /// the request's CSeq number
        got: u32,
        /// the highest one seen
        last: u32,
    },
    /// The dialog has ended.
    #[error("the dialog is terminated")]
    Terminated,
    /// A PRACK for a response without RSeq (RFC 3262 §7.1).
    #[error("the provisional response has no valid RSeq")]
    NoRseq,
    /// The dialog's local CSeq space is exhausted (2^31, RFC 3261 §8.1.1.5).
    #[error("local CSeq exhausted")]
    CseqExhausted,
}

/// Dialog id (RFC 3261 §12): Call-ID, local tag, remote tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    /// Call-ID
    pub call_id: String,
    /// our tag
    pub local_tag: String,
    /// the peer's tag
    pub remote_tag: String,
}

impl DialogId {
    /// The id of the dialog a received request belongs to: local tag = To tag, remote
    /// tag = From tag. `None` if the request has no To tag (it is outside any dialog).
    pub fn of_incoming_request(req: &Message) -> Result<Option<DialogId>, DialogError> {
        let to = req.to_header()?;
        let Some(local) = to.tag() else {
            return Ok(None);
        };
        let from = req.from_header()?;
        let remote = from.tag().ok_or(DialogError::MissingTag("From"))?;
        Ok(Some(DialogId {
            call_id: req.call_id()?.to_string(),
            local_tag: local.to_string(),
            remote_tag: remote.to_string(),
        }))
    }

    /// The id of the dialog a response to one of our requests belongs to: local tag =
    /// From tag, remote tag = To tag.
    pub fn of_response(resp: &Message) -> Result<DialogId, DialogError> {
        let from = resp.from_header()?;
        let to = resp.to_header()?;
        Ok(DialogId {
            call_id: resp.call_id()?.to_string(),
            local_tag: from
                .tag()
                .ok_or(DialogError::MissingTag("From"))?
                .to_string(),
            remote_tag: to.tag().ok_or(DialogError::MissingTag("To"))?.to_string(),
        })
    }
}

impl fmt::Display for DialogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{};l={};r={}",
            self.call_id, self.local_tag, self.remote_tag
        )
    }
}

/// Dialog state (RFC 3261 §12: early after a provisional response with a tag, confirmed
/// after a 2xx).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    /// created by a 1xx (UAC) or before our 2xx (UAS)
    Early,
    /// a 2xx was received (UAC) or sent (UAS)
    Confirmed,
    /// BYE (or a final failure of the INVITE) ended it
    Terminated,
}

/// Which side created the dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// we sent the dialog-creating request
    Uac,
    /// we received it
    Uas,
}

/// Whether requests with `method` refresh the remote target (RFC 3261 §12.2, RFC 3311 §5,
/// RFC 6665 §4.1.2).
pub fn is_target_refresh(method: &Method) -> bool {
    matches!(
        method,
        Method::Invite | Method::Update | Method::Subscribe | Method::Notify | Method::Refer
    )
}

/// The dialog state of one UA (RFC 3261 §12).
#[derive(Debug, Clone)]
pub struct Dialog {
    id: DialogId,
    role: Role,
    state: DialogState,
    /// From (UAC) / To (UAS) of the creating request, without tag
    local_uri: NameAddr,
    /// the peer's identity, without tag
    remote_uri: NameAddr,
    remote_target: Uri,
    route_set: Vec<NameAddr>,
    local_seq: u32,
    remote_seq: Option<u32>,
    /// CSeq number of the last INVITE we sent (the 2xx ACK repeats it, §13.2.2.4)
    invite_seq: Option<u32>,
    /// highest RSeq we acknowledged with PRACK (RFC 3262 §4: ignore older ones)
    last_rseq: Option<u32>,
}

fn without_tag(mut na: NameAddr) -> NameAddr {
    na.params.remove("tag");
    na
}

fn contact_uri(m: &Message) -> Result<Option<Uri>, DialogError> {
    Ok(m.name_addrs("Contact")?.into_iter().next().map(|c| c.uri))
}

impl Dialog {
    /// A dialog as UAC (RFC 3261 §12.1.2) from the request we sent and a response to it
    /// with a To tag: early for 101–199, confirmed for 2xx.
    pub fn uac(request: &Message, response: &Message) -> Result<Dialog, DialogError> {
        if !request.is_request() {
            return Err(DialogError::WrongKind("request"));
        }
        let code = response.code().ok_or(DialogError::WrongKind("response"))?;
        if !(101..300).contains(&code) {
            return Err(DialogError::NotDialogCreating(code));
        }
        let id = DialogId::of_response(response)?;
        if request.call_id()? != id.call_id {
            return Err(DialogError::Mismatch);
        }
        let route_set = route_set_of(response, true)?;
        let remote_target = match contact_uri(response)? {
            Some(u) => u,
            // without Contact (a broken 1xx) the Request-URI is the best target we have
            None => request.request_uri()?,
        };
        let seq = request.cseq()?.seq;
        let invite = request.method() == Some(&Method::Invite);
        Ok(Dialog {
            id,
            role: Role::Uac,
            state: if code < 200 {
                DialogState::Early
            } else {
                DialogState::Confirmed
            },
            local_uri: without_tag(request.from_header()?),
            remote_uri: without_tag(response.to_header()?),
            remote_target,
            route_set,
            local_seq: seq,
            remote_seq: None,
            invite_seq: invite.then_some(seq),
            last_rseq: None,
        })
    }

    /// A dialog as UAS (RFC 3261 §12.1.1) from a received dialog-creating request and the
    /// To tag we put in our responses. Early until [`Dialog::confirm`] (our 2xx).
    pub fn uas(request: &Message, local_tag: &str) -> Result<Dialog, DialogError> {
        if !request.is_request() {
            return Err(DialogError::WrongKind("request"));
        }
        let from = request.from_header()?;
        let remote_tag = from
            .tag()
            .ok_or(DialogError::MissingTag("From"))?
            .to_string();
        let remote_target = contact_uri(request)?.ok_or(ParseError::MissingHeader("Contact"))?;
        Ok(Dialog {
            id: DialogId {
                call_id: request.call_id()?.to_string(),
                local_tag: local_tag.to_string(),
                remote_tag,
            },
            role: Role::Uas,
            state: DialogState::Early,
            local_uri: without_tag(request.to_header()?),
            remote_uri: without_tag(from),
            remote_target,
            route_set: route_set_of(request, false)?,
            local_seq: 0,
            remote_seq: Some(request.cseq()?.seq),
            invite_seq: None,
            last_rseq: None,
        })
    }

    // ---- getters ---------------------------------------------------------------------

    /// The dialog id.
    pub fn id(&self) -> &DialogId {
        &self.id
    }

    /// Which side created it.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Early, confirmed or terminated.
    pub fn state(&self) -> DialogState {
        self.state
    }

    /// The route set, in the order in-dialog requests carry it.
    pub fn route_set(&self) -> &[NameAddr] {
        &self.route_set
    }

    /// Where in-dialog requests go (the peer's Contact).
    pub fn remote_target(&self) -> &Uri {
        &self.remote_target
    }

    /// Our identity in the dialog (without tag).
    pub fn local_uri(&self) -> &NameAddr {
        &self.local_uri
    }

    /// The peer's identity (without tag).
    pub fn remote_uri(&self) -> &NameAddr {
        &self.remote_uri
    }

    /// The CSeq number of our last request.
    pub fn local_seq(&self) -> u32 {
        self.local_seq
    }

    /// The highest CSeq number of the peer's requests, if any arrived.
    pub fn remote_seq(&self) -> Option<u32> {
        self.remote_seq
    }

    /// Whether `id` names this dialog.
    pub fn matches(&self, id: &DialogId) -> bool {
        self.id == *id
    }

    // ---- inputs ----------------------------------------------------------------------

    /// Early → confirmed (UAS: our 2xx went out; UAC: use [`Dialog::handle_response`]).
    pub fn confirm(&mut self) {
        if self.state == DialogState::Early {
            self.state = DialogState::Confirmed;
        }
    }

    /// The dialog ends (BYE sent or received, the INVITE failed).
    pub fn terminate(&mut self) {
        self.state = DialogState::Terminated;
    }

    /// A request the peer sent in this dialog (RFC 3261 §12.2.2): checks the dialog id
    /// and the CSeq order (ACK and CANCEL repeat the INVITE's number and are not
    /// checked), and refreshes the remote target for target-refresh requests.
    pub fn handle_request(&mut self, req: &Message) -> Result<(), DialogError> {
        let method = req.method().ok_or(DialogError::WrongKind("request"))?;
        match DialogId::of_incoming_request(req)? {
            Some(id) if id == self.id => {}
            _ => return Err(DialogError::Mismatch),
        }
        if self.state == DialogState::Terminated {
            return Err(DialogError::Terminated);
        }
        let seq = req.cseq()?.seq;
        if !matches!(method, Method::Ack | Method::Cancel) {
            if let Some(last) = self.remote_seq {
                if seq <= last {
                    return Err(DialogError::OutOfOrder { got: seq, last });
                }
            }
            self.remote_seq = Some(seq);
        }
        if is_target_refresh(method) {
            if let Some(u) = contact_uri(req)? {
                self.remote_target = u;
            }
        }
        Ok(())
    }

    /// A response to a request we sent in this dialog (or to the creating INVITE): a 2xx
    /// to INVITE confirms an early dialog and fixes the route set from its Record-Route
    /// (§13.2.2.4); a 1xx/2xx to a target refresh updates the remote target (§12.2.1.2).
    pub fn handle_response(&mut self, resp: &Message) -> Result<(), DialogError> {
        let code = resp.code().ok_or(DialogError::WrongKind("response"))?;
        if DialogId::of_response(resp)? != self.id {
            return Err(DialogError::Mismatch);
        }
        let method = resp.cseq()?.method;
        if method == Method::Invite
            && (200..300).contains(&code)
            && self.state == DialogState::Early
            && self.role == Role::Uac
        {
            self.route_set = route_set_of(resp, true)?;
            self.state = DialogState::Confirmed;
        }
        if is_target_refresh(&method) && (101..300).contains(&code) {
            if let Some(u) = contact_uri(resp)? {
                self.remote_target = u;
            }
        }
        Ok(())
    }

    // ---- building requests -----------------------------------------------------------

    /// Starts an in-dialog request (RFC 3261 §12.2.1.1): Request-URI and Route from the
    /// remote target and the route set (loose or strict routing), Via, Max-Forwards,
    /// From/To with the tags, Call-ID and the next local CSeq. The caller adds Contact
    /// (target refreshes), the body and anything else. Not for ACK or CANCEL.
    pub fn request(&mut self, method: Method, via: &Via) -> Result<RequestBuilder, DialogError> {
        if self.state == DialogState::Terminated {
            return Err(DialogError::Terminated);
        }
        if matches!(method, Method::Ack | Method::Cancel) {
            return Err(DialogError::WrongKind("method with its own CSeq"));
        }
        let seq = self
            .local_seq
            .checked_add(1)
            .filter(|s| *s < 1 << 31)
            .ok_or(DialogError::CseqExhausted)?;
        self.local_seq = seq;
        if method == Method::Invite {
            self.invite_seq = Some(seq);
        }
        Ok(self.build(method, seq, via))
    }

    /// The ACK for a 2xx to our INVITE (RFC 3261 §13.2.2.4): a new transaction-less
    /// request with the INVITE's CSeq number, routed like any in-dialog request.
    pub fn ack(&self, via: &Via) -> Result<RequestBuilder, DialogError> {
        let seq = self
            .invite_seq
            .ok_or(DialogError::WrongKind("INVITE sent"))?;
        Ok(self.build(Method::Ack, seq, via))
    }

    /// A PRACK for a reliable provisional response (RFC 3262 §7.1): `RAck: rseq cseq
    /// method`. Returns `Ok(None)` for an RSeq we already acknowledged (a retransmission
    /// or an older one, §4).
    pub fn prack(
        &mut self,
        provisional: &Message,
        via: &Via,
    ) -> Result<Option<RequestBuilder>, DialogError> {
        let rseq = rseq_of(provisional)?;
        if self.last_rseq.is_some_and(|l| rseq <= l) {
            return Ok(None);
        }
        let cseq = provisional.cseq()?;
        let b = self
            .request(Method::Prack, via)?
            .header("RAck", format_args!("{rseq} {} {}", cseq.seq, cseq.method));
        self.last_rseq = Some(rseq);
        Ok(Some(b))
    }

    fn build(&self, method: Method, seq: u32, via: &Via) -> RequestBuilder {
        let strict = self
            .route_set
            .split_first()
            .filter(|(first, _)| !first.uri.params.has("lr"));
        // §12.2.1.1: with a strict router first, it becomes the Request-URI and the remote
        // target goes to the end of Route
        let (uri, routes): (Uri, Vec<String>) = match strict {
            Some((first, rest)) => {
                let mut uri = first.uri.clone();
                uri.params = Default::default();
                let mut r: Vec<String> = rest.iter().map(|r| r.to_string()).collect();
                r.push(format!("<{}>", self.remote_target));
                (uri, r)
            }
            None => (
                self.remote_target.clone(),
                self.route_set.iter().map(|r| r.to_string()).collect(),
            ),
        };
        let mut from = self.local_uri.clone();
        from.params.set("tag", Some(&self.id.local_tag));
        let mut to = self.remote_uri.clone();
        to.params.set("tag", Some(&self.id.remote_tag));
        let mut b = RequestBuilder::new(method, &uri).via(via).max_forwards(70);
        if !routes.is_empty() {
            b = b.header("Route", routes.join(", "));
        }
        b.from(&from).to(&to).call_id(&self.id.call_id).cseq(seq)
    }
}

/// The RSeq of a reliable provisional response (RFC 3262 §7.1: 1..2^31-1).
pub fn rseq_of(resp: &Message) -> Result<u32, DialogError> {
    let v = resp.header("RSeq").ok_or(DialogError::NoRseq)?;
    match v.trim().parse::<u32>() {
        Ok(n) if (1..1 << 31).contains(&n) => Ok(n),
        _ => Err(DialogError::NoRseq),
    }
}

/// The RAck of a PRACK (RFC 3262 §7.2): response number, CSeq number, method.
pub fn parse_rack(prack: &Message) -> Result<(u32, u32, Method), DialogError> {
    let bad = || ParseError::InvalidHeader {
        header: "RAck",
        reason: "expected `rseq cseq method`",
    };
    let v = prack
        .header("RAck")
        .ok_or(ParseError::MissingHeader("RAck"))?;
    let mut it = v.split_ascii_whitespace();
    let (Some(r), Some(c), Some(m), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(bad().into());
    };
    let r = r.parse::<u32>().map_err(|_| bad())?;
    let c = c.parse::<u32>().map_err(|_| bad())?;
    let m = Method::parse(m).map_err(|_| bad())?;
    Ok((r, c, m))
}

/// Record-Route entries of `m` in message order, reversed for a UAC (RFC 3261 §12.1.2).
fn route_set_of(m: &Message, reverse: bool) -> Result<Vec<NameAddr>, DialogError> {
    let mut rs = m.name_addrs("Record-Route")?;
    if reverse {
        rs.reverse();
    }
    Ok(rs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::ResponseBuilder;

    const INVITE: &str = "INVITE sip:bob@ims.test SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.1:5102;branch=z9hG4bKa1;rport\r\n\
        Max-Forwards: 70\r\n\
        Route: <sip:10.0.0.9:5101;lr>\r\n\
        From: <sip:alice@ims.test>;tag=alice1\r\n\
        To: <sip:bob@ims.test>\r\n\
        Call-ID: c1@10.0.0.1\r\n\
        CSeq: 7 INVITE\r\n\
        Contact: <sip:alice@10.0.0.1:5103>\r\n\
        Content-Length: 0\r\n\r\n";

    fn invite() -> Message {
        Message::parse(INVITE.as_bytes()).unwrap()
    }

    /// The INVITE as the callee sees it after two record-routing proxies.
    fn invite_at_uas() -> Message {
        let mut m = invite();
        m.prepend_header("Record-Route", "<sip:p2.ims.test;lr>");
        m.prepend_header("Record-Route", "<sip:p1.ims.test;lr>");
        m
    }

    fn via() -> Via {
        Via::new("UDP", "10.0.0.1", Some(5102), &crate::new_branch())
    }

    fn answer(code: u16) -> Message {
        ResponseBuilder::new(&invite_at_uas(), code)
            .to_tag("bob1")
            .header("Contact", "<sip:bob@10.0.0.2:6103>")
            .build()
            .unwrap()
    }

    #[test]
    fn uac_from_2xx_reverses_record_route_and_builds_bye_and_ack() {
        let req = invite();
        let ok = answer(200);
        let mut d = Dialog::uac(&req, &ok).unwrap();
        assert_eq!(d.state(), DialogState::Confirmed);
        assert_eq!(d.role(), Role::Uac);
        assert_eq!(
            d.id(),
            &DialogId {
                call_id: "c1@10.0.0.1".into(),
                local_tag: "alice1".into(),
                remote_tag: "bob1".into()
            }
        );
        let routes: Vec<String> = d.route_set().iter().map(|r| r.to_string()).collect();
        assert_eq!(routes, ["<sip:p2.ims.test;lr>", "<sip:p1.ims.test;lr>"]);
        assert_eq!(d.remote_target().to_string(), "sip:bob@10.0.0.2:6103");

        let ack = d.ack(&via()).unwrap().build();
        assert_eq!(ack.uri_str(), Some("sip:bob@10.0.0.2:6103"));
        assert_eq!(ack.cseq().unwrap().to_string(), "7 ACK");
        assert_eq!(
            ack.header("Route"),
            Some("<sip:p2.ims.test;lr>, <sip:p1.ims.test;lr>")
        );
        assert_eq!(ack.to_header().unwrap().tag(), Some("bob1"));
        assert_eq!(ack.from_header().unwrap().tag(), Some("alice1"));

        let bye = d.request(Method::Bye, &via()).unwrap().build();
        bye.validate().unwrap();
        assert_eq!(bye.cseq().unwrap().to_string(), "8 BYE");
        assert_eq!(bye.call_id().unwrap(), "c1@10.0.0.1");
        assert_eq!(d.local_seq(), 8);
        // the ACK keeps the INVITE's number after other requests
        assert_eq!(d.ack(&via()).unwrap().build().cseq().unwrap().seq, 7);
        // a re-INVITE moves it
        let re = d.request(Method::Invite, &via()).unwrap().build();
        assert_eq!(re.cseq().unwrap().seq, 9);
        assert_eq!(d.ack(&via()).unwrap().build().cseq().unwrap().seq, 9);
    }

    #[test]
    fn uac_early_dialog_is_confirmed_by_the_2xx_with_its_route_set() {
        let req = invite();
        let ringing = answer(180);
        let mut d = Dialog::uac(&req, &ringing).unwrap();
        assert_eq!(d.state(), DialogState::Early);
        // the 2xx may carry a different Record-Route (another fork, a proxy changing its
        // mind): it wins
        let mut ok = answer(200);
        ok.remove_header("Record-Route");
        ok.append_header("Record-Route", "<sip:only.ims.test;lr>");
        ok.set_header("Contact", "<sip:bob@10.0.0.2:7000>");
        d.handle_response(&ok).unwrap();
        assert_eq!(d.state(), DialogState::Confirmed);
        assert_eq!(d.route_set().len(), 1);
        assert_eq!(d.remote_target().port, Some(7000));
        // a confirmed dialog's route set never changes again
        d.handle_response(&answer(200)).unwrap();
        assert_eq!(d.route_set().len(), 1);
        // responses of other dialogs are refused
        let other = ResponseBuilder::new(&invite_at_uas(), 200)
            .to_tag("other")
            .build()
            .unwrap();
        assert_eq!(d.handle_response(&other), Err(DialogError::Mismatch));
    }

    #[test]
    fn only_tagged_provisional_and_2xx_create_dialogs() {
        let req = invite();
        assert_eq!(
            Dialog::uac(&req, &answer(486)).unwrap_err(),
            DialogError::NotDialogCreating(486)
        );
        let trying = ResponseBuilder::new(&req, 100).build().unwrap();
        assert_eq!(
            Dialog::uac(&req, &trying).unwrap_err(),
            DialogError::NotDialogCreating(100)
        );
        let untagged = ResponseBuilder::new(&req, 180).build().unwrap();
        assert_eq!(
            Dialog::uac(&req, &untagged).unwrap_err(),
            DialogError::MissingTag("To")
        );
        assert_eq!(
            Dialog::uac(&answer(180), &answer(180)).unwrap_err(),
            DialogError::WrongKind("request")
        );
    }

    #[test]
    fn uas_keeps_record_route_order_and_checks_cseq_order() {
        let req = invite_at_uas();
        let mut d = Dialog::uas(&req, "bob1").unwrap();
        assert_eq!(d.state(), DialogState::Early);
        assert_eq!(d.remote_seq(), Some(7));
        let routes: Vec<String> = d.route_set().iter().map(|r| r.to_string()).collect();
        assert_eq!(routes, ["<sip:p1.ims.test;lr>", "<sip:p2.ims.test;lr>"]);
        assert_eq!(d.remote_target().to_string(), "sip:alice@10.0.0.1:5103");
        d.confirm();
        assert_eq!(d.state(), DialogState::Confirmed);

        // the callee's BYE: From/To swapped, our own CSeq space
        let bye = d.request(Method::Bye, &via()).unwrap().build();
        assert_eq!(bye.from_header().unwrap().tag(), Some("bob1"));
        assert_eq!(
            bye.from_header().unwrap().uri.to_string(),
            "sip:bob@ims.test"
        );
        assert_eq!(bye.to_header().unwrap().tag(), Some("alice1"));
        assert_eq!(bye.cseq().unwrap().seq, 1);
        assert_eq!(bye.uri_str(), Some("sip:alice@10.0.0.1:5103"));
        assert_eq!(
            bye.header("Route"),
            Some("<sip:p1.ims.test;lr>, <sip:p2.ims.test;lr>")
        );

        // the caller's in-dialog requests
        let ok = answer(200);
        let mut caller = Dialog::uac(&invite(), &ok).unwrap();
        let mut update = caller.request(Method::Update, &via()).unwrap().build();
        update.append_header("Contact", "<sip:alice@10.0.0.1:9999>");
        let id = DialogId::of_incoming_request(&update).unwrap().unwrap();
        assert!(d.matches(&id));
        d.handle_request(&update).unwrap();
        assert_eq!(d.remote_seq(), Some(8));
        assert_eq!(
            d.remote_target().port,
            Some(9999),
            "UPDATE refreshes the target"
        );
        // the same CSeq again, or an older one: out of order (§12.2.2)
        assert_eq!(
            d.handle_request(&update),
            Err(DialogError::OutOfOrder { got: 8, last: 8 })
        );
        // ACK repeats the INVITE's number and is not checked
        let ack = caller.ack(&via()).unwrap().build();
        d.handle_request(&ack).unwrap();
        // a BYE of another dialog does not match
        let mut stranger = caller.request(Method::Bye, &via()).unwrap().build();
        stranger.set_header("From", "<sip:alice@ims.test>;tag=other");
        assert_eq!(d.handle_request(&stranger), Err(DialogError::Mismatch));
        d.terminate();
        let bye = caller.request(Method::Bye, &via()).unwrap().build();
        assert_eq!(d.handle_request(&bye), Err(DialogError::Terminated));
        assert_eq!(
            d.request(Method::Bye, &via()).unwrap_err(),
            DialogError::Terminated
        );
    }

    #[test]
    fn requests_outside_dialogs_have_no_id_and_uas_needs_contact() {
        assert_eq!(DialogId::of_incoming_request(&invite()).unwrap(), None);
        let mut no_contact = invite();
        no_contact.remove_header("Contact");
        assert_eq!(
            Dialog::uas(&no_contact, "t").unwrap_err(),
            DialogError::Parse(ParseError::MissingHeader("Contact"))
        );
        let mut no_tag = invite();
        no_tag.set_header("From", "<sip:alice@ims.test>");
        assert_eq!(
            Dialog::uas(&no_tag, "t").unwrap_err(),
            DialogError::MissingTag("From")
        );
    }

    #[test]
    fn strict_router_becomes_the_request_uri() {
        let mut ok = answer(200);
        ok.remove_header("Record-Route");
        ok.append_header("Record-Route", "<sip:strict.ims.test;maddr=10.0.0.7>");
        let mut d = Dialog::uac(&invite(), &ok).unwrap();
        let bye = d.request(Method::Bye, &via()).unwrap().build();
        assert_eq!(bye.uri_str(), Some("sip:strict.ims.test"));
        assert_eq!(bye.header("Route"), Some("<sip:bob@10.0.0.2:6103>"));
    }

    #[test]
    fn prack_carries_rack_once_per_rseq() {
        let mut ringing = answer(183);
        ringing.append_header("RSeq", "1");
        ringing.append_header("Require", "100rel");
        let mut d = Dialog::uac(&invite(), &ringing).unwrap();
        let prack = d.prack(&ringing, &via()).unwrap().unwrap().build();
        assert_eq!(prack.header("RAck"), Some("1 7 INVITE"));
        assert_eq!(prack.cseq().unwrap().to_string(), "8 PRACK");
        assert_eq!(parse_rack(&prack).unwrap(), (1, 7, Method::Invite));
        assert!(
            d.prack(&ringing, &via()).unwrap().is_none(),
            "retransmission"
        );
        ringing.set_header("RSeq", "2");
        assert!(d.prack(&ringing, &via()).unwrap().is_some());
        ringing.set_header("RSeq", "0");
        assert_eq!(d.prack(&ringing, &via()).unwrap_err(), DialogError::NoRseq);
        let mut bad = prack.clone();
        bad.set_header("RAck", "1 x INVITE");
        assert!(parse_rack(&bad).is_err());
        bad.set_header("RAck", "1 7");
        assert!(parse_rack(&bad).is_err());
        // an ACK or CANCEL never comes from `request`
        assert!(d.request(Method::Ack, &via()).is_err());
    }

    #[test]
    fn cseq_space_ends_at_2_pow_31() {
        let mut d = Dialog::uac(&invite(), &answer(200)).unwrap();
        d.local_seq = (1 << 31) - 1;
        assert_eq!(
            d.request(Method::Bye, &via()).unwrap_err(),
            DialogError::CseqExhausted
        );
    }

    proptest::proptest! {
        /// Whatever bytes replace part of a dialog's messages, nothing panics: creation,
        /// matching and in-dialog checks answer with a value or a typed error.
        #[test]
        fn mangled_messages_never_panic(
            at in 0usize..2000,
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..12),
        ) {
            let mangle = |m: &Message| {
                let mut b = m.to_bytes();
                let at = at % b.len();
                for (k, x) in junk.iter().enumerate() {
                    if let Some(slot) = b.get_mut(at + k) {
                        *slot = *x;
                    }
                }
                Message::parse(&b).ok()
            };
            let at_uas = invite_at_uas();
            if let Some(req) = mangle(&at_uas) {
                if let Ok(mut d) = Dialog::uas(&req, "bob1") {
                    let _ = d.request(Method::Bye, &via());
                }
                let _ = DialogId::of_incoming_request(&req);
            }
            if let Some(resp) = mangle(&answer(183)) {
                let _ = rseq_of(&resp);
                if let Ok(mut d) = Dialog::uac(&invite(), &resp) {
                    let _ = d.prack(&resp, &via());
                    let _ = d.handle_response(&resp);
                    let _ = d.ack(&via());
                }
            }
            let mut d = Dialog::uas(&at_uas, "bob1").unwrap();
            let mut caller = Dialog::uac(&invite(), &answer(200)).unwrap();
            let bye = caller.request(Method::Bye, &via()).unwrap().build();
            if let Some(req) = mangle(&bye) {
                let _ = d.handle_request(&req);
                let _ = parse_rack(&req);
            }
        }
    }
}
