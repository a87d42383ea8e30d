//! `/metrics`: the Prometheus text format (version 0.0.4), encoded by
//! `prometheus-client`. The per-step series are read from
//! [`Pipeline::metrics`](crate::Pipeline::metrics) at scrape time by a
//! [`Collector`] (the runtime keeps its own counters; nothing is copied
//! between scrapes); the response counts are the crate's own counters.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{Inspect, Shared};
use crate::{HistogramSnapshot, StepMetrics};

/// The labels of `pipeline_http_responses_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponseLabels {
    route: String,
    code: u16,
}

/// What `/metrics` exposes.
pub(super) struct Metrics {
    registry: Registry,
    responses: Family<ResponseLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub(super) fn new(routes: Vec<(String, Arc<dyn Inspect>)>) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Steps { routes }));
        let responses = Family::<ResponseLabels, Counter>::default();
        // `_total` is added by the encoder, the full stop by `register`.
        registry.register(
            "pipeline_http_responses",
            "HTTP responses by route and status",
            responses.clone(),
        );
        Metrics {
            registry,
            responses,
        }
    }

    /// Counts one response.
    pub(super) fn count(&self, route: &str, status: StatusCode) {
        self.responses
            .get_or_create(&ResponseLabels {
                route: route.to_string(),
                code: status.as_u16(),
            })
            .inc();
    }
}

/// The per-step series, read from the pipelines at each scrape.
struct Steps {
    routes: Vec<(String, Arc<dyn Inspect>)>,
}

impl std::fmt::Debug for Steps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routes: Vec<&str> = self.routes.iter().map(|(r, _)| r.as_str()).collect();
        f.debug_struct("Steps").field("routes", &routes).finish()
    }
}

type Field = fn(&StepMetrics) -> u64;

/// Name (counters without `_total`: the encoder adds it), type, help,
/// value.
const SCALARS: [(&str, MetricType, &str, Field); 11] = [
    (
        "pipeline_step_requests",
        MetricType::Counter,
        "Calls that reached the step.",
        |m| m.requests,
    ),
    (
        "pipeline_step_errors",
        MetricType::Counter,
        "Calls the step failed.",
        |m| m.errors,
    ),
    (
        "pipeline_step_overloaded",
        MetricType::Counter,
        "Of the step's errors: calls refused at once because its queue was full.",
        |m| m.overloaded,
    ),
    (
        "pipeline_step_in_flight",
        MetricType::Gauge,
        "Calls inside the step now (queued or running).",
        |m| m.in_flight,
    ),
    (
        "pipeline_step_queue_depth",
        MetricType::Gauge,
        "Calls waiting in the step's replica mailboxes.",
        |m| m.queued,
    ),
    (
        "pipeline_step_replicas",
        MetricType::Gauge,
        "Replicas the step runs (built and taking calls); for a remote step, the workers serving it.",
        |m| m.replicas as u64,
    ),
    (
        "pipeline_step_replicas_target",
        MetricType::Gauge,
        "Replicas the step is heading for (differs while autoscaling).",
        |m| m.target_replicas as u64,
    ),
    (
        "pipeline_step_replicas_down",
        MetricType::Gauge,
        "Replicas down (rebuilding) now.",
        |m| m.replicas_down as u64,
    ),
    (
        "pipeline_step_replica_rebuilds",
        MetricType::Counter,
        "Replicas rebuilt after a panic.",
        |m| m.rebuilds,
    ),
    (
        "pipeline_step_remote_refused",
        MetricType::Counter,
        "Remote steps: calls a worker refused (queue full or leaving).",
        |m| m.remote_refused,
    ),
    (
        "pipeline_step_remote_retries",
        MetricType::Counter,
        "Remote steps: refused calls sent again to another worker.",
        |m| m.remote_retries,
    ),
];

type Histogram = fn(&StepMetrics) -> &HistogramSnapshot;

const HISTOGRAMS: [(&str, &str, Histogram); 2] = [
    (
        "pipeline_step_latency_seconds",
        "Time from reaching the step to its answer.",
        |m| &m.latency,
    ),
    (
        "pipeline_step_batch_size",
        "Calls per batch (batched steps).",
        |m| &m.batch_size,
    ),
];

impl Collector for Steps {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rows: Vec<(&str, StepMetrics)> = self
            .routes
            .iter()
            .flat_map(|(route, p)| p.metrics().into_iter().map(move |m| (route.as_str(), m)))
            .collect();
        for (name, kind, help, field) in SCALARS {
            let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
            for (route, m) in &rows {
                let labels = [("route", *route), ("step", m.step)];
                let mut series = metric.encode_family(&labels)?;
                if kind == MetricType::Counter {
                    series.encode_counter::<NoLabelSet, _, u64>(&field(m), None)?;
                } else {
                    series.encode_gauge(&field(m))?;
                }
            }
        }
        for (name, help, field) in HISTOGRAMS {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for (route, m) in &rows {
                let h = field(m);
                // The encoder takes each bucket's own count and sums them.
                let mut below = 0;
                let buckets: Vec<(f64, u64)> = h
                    .bounds
                    .iter()
                    .zip(&h.cumulative)
                    .map(|(&bound, &cumulative)| {
                        let own = cumulative - below;
                        below = cumulative;
                        (bound, own)
                    })
                    .collect();
                let labels = [("route", *route), ("step", m.step)];
                metric
                    .encode_family(&labels)?
                    .encode_histogram::<NoLabelSet>(h.sum, h.count(), &buckets, None)?;
            }
        }
        Ok(())
    }
}

/// Prometheus text exposition format, version 0.0.4.
pub(super) async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::prometheus_text::encode(&mut text, &shared.metrics.registry)
    {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )],
            text,
        )
            .into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics\n",
        )
            .into_response(),
    }
}
