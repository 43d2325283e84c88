//! The caller-ID pipeline: the one [`CallObserver`] every input reports to.
//!
//! For each new call it names the caller ([`identity`], [`numbers`], [`phonebook`],
//! [`reverse`]), decides ([`blocklist`]), assigns the call a small connection number,
//! writes the call log ([`calllog`]) and publishes [`CallEvent`]s on the [`EventBus`].
//!
//! # Time
//!
//! The state machine takes time as an argument: [`Pipeline::offer_at`],
//! [`Pipeline::progress_at`] and [`Pipeline::handle_timeout`] get `now: Instant`, and
//! [`Pipeline::poll_timeout`] says when `handle_timeout` next has work. The
//! [`CallObserver`] methods pass `Instant::now()`, and the shell ([`Pipeline::spawn_ticker`])
//! calls `handle_timeout` once a second: call lifetimes are counted in minutes, so a
//! second of slack costs nothing and saves a timer per call. Tests drive time by hand.
//!
//! # Every call ends
//!
//! Inputs miss things (a passive tap drops a packet, an ISC transaction dies with its
//! S-CSCF), so no call waits for a report that may never come: one not answered within
//! `max_ring_seconds` ends as missed, one answered but not ended within
//! `max_call_seconds` ends as answered (talk time up to then). A BYE without a seen answer
//! ends the call as answered with no talk time (a BYE needs a confirmed dialog, RFC 3261
//! §15), not as missed. Ended call ids are remembered for `dedup_seconds` so that a
//! retransmitted INVITE (or one seen twice on its way through a box) gets its first
//! verdict and no second Ring.
//!
//! # Reverse lookup never delays a call
//!
//! The verdict does not depend on the reverse lookup, so `offer` returns at once. With
//! `ring_delay_ms = 0` the Ring event goes out at once too; with a delay, a tokio task
//! publishes it when the lookup answers or the delay runs out, whichever is first (and a
//! progress report arriving earlier publishes it before its own event, so every call's
//! events stay in order: Ring, Connect, End). A later name goes into the call log and the
//! call's later events only.

use crate::blocklist::{self, BlocklistConfig, BlocklistError, BlocklistHandle};
use crate::calllog::{self, CallLog, CallLogConfig, CallLogError, CallRecord};
use crate::event::{
    CallEvent, CallEventKind, CallObserver, Callee, Caller, EventBus, NameSource, Offer, Outcome,
    Progress, RawCaller, Source, Verdict,
};
use crate::identity;
use crate::numbers::{self, NumberPlan, NumbersConfig};
use crate::phonebook::{self, Phonebook, PhonebookConfig, PhonebookError, Shared};
use crate::reverse::{self, ReverseConfig, ReverseError, ReverseLookup};
use opskit::metrics::{CounterFamily, Exposition};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

/// `[pipeline]`: call lifetimes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Seconds a call may ring without a final report before it ends as missed (default
    /// 180: longer than any network's no-answer timer, TS 24.628 uses 60-120 s).
    pub max_ring_seconds: u64,
    /// Seconds an answered call may last without a BYE before it ends (default 14400,
    /// 4 h: beyond it a missed BYE is likelier than a call).
    pub max_call_seconds: u64,
    /// Seconds an ended call's id is remembered to swallow retransmitted or twice-seen
    /// INVITEs (default 32: 64×T1, how long an INVITE is retransmitted, RFC 3261 §17.1.1.2).
    pub dedup_seconds: u64,
    /// Calls tracked at once (default 4096); beyond it the oldest ringing one is ended as
    /// missed, and at most 16 times as many ended call ids are remembered for dedup, so a
    /// flood of INVITEs cannot grow memory without bound.
    pub max_calls: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            max_ring_seconds: 180,
            max_call_seconds: 4 * 3600,
            dedup_seconds: 32,
            max_calls: 4096,
        }
    }
}

/// The commented TOML snippet of `[pipeline]`.
pub const EXAMPLE: &str = r#"[pipeline]
# A call without a final report ends as missed after this many seconds of ringing ...
max_ring_seconds = 180
# ... and an answered one without a BYE after this many seconds.
max_call_seconds = 14400
# An ended call's id is remembered this long, so a retransmitted INVITE does not ring again.
dedup_seconds = 32
# Calls tracked at once; beyond it the oldest ringing call is ended as missed.
max_calls = 4096
"#;

/// Every section the pipeline is built from, as the configuration file holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sections {
    /// `[numbers]`
    pub numbers: NumbersConfig,
    /// `[phonebook]`
    pub phonebook: PhonebookConfig,
    /// `[reverse]`
    pub reverse: ReverseConfig,
    /// `[blocklist]`
    pub blocklist: BlocklistConfig,
    /// `[calllog]`
    pub calllog: CallLogConfig,
    /// `[pipeline]`
    pub pipeline: PipelineConfig,
}

/// The commented TOML snippets of every section the pipeline reads, in one text.
pub fn examples() -> String {
    [
        numbers::EXAMPLE,
        phonebook::EXAMPLE,
        reverse::EXAMPLE,
        blocklist::EXAMPLE,
        calllog::EXAMPLE,
        EXAMPLE,
    ]
    .join("\n")
}

/// Why the pipeline cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The phonebook file is unreadable or broken.
    #[error("phonebook: {0}")]
    Phonebook(#[from] PhonebookError),
    /// A blocklist entry or its file is bad.
    #[error("blocklist: {0}")]
    Blocklist(#[from] BlocklistError),
    /// The reverse lookup configuration is bad.
    #[error("reverse lookup: {0}")]
    Reverse(#[from] ReverseError),
    /// The call log cannot be opened.
    #[error("{0}")]
    CallLog(#[from] CallLogError),
    /// A reverse lookup is configured but there is no tokio runtime to run it on.
    #[error("reverse lookup needs a tokio runtime: start the pipeline inside one")]
    NoRuntime,
}

/// The pipeline's Prometheus counters (rendered with [`opskit::metrics`]).
#[derive(Debug)]
pub struct PipelineMetrics {
    offers: CounterFamily<1>,
    duplicates: AtomicU64,
    blocked: CounterFamily<1>,
    events: CounterFamily<2>,
    reverse: CounterFamily<1>,
    expired: CounterFamily<1>,
    evicted: AtomicU64,
    active: AtomicU64,
}

impl Default for PipelineMetrics {
    fn default() -> Self {
        PipelineMetrics {
            offers: CounterFamily::new(["source"]),
            duplicates: AtomicU64::new(0),
            blocked: CounterFamily::new(["source"]),
            events: CounterFamily::new(["kind", "source"]),
            reverse: CounterFamily::new(["result"]),
            expired: CounterFamily::new(["state"]),
            evicted: AtomicU64::new(0),
            active: AtomicU64::new(0),
        }
    }
}

fn kind_label(k: &CallEventKind) -> &'static str {
    match k {
        CallEventKind::Ring => "ring",
        CallEventKind::Blocked => "blocked",
        CallEventKind::Connect => "connect",
        CallEventKind::End { .. } => "end",
    }
}

impl PipelineMetrics {
    /// Offers seen, per source (`source` label).
    pub fn offers(&self, source: Source) -> u64 {
        self.offers.get([source.as_str()])
    }

    /// Events published of a kind (`ring`, `blocked`, `connect`, `end`) and source.
    pub fn events(&self, kind: &'static str, source: Source) -> u64 {
        self.events.get([kind, source.as_str()])
    }

    /// The text exposition of the counters (`calllog_dropped` from the call log, if any).
    pub fn render(&self, calllog_dropped: u64) -> String {
        let mut e = Exposition::new();
        e.counters(
            "appserver_offers_total",
            "Calls offered by the inputs (repeats of a Call-ID not counted).",
            &self.offers,
        );
        e.counter(
            "appserver_offer_repeats_total",
            "Offers of a Call-ID already seen (retransmissions, a call sniffed twice).",
            self.duplicates.load(Ordering::Relaxed),
        );
        e.counters(
            "appserver_blocked_total",
            "Calls refused by the blocklist.",
            &self.blocked,
        );
        e.counters(
            "appserver_events_total",
            "Call events published on the bus, by kind and source.",
            &self.events,
        );
        e.counters(
            "appserver_reverse_lookups_total",
            "Reverse lookups by result (cached, named, no_name).",
            &self.reverse,
        );
        e.counters(
            "appserver_calls_expired_total",
            "Calls ended by max_ring_seconds (ringing) or max_call_seconds (answered).",
            &self.expired,
        );
        e.counter(
            "appserver_calls_evicted_total",
            "Ringing calls ended early because max_calls were tracked.",
            self.evicted.load(Ordering::Relaxed),
        );
        e.gauge(
            "appserver_calls_active",
            "Calls in progress.",
            self.active.load(Ordering::Relaxed),
        );
        e.counter(
            "appserver_calllog_dropped_total",
            "Call log rows dropped because the writer queue was full.",
            calllog_dropped,
        );
        e.finish()
    }
}

#[derive(Debug)]
struct Call {
    call_id: String,
    conn: u32,
    verdict: Verdict,
    caller: Caller,
    callee: Callee,
    source: Source,
    started: SystemTime,
    offered: Instant,
    answered_at: Option<SystemTime>,
    ring_sent: bool,
    /// When the Ring goes out even without a reverse answer.
    ring_due: Option<Instant>,
    deadline: Instant,
}

impl Call {
    /// Wall-clock time of `now`, counted from the offer (input times may be capture times).
    fn wall(&self, now: Instant) -> SystemTime {
        self.started + now.saturating_duration_since(self.offered)
    }
}

#[derive(Debug)]
struct Ended {
    verdict: Verdict,
    /// The final row, to add a late reverse-lookup name to.
    record: CallRecord,
}

#[derive(Debug, Default)]
struct State {
    calls: HashMap<String, Call>,
    ended: HashMap<String, Ended>,
    ended_order: VecDeque<(String, Instant)>,
    conns: BTreeSet<u32>,
}

impl State {
    fn free_conn(&self) -> u32 {
        // Smallest number not in use: the set is small, the walk short.
        let mut n = 0;
        for c in &self.conns {
            if *c != n {
                break;
            }
            n += 1;
        }
        n
    }
}

/// The caller-ID pipeline. Build with [`Pipeline::new`] or [`start`].
pub struct Pipeline {
    cfg: PipelineConfig,
    plan: NumberPlan,
    phonebook: Arc<Shared<Phonebook>>,
    blocklist: Arc<BlocklistHandle>,
    reverse: Option<Arc<ReverseLookup>>,
    calllog: Option<Arc<CallLog>>,
    bus: EventBus,
    metrics: PipelineMetrics,
    state: Mutex<State>,
    runtime: Option<tokio::runtime::Handle>,
    me: Weak<Pipeline>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("cfg", &self.cfg).finish()
    }
}

/// The parts a pipeline is built from (see [`start`] for building them from configuration).
pub struct Parts {
    /// The dialling plan.
    pub plan: NumberPlan,
    /// The phonebook (reloaded behind the pipeline's back).
    pub phonebook: Arc<Shared<Phonebook>>,
    /// The blocklist.
    pub blocklist: Arc<BlocklistHandle>,
    /// The reverse lookup, if configured.
    pub reverse: Option<ReverseLookup>,
    /// The call log, if any.
    pub calllog: Option<Arc<CallLog>>,
    /// Where events go.
    pub bus: EventBus,
}

/// Opens everything the sections configure and builds the pipeline. Call inside a tokio
/// runtime when `[reverse]` has a URL (lookups run on it). The lead's `main` then calls
/// [`Pipeline::spawn_ticker`] and hands the pipeline to the inputs as their
/// [`CallObserver`].
pub fn start(s: &Sections, bus: EventBus) -> Result<Arc<Pipeline>, StartError> {
    let plan = NumberPlan::new(s.numbers.clone());
    let parts = Parts {
        phonebook: phonebook::start(&s.phonebook, &plan)?,
        blocklist: blocklist::start(&s.blocklist, &plan)?,
        reverse: ReverseLookup::new(&s.reverse)?,
        calllog: Some(Arc::new(CallLog::open(&s.calllog)?)),
        plan,
        bus,
    };
    Pipeline::new(s.pipeline.clone(), parts)
}

impl Pipeline {
    /// A pipeline from its parts. Fails only when a reverse lookup is configured outside
    /// a tokio runtime.
    pub fn new(cfg: PipelineConfig, parts: Parts) -> Result<Arc<Pipeline>, StartError> {
        let runtime = tokio::runtime::Handle::try_current().ok();
        if parts.reverse.is_some() && runtime.is_none() {
            return Err(StartError::NoRuntime);
        }
        Ok(Arc::new_cyclic(|me| Pipeline {
            cfg,
            plan: parts.plan,
            phonebook: parts.phonebook,
            blocklist: parts.blocklist,
            reverse: parts.reverse.map(Arc::new),
            calllog: parts.calllog,
            bus: parts.bus,
            metrics: PipelineMetrics::default(),
            state: Mutex::new(State::default()),
            runtime,
            me: me.clone(),
        }))
    }

    /// The dialling plan.
    pub fn plan(&self) -> &NumberPlan {
        &self.plan
    }

    /// The phonebook in use now.
    pub fn phonebook(&self) -> Arc<Phonebook> {
        self.phonebook.get()
    }

    /// The blocklist (REST adds to it).
    pub fn blocklist(&self) -> &Arc<BlocklistHandle> {
        &self.blocklist
    }

    /// The call log, if any.
    pub fn calllog(&self) -> Option<&Arc<CallLog>> {
        self.calllog.as_ref()
    }

    /// The reverse lookup, if configured.
    pub fn reverse(&self) -> Option<&Arc<ReverseLookup>> {
        self.reverse.as_ref()
    }

    /// The counters.
    pub fn metrics(&self) -> &PipelineMetrics {
        &self.metrics
    }

    /// The Prometheus text of the counters.
    pub fn render_metrics(&self) -> String {
        self.metrics
            .render(self.calllog.as_ref().map_or(0, |l| l.dropped()))
    }

    /// Calls in progress.
    pub fn active_calls(&self) -> usize {
        self.lock().calls.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the pipeline would show and decide for a caller, without a call: identity,
    /// phonebook, cached reverse name, blocklist. (`appserver lookup` and `offer` share it.)
    pub fn decide(&self, raw: &RawCaller, now: Instant) -> (Caller, Verdict) {
        let mut caller = identity::identify(raw, &self.plan);
        if !caller.anonymous {
            if let Some(n) = caller.number.as_deref() {
                if let Some(name) = self.phonebook.get().lookup(n) {
                    caller.name = Some(name.to_string());
                    caller.name_source = NameSource::Phonebook;
                } else if let Some(Some(name)) =
                    self.reverse.as_ref().and_then(|r| r.cached(n, now))
                {
                    self.metrics.reverse.inc(["cached"]);
                    caller.name = Some(name);
                    caller.name_source = NameSource::Reverse;
                }
            }
        }
        let verdict = self.blocklist.check(&caller);
        (caller, verdict)
    }

    /// [`CallObserver::offer`] at a given instant.
    pub fn offer_at(&self, offer: Offer, now: Instant) -> Verdict {
        let mut st = self.lock();
        if let Some(c) = st.calls.get(&offer.call_id) {
            self.metrics.duplicates.fetch_add(1, Ordering::Relaxed);
            return c.verdict.clone();
        }
        if let Some(e) = st.ended.get(&offer.call_id) {
            self.metrics.duplicates.fetch_add(1, Ordering::Relaxed);
            return e.verdict.clone();
        }
        self.metrics.offers.inc([offer.source.as_str()]);
        if st.calls.len() >= self.cfg.max_calls.max(1) {
            self.evict_oldest(&mut st, now);
        }
        let (caller, verdict) = self.decide(&offer.caller, now);
        let callee = Callee {
            number: self.plan.from_uri_str(&offer.callee),
            uri: offer.callee,
        };
        let mut call = Call {
            call_id: offer.call_id.clone(),
            conn: st.free_conn(),
            verdict: verdict.clone(),
            caller,
            callee,
            source: offer.source,
            started: offer.at,
            offered: now,
            answered_at: None,
            ring_sent: false,
            ring_due: None,
            deadline: now + Duration::from_secs(self.cfg.max_ring_seconds),
        };
        if let Verdict::Block { rule } = &verdict {
            self.metrics.blocked.inc([offer.source.as_str()]);
            self.publish(&call, CallEventKind::Blocked, offer.at);
            let mut rec = record(&call);
            rec.outcome = Some(Outcome::Blocked.as_str().into());
            rec.ended_at = Some(calllog::unix_ms(offer.at));
            rec.block_rule = Some(rule.clone());
            self.log(rec.clone());
            self.remember(&mut st, offer.call_id, verdict.clone(), rec, now);
            return verdict;
        }
        st.conns.insert(call.conn);
        let lookup = self.reverse_wanted(&call.caller, now);
        match (&lookup, &self.reverse) {
            (Some(_), Some(r)) if !r.ring_delay().is_zero() => {
                call.ring_due = Some(now + r.ring_delay());
            }
            _ => {
                call.ring_sent = true;
                self.publish(&call, CallEventKind::Ring, offer.at);
            }
        }
        self.log(record(&call));
        if let Some(number) = lookup {
            self.spawn_lookup(offer.call_id.clone(), number);
        }
        st.calls.insert(offer.call_id, call);
        self.metrics
            .active
            .store(st.calls.len() as u64, Ordering::Relaxed);
        verdict
    }

    /// The number to look up for this caller, if a lookup is configured and useful.
    fn reverse_wanted(&self, c: &Caller, now: Instant) -> Option<String> {
        let r = self.reverse.as_ref()?;
        if c.anonymous || matches!(c.name_source, NameSource::Phonebook | NameSource::Reverse) {
            return None;
        }
        let n = c.number.as_deref()?;
        if !ReverseLookup::wants(n) || r.cached(n, now).is_some() {
            return None;
        }
        Some(n.to_string())
    }

    fn spawn_lookup(&self, call_id: String, number: String) {
        let (Some(rt), Some(r)) = (&self.runtime, &self.reverse) else {
            return;
        };
        let (r, me) = (r.clone(), self.me.clone());
        rt.spawn(async move {
            let delay = r.ring_delay();
            let fut = r.lookup(&number);
            tokio::pin!(fut);
            if !delay.is_zero() {
                if let Ok(name) = tokio::time::timeout(delay, &mut fut).await {
                    if let Some(p) = me.upgrade() {
                        p.reverse_answer(&call_id, name);
                    }
                    return;
                }
                if let Some(p) = me.upgrade() {
                    p.release_ring(&call_id);
                }
            }
            let name = fut.await;
            if let Some(p) = me.upgrade() {
                p.reverse_answer(&call_id, name);
            }
        });
    }

    /// A reverse lookup for a call answered (`None`: no name). A ringing call not yet
    /// announced gets its Ring now; otherwise the name goes into the call log and the
    /// call's later events.
    pub fn reverse_answer(&self, call_id: &str, name: Option<String>) {
        self.metrics
            .reverse
            .inc([if name.is_some() { "named" } else { "no_name" }]);
        let mut st = self.lock();
        if let Some(call) = st.calls.get_mut(call_id) {
            if let Some(n) = name {
                call.caller.name = Some(n);
                call.caller.name_source = NameSource::Reverse;
            }
            if !call.ring_sent {
                call.ring_sent = true;
                call.ring_due = None;
                self.publish(call, CallEventKind::Ring, call.started);
            }
            self.log(record(call));
        } else if let (Some(e), Some(n)) = (st.ended.get_mut(call_id), name) {
            // The call ended before the directory answered: still worth a name in the log.
            if e.verdict == Verdict::Ring {
                e.record.caller_name = Some(n);
                e.record.name_source = "reverse".into();
                self.log(e.record.clone());
            }
        }
    }

    /// The Ring of a call whose reverse lookup is late goes out with what is known (the
    /// lookup task calls this when `ring_delay` has run out).
    fn release_ring(&self, call_id: &str) {
        let mut st = self.lock();
        if let Some(call) = st.calls.get_mut(call_id) {
            if !call.ring_sent {
                call.ring_sent = true;
                call.ring_due = None;
                self.publish(call, CallEventKind::Ring, call.started);
            }
        }
    }

    /// [`CallObserver::progress`] at a given instant.
    pub fn progress_at(&self, call_id: &str, progress: Progress, at: SystemTime, now: Instant) {
        let mut st = self.lock();
        let Some(call) = st.calls.get_mut(call_id) else {
            return;
        };
        if !call.ring_sent {
            call.ring_sent = true;
            call.ring_due = None;
            self.publish(call, CallEventKind::Ring, call.started);
        }
        let answered = call.answered_at;
        let end = match (progress, answered) {
            (Progress::Answered, None) => {
                call.answered_at = Some(at);
                call.deadline = now + Duration::from_secs(self.cfg.max_call_seconds);
                self.publish(call, CallEventKind::Connect, at);
                self.log(record(call));
                None
            }
            (Progress::Ended, Some(a)) => Some((Outcome::Answered, elapsed(a, at))),
            (Progress::Ended, None) => Some((Outcome::Answered, Duration::ZERO)),
            (Progress::Cancelled, None) | (Progress::Failed(487), None) => {
                Some((Outcome::Cancelled, Duration::ZERO))
            }
            (Progress::AnsweredElsewhere, None) => {
                Some((Outcome::AnsweredElsewhere, Duration::ZERO))
            }
            (Progress::Failed(_), None) => Some((Outcome::Missed, Duration::ZERO)),
            // A second 2xx (forking) or a CANCEL/failure after the answer changes nothing
            // (RFC 3261 §9.1: CANCEL has no effect once a final response went out).
            (_, Some(_)) => None,
        };
        if let Some((outcome, talk)) = end {
            self.end(&mut st, call_id, outcome, talk, at, now);
        }
    }

    fn end(
        &self,
        st: &mut State,
        call_id: &str,
        outcome: Outcome,
        talk: Duration,
        at: SystemTime,
        now: Instant,
    ) {
        let Some(call) = st.calls.remove(call_id) else {
            return;
        };
        st.conns.remove(&call.conn);
        self.publish(&call, CallEventKind::End { outcome, talk }, at);
        let mut rec = record(&call);
        rec.outcome = Some(outcome.as_str().into());
        rec.ended_at = Some(calllog::unix_ms(at));
        rec.talk_seconds = talk.as_secs() as i64;
        self.log(rec.clone());
        self.remember(st, call_id.to_string(), call.verdict.clone(), rec, now);
        self.metrics
            .active
            .store(st.calls.len() as u64, Ordering::Relaxed);
    }

    fn remember(
        &self,
        st: &mut State,
        call_id: String,
        verdict: Verdict,
        record: CallRecord,
        now: Instant,
    ) {
        // A flood of distinct Call-IDs must not grow memory for a whole dedup window:
        // beyond 16 × max_calls the oldest ids are forgotten early.
        while st.ended_order.len() >= self.cfg.max_calls.max(1) * 16 {
            if let Some((id, _)) = st.ended_order.pop_front() {
                st.ended.remove(&id);
            }
        }
        st.ended_order.push_back((call_id.clone(), now));
        st.ended.insert(call_id, Ended { verdict, record });
    }

    fn evict_oldest(&self, st: &mut State, now: Instant) {
        let oldest = st
            .calls
            .iter()
            .filter(|(_, c)| c.answered_at.is_none())
            .min_by_key(|(_, c)| c.offered)
            .map(|(k, c)| (k.clone(), c.wall(now)));
        if let Some((id, at)) = oldest {
            tracing::warn!(call_id = %id, "max_calls reached, ending the oldest ringing call");
            self.metrics.evicted.fetch_add(1, Ordering::Relaxed);
            self.end(st, &id, Outcome::Missed, Duration::ZERO, at, now);
        }
    }

    /// When [`Pipeline::handle_timeout`] next has work, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let st = self.lock();
        let dedup = Duration::from_secs(self.cfg.dedup_seconds);
        st.calls
            .values()
            .flat_map(|c| [Some(c.deadline), c.ring_due])
            .flatten()
            .chain(st.ended_order.front().map(|(_, t)| *t + dedup))
            .min()
    }

    /// Ends calls past their lifetime, sends Rings whose reverse lookup is overdue and
    /// forgets ended call ids past the dedup window.
    pub fn handle_timeout(&self, now: Instant) {
        let mut st = self.lock();
        let dedup = Duration::from_secs(self.cfg.dedup_seconds);
        while st
            .ended_order
            .front()
            .is_some_and(|(_, t)| now.saturating_duration_since(*t) >= dedup)
        {
            if let Some((id, _)) = st.ended_order.pop_front() {
                st.ended.remove(&id);
            }
        }
        let mut due = Vec::new();
        for (id, c) in st.calls.iter_mut() {
            if !c.ring_sent && c.ring_due.is_some_and(|d| d <= now) {
                c.ring_sent = true;
                c.ring_due = None;
                self.publish(c, CallEventKind::Ring, c.started);
            }
            if c.deadline <= now {
                due.push(id.clone());
            }
        }
        for id in due {
            let Some(c) = st.calls.get(&id) else { continue };
            let at = c.wall(now);
            let (outcome, talk, state) = match c.answered_at {
                Some(a) => (Outcome::Answered, elapsed(a, at), "answered"),
                None => (Outcome::Missed, Duration::ZERO, "ringing"),
            };
            self.metrics.expired.inc([state]);
            self.end(&mut st, &id, outcome, talk, at, now);
        }
    }

    /// Runs [`Pipeline::handle_timeout`] every second on the current tokio runtime until
    /// the pipeline is dropped.
    pub fn spawn_ticker(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(p) = me.upgrade() else { break };
                p.handle_timeout(Instant::now());
            }
        })
    }

    /// Serves this pipeline's counters on `GET /metrics` at `addr`.
    pub async fn serve_metrics(
        self: &Arc<Self>,
        addr: std::net::SocketAddr,
    ) -> Result<opskit::http::MetricsServer, opskit::http::ServeError> {
        let me = Arc::downgrade(self);
        opskit::http::serve_metrics(addr, move || {
            me.upgrade().map(|p| p.render_metrics()).unwrap_or_default()
        })
        .await
    }

    fn publish(&self, call: &Call, kind: CallEventKind, at: SystemTime) {
        self.metrics
            .events
            .inc([kind_label(&kind), call.source.as_str()]);
        let ev = CallEvent {
            conn: call.conn,
            call_id: call.call_id.clone(),
            kind,
            at,
            started: call.started,
            caller: call.caller.clone(),
            callee: call.callee.clone(),
            source: call.source,
        };
        // No subscriber (no sink configured) is not an error: the call log still has it.
        let _ = self.bus.send(Arc::new(ev));
    }

    fn log(&self, r: CallRecord) {
        if let Some(l) = &self.calllog {
            l.record(r);
        }
    }
}

fn elapsed(from: SystemTime, to: SystemTime) -> Duration {
    to.duration_since(from).unwrap_or(Duration::ZERO)
}

fn name_source_str(s: NameSource) -> &'static str {
    match s {
        NameSource::Phonebook => "phonebook",
        NameSource::Reverse => "reverse",
        NameSource::Display => "display",
        NameSource::Anonymous => "anonymous",
        NameSource::None => "none",
    }
}

fn record(c: &Call) -> CallRecord {
    CallRecord {
        call_id: c.call_id.clone(),
        started: calllog::unix_ms(c.started),
        caller_number: c.caller.number.clone(),
        caller_name: c.caller.name.clone(),
        name_source: name_source_str(c.caller.name_source).into(),
        anonymous: c.caller.anonymous,
        callee: c.callee.uri.clone(),
        callee_number: c.callee.number.clone(),
        source: c.source.as_str().into(),
        outcome: None,
        answered_at: c.answered_at.map(calllog::unix_ms),
        ended_at: None,
        talk_seconds: 0,
        block_rule: match &c.verdict {
            Verdict::Block { rule } => Some(rule.clone()),
            Verdict::Ring => None,
        },
    }
}

impl CallObserver for Pipeline {
    fn offer(&self, offer: Offer) -> Verdict {
        self.offer_at(offer, Instant::now())
    }

    fn progress(&self, call_id: &str, progress: Progress, at: SystemTime) {
        self.progress_at(call_id, progress, at, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phonebook::parse_csv;
    use tokio::sync::broadcast::error::TryRecvError;
    use tokio::sync::broadcast::Receiver;

    fn pipeline(cfg: PipelineConfig, block: &[&str]) -> (Arc<Pipeline>, Receiver<Arc<CallEvent>>) {
        let plan = NumberPlan::default();
        let (bus, rx) = tokio::sync::broadcast::channel(64);
        let parts = Parts {
            phonebook: Shared::new(parse_csv("0301,Alice\n", &plan).unwrap()),
            blocklist: blocklist::start(
                &BlocklistConfig {
                    entries: block.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                },
                &plan,
            )
            .unwrap(),
            reverse: None,
            calllog: None,
            plan,
            bus,
        };
        (Pipeline::new(cfg, parts).unwrap(), rx)
    }

    fn offer(id: &str, number: &str) -> Offer {
        Offer {
            call_id: id.into(),
            caller: RawCaller::Plain {
                number: Some(number.into()),
                name: None,
                anonymous: false,
            },
            callee: "tel:+49309".into(),
            source: Source::Isc,
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
        }
    }

    fn kinds(rx: &mut Receiver<Arc<CallEvent>>) -> Vec<(u32, CallEventKind)> {
        let mut out = Vec::new();
        loop {
            match rx.try_recv() {
                Ok(e) => out.push((e.conn, e.kind)),
                Err(TryRecvError::Empty) => return out,
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn conns_are_the_smallest_free_numbers() {
        let (p, mut rx) = pipeline(PipelineConfig::default(), &[]);
        let t = Instant::now();
        for id in ["a", "b", "c"] {
            p.offer_at(offer(id, "0302"), t);
        }
        p.progress_at("b", Progress::Failed(486), SystemTime::now(), t);
        p.offer_at(offer("d", "0302"), t);
        let ev = kinds(&mut rx);
        assert_eq!(
            ev.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            [0, 1, 2, 1, 1],
            "{ev:?}"
        );
        assert_eq!(p.active_calls(), 3);
    }

    #[test]
    fn repeats_get_the_first_verdict_and_no_event_until_the_dedup_window_ends() {
        let (p, mut rx) = pipeline(PipelineConfig::default(), &["0303"]);
        let t = Instant::now();
        assert_eq!(p.offer_at(offer("a", "0302"), t), Verdict::Ring);
        assert_eq!(p.offer_at(offer("a", "0302"), t), Verdict::Ring);
        let blocked = Verdict::Block {
            rule: "0303".into(),
        };
        assert_eq!(p.offer_at(offer("b", "0303"), t), blocked);
        assert_eq!(p.offer_at(offer("b", "0303"), t), blocked);
        p.progress_at("a", Progress::Cancelled, SystemTime::now(), t);
        assert_eq!(
            p.offer_at(offer("a", "0302"), t + Duration::from_secs(5)),
            Verdict::Ring
        );
        assert_eq!(kinds(&mut rx).len(), 3, "ring, blocked, end");
        p.handle_timeout(t + Duration::from_secs(40));
        p.offer_at(offer("a", "0302"), t + Duration::from_secs(40));
        assert_eq!(
            kinds(&mut rx),
            [(0, CallEventKind::Ring)],
            "a new call after the window"
        );
        assert_eq!(p.metrics().offers(Source::Isc), 3);
    }

    #[test]
    fn every_call_ends_by_its_lifetime() {
        let (p, mut rx) = pipeline(PipelineConfig::default(), &[]);
        let t = Instant::now();
        p.offer_at(offer("ringing", "0302"), t);
        p.offer_at(offer("talking", "0302"), t);
        let answered = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_010);
        p.progress_at(
            "talking",
            Progress::Answered,
            answered,
            t + Duration::from_secs(10),
        );
        kinds(&mut rx);
        assert_eq!(p.poll_timeout(), Some(t + Duration::from_secs(180)));
        p.handle_timeout(t + Duration::from_secs(179));
        assert!(kinds(&mut rx).is_empty());
        p.handle_timeout(t + Duration::from_secs(180));
        assert_eq!(
            kinds(&mut rx),
            [(
                0,
                CallEventKind::End {
                    outcome: Outcome::Missed,
                    talk: Duration::ZERO
                }
            )]
        );
        p.handle_timeout(t + Duration::from_secs(10 + 4 * 3600));
        assert_eq!(
            kinds(&mut rx),
            [(
                1,
                CallEventKind::End {
                    outcome: Outcome::Answered,
                    talk: Duration::from_secs(4 * 3600)
                }
            )]
        );
        assert_eq!(p.active_calls(), 0);
        assert!(p
            .render_metrics()
            .contains("appserver_calls_expired_total{state=\"ringing\"} 1"));
    }

    #[test]
    fn odd_report_orders_map_to_honest_outcomes() {
        let (p, mut rx) = pipeline(PipelineConfig::default(), &[]);
        let t = Instant::now();
        let at = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let end = |outcome, talk| CallEventKind::End {
            outcome,
            talk: Duration::from_secs(talk),
        };
        // A BYE whose 200 the tap missed: answered, no talk time known.
        p.offer_at(offer("bye", "0302"), t);
        p.progress_at("bye", Progress::Ended, at(5), t);
        // 487 reported as a failure is the caller's cancel.
        p.offer_at(offer("487", "0302"), t);
        p.progress_at("487", Progress::Failed(487), at(5), t);
        // A CANCEL or failure after the answer changes nothing; the BYE ends it.
        p.offer_at(offer("late", "0302"), t);
        p.progress_at("late", Progress::Answered, at(10), t);
        p.progress_at("late", Progress::Cancelled, at(11), t);
        p.progress_at("late", Progress::Failed(486), at(12), t);
        p.progress_at("late", Progress::Answered, at(13), t);
        p.progress_at("late", Progress::Ended, at(70), t);
        // Unknown calls are ignored.
        p.progress_at("nobody", Progress::Ended, at(70), t);
        assert_eq!(
            kinds(&mut rx),
            [
                (0, CallEventKind::Ring),
                (0, end(Outcome::Answered, 0)),
                (0, CallEventKind::Ring),
                (0, end(Outcome::Cancelled, 0)),
                (0, CallEventKind::Ring),
                (0, CallEventKind::Connect),
                (0, end(Outcome::Answered, 60)),
            ]
        );
    }

    #[test]
    fn a_flood_is_bounded_by_max_calls() {
        let cfg = PipelineConfig {
            max_calls: 2,
            ..Default::default()
        };
        let (p, mut rx) = pipeline(cfg, &[]);
        let t = Instant::now();
        for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
            p.offer_at(offer(id, "0302"), t + Duration::from_secs(i as u64));
        }
        assert_eq!(p.active_calls(), 2);
        let ev = kinds(&mut rx);
        assert!(
            ev.contains(&(
                0,
                CallEventKind::End {
                    outcome: Outcome::Missed,
                    talk: Duration::ZERO
                }
            )),
            "{ev:?}"
        );
    }

    #[test]
    fn remembered_ids_are_bounded_too() {
        let cfg = PipelineConfig {
            max_calls: 1,
            ..Default::default()
        };
        let (p, _rx) = pipeline(cfg, &["0303"]);
        let t = Instant::now();
        for i in 0..20 {
            p.offer_at(offer(&format!("x{i}"), "0303"), t);
        }
        assert_eq!(p.lock().ended.len(), 16);
        p.offer_at(offer("x0", "0303"), t);
        p.offer_at(offer("x19", "0303"), t);
        assert_eq!(p.metrics().offers(Source::Isc), 21, "x0 forgotten, x19 not");
    }

    #[test]
    fn phonebook_names_and_lookup_preview() {
        let (p, _rx) = pipeline(PipelineConfig::default(), &["anonymous"]);
        let (c, v) = p.decide(
            &RawCaller::Plain {
                number: Some("0301".into()),
                name: Some("X".into()),
                anonymous: false,
            },
            Instant::now(),
        );
        assert_eq!(
            (c.name.as_deref(), c.name_source, v),
            (Some("Alice"), NameSource::Phonebook, Verdict::Ring)
        );
        let (c, v) = p.decide(
            &RawCaller::Plain {
                number: None,
                name: None,
                anonymous: true,
            },
            Instant::now(),
        );
        assert!(c.anonymous);
        assert_eq!(
            v,
            Verdict::Block {
                rule: "anonymous".into()
            }
        );
        assert!(examples().contains("[calllog]"));
    }
}
