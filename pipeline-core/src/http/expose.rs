//! The inspection endpoints: readiness and the live graph (`/metrics`
//! lives in `metrics.rs`).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::Shared;
use crate::{GraphNode, NodeKind, StepMetrics};

/// 200 when every replica of every pipeline is built, else 503 naming the
/// degraded steps.
pub(super) async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let mut degraded = Vec::new();
    let mut remote = String::new();
    for (route, p) in &shared.routes {
        for s in p.health().steps {
            if let Some(url) = s.remote {
                let _ = writeln!(
                    remote,
                    "{route}: remote step {} has {} worker(s) at {url}",
                    s.step, s.replicas
                );
            }
            if !s.is_up() {
                let why = if s.remote.is_some() && s.replicas == 0 {
                    "no remote worker"
                } else {
                    "replicas down"
                };
                degraded.push(format!("{route}: {} ({why})", s.step));
            }
        }
    }
    if degraded.is_empty() {
        (StatusCode::OK, format!("ready\n{remote}")).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n{remote}", degraded.join(", ")),
        )
            .into_response()
    }
}

/// `?format=json` (default), `dot` or `mermaid`.
#[derive(Debug, serde::Deserialize)]
pub(super) struct GraphQuery {
    format: Option<String>,
}

fn note(m: Option<&StepMetrics>) -> Option<String> {
    let m = m?;
    let replicas = if m.replicas == m.target_replicas {
        format!("replicas {}", m.replicas)
    } else {
        format!("replicas {} -> {}", m.replicas, m.target_replicas)
    };
    let replicas = match m.remote {
        Some(url) => format!("remote at {url}, {} worker(s)", m.replicas),
        None => replicas,
    };
    Some(format!(
        "requests {} | errors {} | in flight {} | queued {} | {replicas}",
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
                // A route path may hold any character axum accepts, a
                // newline included: written escaped, it stays one comment.
                let _ = writeln!(text, "{comment} route {}\n{body}", route.escape_debug());
            }
            let kind = if format == "dot" {
                "text/vnd.graphviz; charset=utf-8"
            } else {
                "text/plain; charset=utf-8"
            };
            ([(header::CONTENT_TYPE, kind)], text).into_response()
        }
        "json" => axum::Json(graph_json(&shared)).into_response(),
        other => (
            StatusCode::BAD_REQUEST,
            format!("unknown format `{other}`: use json, dot or mermaid\n"),
        )
            .into_response(),
    }
}

/// The JSON answer of `/graph`: per route, its nodes with their edges and,
/// for step nodes, how they run and their live counters (the dashboard
/// page reads this and nothing else).
pub(super) fn graph_json(shared: &Shared) -> serde_json::Value {
    let routes: Vec<serde_json::Value> = shared
        .routes
        .iter()
        .map(|(route, p)| {
            let metrics = p.metrics();
            let report = p.report();
            let nodes: Vec<serde_json::Value> = p
                .graph()
                .nodes()
                .iter()
                .map(|n| {
                    let m = step_metrics(&metrics, n);
                    let r = m.and_then(|m| report.iter().find(|r| r.step == m.step));
                    serde_json::json!({
                        "id": n.id,
                        "label": n.label,
                        "kind": match n.kind {
                            NodeKind::Input => "input",
                            NodeKind::Step { .. } => "step",
                            NodeKind::Gather => "gather",
                            NodeKind::Route => "route",
                            NodeKind::Each => "each",
                            NodeKind::Collect => "collect",
                        },
                        "step": match n.kind {
                            NodeKind::Step { step, .. } => Some(step),
                            _ => None,
                        },
                        "output": n.output,
                        "inputs": n.inputs.iter().map(|(id, label)| serde_json::json!({"from": id, "label": label})).collect::<Vec<_>>(),
                        "deployed": r.map(|r| serde_json::json!({
                            "mode": r.running.as_str(),
                            "queue_bound": r.queue_bound,
                            "autoscale": r.autoscale.is_some(),
                            "devices": r.devices.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        })),
                        "counters": m.map(counters_json),
                    })
                })
                .collect();
            serde_json::json!({"route": route, "nodes": nodes})
        })
        .collect();
    serde_json::json!({ "routes": routes })
}

fn counters_json(m: &StepMetrics) -> serde_json::Value {
    serde_json::json!({
        "requests": m.requests,
        "errors": m.errors,
        "overloaded": m.overloaded,
        "in_flight": m.in_flight,
        "queued": m.queued,
        "replicas": m.replicas,
        "target_replicas": m.target_replicas,
        "replicas_down": m.replicas_down,
        "rebuilds": m.rebuilds,
        "latency_seconds_sum": m.latency.sum,
        // Cumulative counts per upper bound (the last one is +Inf): what
        // `/metrics` exposes as `pipeline_step_latency_seconds_bucket`.
        "latency_seconds": {"le": m.latency.bounds, "cumulative": m.latency.cumulative},
        "batches": m.batch_size.count(),
        "batched_calls": m.batch_size.sum,
        "remote": m.remote,
        "workers": m.remote.map(|_| m.replicas),
        "remote_retries": m.remote_retries,
        "remote_refused": m.remote_refused,
    })
}
