//! Zone transfers in: the zones a service is a secondary for, taken from their primaries
//! (RFC 1034 section 4.3.5, RFC 5936, RFC 1996).
//!
//! [`fetch`] asks a primary, over one TCP connection, for the zone's SOA and, when its
//! serial is newer than the copy held (RFC 1982 arithmetic) or there is none, for the
//! changes since the copy by IXFR (RFC 1995) or the whole zone by AXFR; with the
//! primary's TSIG key each answer must verify, a transfer's later messages chained to the
//! ones before (RFC 8945 section 5.3.1). A primary that answers the IXFR with an error
//! code is asked the AXFR on the same connection; one that answers it with the whole
//! zone (as RFC 1995 section 4 allows) gives the whole zone. [`super::ixfr::make`]
//! makes the changes of an IXFR into the zone. [`zone_text`]
//! writes what came as a zone file, which the service loads as it loads any other, with
//! the same checks: a primary's zone that breaks them is refused as a file would be. A
//! NOTIFY for the zone from one of its primaries ([`Secondary::is_primary`]) wakes the
//! task that keeps it ([`listen`], [`wake`]); that task and the SOA's refresh, retry and
//! expire timers are the gateway's.
//!
//! Each fetch is a Deferred labelled [`LABEL`] whose named steps say where it is
//! (connecting, the SOA query, the transfer) and wait on its connection: a primary that
//! accepts and never answers shows in the inspector as a chain stuck at that step.
//! Every wait is bounded ([`SOA_TIMEOUT`], [`MESSAGE_TIMEOUT`], [`TRANSFER_DEADLINE`]),
//! and so is what a primary can make the service hold (`max_records`, [`MAX_BYTES`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use weft::Reactor;
use weft::Transport;
use weft::defer::{Deferred, Failure, Resolver, StepDetail, Steps, WaitsOn};
use weft::framing::{Int16StringReceiver, StringHandler, send_int16_string};
use weft::observe::CloseReason;
use weft::time::DelayedCall;

use super::ixfr::{Change, Changes};
pub use super::zone_text::zone_text;
use super::{NotifyPeer, serial_at_least, serial_newer};
use crate::tsig::{self, TsigKey};

/// The inspector's label of a fetch's Deferred.
pub const LABEL: &str = "dns zone transfer in";
/// Its named steps.
const STEP_CONNECT: &str = "connect to primary";
const STEP_SOA: &str = "SOA query";
const STEP_AXFR: &str = "AXFR";
const STEP_IXFR: &str = "IXFR";

/// How long a primary may take to accept the connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a primary may take to answer the SOA query.
pub const SOA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a transfer may go without a message from the primary.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// The default of a secondary zone's `max_records`: the records one transfer brings at
/// most (a primary that sends more is cut off, and the copy held stays in service). A
/// record takes 200 to 800 bytes while it is held.
pub const MAX_RECORDS: usize = 1_000_000;
/// Messages without records a transfer may send in a row.
const EMPTY_IN_A_ROW: usize = 8;
/// The bytes of messages one transfer brings at most (a record is held as a few times
/// its size on the wire).
pub const MAX_BYTES: usize = 512 << 20;
/// How long one transfer may take, however steadily the primary sends.
pub const TRANSFER_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// A zone this service is a secondary for (`secondary` of a dns service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secondary {
    /// The zone's origin.
    pub origin: Name,
    /// Where the copy is kept: written after each transfer, loaded at start.
    pub file: PathBuf,
    /// Where it is transferred from, in the order tried, each with the TSIG key the
    /// transfer is signed with, if it names one (`"192.0.2.1 xfr.example."`).
    pub primaries: Vec<NotifyPeer>,
    /// The records a transfer may bring ([`MAX_RECORDS`] by default).
    pub max_records: usize,
    /// Whether a copy held is brought up to date by IXFR, the changes since it (the
    /// default, `request_ixfr`), rather than by AXFR, the whole zone.
    pub request_ixfr: bool,
}

impl Secondary {
    /// Whether `from` is the address of one of its primaries, whatever key it signs with.
    pub(crate) fn primaries_at(&self, from: IpAddr) -> bool {
        self.primaries
            .iter()
            .any(|p| p.addr.ip().to_canonical() == from.to_canonical())
    }

    /// Whether a NOTIFY from `from`, signed with the key named `key` (verified) or not,
    /// comes from one of the zone's primaries: its address (an IPv4 one as itself or
    /// mapped into IPv6), and its key when it names one (NSD's `allow-notify` with the
    /// primary's key).
    pub fn is_primary(&self, from: IpAddr, key: Option<&Name>) -> bool {
        self.primaries.iter().any(|p| {
            p.addr.ip().to_canonical() == from.to_canonical()
                && p.key.as_ref().is_none_or(|k| Some(k.name()) == key)
        })
    }
}

/// What a primary had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// Its serial, which is not newer than the copy held: nothing was transferred.
    Current(u32),
    /// The whole zone, its SOA first (and not again at the end).
    Zone(Vec<Record>),
    /// The changes from the copy held to the primary's version, by IXFR:
    /// [`super::ixfr::make`] makes the zone of them.
    Changes(Box<Changes>),
}

/// What a NOTIFY sets and the task keeping the zone waits on: one permit kept when the
/// task is busy, so a NOTIFY during a check leaves one more check.
pub type Wake = tokio::sync::Notify;

/// Something each task keeping a secondary zone shares with the rest of the process (a
/// server on any reactor, the dashboard), by service and origin: process-wide, held
/// weakly, so an entry goes with the task that put it there.
pub struct ByZone<T>(LazyLock<Mutex<ZoneTable<T>>>);

/// The entries of a [`ByZone`].
type ZoneTable<T> = HashMap<(String, LowerName), Weak<T>>;

impl<T> ByZone<T> {
    /// An empty table, for a `static`.
    pub const fn new() -> Self {
        Self(LazyLock::new(Mutex::default))
    }

    /// Puts `value` in for zone `origin` of `service` (over what was there), for as long
    /// as the returned handle lives.
    pub fn insert(&self, service: &str, origin: &Name, value: T) -> Arc<T> {
        let value = Arc::new(value);
        if let Ok(mut table) = self.0.lock() {
            table.retain(|_, v| v.strong_count() > 0);
            let key = (service.to_owned(), LowerName::new(origin));
            table.insert(key, Arc::downgrade(&value));
        }
        value
    }

    /// What zone `origin` of `service` has in, if its task still runs.
    pub fn get(&self, service: &str, origin: &Name) -> Option<Arc<T>> {
        let key = (service.to_owned(), LowerName::new(origin));
        self.0.lock().ok()?.get(&key)?.upgrade()
    }
}

impl<T> Default for ByZone<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// The tasks keeping secondary zones, for a NOTIFY to wake.
static WAKES: ByZone<Wake> = ByZone::new();

/// The wake of the task keeping zone `origin` of `service`: a NOTIFY for it from one of
/// its primaries sets it ([`wake`]) until the returned handle is dropped.
pub fn listen(service: &str, origin: &Name) -> Arc<Wake> {
    WAKES.insert(service, origin, Wake::default())
}

/// Wakes the task keeping zone `origin` of `service`; whether one listens.
pub fn wake(service: &str, origin: &Name) -> bool {
    let wake = WAKES.get(service, origin);
    wake.inspect(|w| w.notify_one()).is_some()
}

/// Asks `primary` for `zone` on behalf of `service` (whose connections it is reported
/// under): its serial, and when that is newer than `have` (the SOA record of the copy
/// held, if any), the changes since it by IXFR when `ixfr` and the zone's
/// `request_ixfr` say so (a primary may give the whole zone instead), or else the whole
/// zone by AXFR.
#[track_caller]
pub fn fetch(
    service: &str,
    zone: &Secondary,
    primary: &NotifyPeer,
    have: Option<&Record>,
    ixfr: bool,
) -> Fetching {
    let (resolver, fetched) = Deferred::<Fetched>::labeled(LABEL);
    let steps = fetched.steps();
    let detail = StepDetail::new(&primary.to_string());
    steps.step_with(STEP_CONNECT, None, Some(&detail));
    let mut state = State::new(&zone.origin, primary.key.clone(), have, steps, detail);
    state.resolver = Some(resolver);
    state.max_records = zone.max_records;
    state.ixfr = ixfr && zone.request_ixfr;
    let state = Rc::new(RefCell::new(state));
    // An endpoint string escapes the colons of an IPv6 address.
    let endpoint = format!(
        "tcp:{}:{}:timeout={}",
        primary.addr.ip().to_string().replace(':', "\\:"),
        primary.addr.port(),
        CONNECT_TIMEOUT.as_secs_f64()
    );
    let protocol = Int16StringReceiver::new(Fetch(state.clone()));
    let reactor = Reactor::current();
    let service = service.to_owned();
    let connecting = state.clone();
    reactor.clone().spawn(async move {
        if let Err(e) = reactor.connect_as(&service, &endpoint, protocol).await {
            // The primary is named by whoever reports the failure: the reason alone
            // (`connection refused`), not the endpoint string with its timeout again.
            let e = e.to_string();
            let why = e.strip_prefix(&format!("connecting to {endpoint}: "));
            finish(
                &connecting,
                Err(format!("cannot connect: {}", why.unwrap_or(&e))),
            );
        }
    });
    Fetching {
        fetched: Some(fetched),
        state,
    }
}

/// A fetch under way: awaiting it gives what the primary had; dropping it first cancels
/// the fetch's Deferred and closes its connection (the task keeping the zone was
/// stopped).
pub struct Fetching {
    /// `None` once it gave its result.
    fetched: Option<Deferred<Fetched>>,
    state: Rc<RefCell<State>>,
}

impl Fetching {
    /// Whether it was asking an IXFR when it ended: one that failed so (the primary's
    /// answer misread, cut, or never finished) is asked again whole, by AXFR (RFC 1995
    /// section 4).
    pub fn failed_in_ixfr(&self) -> bool {
        self.state.borrow().asked == Some(RecordType::IXFR)
    }
}

impl std::future::Future for Fetching {
    type Output = Result<Fetched, Failure>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let Some(fetched) = self.fetched.as_mut() else {
            return std::task::Poll::Pending;
        };
        let result = std::pin::Pin::new(fetched).poll(cx);
        if result.is_ready() {
            self.fetched = None;
        }
        result
    }
}

impl Drop for Fetching {
    fn drop(&mut self) {
        let Some(fetched) = self.fetched.take() else {
            return;
        };
        // Cancelled (the inspector shows it so), its CancelledError dealt with here, and
        // its resolver gone with the connection.
        let resolver = self.state.borrow_mut().resolver.take();
        fetched.cancel();
        fetched.end_handled();
        drop(resolver);
        finish(&self.state, Err("stopped".into()));
    }
}

/// One fetch, shared by its protocol, its timer and the task that connects.
struct State {
    origin: Name,
    key: Option<TsigKey>,
    /// The SOA record of the copy held.
    have: Option<Record>,
    /// Whether the copy held is brought up to date by IXFR.
    ixfr: bool,
    /// Fires the fetch's Deferred; `None` once it has.
    resolver: Option<Resolver<Fetched>>,
    steps: Steps,
    /// The primary, as its steps name it.
    detail: StepDetail,
    /// The primary's serial, from its answer to the SOA query: the transfer was asked.
    serial: Option<u32>,
    /// The transfer asked (AXFR or IXFR) once it was.
    asked: Option<RecordType>,
    /// Whether the answer to an IXFR is read as changes (its second record was the SOA
    /// of the copy held), with the step its records go to (deleted, then added), and
    /// whether its second record was seen.
    changes: Option<Vec<Change>>,
    adding: bool,
    shaped: bool,
    /// The records the transfer may bring, and has brought after its first.
    max_records: usize,
    count: usize,
    /// Messages without records in a row.
    empty: usize,
    /// The bytes of the transfer's messages so far, and when it was asked.
    bytes: usize,
    began: std::time::Instant,
    /// The id of the query out.
    id: u16,
    /// Checks the answers' signatures, when the primary has a key.
    verifier: Option<tsig::Verifier>,
    records: Vec<Record>,
    /// What ends a wait for the primary.
    timer: Option<DelayedCall>,
    transport: Option<Transport>,
}

/// What a message from the primary leads to.
enum Next {
    /// More of the transfer to come.
    Wait,
    /// This query to send.
    Ask(Vec<u8>),
    Done(Result<Fetched, String>),
}

impl State {
    /// A fetch of `origin` from a primary with `key`, the copy held with the SOA `have`,
    /// its chain's `steps` naming the primary as `detail`; not connected yet. It asks
    /// AXFR unless `ixfr` is set.
    fn new(
        origin: &Name,
        key: Option<TsigKey>,
        have: Option<&Record>,
        steps: Steps,
        detail: StepDetail,
    ) -> Self {
        Self {
            origin: origin.clone(),
            key,
            have: have.cloned(),
            ixfr: false,
            resolver: None,
            steps,
            detail,
            serial: None,
            asked: None,
            changes: None,
            adding: false,
            shaped: false,
            max_records: MAX_RECORDS,
            count: 0,
            empty: 0,
            bytes: 0,
            began: std::time::Instant::now(),
            id: 0,
            verifier: None,
            records: Vec::new(),
            timer: None,
            transport: None,
        }
    }

    /// The serial of the copy held.
    fn have_serial(&self) -> Option<u32> {
        match self.have.as_ref().map(|r| &r.data) {
            Some(RData::SOA(soa)) => Some(soa.serial),
            _ => None,
        }
    }

    /// The query for the zone's `qtype`, signed with the primary's key if it has one; an
    /// IXFR's with the SOA of the copy held in its authority section (RFC 1995 section
    /// 3).
    fn ask(&mut self, qtype: RecordType) -> Vec<u8> {
        self.id = crate::random::u16();
        let mut message = Message::new(self.id, MessageType::Query, OpCode::Query);
        let mut question = Query::query(self.origin.clone(), qtype);
        question.set_query_class(DNSClass::IN);
        message.queries.push(question);
        if qtype == RecordType::IXFR {
            message.authorities.extend(self.have.clone());
        }
        let mut packet = crate::wire::encode(&message, None);
        self.verifier = self.key.as_ref().map(|key| {
            let mac = tsig::sign_query(key, &mut packet);
            tsig::Verifier::new(key.clone(), mac)
        });
        packet
    }

    /// Takes `data`, the next message from the primary.
    fn take(&mut self, data: &[u8]) -> Next {
        let message = match Message::from_vec(data) {
            Ok(m) => m,
            Err(e) => return Next::Done(Err(format!("a message that does not decode: {e}"))),
        };
        let header = &message.metadata;
        if header.id != self.id
            || header.message_type != MessageType::Response
            || header.op_code != OpCode::Query
        {
            let why = "a message that does not answer the query (its id, QR or opcode)";
            return Next::Done(Err(why.into()));
        }
        let rcode = header.response_code;
        let what = match self.asked {
            Some(RecordType::IXFR) => "IXFR",
            Some(_) => "AXFR",
            None => "SOA query",
        };
        // Whether this message is signed and verified (not merely covered by the next
        // signed one).
        let signed = match &mut self.verifier {
            Some(verifier) => match verifier.next(data, tsig::unix_now()) {
                Ok(signed) => signed,
                Err(why) => {
                    return Next::Done(Err(format!(
                        "the answer to the {what} ({}) does not verify with the key: {why}",
                        crate::metrics::rcode_name(rcode)
                    )));
                }
            },
            None => true,
        };
        if rcode != ResponseCode::NoError {
            let why = format!(
                "the primary answered the {what} {}",
                crate::metrics::rcode_name(rcode)
            );
            // A primary that does not serve IXFR answers NOTIMP, FORMERR or REFUSED
            // (with its key, signed): the whole zone is asked instead, on the same
            // connection.
            let not_served = matches!(
                rcode,
                ResponseCode::NotImp | ResponseCode::FormErr | ResponseCode::Refused
            );
            if self.asked == Some(RecordType::IXFR)
                && self.records.is_empty()
                && not_served
                && signed
            {
                tracing::debug!(zone = %self.origin, "{why}; asking AXFR");
                return self.transfer(RecordType::AXFR);
            }
            return Next::Done(Err(why));
        }
        if header.truncation {
            return Next::Done(Err(format!("the answer to the {what} is truncated (TC)")));
        }
        let origin = LowerName::new(&self.origin);
        let serial_of = |r: &Record| match &r.data {
            RData::SOA(soa) if LowerName::new(&r.name) == origin => Some(soa.serial),
            _ => None,
        };
        let Some(asked) = self.serial else {
            let Some(serial) = message.answers.iter().find_map(serial_of) else {
                return Next::Done(Err(format!(
                    "the primary's answer holds no SOA of {}: it does not serve the zone",
                    self.origin
                )));
            };
            if !header.authoritative {
                return Next::Done(Err(format!(
                    "the primary answered the SOA of {} without authority (AA not set)",
                    self.origin
                )));
            }
            // Only a newer serial is transferred: one half the space away from the copy's
            // is no newer (RFC 1982 §3.2), or the copy would flip between the two.
            if let Some(have) = self.have_serial()
                && !serial_newer(serial, have)
            {
                return Next::Done(Ok(Fetched::Current(serial)));
            }
            self.serial = Some(serial);
            let qtype = match self.ixfr && self.have.is_some() {
                true => RecordType::IXFR,
                false => RecordType::AXFR,
            };
            return self.transfer(qtype);
        };
        self.bytes += data.len();
        if self.bytes > MAX_BYTES || self.began.elapsed() > TRANSFER_DEADLINE {
            return Next::Done(Err(format!(
                "a transfer past {} MiB or {} minutes: cut off",
                MAX_BYTES >> 20,
                TRANSFER_DEADLINE.as_secs() / 60
            )));
        }
        self.empty = if message.answers.is_empty() {
            self.empty + 1
        } else {
            0
        };
        if self.empty > EMPTY_IN_A_ROW {
            return Next::Done(Err(format!(
                "more than {EMPTY_IN_A_ROW} messages in a row without records"
            )));
        }
        let mut ended = false;
        for record in message.answers {
            if ended {
                return Next::Done(Err("records after the closing SOA".into()));
            }
            let serial = serial_of(&record);
            if self.records.is_empty() {
                // RFC 5936 section 2.2 and RFC 1995 section 4: the zone's SOA first, here
                // the one the SOA query gave (a primary that changed the zone between the
                // two, or one of several behind an address that is behind, is not taken).
                match serial {
                    Some(first) if first == asked => {}
                    Some(first) => {
                        return Next::Done(Err(format!(
                            "the transfer holds serial {first}, where the SOA query answered {asked}"
                        )));
                    }
                    None => {
                        return Next::Done(Err(format!(
                            "a transfer that does not start with the SOA of {}",
                            self.origin
                        )));
                    }
                }
                self.records.push(record);
                continue;
            }
            if record.record_type() == RecordType::SOA && serial.is_none() {
                return Next::Done(Err(format!(
                    "an SOA record of {}, not the zone's, in the transfer",
                    record.name
                )));
            }
            // Every record after the first counts, the SOAs between an IXFR's versions
            // too.
            if self.count == self.max_records {
                return Next::Done(Err(format!(
                    "more than {} records (`max_records`): the transfer is cut off",
                    self.max_records
                )));
            }
            self.count += 1;
            if self.asked == Some(RecordType::IXFR) && !self.shaped {
                // The second record says which: the SOA of the copy held opens the
                // changes from it; any other, the zone whole.
                self.shaped = true;
                if let (Some(from), Some(have)) = (serial, self.have_serial())
                    && from == have
                {
                    self.changes = Some(vec![Change::starting_at(from)]);
                    continue;
                }
            }
            let step = match self.changes.as_mut() {
                Some(changes) => changes.last_mut(),
                None => {
                    // The zone whole: the same SOA last.
                    if let Some(last) = serial {
                        if last != asked {
                            return Next::Done(Err(format!(
                                "an SOA of serial {last} in a transfer of serial {asked}"
                            )));
                        }
                        ended = true;
                    } else {
                        self.records.push(record);
                    }
                    continue;
                }
            };
            let Some(step) = step else { continue };
            match (serial, self.adding) {
                (None, false) => step.deleted.push(record),
                (None, true) => step.added.push(record),
                (Some(to), false) => {
                    // The version the records after it are added to: newer than the one
                    // before (RFC 1982; not the undefined half-way), and not past the
                    // primary's.
                    if !serial_newer(to, step.from) {
                        return Next::Done(Err(format!(
                            "a change from serial {} to {to}, which is not newer",
                            step.from
                        )));
                    }
                    if !serial_at_least(asked, to) {
                        return Next::Done(Err(format!(
                            "a change to serial {to}, past the primary's {asked}"
                        )));
                    }
                    step.to = to;
                    self.adding = true;
                }
                (Some(last), true) if last == asked && step.to == asked => ended = true,
                (Some(from), true) => {
                    // The next change, from the version the one before ended at.
                    if from != step.to {
                        return Next::Done(Err(format!(
                            "a change from serial {from} after one to {}",
                            step.to
                        )));
                    }
                    self.adding = false;
                    if let Some(changes) = self.changes.as_mut() {
                        changes.push(Change::starting_at(from));
                    }
                }
            }
        }
        if !ended {
            return Next::Wait;
        }
        if self.verifier.as_ref().is_some_and(|v| !v.complete()) {
            return Next::Done(Err("the transfer's last message is not signed".into()));
        }
        let mut records = std::mem::take(&mut self.records);
        match self.changes.take() {
            Some(steps) => {
                let soa = records.swap_remove(0);
                Next::Done(Ok(Fetched::Changes(Box::new(Changes { soa, steps }))))
            }
            None => Next::Done(Ok(Fetched::Zone(records))),
        }
    }

    /// Asks the zone by `qtype` (AXFR or IXFR) from the start, the chain's step
    /// saying so.
    fn transfer(&mut self, qtype: RecordType) -> Next {
        self.asked = Some(qtype);
        self.records.clear();
        self.count = 0;
        self.changes = None;
        self.adding = false;
        self.shaped = false;
        self.empty = 0;
        self.bytes = 0;
        self.began = std::time::Instant::now();
        let connection = self
            .transport
            .as_ref()
            .map(|t| WaitsOn::Connection(t.info().id));
        let step = match qtype {
            RecordType::IXFR => STEP_IXFR,
            _ => STEP_AXFR,
        };
        self.steps.step_with(step, connection, Some(&self.detail));
        Next::Ask(self.ask(qtype))
    }
}

/// Ends the fetch with `result` (nothing if it has ended) and closes its connection.
/// The records of a transfer that failed are freed on a blocking thread (a million take
/// a good part of a second).
fn finish(state: &Rc<RefCell<State>>, result: Result<Fetched, String>) {
    let (resolver, transport, timer, records) = {
        let mut s = state.borrow_mut();
        let records = std::mem::take(&mut s.records);
        (
            s.resolver.take(),
            s.transport.take(),
            s.timer.take(),
            records,
        )
    };
    if !records.is_empty() {
        weft::task::drop_in_background(records);
    }
    if let Some(timer) = timer
        && timer.active()
    {
        let _ = timer.cancel();
    }
    if let Some(transport) = transport {
        transport.lose_connection();
    }
    if let Some(resolver) = resolver {
        resolver.resolve(result.map_err(Failure::msg));
    }
}

/// Ends the fetch unless the primary says more within `after`.
fn arm(state: &Rc<RefCell<State>>, after: Duration, waiting_for: &'static str) {
    let weak = Rc::downgrade(state);
    let timer = weft::time::call_later(after, move || {
        if let Some(state) = weak.upgrade() {
            let why = format!("no {waiting_for} from the primary within {after:?}");
            finish(&state, Err(why));
        }
    });
    let old = state.borrow_mut().timer.replace(timer);
    if let Some(old) = old
        && old.active()
    {
        let _ = old.cancel();
    }
}

/// The fetch's side of its connection.
struct Fetch(Rc<RefCell<State>>);

impl StringHandler for Fetch {
    fn connection_made(&mut self, transport: &Transport) {
        let packet = {
            let mut s = self.0.borrow_mut();
            if s.resolver.is_some() {
                s.transport = Some(transport.clone());
                let connection = Some(WaitsOn::Connection(transport.info().id));
                s.steps.step_with(STEP_SOA, connection, Some(&s.detail));
                Some(s.ask(RecordType::SOA))
            } else {
                None
            }
        };
        let Some(packet) = packet else {
            // Ended while connecting (cancelled).
            transport.lose_connection();
            return;
        };
        arm(&self.0, SOA_TIMEOUT, "answer to the SOA query");
        send_int16_string(transport, &packet);
    }

    fn string_received(&mut self, transport: &Transport, data: &[u8]) {
        let next = self.0.borrow_mut().take(data);
        match next {
            Next::Wait => {
                arm(&self.0, MESSAGE_TIMEOUT, "message of the transfer");
                // One message a reactor turn: the next waits until the reactor has
                // looked at its sockets, so a primary sending fast never keeps the
                // service's queries waiting behind the decoding of its records.
                transport.pause_reading();
                let paused = transport.clone();
                Reactor::current().spawn(async move {
                    weft::task::next_turn().await;
                    paused.resume_reading();
                });
            }
            Next::Ask(packet) => {
                arm(&self.0, MESSAGE_TIMEOUT, "answer to the transfer query");
                send_int16_string(transport, &packet);
            }
            Next::Done(result) => finish(&self.0, result),
        }
    }

    fn connection_lost(&mut self, reason: &CloseReason) {
        self.0.borrow_mut().transport = None;
        finish(
            &self.0,
            Err(format!("the primary closed the connection: {reason}")),
        );
    }
}

#[cfg(test)]
#[path = "inbound_tests.rs"]
mod tests;
