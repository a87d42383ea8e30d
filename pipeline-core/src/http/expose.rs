//! The inspection endpoints: readiness, Prometheus metrics, the live graph.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::Shared;
use crate::{GraphNode, HistogramSnapshot, NodeKind, StepMetrics};

/// 200 when every replica of every pipeline is built, else 503 naming the
/// degraded steps.
pub(super) async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let degraded: Vec<String> = shared
        .routes
        .iter()
        .flat_map(|(route, p)| {
            let health = p.health();
            health
                .degraded()
                .into_iter()
                .map(|step| format!("{route}: {step}"))
                .collect::<Vec<_>>()
        })
        .collect();
    if degraded.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: replicas down in {}\n", degraded.join(", ")),
        )
            .into_response()
    }
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &HistogramSnapshot) {
    for (bound, count) in h.bounds.iter().zip(&h.cumulative) {
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {count}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count());
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count());
}

/// Prometheus text exposition format, version 0.0.4.
pub(super) async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let rows: Vec<(String, StepMetrics)> = shared
        .routes
        .iter()
        .flat_map(|(route, p)| p.metrics().into_iter().map(move |m| (route.clone(), m)))
        .collect();
    let labels = |route: &str, m: &StepMetrics| {
        format!("route=\"{}\",step=\"{}\"", label(route), label(m.step))
    };
    let mut out = String::new();
    type Field = fn(&StepMetrics) -> u64;
    let scalars: [(&str, &str, &str, Field); 7] = [
        (
            "pipeline_step_requests_total",
            "counter",
            "Calls that reached the step.",
            |m| m.requests,
        ),
        (
            "pipeline_step_errors_total",
            "counter",
            "Calls the step failed.",
            |m| m.errors,
        ),
        (
            "pipeline_step_in_flight",
            "gauge",
            "Calls inside the step now (queued or running).",
            |m| m.in_flight,
        ),
        (
            "pipeline_step_queue_depth",
            "gauge",
            "Calls waiting in the step's replica mailboxes.",
            |m| m.queued,
        ),
        (
            "pipeline_step_replicas",
            "gauge",
            "Replicas the step runs.",
            |m| m.replicas as u64,
        ),
        (
            "pipeline_step_replicas_down",
            "gauge",
            "Replicas down (rebuilding) now.",
            |m| m.replicas_down as u64,
        ),
        (
            "pipeline_step_replica_rebuilds_total",
            "counter",
            "Replicas rebuilt after a panic.",
            |m| m.rebuilds,
        ),
    ];
    for (name, kind, help, field) in scalars {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (route, m) in &rows {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(route, m), field(m));
        }
    }
    type Histo = fn(&StepMetrics) -> &HistogramSnapshot;
    let histograms: [(&str, &str, Histo); 2] = [
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
    for (name, help, field) in histograms {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (route, m) in &rows {
            histogram(&mut out, name, &labels(route, m), field(m));
        }
    }
    let _ = writeln!(
        out,
        "# HELP pipeline_http_responses_total HTTP responses by route and status.\n# TYPE pipeline_http_responses_total counter"
    );
    let responses = shared
        .responses
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    for ((route, code), n) in responses {
        let _ = writeln!(
            out,
            "pipeline_http_responses_total{{route=\"{}\",code=\"{code}\"}} {n}",
            label(&route)
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// `?format=json` (default), `dot` or `mermaid`.
#[derive(Debug, serde::Deserialize)]
pub(super) struct GraphQuery {
    format: Option<String>,
}

fn note(m: Option<&StepMetrics>) -> Option<String> {
    let m = m?;
    Some(format!(
        "requests {} | errors {} | in flight {} | queued {}",
        m.requests, m.errors, m.in_flight, m.queued
    ))
}

fn step_metrics<'m>(metrics: &'m [StepMetrics], n: &GraphNode) -> Option<&'m StepMetrics> {
    match n.kind {
        NodeKind::Step { .. } => metrics.iter().find(|m| m.step == n.label),
        _ => None,
    }
}

/// The deployed graphs with live per-step counters.
pub(super) async fn graph(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<GraphQuery>,
) -> Response {
    let format = q.format.as_deref().unwrap_or("json");
    let mut text = String::new();
    match format {
        "dot" | "mermaid" => {
            for (route, p) in &shared.routes {
                let metrics = p.metrics();
                let annotate = |n: &GraphNode| note(step_metrics(&metrics, n));
                let body = if format == "dot" {
                    p.graph().to_dot_annotated(annotate)
                } else {
                    p.graph().to_mermaid_annotated(annotate)
                };
                let comment = if format == "dot" { "//" } else { "%%" };
                let _ = writeln!(text, "{comment} route {route}\n{body}");
            }
            let kind = if format == "dot" {
                "text/vnd.graphviz; charset=utf-8"
            } else {
                "text/plain; charset=utf-8"
            };
            ([(header::CONTENT_TYPE, kind)], text).into_response()
        }
        "json" => {
            let routes: Vec<serde_json::Value> = shared
                .routes
                .iter()
                .map(|(route, p)| {
                    let metrics = p.metrics();
                    let nodes: Vec<serde_json::Value> = p
                        .graph()
                        .nodes()
                        .iter()
                        .map(|n| {
                            let m = step_metrics(&metrics, n);
                            serde_json::json!({
                                "id": n.id,
                                "label": n.label,
                                "kind": match n.kind {
                                    NodeKind::Input => "input",
                                    NodeKind::Step { .. } => "step",
                                    NodeKind::Gather => "gather",
                                    NodeKind::Route => "route",
                                },
                                "step": match n.kind {
                                    NodeKind::Step { step, .. } => Some(step),
                                    _ => None,
                                },
                                "output": n.output,
                                "inputs": n.inputs.iter().map(|(id, label)| serde_json::json!({"from": id, "label": label})).collect::<Vec<_>>(),
                                "counters": m.map(|m| serde_json::json!({
                                    "requests": m.requests,
                                    "errors": m.errors,
                                    "in_flight": m.in_flight,
                                    "queued": m.queued,
                                    "replicas": m.replicas,
                                    "replicas_down": m.replicas_down,
                                    "rebuilds": m.rebuilds,
                                    "latency_seconds_sum": m.latency.sum,
                                    "batches": m.batch_size.count(),
                                })),
                            })
                        })
                        .collect();
                    serde_json::json!({"route": route, "nodes": nodes})
                })
                .collect();
            axum::Json(serde_json::json!({ "routes": routes })).into_response()
        }
        other => (
            StatusCode::BAD_REQUEST,
            format!("unknown format `{other}`: use json, dot or mermaid\n"),
        )
            .into_response(),
    }
}
