//! The dashboard page: what the server sends (self-contained, escaped, on
//! and off), the JSON it reads, and, in a real headless Chromium, the page
//! drawing seed 001 and the image ensemble under load, its figures moving,
//! and a step marked degraded after an injected fault.
#![cfg(feature = "http")]

use std::sync::{Arc, Condvar, Mutex};

mod support;

use pipeline_core::http::Ingress;
use pipeline_core::prelude::*;
use pipeline_examples::seed001;
use support::http::{agent, get, post, Server};

fn seed_ingress() -> Ingress {
    Ingress::new().request("/predict", seed001::graph().deploy().expect("deploy"))
}

#[test]
fn the_page_is_one_self_contained_document_with_every_step_drawn() {
    let server = Server::start(seed_ingress());
    let mut response = agent()
        .get(&server.url("/dashboard"))
        .call()
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    let csp = header("content-security-policy");
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    let page = response.body_mut().read_to_string().expect("body");
    assert!(page.len() < 64 * 1024, "{} bytes", page.len());
    // Nothing is fetched from elsewhere: no external script, style, font
    // or image, and no absolute URL but the SVG namespace.
    for needle in ["<script src", "<link", "@import", "url(http", "https://"] {
        assert!(!page.contains(needle), "the page holds `{needle}`");
    }
    assert_eq!(
        page.matches("http://").count(),
        page.matches("http://www.w3.org/2000/svg").count(),
        "an absolute URL other than the SVG namespace"
    );
    // Each step a drawn node with its figure slots, each edge a path.
    for step in ["preprocessor", "Model", "postprocessor"] {
        assert!(
            page.contains(&format!(r#"<g class="node step" data-node="{step}""#)),
            "{step} is not drawn"
        );
    }
    assert_eq!(page.matches(r#"data-f="rate""#).count(), 3);
    assert_eq!(
        page.matches(r#"class="edge""#).count(),
        3,
        "input -> 3 steps"
    );
    assert!(page.contains(r#"data-route="/predict""#));
    // And it reads the graph JSON, relative to where it is served.
    assert!(page.contains(r#"fetch("graph?format=json""#));
}

#[test]
fn root_redirects_to_the_page_and_a_post_route_at_root_still_answers() {
    #[step]
    fn shout(s: String) -> String {
        s.to_uppercase()
    }
    let p = shout(Input::<String>::new()).deploy().expect("deploy");
    let server = Server::start(Ingress::new().json("/", p));
    let response = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .new_agent()
        .get(&server.url("/"))
        .call()
        .expect("request");
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(response.headers()["location"], "/dashboard");
    let (status, json, _) = post(&server.url("/"), br#""hi""#);
    assert_eq!((status, json), (200, serde_json::json!("HI")));
}

#[test]
fn switched_off_neither_path_is_served() {
    let server = Server::start(seed_ingress().dashboard(false));
    for path in ["/dashboard", "/"] {
        let (status, body) = get(&server.url(path));
        assert_eq!(status, 404, "{path}: {body}");
    }
    // The endpoints the page reads are still there.
    assert_eq!(get(&server.url("/graph")).0, 200);
}

#[test]
fn hostile_step_and_route_names_are_escaped() {
    #[step]
    fn echo(s: String) -> String {
        s
    }
    let evil = r#"<script>alert("x")</script>&'"#;
    let p = echo(Input::<String>::new())
        .named(evil)
        .deploy()
        .expect("deploy");
    let server = Server::start(Ingress::new().json("/a<b>&\"c", p));
    let (status, page) = get(&server.url("/dashboard"));
    assert_eq!(status, 200);
    assert!(
        !page.contains("<script>alert"),
        "the name went in unescaped"
    );
    assert!(page.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"));
    assert!(page.contains(r#"data-route="/a&lt;b&gt;&amp;&quot;c""#));
    assert_eq!(page.matches("<script>").count(), 1, "only the page's own");
}

/// A gate a replica's constructor waits at while it is shut.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    fn set_shut(&self, shut: bool) {
        *self.0 .0.lock().unwrap() = shut;
        self.0 .1.notify_all();
    }
    fn pass(&self) {
        let (shut, changed) = &*self.0;
        let _open = changed
            .wait_while(shut.lock().unwrap(), |shut| *shut)
            .unwrap();
    }
}

/// Panics on `"panic"`; its replica is rebuilt through the gate.
struct Flaky;

#[step(mode = "actors")]
impl Flaky {
    fn new(gate: Gate) -> Self {
        gate.pass();
        Flaky
    }
    fn call(&mut self, s: String) -> String {
        assert_ne!(s, "panic", "an injected fault");
        s
    }
}

/// Says it started, then holds its call until the gate opens: one call
/// in flight fills an in-flight bound of 1.
struct Held {
    gate: Gate,
    entered: std::sync::mpsc::SyncSender<()>,
}

#[step(mode = "tasks")]
impl Held {
    fn new(gate: Gate, entered: std::sync::mpsc::SyncSender<()>) -> Self {
        Held { gate, entered }
    }
    fn call(&self, x: u8) -> u8 {
        let _ = self.entered.send(());
        self.gate.pass();
        x
    }
}

#[test]
fn the_json_the_page_reads_counts_overloads_and_says_how_each_step_runs() {
    let gate = Gate::default();
    let (entered, started) = std::sync::mpsc::sync_channel(4);
    let p = Held::bind(gate.clone(), entered, Input::<u8>::new())
        .deploy_with(DeployOptions::new().queue_bound("Held", 1))
        .expect("deploy");
    gate.set_shut(true);
    let first = {
        let p = p.clone();
        std::thread::spawn(move || p.call(1))
    };
    started.recv().expect("the first call started");
    // It holds the one permit: the next call is refused at once.
    assert!(matches!(p.call(2), Err(PipelineError::Overloaded { .. })));
    let server = Server::start(
        Ingress::new().json("/held", p.clone()).json(
            "/flaky",
            Flaky::bind(Gate::default(), Input::<String>::new())
                .deploy()
                .expect("deploy"),
        ),
    );
    gate.set_shut(false);
    first.join().unwrap().expect("the held call");
    let m = &p.metrics()[0];
    assert_eq!((m.requests, m.errors, m.overloaded), (2, 1, 1), "{m:?}");

    let (status, body) = get(&server.url("/graph"));
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let held = &json["routes"][0]["nodes"][1]["counters"];
    assert_eq!(
        (&held["errors"], &held["overloaded"]),
        (&1.into(), &1.into())
    );
    let (_, metrics) = get(&server.url("/metrics"));
    assert!(
        metrics.contains(r#"pipeline_step_overloaded_total{route="/held",step="Held"} 1"#),
        "{metrics}"
    );
    let node = &json["routes"][1]["nodes"][1];
    assert_eq!(node["label"], "Flaky");
    assert_eq!(node["deployed"]["mode"], "actors");
    assert_eq!(node["deployed"]["devices"], serde_json::json!(["cpu"]));
    assert_eq!(node["deployed"]["queue_bound"], 256);
    let lat = &node["counters"]["latency_seconds"];
    assert_eq!(
        lat["le"].as_array().unwrap().len() + 1,
        lat["cumulative"].as_array().unwrap().len(),
        "+Inf last"
    );
    assert_eq!(node["counters"]["overloaded"], 0);
    assert!(json["routes"][1]["nodes"][0]["deployed"].is_null(), "input");
}

/// The browser test: seed 001 and the image ensemble served under load,
/// the page opened in headless Chromium.
#[cfg(feature = "torch")]
mod browser {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use fantoccini::{Client, Locator};

    use super::*;
    use crate::support::browser::Driver;

    const GUARD: Duration = Duration::from_secs(120);

    /// Posts to `url` until `stop`, counting answers.
    fn traffic(
        url: String,
        bodies: Vec<Vec<u8>>,
        stop: Arc<AtomicBool>,
    ) -> std::thread::JoinHandle<u64> {
        std::thread::spawn(move || {
            let agent = agent();
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = &bodies[sent as usize % bodies.len()];
                agent.post(&url).send(&body[..]).expect("request");
                sent += 1;
            }
            sent
        })
    }

    /// Each step node's route, name and the requests it shows.
    async fn shown(client: &Client) -> Vec<(String, String, u64, String)> {
        let rows = client
            .execute(
                "return Array.from(document.querySelectorAll('g.step')).map(g => \
                 [g.closest('section').dataset.route, g.dataset.node, \
                  Number(g.dataset.requests || 0), g.querySelector('[data-f=rate]').textContent])",
                vec![],
            )
            .await
            .expect("script");
        serde_json::from_value(rows).expect("rows")
    }

    async fn wait_for(client: &Client, css: &str) {
        client
            .wait()
            .at_most(GUARD)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("never found `{css}`: {e}"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_page_draws_both_pipelines_its_figures_move_and_a_fault_is_marked() {
        let gate = Gate::default();
        let ensemble = pipeline_examples::vision::served::ensemble(None)
            .deploy()
            .expect("deploy");
        let server = Server::start(
            seed_ingress()
                .request("/classify", ensemble)
                .json(
                    "/flaky",
                    Flaky::bind(gate.clone(), Input::<String>::new())
                        .deploy()
                        .expect("deploy"),
                )
                .body_limit(10 * 1024 * 1024),
        );
        // The steps the page must show, from the server's own graph.
        let graph: serde_json::Value = serde_json::from_str(&get(&server.url("/graph")).1).unwrap();
        let mut steps = Vec::new();
        for route in graph["routes"].as_array().unwrap() {
            for node in route["nodes"].as_array().unwrap() {
                if node["kind"] == "step" {
                    steps.push((
                        route["route"].as_str().unwrap().to_string(),
                        node["label"].as_str().unwrap().to_string(),
                    ));
                }
            }
        }
        assert_eq!(steps.len(), 3 + 5 + 1, "{steps:?}");

        let stop = Arc::new(AtomicBool::new(false));
        let images = pipeline_examples::vision::sample_images()
            .into_iter()
            .map(|(_, bytes)| bytes)
            .collect();
        let load = [
            traffic(
                server.url("/predict"),
                vec![
                    br#"{"values": [1, 2, 6]}"#.to_vec(),
                    br#"{"values": [3]}"#.to_vec(),
                ],
                Arc::clone(&stop),
            ),
            traffic(server.url("/classify"), images, Arc::clone(&stop)),
            traffic(
                server.url("/flaky"),
                vec![br#""ok""#.to_vec()],
                Arc::clone(&stop),
            ),
        ];

        let driver = Driver::start();
        let client = driver.browser(1500, 1500).await;
        client.goto(&server.url("/dashboard")).await.expect("goto");

        // Every step node is drawn, with figures filled in.
        for (route, step) in &steps {
            wait_for(
                &client,
                &format!(
                    r#"section[data-route="{route}"] g.step[data-node="{step}"][data-requests]"#
                ),
            )
            .await;
            wait_for(
                &client,
                &format!(r#"section[data-route="{route}"] tr[data-node="{step}"]"#),
            )
            .await;
        }
        // The counters shown increase between two reads.
        let first = shown(&client).await;
        assert_eq!(first.len(), steps.len(), "{first:?}");
        for (route, step, requests, _) in &first {
            wait_for(
                &client,
                &format!(
                    r#"section[data-route="{route}"] g.step[data-node="{step}"]:not([data-requests="{requests}"])"#
                ),
            )
            .await;
        }
        let second = shown(&client).await;
        for ((route, step, before, _), (_, _, after, rate)) in first.iter().zip(&second) {
            assert!(after > before, "{route} {step}: {before} then {after}");
            assert!(
                rate.ends_with("errors") && !rate.starts_with('–'),
                "{route} {step}: {rate}"
            );
        }

        // A replica that panics and cannot come back: marked degraded.
        gate.set_shut(true);
        let (status, _, _) = post(&server.url("/flaky"), br#""panic""#);
        assert_eq!(status, 500);
        wait_for(&client, r#"g.step.degraded[data-node="Flaky"]"#).await;
        wait_for(&client, r#"tr.degraded[data-node="Flaky"]"#).await;
        let badge = client
            .find(Locator::Css(
                r#"g.step[data-node="Flaky"] [data-f="badge"]"#,
            ))
            .await
            .expect("badge")
            .text()
            .await
            .expect("text");
        assert_eq!(badge, "DEGRADED 1 down");
        // The other steps are not.
        for (route, step) in steps.iter().filter(|(_, s)| s != "Flaky") {
            let css = format!(r#"section[data-route="{route}"] g.step[data-node="{step}"]"#);
            let class = client
                .find(Locator::Css(&css))
                .await
                .expect("node")
                .attr("class")
                .await
                .expect("class")
                .unwrap_or_default();
            assert!(!class.contains("degraded"), "{route} {step}: {class}");
        }
        // The whole page in one picture.
        let height = client
            .execute("return document.documentElement.scrollHeight", vec![])
            .await
            .expect("script")
            .as_u64()
            .expect("a height");
        client
            .set_window_size(1500, height as u32 + 200)
            .await
            .expect("resize");
        let png = client.screenshot().await.expect("screenshot");
        let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("dashboard.png"), &png).expect("save the screenshot");

        // The replica comes back: the mark goes.
        gate.set_shut(false);
        wait_for(&client, r#"g.step[data-node="Flaky"]:not(.degraded)"#).await;

        client.close().await.expect("close");
        stop.store(true, Ordering::Relaxed);
        for l in load {
            assert!(l.join().expect("load thread") > 0);
        }
        server.shutdown().expect("shutdown");
    }
}
