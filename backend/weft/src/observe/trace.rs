//! Distributed tracing: W3C Trace Context (`traceparent`, `tracestate`) and the trace and
//! span ids of Deferred chains, shared by the code that receives and forwards a request
//! (weft-web) and the exporter that turns chains into spans (weft-inspector).
//!
//! Nothing here runs unless an exporter called [`enable`]: the HTTP service reads the
//! headers, and the hub follows which chain roots a trace, only while [`enabled`] is true,
//! so without one the cost is one relaxed load per request.
//!
//! Ids are derived, not stored: a chain's span id is a keyed hash of its Deferred id, and
//! a trace this process starts takes its id from its root chain's the same way. The key is
//! random per process, so two gateways never hand out the same ids, and the proxy can name
//! a request's span upstream before the exporter has seen it.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use super::ConnectionId;
use crate::defer::{DeferredEvent, DeferredId};

/// The longest `tracestate` kept, in bytes; the W3C spec asks vendors to propagate at
/// least 512 and allows cutting beyond.
pub const MAX_TRACESTATE: usize = 512;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns tracing on for the process: incoming `traceparent` headers are honoured, the
/// proxy sends its own, and chains record their trace. Called by an exporter at start.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether an exporter runs in this process.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A caller's trace, from a valid `traceparent` (and its `tracestate`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceContext {
    /// The trace id; never all zeros.
    pub trace_id: [u8; 16],
    /// The caller's span, the parent of ours; never all zeros.
    pub parent_span: [u8; 8],
    /// The caller's trace flags (bit 0: sampled).
    pub flags: u8,
    /// The caller's `tracestate`, passed on as it came (at most [`MAX_TRACESTATE`] bytes).
    pub state: Option<Arc<str>>,
}

impl TraceContext {
    /// Parses a `traceparent` value per W3C Trace Context: `version-traceid-parentid-flags`
    /// in lower-case hex. Version `ff` and all-zero ids are invalid; a later version is
    /// read by its first four fields if what follows them starts with `-`. `None` for
    /// anything else, which the caller ignores (a new trace starts).
    pub fn parse(traceparent: &[u8], tracestate: Option<&[u8]>) -> Option<Self> {
        let value = trim(traceparent);
        if value.len() < 55 {
            return None;
        }
        let version = hex_byte(&value[0..2])?;
        if version == 0xff || (version == 0 && value.len() != 55) {
            return None;
        }
        if version > 0 && value.len() > 55 && value[55] != b'-' {
            return None;
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let mut trace_id = [0; 16];
        for (i, b) in trace_id.iter_mut().enumerate() {
            *b = hex_byte(&value[3 + 2 * i..5 + 2 * i])?;
        }
        let mut parent_span = [0; 8];
        for (i, b) in parent_span.iter_mut().enumerate() {
            *b = hex_byte(&value[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&value[53..55])?;
        if trace_id == [0; 16] || parent_span == [0; 8] {
            return None;
        }
        let state = tracestate
            .map(trim)
            .filter(|s| !s.is_empty() && s.len() <= MAX_TRACESTATE)
            .and_then(|s| std::str::from_utf8(s).ok())
            .filter(|s| s.bytes().all(|b| (0x20..0x7f).contains(&b)))
            .map(Arc::from);
        Some(Self {
            trace_id,
            parent_span,
            flags,
            state,
        })
    }
}

/// Optional whitespace around a header value.
fn trim(v: &[u8]) -> &[u8] {
    v.trim_ascii()
}

/// Two lower-case hex digits (the spec forbids upper case).
fn hex_byte(two: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(two[0])? << 4 | digit(two[1])?)
}

/// The process's random key for ids.
fn key() -> &'static std::collections::hash_map::RandomState {
    static KEY: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    KEY.get_or_init(std::collections::hash_map::RandomState::new)
}

fn keyed(tag: u8, id: u64) -> u64 {
    let mut h = key().build_hasher();
    h.write_u8(tag);
    h.write_u64(id);
    // Zero is the spec's "no id"; a hash of zero is astronomically rare but possible.
    h.finish().max(1)
}

/// The span id of the chain `id`.
pub fn span_id(id: DeferredId) -> [u8; 8] {
    keyed(0, id.0).to_be_bytes()
}

/// The id of a trace this process starts at the chain `root`.
pub fn trace_id(root: DeferredId) -> [u8; 16] {
    let mut id = [0; 16];
    id[..8].copy_from_slice(&keyed(1, root.0).to_be_bytes());
    id[8..].copy_from_slice(&keyed(2, root.0).to_be_bytes());
    id
}

/// The `traceparent` naming the span `span` of the trace `trace` (version 00).
pub fn traceparent(trace: &[u8; 16], span: &[u8; 8], flags: u8) -> String {
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    push_hex(&mut out, trace);
    out.push('-');
    push_hex(&mut out, span);
    out.push('-');
    push_hex(&mut out, &[flags]);
    out
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
}

/// A chain continues a caller's trace: its span's parent is the caller's span.
#[derive(Debug, Clone)]
pub struct Traced {
    /// The chain.
    pub id: DeferredId,
    /// Its connection, if any.
    pub connection: Option<ConnectionId>,
    /// The caller's trace.
    pub context: Arc<TraceContext>,
}

/// Records that the chain `id` continues `context` (sent only when an observer listens).
pub fn continue_trace(id: DeferredId, connection: Option<ConnectionId>, context: TraceContext) {
    crate::defer::events::emit(|| {
        DeferredEvent::Traced(Traced {
            id,
            connection,
            context: Arc::new(context),
        })
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_read_with_its_tracestate() {
        let ctx = TraceContext::parse(GOOD, Some(b" congo=t61rcWkgMzE ")).unwrap();
        assert_eq!(ctx.trace_id[..4], [0x4b, 0xf9, 0x2f, 0x35]);
        assert_eq!(
            ctx.parent_span,
            [0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert_eq!(ctx.flags, 1);
        assert_eq!(ctx.state.as_deref(), Some("congo=t61rcWkgMzE"));
        assert_eq!(
            traceparent(&ctx.trace_id, &ctx.parent_span, ctx.flags).as_bytes(),
            GOOD
        );
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        let bad: [&[u8]; 8] = [
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"",
        ];
        for value in bad {
            assert!(
                TraceContext::parse(value, None).is_none(),
                "{}",
                String::from_utf8_lossy(value)
            );
        }
        // A later version may add fields after a dash.
        assert!(
            TraceContext::parse(
                b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later",
                None
            )
            .is_some()
        );
    }

    #[test]
    fn ids_are_stable_distinct_and_never_zero() {
        let (a, b) = (DeferredId(1), DeferredId(2));
        assert_eq!(span_id(a), span_id(a));
        assert_ne!(span_id(a), span_id(b));
        assert_ne!(trace_id(a), trace_id(b));
        assert_ne!(span_id(a), [0; 8]);
    }
}
