//! `/metrics` (Prometheus text format) and the readiness checks of `/readyz`.
//!
//! Built on `prometheus-client`: it has no global recorder, so each running server (several
//! in one test process) owns its own metrics, and it encodes the Prometheus text format
//! (0.0.4) itself. The SIP side, the call-log writer, the hub and the booking domain keep
//! their own counters (atomics they had already, or added beside them); a scrape reads them
//! into a fresh registry, so nothing is counted twice. Only the HTTP latencies are recorded
//! here, by the middleware [`Metrics::track_http`].
//!
//! No label carries anything personal: end causes, SIP methods and statuses, route patterns
//! (`/api/bookings/:id`, never the path with its id), booking operations.

pub mod config;

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::app::AppState;

pub use config::MetricsConfig;
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The prefix of every metric name.
pub const PREFIX: &str = "madoguchi";
/// How long `/readyz` waits for the database and for the SIP core.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// A call-log write going on longer than this (the database away, retried) is stalled.
pub const WRITER_STALL: Duration = Duration::from_secs(15);

/// The labels of an HTTP request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    /// The route pattern (`/api/calls/:id`), `unmatched` for none.
    route: String,
    method: String,
    status: u16,
}

type HttpFamily = Family<HttpLabels, Histogram, fn() -> Histogram>;

fn http_histogram() -> Histogram {
    // 1 ms … about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The metrics recorded as they happen (the rest is read at scrape time).
#[derive(Debug, Clone)]
pub struct Metrics {
    http: HttpFamily,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            http: Family::new_with_constructor(http_histogram as fn() -> Histogram),
        }
    }
}

impl Metrics {
    /// Middleware: records each request's latency by route pattern, method and status.
    pub async fn track_http(
        axum::extract::State(metrics): axum::extract::State<Metrics>,
        req: Request,
        next: Next,
    ) -> Response {
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map_or_else(|| "unmatched".to_string(), |p| route_label(p.as_str()));
        let method = method_label(req.method()).to_string();
        let started = Instant::now();
        let res = next.run(req).await;
        let labels = HttpLabels {
            route,
            method,
            status: res.status().as_u16(),
        };
        metrics
            .http
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        res
    }
}

/// A route pattern as a label: `/api/calls/{id}` → `/api/calls/:id` (braces in a label value
/// are valid, but trip up simple text parsers and PromQL regexes).
fn route_label(pattern: &str) -> String {
    pattern.replace('{', ":").replace('}', "")
}

/// A request method as a label: the standard ones by name, anything else `other`, so a
/// client inventing methods cannot grow the label set.
fn method_label(method: &axum::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// Labels of one value.
type Labels = Vec<(&'static str, String)>;

fn counter_family(registry: &mut Registry, name: &str, help: &str, values: Vec<(Labels, u64)>) {
    let family = Family::<Labels, Counter>::default();
    for (labels, n) in values {
        family.get_or_create(&labels).inc_by(n);
    }
    registry.register(name, help, family);
}

fn gauge(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let g = Gauge::<i64>::default();
    g.set(i64::try_from(value).unwrap_or(i64::MAX));
    registry.register(name, help, g);
}

fn counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(value);
    registry.register(name, help, c);
}

/// The whole scrape, in the Prometheus text format.
pub async fn render(state: &AppState) -> String {
    let mut r = Registry::with_prefix(PREFIX);
    let reg = &mut r;

    counter_family(
        reg,
        "calls_ended",
        "Calls ended since the start, by end cause (the stored code), counted when written to the call log",
        state
            .calls
            .ended_by_cause()
            .into_iter()
            .map(|(code, n)| (vec![("cause", code.as_str().to_string())], n))
            .collect(),
    );

    if let Some(sip) = &state.sip {
        let c = &sip.counters;
        counter_family(
            reg,
            "sip_requests",
            "SIP requests received (in) and sent (out), by method",
            [("in", &c.messages_in), ("out", &c.messages_out)]
                .into_iter()
                .flat_map(|(dir, counts)| {
                    counts.requests().into_iter().map(move |(m, n)| {
                        (
                            vec![("direction", dir.to_string()), ("method", m.to_string())],
                            n,
                        )
                    })
                })
                .collect(),
        );
        counter_family(
            reg,
            "sip_responses",
            "SIP responses received (in) and sent (out), by status code and class",
            [("in", &c.messages_in), ("out", &c.messages_out)]
                .into_iter()
                .flat_map(|(dir, counts)| {
                    counts.responses().into_iter().map(move |(s, n)| {
                        (
                            vec![
                                ("direction", dir.to_string()),
                                ("status", s.to_string()),
                                ("class", format!("{}xx", s / 100)),
                            ],
                            n,
                        )
                    })
                })
                .collect(),
        );
        counter(
            reg,
            "sip_retransmissions",
            "SIP messages re-sent by transaction timers (A, E, G over UDP); first sends not counted",
            c.retransmissions.load(std::sync::atomic::Ordering::Relaxed),
        );
        if let Ok(Some(status)) = tokio::time::timeout(CHECK_TIMEOUT, sip.status()).await {
            let t = status.tables;
            let txns = Family::<Labels, Gauge>::default();
            txns.get_or_create(&vec![("side", "server".into())])
                .set(t.server_txns as i64);
            txns.get_or_create(&vec![("side", "client".into())])
                .set(t.client_txns as i64);
            reg.register("sip_transactions", "SIP transactions alive, by side", txns);
            gauge(
                reg,
                "sip_dialogs",
                "Calls in progress on the SIP side (ringing or answered, until their dialog ends)",
                t.calls as u64,
            );
            gauge(
                reg,
                "sip_relays",
                "In-dialog requests being relayed (e.g. a BYE waiting for its answer)",
                t.relays as u64,
            );
            gauge(
                reg,
                "sip_registered_phones",
                "Operator phone contacts registered",
                t.bindings as u64,
            );
            gauge(
                reg,
                "sip_tcp_connections",
                "SIP TCP connections open",
                status.tcp_flows as u64,
            );
            // The counters the status API shows, each by its name there.
            let events = match serde_json::to_value(&status.counters) {
                Ok(serde_json::Value::Object(m)) => m
                    .into_iter()
                    .filter(|(k, _)| k != "retransmissions")
                    .filter_map(|(k, v)| Some((vec![("event", k)], v.as_u64()?)))
                    .collect(),
                _ => Vec::new(),
            };
            counter_family(
                reg,
                "sip_events",
                "SIP adapter counters of /api/sip/status (malformed, rejected, rate_limited …), by name",
                events,
            );
        }
    }

    gauge(
        reg,
        "ws_clients",
        "Browsers connected to the live WebSocket (/ws)",
        state.hub.clients() as u64,
    );
    counter(
        reg,
        "live_stats_rebases",
        "Times the live statistics read the whole day from the call log (start, day change, every 5 minutes, after missed or unwritten events, other instances' calls)",
        state.hub.stats_rebases(),
    );
    counter(
        reg,
        "pop_history_reads",
        "Caller histories read from the database for a screen pop (only while a screen is connected; cached per number)",
        state.hub.history_reads(),
    );
    counter_family(
        reg,
        "booking_conflicts",
        "Booking operations refused with 409 because the state changed meanwhile, by operation and kind",
        state
            .bookings
            .conflicts()
            .into_iter()
            .map(|(op, kind, n)| {
                (
                    vec![("operation", op.to_string()), ("kind", kind.to_string())],
                    n,
                )
            })
            .collect(),
    );

    let stored = state.events.stored();
    gauge(
        reg,
        "call_log_queue_depth",
        "Call events published and not yet written to the call log",
        stored.waiting(),
    );
    gauge(
        reg,
        "call_log_backlog_max",
        "Queue depth from which new calls get 503 ([database] log_backlog_max)",
        stored.backlog_max(),
    );
    let w = state.calls.counters();
    counter(
        reg,
        "call_log_written_events",
        "Call events written to the call log",
        w.written,
    );
    counter(
        reg,
        "call_log_retries",
        "Call log writes retried after a passing database failure",
        w.retries,
    );
    counter(
        reg,
        "call_log_dead_letters",
        "Call events that could not be written and were kept as dead letters",
        w.dead_letters,
    );
    reg.register(
        "call_log_write_seconds",
        "Time to write one batch of call events, retries included",
        state.calls.write_seconds(),
    );
    reg.register(
        "http_request_duration_seconds",
        "HTTP request latency by route pattern, method and status",
        state.metrics.http.clone(),
    );

    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &r);
    out
}

/// One readiness check that failed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FailedCheck {
    /// `database`, `sip` or `call_log_writer`.
    pub check: &'static str,
    /// What is wrong, for the engineer.
    pub detail: String,
}

/// Runs the readiness checks; empty when ready.
pub async fn readiness(state: &AppState) -> Vec<FailedCheck> {
    let mut failed = Vec::new();
    match tokio::time::timeout(CHECK_TIMEOUT, state.db.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => failed.push(FailedCheck {
            check: "database",
            detail: format!("SELECT 1 failed: {e}"),
        }),
        Err(_) => failed.push(FailedCheck {
            check: "database",
            detail: format!("SELECT 1 did not answer within {CHECK_TIMEOUT:?}"),
        }),
    }
    match &state.sip {
        None => failed.push(FailedCheck {
            check: "sip",
            detail: "the SIP adapter is not running".into(),
        }),
        Some(sip) => match tokio::time::timeout(CHECK_TIMEOUT, sip.status()).await {
            Ok(Some(_)) => {}
            Ok(None) => failed.push(FailedCheck {
                check: "sip",
                detail: "the SIP core has stopped (sockets closed)".into(),
            }),
            Err(_) => failed.push(FailedCheck {
                check: "sip",
                detail: format!("the SIP core did not answer within {CHECK_TIMEOUT:?}"),
            }),
        },
    }
    let stored = state.events.stored();
    let (waiting, max) = (stored.waiting(), stored.backlog_max());
    if waiting >= max {
        failed.push(FailedCheck {
            check: "call_log_writer",
            detail: format!("{waiting} call events waiting, at or over the limit of {max}"),
        });
    } else if let Some(busy) = state.calls.busy_for().filter(|b| *b > WRITER_STALL) {
        failed.push(FailedCheck {
            check: "call_log_writer",
            detail: format!(
                "one write has been going on for {} s ({waiting} events waiting)",
                busy.as_secs()
            ),
        });
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded_and_patterns_not_paths() {
        assert_eq!(route_label("/api/calls/{id}"), "/api/calls/:id");
        assert_eq!(method_label(&axum::http::Method::PATCH), "PATCH");
        let invented = axum::http::Method::from_bytes(b"FOO123").unwrap();
        assert_eq!(method_label(&invented), "other");
    }
}
