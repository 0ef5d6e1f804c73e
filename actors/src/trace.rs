//! W3C trace context (`traceparent`): the position of a piece of work in a trace, kept in the
//! `tracing` span it runs in, so that whatever the work calls or sends on (an HTTP call, an
//! event through the outbox and Kafka) can carry the same trace.
//!
//! The context lives in the span's extensions, which only `tracing_subscriber`'s `Registry`
//! keeps: with another subscriber (or none), [`TraceContext::current`] answers `None` and
//! nothing is propagated.

use tracing::Span;
use tracing_subscriber::registry::LookupSpan;

/// A position in a W3C trace: the trace, this span of it, and whether it is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: u128,
    pub span_id: u64,
    pub sampled: bool,
}

impl TraceContext {
    /// A new trace.
    pub fn root() -> Self {
        Self { trace_id: random_nonzero(), span_id: random_nonzero() as u64 | 1, sampled: true }
    }

    /// `00-<32 hex>-<16 hex>-<2 hex>`; `None` for anything else, or an all-zero id (W3C says to
    /// start a new trace then).
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex =
            |s: &str, len: usize| s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !hex(version, 2) || version == "ff" || !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok().filter(|t| *t != 0)?;
        let span_id = u64::from_str_radix(span, 16).ok().filter(|s| *s != 0)?;
        let sampled = u8::from_str_radix(flags, 16).ok()? & 1 == 1;
        Some(Self { trace_id, span_id, sampled })
    }

    /// The next span of the same trace (a call this one makes).
    pub fn child(&self) -> Self {
        Self { span_id: random_nonzero() as u64 | 1, ..*self }
    }

    pub fn trace_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// As a `traceparent` header.
    pub fn header(&self) -> String {
        format!("00-{:032x}-{:016x}-{:02x}", self.trace_id, self.span_id, u8::from(self.sampled))
    }

    /// The trace context of the current span (or of the nearest span above it that has one).
    pub fn current() -> Option<Self> {
        Span::current()
            .with_subscriber(|(id, dispatch)| {
                let registry = dispatch.downcast_ref::<tracing_subscriber::Registry>()?;
                let span = registry.span(id)?;
                span.scope().find_map(|s| s.extensions().get::<TraceContext>().copied())
            })
            .flatten()
    }

    /// Keeps this context in `span`, for [`TraceContext::current`] to find.
    pub fn attach(self, span: &Span) {
        span.with_subscriber(|(id, dispatch)| {
            if let Some(span) =
                dispatch.downcast_ref::<tracing_subscriber::Registry>().and_then(|r| r.span(id))
            {
                span.extensions_mut().insert(self);
            }
        });
    }
}

fn random_nonzero() -> u128 {
    uuid::Uuid::new_v4().as_u128().max(1)
}

/// The `traceparent` for something the current span sends on (an event, a call), if it is in a
/// trace: the current span is its parent.
pub fn outgoing() -> Option<String> {
    TraceContext::current().map(|c| c.header())
}

/// How a new span takes its place in its trace when spans are exported (OpenTelemetry): the
/// exporter gives the span its ids. Installed once at start-up, by [`export_with`].
pub type Join = fn(&Span, Option<TraceContext>) -> TraceContext;

static JOIN: std::sync::OnceLock<Join> = std::sync::OnceLock::new();

/// Has every span [`TraceContext::begin`] starts join its trace through `join`. Only the first
/// call counts.
pub fn export_with(join: Join) {
    let _ = JOIN.set(join);
}

/// Where a new span stands in its trace, before the span is made.
pub enum Start {
    /// Spans are not exported: this is the span's context, known now (give the span its
    /// `trace_id` when making it).
    Known(TraceContext),
    /// The exporter gives the span its ids: make it with `trace_id` `Empty`, then
    /// [`Start::begin`].
    Exported(Option<TraceContext>),
}

impl Start {
    /// The next step of `incoming`'s trace (a new trace without one).
    pub fn after(incoming: Option<TraceContext>) -> Self {
        match JOIN.get() {
            Some(_) => Self::Exported(incoming),
            None => Self::Known(incoming.map_or_else(TraceContext::root, |c| c.child())),
        }
    }

    /// Keeps the context in `span` (made as the variant says) and answers it.
    pub fn begin(self, span: &Span) -> TraceContext {
        let context = match (self, JOIN.get()) {
            (Self::Known(context), _) => context,
            (Self::Exported(incoming), Some(join)) => {
                let context = join(span, incoming);
                span.record("trace_id", tracing::field::display(context.trace_hex()));
                context
            }
            (Self::Exported(incoming), None) => incoming.map_or_else(TraceContext::root, |c| c.child()),
        };
        context.attach(span);
        context
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_is_read_back_as_written_and_bad_ones_start_a_new_trace() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = TraceContext::parse(header).expect("valid");
        assert_eq!(context.header(), header);
        assert_eq!(context.trace_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let child = context.child();
        assert_eq!((child.trace_id, child.sampled), (context.trace_id, true));
        assert_ne!(child.span_id, context.span_id);
        assert_eq!(TraceContext::parse(&TraceContext::root().header()).map(|c| c.sampled), Some(true));
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
    }
}
