//! A served ingress on a free loopback port and a blocking HTTP client
//! (ureq) for it.

use std::net::SocketAddr;

use pipeline_core::http::Ingress;

/// A served ingress on a free loopback port, stopped (and joined) on drop.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    pub(crate) fn start(ingress: Ingress) -> Server {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener)?;
                ingress
                    .serve_until(listener, async move {
                        let _ = stopped.await;
                    })
                    .await
            })
        });
        Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops accepting, waits for the requests in flight, returns serve's
    /// result.
    pub(crate) fn shutdown(mut self) -> std::io::Result<()> {
        self.stop.take().map(|s| s.send(()));
        self.thread
            .take()
            .expect("thread")
            .join()
            .expect("server thread")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(crate) fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// POSTs `body`; returns the status, the JSON body and the headers.
pub(crate) fn post(url: &str, body: &[u8]) -> (u16, serde_json::Value, ureq::http::HeaderMap) {
    let mut response = agent()
        .post(url)
        .header("content-type", "application/json")
        .send(body)
        .expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.body_mut().read_to_string().expect("body");
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, json, headers)
}

pub(crate) fn get(url: &str) -> (u16, String) {
    let mut response = agent().get(url).call().expect("request");
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().expect("body"))
}
