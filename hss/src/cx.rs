//! Cx application (TS 29.228 §6, TS 29.229 §6): sans-IO request handlers.
//!
//! [`CxHandler::handle`] turns a decoded request into an answer [`Message`] using the store,
//! except for MAR and SAR, whose writes must be committed first: a MAR returns
//! [`Outcome::NeedSqn`] with an [`SqnRequest`] for the group-commit writer and a
//! [`PendingMar`] that [`CxHandler::finish_mar`] turns into the MAA once the SQNs are on disk;
//! a SAR returns [`Outcome::NeedSar`], finished by [`CxHandler::finish_sar`] once the
//! assignment is on disk. Both only parse here, so the network task never waits for the
//! store's lock. Nothing here touches a socket; tests drive it with messages and a temporary
//! store.

use crate::metrics::Metrics;
use crate::store::{
    IssueError, Issued, RegState, SarDone, SarError, SarRequest, SqnRequest, Store, StoreError,
    Subscriber, WriteJob, WriteResult,
};
use akav1::Milenage;
use diameter::{app, avp, cmd, result, Avp, AvpError, FindAvp, Message, VENDOR_3GPP};
use rand::RngCore;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// `SIP-Authentication-Scheme` we issue (TS 29.229 §6.3.9, RFC 3310).
pub const SCHEME_AKAV1: &str = "Digest-AKAv1-MD5";

/// Cx result codes (TS 29.229 §6.2), carried in Experimental-Result with vendor 10415.
pub use diameter::result::cx;

/// Handler settings.
#[derive(Debug, Clone)]
pub struct CxConfig {
    /// Our Origin-Host.
    pub origin_host: String,
    /// Our Origin-Realm.
    pub origin_realm: String,
    /// Diameter peers (Origin-Host) allowed to send requests; empty allows any.
    pub allowed_peers: Vec<String>,
    /// Visited-Network-Identifiers allowed in UAR; empty allows any.
    pub allowed_visited_networks: Vec<String>,
    /// S-CSCF name given in UAA/LIA to a user without one; when None, an empty
    /// Server-Capabilities lets the I-CSCF choose.
    pub default_scscf: Option<String>,
    /// Most vectors returned in one MAA, whatever SIP-Number-Auth-Items asks.
    pub max_vectors: u32,
}

impl Default for CxConfig {
    fn default() -> Self {
        CxConfig {
            origin_host: "hss.ims.lab".into(),
            origin_realm: "ims.lab".into(),
            allowed_peers: vec![],
            allowed_visited_networks: vec![],
            default_scscf: None,
            max_vectors: 16,
        }
    }
}

/// What handling a request needs next.
#[derive(Debug)]
pub enum Outcome {
    /// Send this answer.
    Answer(Message),
    /// Commit SQNs (with [`crate::sqn::SqnService`] or [`Store::issue_sqns`]), then call
    /// [`CxHandler::finish_mar`].
    NeedSqn(SqnRequest, PendingMar),
    /// Apply the SAR in a group commit ([`crate::sqn::SqnService::sar`] or
    /// [`Store::commit_batch`]), then call [`CxHandler::finish_sar`].
    NeedSar(SarRequest, PendingSar),
}

/// A SAR waiting for its commit.
#[derive(Debug)]
pub struct PendingSar {
    answer: Message,
}

/// A MAR waiting for its SQNs.
#[derive(Debug)]
pub struct PendingMar {
    answer: Message,
    impi: String,
    impu: String,
}

/// The Cx request handler.
pub struct CxHandler {
    cfg: CxConfig,
    store: Arc<Mutex<Store>>,
    metrics: Arc<Metrics>,
    session_seq: AtomicU64,
    session_hi: u32,
}

/// SAR Server-Assignment-Type values (TS 29.229 §6.3.15), kept under the
/// short name the Cx handler and its tests use.
pub use diameter::enums::server_assignment_type as sat;

/// Deregistration-Reason Reason-Code values for RTR (TS 29.229 §6.3.17).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeregReason {
    /// PERMANENT_TERMINATION (0): the subscription is gone.
    PermanentTermination,
    /// NEW_SERVER_ASSIGNED (1).
    NewServerAssigned,
    /// SERVER_CHANGE (2): the UE should re-register (to another S-CSCF).
    ServerChange,
    /// REMOVE_S-CSCF (3).
    RemoveScscf,
}

impl DeregReason {
    fn code(self) -> i32 {
        match self {
            Self::PermanentTermination => 0,
            Self::NewServerAssigned => 1,
            Self::ServerChange => 2,
            Self::RemoveScscf => 3,
        }
    }
}

enum Fail {
    Base(u32, String),
    Exp(u32),
}

impl From<AvpError> for Fail {
    fn from(e: AvpError) -> Self {
        Fail::Base(e.result_code(), e.to_string())
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        Fail::Base(result::UNABLE_TO_COMPLY, "store failure".into())
    }
}

impl CxHandler {
    /// A handler over a shared store connection (used for everything but SQN issue).
    pub fn new(cfg: CxConfig, store: Arc<Mutex<Store>>, metrics: Arc<Metrics>) -> Self {
        CxHandler {
            cfg,
            store,
            metrics,
            session_seq: AtomicU64::new(1),
            session_hi: rand::rng().next_u32(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &CxConfig {
        &self.cfg
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back).
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Handles one Cx request. Non-Cx or non-request messages get an error answer.
    ///
    /// Requests from the network have passed [`diameter::Peer`]'s protocol checks first,
    /// among them the one answering 5009 to a repeated single-occurrence AVP
    /// ([`diameter::dict::excess_avp`]); a caller feeding requests in directly gets the
    /// first copy of such an AVP read.
    pub fn handle(&self, req: &Message) -> Outcome {
        let name = req.name();
        self.metrics.request(&name);
        if let Some(peers) = Some(&self.cfg.allowed_peers).filter(|p| !p.is_empty()) {
            let ok = req
                .origin_host()
                .is_some_and(|h| peers.iter().any(|p| p.eq_ignore_ascii_case(h)));
            if !ok {
                tracing::warn!(origin_host = ?req.origin_host(), "request from a peer not in allowed_peers");
                return self.done(
                    req,
                    Message::error_answer(req, result::UNKNOWN_PEER, Some("peer not allowed")),
                );
            }
        }
        if req.app_id != app::CX {
            return self.done(
                req,
                Message::error_answer(req, result::APPLICATION_UNSUPPORTED, None),
            );
        }
        let r = match req.code {
            cmd::MULTIMEDIA_AUTH => return self.mar(req),
            cmd::USER_AUTHORIZATION => self.uar(req),
            cmd::SERVER_ASSIGNMENT => match self.sar_parse(req) {
                Ok((r, p)) => return Outcome::NeedSar(r, p),
                Err(f) => Err(f),
            },
            cmd::LOCATION_INFO => self.lir(req),
            _ => Err(Fail::Base(
                result::COMMAND_UNSUPPORTED,
                "command not supported".into(),
            )),
        };
        let ans = match r {
            Ok(a) => a,
            Err(f) => self.fail(req, f),
        };
        self.done(req, ans)
    }

    fn done(&self, req: &Message, mut ans: Message) -> Outcome {
        self.finish_answer(&mut ans);
        self.metrics
            .answer(&req.name(), ans.result().map(|r| r.code()).unwrap_or(0));
        Outcome::Answer(ans)
    }

    fn finish_answer(&self, ans: &mut Message) {
        if ans.find(avp::ORIGIN_HOST).is_none() {
            ans.add(Avp::utf8(avp::ORIGIN_HOST, &self.cfg.origin_host));
            ans.add(Avp::utf8(avp::ORIGIN_REALM, &self.cfg.origin_realm));
        }
    }

    fn base_answer(&self, req: &Message) -> Message {
        Message::answer_for(req)
            .with(Avp::vendor_specific_auth_app(VENDOR_3GPP, app::CX))
            .with(Avp::enumerated(avp::AUTH_SESSION_STATE, 1))
            .with(Avp::utf8(avp::ORIGIN_HOST, &self.cfg.origin_host))
            .with(Avp::utf8(avp::ORIGIN_REALM, &self.cfg.origin_realm))
    }

    fn fail(&self, req: &Message, f: Fail) -> Message {
        match f {
            Fail::Base(code, msg) => {
                let mut a = Message::error_answer(req, code, Some(&msg));
                if !a.is_error() {
                    a = self
                        .base_answer(req)
                        .with_result_code(code)
                        .with(Avp::utf8(avp::ERROR_MESSAGE, msg));
                }
                a
            }
            Fail::Exp(code) => self
                .base_answer(req)
                .with_experimental_result(VENDOR_3GPP, code),
        }
    }

    fn capabilities(&self) -> Avp {
        Avp::grouped(avp::SERVER_CAPABILITIES, Vec::<Avp>::new())
    }

    /// Finds the subscriber for a request: by IMPU, checking it matches User-Name if given.
    fn subscriber_for(&self, impi: Option<&str>, impu: &str) -> Result<Subscriber, Fail> {
        let st = self.store();
        let owner = st.impi_of(impu)?;
        let Some(owner) = owner else {
            return Err(Fail::Exp(cx::ERROR_USER_UNKNOWN));
        };
        if let Some(i) = impi {
            if i != owner {
                // An unknown IMPI is USER_UNKNOWN; a known one that does not own the IMPU is
                // IDENTITIES_DONT_MATCH (TS 29.228 §6.1.1.1).
                return Err(Fail::Exp(if st.get(i)?.is_none() {
                    cx::ERROR_USER_UNKNOWN
                } else {
                    cx::ERROR_IDENTITIES_DONT_MATCH
                }));
            }
        }
        st.get(&owner)?.ok_or(Fail::Exp(cx::ERROR_USER_UNKNOWN))
    }

    // ---- UAR (TS 29.228 §6.1.1) ----
    fn uar(&self, req: &Message) -> Result<Message, Fail> {
        let impi = req.get_utf8(avp::USER_NAME)?;
        let impu = req.get_utf8(avp::PUBLIC_IDENTITY)?;
        let s = self.subscriber_for(Some(impi), impu)?;
        // The state of the Public-Identity's implicit registration set, not the subscriber's.
        let reg = self.store().registration_of(impu)?.unwrap_or_default();
        let uat = req
            .find(avp::USER_AUTHORIZATION_TYPE)
            .map(|a| a.as_i32())
            .transpose()?
            .unwrap_or(0);
        if uat != 1 {
            if let Some(v) = req.find(avp::VISITED_NETWORK_IDENTIFIER) {
                let v = String::from_utf8_lossy(v.as_octets()).to_string();
                if !self.cfg.allowed_visited_networks.is_empty()
                    && !self
                        .cfg
                        .allowed_visited_networks
                        .iter()
                        .any(|n| n.eq_ignore_ascii_case(&v))
                {
                    return Err(Fail::Exp(cx::ERROR_ROAMING_NOT_ALLOWED));
                }
            }
            if s.impus.iter().any(|i| i.uri == impu && i.barred) && s.impus.iter().all(|i| i.barred)
            {
                return Err(Fail::Base(
                    result::AUTHORIZATION_REJECTED,
                    "identity barred".into(),
                ));
            }
        }
        let a = self.base_answer(req);
        let server_or_caps = |a: Message, name: Option<&str>| match name {
            Some(n) => a.with(Avp::utf8(avp::SERVER_NAME, n)),
            None => a.with(self.capabilities()),
        };
        Ok(match (uat, reg.state, reg.scscf_name.as_deref()) {
            // DE_REGISTRATION
            (1, _, Some(name)) => a
                .with_result_code(result::SUCCESS)
                .with(Avp::utf8(avp::SERVER_NAME, name)),
            (1, _, None) => return Err(Fail::Exp(cx::ERROR_IDENTITY_NOT_REGISTERED)),
            // REGISTRATION_AND_CAPABILITIES
            (2, _, _) => a
                .with_experimental_result(VENDOR_3GPP, cx::FIRST_REGISTRATION)
                .with(self.capabilities()),
            (_, RegState::Registered, Some(name)) => a
                .with_experimental_result(VENDOR_3GPP, cx::SUBSEQUENT_REGISTRATION)
                .with(Avp::utf8(avp::SERVER_NAME, name)),
            (_, RegState::Unregistered, Some(name)) => a
                .with_experimental_result(VENDOR_3GPP, cx::FIRST_REGISTRATION)
                .with(Avp::utf8(avp::SERVER_NAME, name)),
            _ => server_or_caps(
                a.with_experimental_result(VENDOR_3GPP, cx::FIRST_REGISTRATION),
                reg.scscf_name
                    .as_deref()
                    .or(self.cfg.default_scscf.as_deref()),
            ),
        })
    }

    // ---- MAR (TS 29.228 §6.3.1, TS 29.229 §6.1.7) ----
    fn mar(&self, req: &Message) -> Outcome {
        match self.mar_parse(req) {
            Ok((sreq, pending)) => Outcome::NeedSqn(sreq, pending),
            Err(f) => {
                let a = self.fail(req, f);
                self.done(req, a)
            }
        }
    }

    fn mar_parse(&self, req: &Message) -> Result<(SqnRequest, PendingMar), Fail> {
        let impi = req.get_utf8(avp::USER_NAME)?;
        let impu = req.get_utf8(avp::PUBLIC_IDENTITY)?;
        let n = req
            .find(avp::SIP_NUMBER_AUTH_ITEMS)
            .map(|a| a.as_u32())
            .transpose()?
            .unwrap_or(1);
        let mut resync = None;
        if let Some(item) = req.find(avp::SIP_AUTH_DATA_ITEM) {
            let item = item.as_grouped()?;
            if let Some(s) = item.find(avp::SIP_AUTHENTICATION_SCHEME) {
                let s = s.as_utf8()?;
                // Kamailio sends Digest-AKAv1-MD5; other S-CSCFs send "Unknown" and take AKA.
                if !(s.eq_ignore_ascii_case(SCHEME_AKAV1)
                    || s.eq_ignore_ascii_case("Unknown")
                    || s.is_empty())
                {
                    return Err(Fail::Exp(cx::ERROR_AUTH_SCHEME_NOT_SUPPORTED));
                }
            }
            if let Some(a) = item.find(avp::SIP_AUTHORIZATION) {
                let b = a.as_octets();
                // RAND(16) ‖ AUTS(14) (TS 29.229 §6.3.13).
                if b.len() == 30 {
                    let mut rand = [0u8; 16];
                    let mut auts = [0u8; 14];
                    rand.copy_from_slice(&b[..16]);
                    auts.copy_from_slice(&b[16..]);
                    resync = Some((rand, auts));
                } else if !b.is_empty() {
                    return Err(Fail::Base(
                        result::INVALID_AVP_VALUE,
                        "SIP-Authorization must be RAND(16) || AUTS(14)".into(),
                    ));
                }
            }
        }
        let count = n.clamp(1, self.cfg.max_vectors.max(1));
        let answer = self.base_answer(req);
        Ok((
            SqnRequest {
                impi: impi.to_string(),
                impu: Some(impu.to_string()),
                count,
                resync,
            },
            PendingMar {
                answer,
                impi: impi.to_string(),
                impu: impu.to_string(),
            },
        ))
    }

    /// Builds the MAA once the SQNs of a MAR are committed (or failed).
    pub fn finish_mar(&self, p: PendingMar, issued: Result<Issued, IssueError>) -> Message {
        let mut a = p.answer;
        let ans = match issued {
            Ok(iss) => {
                if let Some(sqn_ms) = iss.resynced_from {
                    self.metrics.resync();
                    tracing::info!(impi = %p.impi, %sqn_ms, "SQN resynchronised from AUTS");
                }
                let m = Milenage::new(&iss.k, &iss.opc);
                a.add(Avp::utf8(avp::USER_NAME, &p.impi));
                a.add(Avp::utf8(avp::PUBLIC_IDENTITY, &p.impu));
                a.add(Avp::u32(avp::SIP_NUMBER_AUTH_ITEMS, iss.sqns.len() as u32));
                let mut rng = rand::rng();
                for (i, sqn) in iss.sqns.iter().enumerate() {
                    let mut rand = [0u8; 16];
                    rng.fill_bytes(&mut rand);
                    let v = m.vector(&rand, *sqn, iss.amf);
                    let mut authenticate = Vec::with_capacity(32);
                    authenticate.extend_from_slice(&v.rand);
                    authenticate.extend_from_slice(&v.autn);
                    a.add(Avp::grouped(
                        avp::SIP_AUTH_DATA_ITEM,
                        [
                            Avp::u32(avp::SIP_ITEM_NUMBER, i as u32 + 1),
                            Avp::utf8(avp::SIP_AUTHENTICATION_SCHEME, SCHEME_AKAV1),
                            Avp::octets(avp::SIP_AUTHENTICATE, authenticate),
                            Avp::octets(avp::SIP_AUTHORIZATION, v.xres.to_vec()),
                            Avp::octets(avp::CONFIDENTIALITY_KEY, v.ck.to_vec()),
                            Avp::octets(avp::INTEGRITY_KEY, v.ik.to_vec()),
                        ],
                    ));
                }
                self.metrics.vectors(iss.sqns.len() as u64);
                // Kamailio's ims_auth takes an MAA as success only with Result-Code 2001.
                a.with_result_code(result::SUCCESS)
            }
            Err(IssueError::UnknownUser) => {
                a.with_experimental_result(VENDOR_3GPP, cx::ERROR_USER_UNKNOWN)
            }
            Err(IssueError::IdentitiesDontMatch) => {
                a.with_experimental_result(VENDOR_3GPP, cx::ERROR_IDENTITIES_DONT_MATCH)
            }
            Err(IssueError::Resync(e)) => {
                tracing::warn!(impi = %p.impi, error = %e, "AUTS rejected");
                self.metrics.resync_rejected();
                a.with_result_code(result::AUTHORIZATION_REJECTED)
                    .with(Avp::utf8(avp::ERROR_MESSAGE, "AUTS MAC-S check failed"))
            }
            Err(e @ (IssueError::Sqn(_) | IssueError::Store(_))) => {
                tracing::error!(impi = %p.impi, error = %e, "cannot issue SQN");
                a.with_result_code(result::UNABLE_TO_COMPLY)
            }
        };
        self.metrics
            .answer("MAR", ans.result().map(|r| r.code()).unwrap_or(0));
        ans
    }

    /// Handles a request completely, committing MAR SQNs through `store` synchronously (for
    /// tests and tools; the server uses the group-commit service).
    pub fn handle_blocking(
        &self,
        req: &Message,
        sqn_store: &mut Store,
        policy: &akav1::SqnPolicy,
        ind: u32,
    ) -> Message {
        match self.handle(req) {
            Outcome::Answer(a) => a,
            Outcome::NeedSqn(r, p) => {
                let res = sqn_store
                    .issue_sqns(std::slice::from_ref(&r), policy, ind)
                    .pop();
                let res = res.unwrap_or(Err(IssueError::Store("no result".into())));
                self.finish_mar(p, res)
            }
            Outcome::NeedSar(r, p) => {
                let res = match sqn_store
                    .commit_batch(&[WriteJob::Sar(r)], policy, ind)
                    .pop()
                {
                    Some(WriteResult::Sar(r)) => *r,
                    _ => Err(SarError::Store("no result".into())),
                };
                self.finish_sar(p, res)
            }
        }
    }

    // ---- SAR (TS 29.228 §6.1.2) ----
    fn sar_parse(&self, req: &Message) -> Result<(SarRequest, PendingSar), Fail> {
        let impi = req.find(avp::USER_NAME).map(|a| a.as_utf8()).transpose()?;
        let impu = req
            .find(avp::PUBLIC_IDENTITY)
            .map(|a| a.as_utf8())
            .transpose()?;
        let server = req.get_utf8(avp::SERVER_NAME)?;
        let t = req.get_i32(avp::SERVER_ASSIGNMENT_TYPE)?;
        if impi.is_none() && impu.is_none() {
            return Err(Fail::Base(
                result::MISSING_AVP,
                "SAR needs User-Name or Public-Identity".into(),
            ));
        }
        Ok((
            SarRequest {
                impi: impi.map(str::to_string),
                impu: impu.map(str::to_string),
                assignment_type: t,
                server_name: server.to_string(),
                origin_host: req.origin_host().map(str::to_string),
                origin_realm: req.origin_realm().map(str::to_string),
            },
            PendingSar {
                answer: self.base_answer(req),
            },
        ))
    }

    /// Builds the SAA once the SAR is committed (or failed). The User-Data lists every IMPU
    /// of the Public-Identity's implicit registration set (all sets when the SAR named none).
    pub fn finish_sar(&self, p: PendingSar, done: Result<SarDone, SarError>) -> Message {
        let a = p.answer;
        let ans = match done {
            Ok(d) => {
                let mut a = a
                    .with_result_code(result::SUCCESS)
                    .with(Avp::utf8(avp::USER_NAME, &d.subscriber.impi));
                if d.with_data {
                    let xml =
                        crate::store::build_user_data_for(&d.subscriber, &d.ifcs, d.irs).to_xml();
                    a.add(Avp::octets(avp::USER_DATA, xml.into_bytes()));
                }
                a
            }
            Err(SarError::UnknownUser) => {
                a.with_experimental_result(VENDOR_3GPP, cx::ERROR_USER_UNKNOWN)
            }
            Err(SarError::IdentitiesDontMatch) => {
                a.with_experimental_result(VENDOR_3GPP, cx::ERROR_IDENTITIES_DONT_MATCH)
            }
            Err(SarError::Refused(crate::registration::SarRefusal::AlreadyAssigned)) => {
                a.with_experimental_result(VENDOR_3GPP, cx::ERROR_IDENTITY_ALREADY_REGISTERED)
            }
            Err(SarError::Refused(crate::registration::SarRefusal::UnknownType(t))) => a
                .with_result_code(result::INVALID_AVP_VALUE)
                .with(Avp::utf8(
                    avp::ERROR_MESSAGE,
                    format!("Server-Assignment-Type {t}"),
                )),
            Err(SarError::NoIdentity) => a.with_result_code(result::MISSING_AVP).with(Avp::utf8(
                avp::ERROR_MESSAGE,
                "SAR needs User-Name or Public-Identity",
            )),
            Err(e @ SarError::Store(_)) => {
                tracing::error!(error = %e, "cannot apply SAR");
                a.with_result_code(result::UNABLE_TO_COMPLY)
            }
        };
        self.metrics
            .answer("SAR", ans.result().map(|r| r.code()).unwrap_or(0));
        ans
    }

    // ---- LIR (TS 29.228 §6.1.4) ----
    fn lir(&self, req: &Message) -> Result<Message, Fail> {
        let impu = req.get_utf8(avp::PUBLIC_IDENTITY)?;
        self.subscriber_for(None, impu)?;
        // The Public-Identity's own implicit registration set decides: another set of the
        // same subscriber being registered does not make this one reachable.
        let reg = self.store().registration_of(impu)?.unwrap_or_default();
        let originating = req.find(avp::ORIGINATING_REQUEST).is_some();
        let a = self.base_answer(req);
        Ok(match (reg.state, reg.scscf_name.as_deref()) {
            (RegState::Registered, Some(n)) => a
                .with_result_code(result::SUCCESS)
                .with(Avp::utf8(avp::SERVER_NAME, n)),
            (_, Some(n)) => a
                .with_experimental_result(VENDOR_3GPP, cx::UNREGISTERED_SERVICE)
                .with(Avp::utf8(avp::SERVER_NAME, n)),
            (_, None) if originating => a
                .with_experimental_result(VENDOR_3GPP, cx::SERVER_NAME_NOT_STORED)
                .with(self.capabilities()),
            (_, None) => match &self.cfg.default_scscf {
                Some(n) => a
                    .with_experimental_result(VENDOR_3GPP, cx::UNREGISTERED_SERVICE)
                    .with(Avp::utf8(avp::SERVER_NAME, n)),
                None => a
                    .with_result_code(result::SUCCESS)
                    .with(self.capabilities()),
            },
        })
    }

    fn session_id(&self) -> String {
        let n = self.session_seq.fetch_add(1, Ordering::Relaxed);
        format!("{};{};{}", self.cfg.origin_host, self.session_hi, n)
    }

    fn hss_request(&self, code: u32, s: &Subscriber) -> Result<Message, StoreError> {
        let dest_host = s.scscf_host.clone().ok_or_else(|| {
            StoreError::Invalid(format!("{} has no S-CSCF Diameter host", s.impi))
        })?;
        let dest_realm = s
            .scscf_realm
            .clone()
            .unwrap_or_else(|| self.cfg.origin_realm.clone());
        Ok(Message::request(app::CX, code)
            .with(Avp::utf8(avp::SESSION_ID, self.session_id()))
            .with(Avp::vendor_specific_auth_app(VENDOR_3GPP, app::CX))
            .with(Avp::enumerated(avp::AUTH_SESSION_STATE, 1))
            .with(Avp::utf8(avp::ORIGIN_HOST, &self.cfg.origin_host))
            .with(Avp::utf8(avp::ORIGIN_REALM, &self.cfg.origin_realm))
            .with(Avp::utf8(avp::DESTINATION_HOST, dest_host))
            .with(Avp::utf8(avp::DESTINATION_REALM, dest_realm))
            .with(Avp::utf8(avp::USER_NAME, &s.impi)))
    }

    /// An RTR (TS 29.228 §6.2.1) deregistering every IMPU of `impi` at its S-CSCF.
    /// Returns the request and the S-CSCF's Origin-Host to send it to.
    pub fn build_rtr(
        &self,
        impi: &str,
        reason: DeregReason,
        info: Option<&str>,
    ) -> Result<(Message, String), StoreError> {
        let s = self
            .store()
            .get(impi)?
            .ok_or_else(|| StoreError::NotFound(impi.into()))?;
        let mut m = self.hss_request(cmd::REGISTRATION_TERMINATION, &s)?;
        let mut r = vec![Avp::enumerated(avp::REASON_CODE, reason.code())];
        if let Some(i) = info {
            r.push(Avp::utf8(avp::REASON_INFO, i));
        }
        m.add(Avp::grouped(avp::DEREGISTRATION_REASON, r));
        for i in &s.impus {
            m.add(Avp::utf8(avp::PUBLIC_IDENTITY, &i.uri));
        }
        Ok((m, s.scscf_host.unwrap_or_default()))
    }

    /// Applies a successful RTA: the user is no longer registered anywhere.
    pub fn rtr_done(&self, impi: &str) -> Result<(), StoreError> {
        self.store()
            .set_registration(impi, RegState::NotRegistered, None, None, None)
    }

    /// A PPR (TS 29.228 §6.2.2) pushing the current User-Data of `impi` to its S-CSCF.
    pub fn build_ppr(&self, impi: &str) -> Result<(Message, String), StoreError> {
        let st = self.store();
        let s = st
            .get(impi)?
            .ok_or_else(|| StoreError::NotFound(impi.into()))?;
        let xml = st.user_data(&s)?.to_xml();
        drop(st);
        let m = self
            .hss_request(cmd::PUSH_PROFILE, &s)?
            .with(Avp::octets(avp::USER_DATA, xml.into_bytes()));
        Ok((m, s.scscf_host.unwrap_or_default()))
    }
}
