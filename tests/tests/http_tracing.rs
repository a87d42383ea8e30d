//! Tracing: each request's span carries its id, and each step call's span
//! sits inside it. A test binary of its own: it installs a global
//! subscriber that captures the formatted output.
#![cfg(feature = "http")]

use pipeline_core::http::Ingress;
use pipeline_core::prelude::*;

mod support;
use support::Capture;

#[test]
fn request_and_step_spans_carry_the_request_id() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let p = pipeline_examples::seed001::graph()
        .deploy()
        .expect("deploy");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(
        Ingress::new()
            .request("/predict", p)
            .serve_until(listener, async {
                let _ = stopped.await;
            }),
    );
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    let response = agent
        .post(&format!("http://{addr}/predict"))
        .header("x-request-id", "trace-me-42")
        .send(&br#"{"values": [1, 2]}"#[..])
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    let _ = stop.send(());
    rt.block_on(server).expect("join").expect("serve");
    let text = capture.text();
    let answered = text
        .lines()
        .find(|l| {
            l.contains("pipeline_core::http")
                && l.contains(": answered")
                && l.contains("id=trace-me-42")
        })
        .unwrap_or_else(|| panic!("no request span with the id in:\n{text}"));
    assert!(answered.contains("status=200"), "{answered}");
    // The step spans are children of the request span, so their events
    // carry the id too.
    let model = text
        .lines()
        .find(|l| l.contains("step answered") && l.contains("step{step=\"Model\"}"))
        .unwrap_or_else(|| panic!("no Model step span in:\n{text}"));
    assert!(model.contains("id=trace-me-42"), "{model}");
}
