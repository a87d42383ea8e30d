//! A worker process's side of remote steps: [`Worker`] serves chosen steps
//! from a NATS server, one service endpoint per step, each backed by the
//! actor runner (replicas, batching, devices, panic rebuilds).
//!
//! Leaving without losing calls: on SIGTERM (or the future given to
//! [`Worker::run_until`]) the worker drains its subscribing connection
//! (NATS unsubscribes, then hands over every request the server had
//! already routed here), answers everything it holds over a second
//! connection, and only then returns. Requests that reach it while it
//! leaves are refused (`503`), which callers retry on another worker.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::service::{self, ServiceExt};
use async_nats::{Client, HeaderMap, HeaderName};
use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::error::{DeployError, PipelineError};
use crate::eval::CallMeta;
use crate::graph::intern;
use crate::runtime::protocol::{self, code};
use crate::runtime::{
    cuda_device_count, plan, start, DeployOptions, Run, RunCx, Runtimes, StepCounters, StepOptions,
    StepRunner,
};
use crate::step::{Mode, StepFn, StepInfo, Wire, WireError};

/// A worker process's connection to a NATS server, serving steps.
///
/// ```no_run
/// use pipeline_core::prelude::*;
/// use pipeline_core::remote::Worker;
///
/// #[step(remote)]
/// fn double(x: i64) -> i64 { x * 2 }
///
/// // One thread for NATS and task replicas: cheaper per call than a
/// // multi-thread runtime (no cross-thread wakes); thread replicas (sync
/// // model steps) have their own threads anyway.
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut worker = Worker::connect("nats://127.0.0.1:4222").await?;
/// worker.serve::<double<()>>("double", ()).await?; // a function step's type is `name<()>`
/// worker.run().await?; // until SIGTERM or Ctrl-C; then drains
/// Ok(())
/// }
/// ```
pub struct Worker {
    url: String,
    /// Subscriptions and the NATS services: drained when leaving.
    client: Client,
    /// Answers sent once the draining connection has closed.
    replies: Client,
    services: Vec<(String, service::Service)>,
    /// Each served node and this worker's direct subject for it.
    directs: Vec<(&'static str, String, String)>,
    /// Each step's tasks; `true`: the one taking its requests.
    serving: Vec<(tokio::task::JoinHandle<()>, bool)>,
    /// Tells the tasks taking requests to stop (when the drain did not
    /// finish); the calls they hold go on.
    stop_taking: Arc<tokio::sync::Notify>,
    /// Each call in progress holds a clone; leaving waits for them all.
    in_flight: mpsc::Sender<()>,
    all_done: mpsc::Receiver<()>,
    leaving: Arc<AtomicBool>,
    /// Notified when a subscription ends while the worker is not leaving:
    /// its connection was closed for good (see [`Worker::run`]).
    lost: Arc<tokio::sync::Notify>,
    runtimes: Runtimes,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("url", &self.url)
            .field(
                "steps",
                &self.services.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Returns once the server has taken everything sent on `client` so far
/// (its subscriptions above all). async-nats' `flush` only writes to the
/// socket: a call routed by the server before it read a new worker's
/// `SUB` found no responders, which a pipeline then reported as
/// `Unavailable`. The server handles one connection's messages in order,
/// so a message to ourselves coming back means the ones before it were
/// taken.
async fn synced(client: &Client) -> Result<(), crate::error::BoxError> {
    let inbox = client.new_inbox();
    let mut echo = client.subscribe(inbox.clone()).await?;
    client.publish(inbox, bytes::Bytes::new()).await?;
    client.flush().await?;
    match tokio::time::timeout(DRAIN_LIMIT, echo.next()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err("the connection closed".into()),
        Err(_) => Err(format!("no answer from the server within {DRAIN_LIMIT:?}").into()),
    }
}

fn nats_error(url: &str, message: String, e: impl Into<crate::error::BoxError>) -> DeployError {
    DeployError::Remote {
        step: "*",
        message: format!("{message} (NATS server `{url}`)"),
        source: Some(e.into()),
    }
}

impl Worker {
    /// Connects to the NATS server at `url` (two connections: one that
    /// subscribes, drained when leaving, and one that answers).
    pub async fn connect(url: &str) -> Result<Worker, DeployError> {
        let connect = |role: &'static str| {
            async_nats::ConnectOptions::new()
                .name(format!("pipeline worker ({role})"))
                .connect(url)
        };
        let client = connect("requests")
            .await
            .map_err(|e| nats_error(url, "could not connect".into(), e))?;
        let replies = connect("answers")
            .await
            .map_err(|e| nats_error(url, "could not connect".into(), e))?;
        let (in_flight, all_done) = mpsc::channel(1);
        Ok(Worker {
            url: url.to_string(),
            client,
            replies,
            services: Vec::new(),
            directs: Vec::new(),
            serving: Vec::new(),
            stop_taking: Arc::new(tokio::sync::Notify::new()),
            in_flight,
            all_done,
            leaving: Arc::new(AtomicBool::new(false)),
            lost: Arc::new(tokio::sync::Notify::new()),
            runtimes: Runtimes::new(tokio::runtime::Handle::try_current().ok()),
        })
    }

    /// Serves step `S` under the node name `name` (the name pipelines
    /// give it in `DeployOptions::remote`), its replicas built from
    /// `init`, with the step's own attribute settings.
    pub async fn serve<S: StepFn>(&mut self, name: &str, init: S::Init) -> Result<(), DeployError> {
        self.serve_with::<S>(name, init, StepOptions::default())
            .await
    }

    /// [`serve`](Self::serve) with options for this worker's replicas of
    /// it (`replicas`, `autoscale`, `queue_bound`, `device`). A step runs
    /// on actor replicas here whatever its mode in a pipeline.
    pub async fn serve_with<S: StepFn>(
        &mut self,
        name: &str,
        init: S::Init,
        options: StepOptions,
    ) -> Result<(), DeployError> {
        let fail = |message: String| DeployError::Remote {
            step: S::INFO.name,
            message,
            source: None,
        };
        let Some(wire) = S::wire() else {
            return Err(fail(format!(
                "step `{}` is not marked `#[step(remote)]`",
                S::INFO.name
            )));
        };
        if !crate::runtime::remote_name(name) {
            return Err(fail(format!(
                "a remote step's name must be letters, digits, `_` or `-` (it names a NATS subject); got `{name}`"
            )));
        }
        if self.services.iter().any(|(n, _)| n == name) {
            return Err(fail(format!("this worker serves `{name}` already")));
        }
        let node = intern(name);
        // Actor replicas here, whatever the step's mode in a pipeline; a
        // step that is not an actor step keeps one replica unless told.
        let info = StepInfo {
            mode: Mode::Actors,
            ..S::INFO
        };
        let options = DeployOptions::new().with_step(
            node,
            StepOptions {
                remote: None,
                ..options
            },
        );
        let plan = plan(&info, S::BATCH, node, &options, &mut cuda_device_count)?;
        let counters = Arc::new(StepCounters::default());
        let runner = start::<S>(&plan, init, counters, &mut self.runtimes)?;
        let fingerprint = wire.fingerprint();
        let worker_id = self.client.new_inbox().replace("_INBOX.", "");
        let direct = protocol::direct_subject(node, &worker_id);
        let service = self
            .client
            .service_builder()
            .description(format!("pipeline step `{name}` ({})", S::INFO.name))
            .metadata(HashMap::from([
                (protocol::META_FINGERPRINT.to_string(), fingerprint.clone()),
                (protocol::META_DIRECT.to_string(), direct.clone()),
                ("step".to_string(), S::INFO.name.to_string()),
            ]))
            .start(protocol::service(node), "1.0.0")
            .await
            .map_err(|e| {
                nats_error(
                    &self.url,
                    format!("could not start the service of `{name}`"),
                    e,
                )
            })?;
        let shared = service
            .endpoint(protocol::subject(node))
            .await
            .map_err(|e| nats_error(&self.url, format!("could not serve `{name}`"), e))?;
        let own = service
            .endpoint_builder()
            .name("direct")
            .add(direct.clone())
            .await
            .map_err(|e| nats_error(&self.url, format!("could not serve `{name}`"), e))?;
        let endpoint = futures::stream::select(shared, own);
        let cancels = self
            .client
            .subscribe(protocol::cancel_subject(node))
            .await
            .map_err(|e| {
                nats_error(
                    &self.url,
                    format!("could not subscribe to `{name}`'s cancellations"),
                    e,
                )
            })?;
        let step = Arc::new(Served::<S> {
            node,
            runner,
            digest: wire.fingerprint_digest(),
            wire,
            fingerprint: fingerprint.clone(),
            replies: self.replies.clone(),
            max_payload: self.client.server_info().max_payload,
            cancels: Cancels::default(),
            in_flight: self.in_flight.clone(),
            leaving: Arc::clone(&self.leaving),
            lost: Arc::clone(&self.lost),
            stop_taking: Arc::clone(&self.stop_taking),
        });
        self.serving
            .push((tokio::spawn(Arc::clone(&step).take_cancels(cancels)), false));
        self.serving
            .push((tokio::spawn(step.take_requests(endpoint)), true));
        // Once the server has the subscriptions, calls can reach them.
        synced(&self.client).await.map_err(|e| {
            nats_error(
                &self.url,
                "the server did not take the subscriptions".into(),
                e,
            )
        })?;
        self.announce(node, &direct, &fingerprint, false).await;
        self.services.push((name.to_string(), service));
        self.directs.push((node, direct, fingerprint));
        tracing::info!(step = name, url = %self.url, "serving");
        Ok(())
    }

    /// Serves until SIGTERM or Ctrl-C, then leaves without losing a call
    /// (see the module docs). A second signal while it leaves stops it at
    /// once.
    ///
    /// Fails at once if the connection to the NATS server is closed for
    /// good (async-nats reconnects after network faults by itself, but its
    /// reader stops on a message it cannot parse: 0.51 panics on a header
    /// value holding a bare `\r`). Calls held then cannot be answered; run
    /// workers under a supervisor that starts them again (systemd,
    /// Kubernetes), as a pipeline's callers see `Unavailable` meanwhile.
    pub async fn run(mut self) -> Result<(), DeployError> {
        tokio::select! {
            () = stop_signal() => {}
            () = self.lost.notified() => return Err(self.lost_error()),
        }
        tokio::select! {
            left = self.leave() => left,
            () = stop_signal() => {
                tracing::warn!(url = %self.url, "stopped again while leaving: leaving now");
                Ok(())
            }
        }
    }

    /// Serves until `stop` completes, then leaves without losing a call;
    /// fails as [`run`](Self::run) does if the connection is lost.
    pub async fn run_until(mut self, stop: impl Future<Output = ()>) -> Result<(), DeployError> {
        tokio::select! {
            () = stop => {}
            () = self.lost.notified() => return Err(self.lost_error()),
        }
        self.leave().await
    }

    fn lost_error(&self) -> DeployError {
        tracing::error!(url = %self.url, "the connection to the NATS server was closed for good; stopping");
        nats_error(
            &self.url,
            "the connection to the NATS server was closed for good (async-nats stopped \
             reading it: see the log for its panic); start the worker again"
                .into(),
            "connection closed",
        )
    }

    async fn leave(&mut self) -> Result<(), DeployError> {
        // Pipelines stop choosing this worker when they hear it; it serves
        // on meanwhile, then unsubscribes once nothing more is sent here.
        tracing::info!(url = %self.url, "leaving: announced");
        for (node, direct, fingerprint) in std::mem::take(&mut self.directs) {
            self.announce(node, &direct, &fingerprint, true).await;
        }
        // Bounded: with the server unreachable nothing here can finish (and
        // no answer could be sent).
        let reachable = tokio::time::timeout(DRAIN_LIMIT, self.client.flush())
            .await
            .is_ok_and(|flushed| flushed.is_ok());
        if reachable {
            tokio::time::sleep(protocol::LEAVE_GRACE).await;
        }
        tracing::info!(url = %self.url, "leaving: draining");
        self.leaving.store(true, Ordering::SeqCst);
        // No call starts here any more: batches being formed leave now.
        self.runtimes.stopping().close();
        // Unsubscribes everything (the services' endpoints and `$SRV`
        // verbs too), takes in what the server had routed here meanwhile,
        // then closes this connection; the endpoints' streams then end.
        let drained = tokio::time::timeout(DRAIN_LIMIT, self.client.drain()).await;
        let (serving, aborts): (Vec<_>, Vec<_>) = self
            .serving
            .drain(..)
            .map(|(task, takes)| {
                let abort = (task.abort_handle(), takes);
                (task, abort)
            })
            .unzip();
        let finished = tokio::time::timeout(DRAIN_LIMIT, futures::future::join_all(serving)).await;
        let drained_ok = matches!(drained, Ok(Ok(()))) && finished.is_ok();
        if !drained_ok {
            tracing::warn!(url = %self.url, limit = ?DRAIN_LIMIT, "the drain did not finish (is the NATS server reachable?); leaving anyway");
            // Those taking requests stop taking (the calls they hold go on,
            // each holding its guard); the others are aborted.
            self.stop_taking.notify_waiters();
            for (abort, takes) in aborts {
                if !takes {
                    abort.abort();
                }
            }
        }
        // Every call taken holds a sender: wait until they have answered
        // (bounded when the server is gone: their answers cannot arrive).
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.in_flight, closed));
        let answered = async { while self.all_done.recv().await.is_some() {} };
        if drained_ok {
            answered.await;
        } else {
            let _ = tokio::time::timeout(DRAIN_LIMIT, answered).await;
        }
        let _ = tokio::time::timeout(DRAIN_LIMIT, self.replies.flush()).await;
        tracing::info!(url = %self.url, "left");
        match drained {
            Ok(Err(e)) => Err(nats_error(&self.url, "could not drain".into(), e)),
            _ if !drained_ok => Err(nats_error(
                &self.url,
                "could not drain".into(),
                format!("the drain did not finish within {DRAIN_LIMIT:?}"),
            )),
            _ => Ok(()),
        }
    }
}

impl Worker {
    /// Tells the pipelines using `node` that this worker joined or leaves.
    async fn announce(&self, node: &str, direct: &str, fingerprint: &str, leaving: bool) {
        let announce = protocol::Announce {
            direct: direct.to_string(),
            leaving,
            fingerprint: fingerprint.to_string(),
        };
        if let Ok(json) = serde_json::to_vec(&announce) {
            let _ = self
                .client
                .publish(protocol::announce_subject(node), json.into())
                .await;
        }
    }
}

/// How long a leaving worker waits for its subscriptions to drain (and
/// its last answers to flush) before it gives up on the NATS server.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// SIGTERM (Unix) or Ctrl-C.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// One step served by a worker.
struct Served<S: StepFn> {
    node: &'static str,
    runner: Box<dyn StepRunner<S>>,
    wire: Wire<S::Inputs, S::Output>,
    fingerprint: String,
    /// `Wire::fingerprint_digest()`, which calls carry.
    digest: String,
    replies: Client,
    max_payload: usize,
    /// Cancellations heard, not yet matched to a call.
    cancels: Cancels,
    in_flight: mpsc::Sender<()>,
    leaving: Arc<AtomicBool>,
    /// See `Worker::lost`.
    lost: Arc<tokio::sync::Notify>,
    /// Notified: stop taking requests (see `Worker::stop_taking`).
    stop_taking: Arc<tokio::sync::Notify>,
}

/// What to answer: the output's bytes, or an error code and text.
type Answer = Result<Vec<u8>, (usize, String)>;

/// What a worker knows of cancellations: the calls under way, by a
/// fingerprint of their call id (a count each: a plain client may send two
/// calls with one id), cancellations naming one of them until that call
/// looks, and cancellations naming none (yet: requests and cancellations
/// arrive on two subscriptions, so a cancellation may come before its
/// call) for a while.
///
/// Why fingerprints: a book of the calls under way keyed by their id (a
/// `String` key, a oneshot channel, a SipHash on the way in and out) cost
/// a call about 1,100 of the worker's instructions (`benches/remote.rs`
/// under callgrind), for cancellations that are rare. A call now adds its
/// fingerprint (FNV-1a of the id, in a map that does not hash again) and
/// takes a [`Notified`](tokio::sync::futures::OwnedNotified); a
/// cancellation whose fingerprint is under way is kept for the calls to
/// look for (each woken call re-reads its own id from its header). Keeping
/// those apart from the ones naming no call keeps a flood of ids no call
/// has from pushing out a real cancellation.
#[derive(Clone, Default)]
struct Cancels(Arc<CancelsInner>);

#[derive(Default)]
struct CancelsInner {
    state: Mutex<CancelState>,
    /// Notified (all waiters) when a cancellation names a call under way.
    targeted: Arc<tokio::sync::Notify>,
}

#[derive(Default)]
struct CancelState {
    /// Calls under way, by fingerprint: how many.
    under_way: HashMap<u64, u32, std::hash::BuildHasherDefault<Fingerprinted>>,
    /// Cancellations naming a call under way, until it looks (at most one
    /// per call under way, and [`EARLY_CANCELS`] more).
    targeted: std::collections::HashSet<String>,
    /// Cancellations naming no call under way, with when: a call with
    /// that id never starts. Forgotten after [`EARLY_CANCEL_TTL`] (most
    /// name calls that had finished); at most [`EARLY_CANCELS`], past
    /// which new ones are not kept.
    early: HashMap<String, Instant>,
}

/// FNV-1a of a call id.
fn fingerprint(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A `Hasher` for keys that are fingerprints already: it keeps the `u64`.
#[derive(Default)]
struct Fingerprinted(u64);

impl std::hash::Hasher for Fingerprinted {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; any other key is folded in.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A call under way, counted in its worker's [`Cancels`] until dropped.
struct UnderWay {
    cancels: Cancels,
    fingerprint: u64,
    /// Completes when a cancellation names a call under way (taken before
    /// the call was counted, so none is missed); taken by the wait.
    targeted: Option<tokio::sync::futures::OwnedNotified>,
}

impl Drop for UnderWay {
    fn drop(&mut self) {
        let mut state = self.cancels.lock();
        let state = &mut *state;
        if let Some(n) = state.under_way.get_mut(&self.fingerprint) {
            *n -= 1;
            if *n == 0 {
                state.under_way.remove(&self.fingerprint);
                // A cancellation that came as the call ended is forgotten.
                if !state.targeted.is_empty() {
                    let fp = self.fingerprint;
                    state.targeted.retain(|id| fingerprint(id) != fp);
                }
            }
        }
    }
}

impl Cancels {
    fn lock(&self) -> std::sync::MutexGuard<'_, CancelState> {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a cancellation for call `id`: kept for the call if one with
    /// its fingerprint is under way (and the calls under way are woken to
    /// look), else for a while for a call yet to come.
    fn add(&self, id: &str) {
        let fp = fingerprint(id);
        let woken = {
            let mut state = self.lock();
            let state = &mut *state;
            if state.under_way.contains_key(&fp) {
                if state.targeted.len() < state.under_way.len() + EARLY_CANCELS {
                    state.targeted.insert(id.to_string());
                }
                true
            } else {
                let early = &mut state.early;
                if early.len() >= EARLY_CANCELS {
                    early.retain(|_, at| at.elapsed() < EARLY_CANCEL_TTL);
                }
                if early.len() < EARLY_CANCELS {
                    early.insert(id.to_string(), Instant::now());
                }
                false
            }
        };
        if woken {
            self.0.targeted.notify_waiters();
        }
    }

    /// Counts call `id` as under way; `None` if it was cancelled before it
    /// came (the cancellation is spent).
    fn start(&self, id: &str) -> Option<UnderWay> {
        let fingerprint = fingerprint(id);
        // Taken first: a cancellation added once the call is counted
        // wakes it.
        let targeted = Arc::clone(&self.0.targeted).notified_owned();
        let mut state = self.lock();
        if !state.early.is_empty() {
            // (One past its time names an earlier call with this id: a
            // plain client may reuse ids.)
            if let Some(at) = state.early.remove(id) {
                if at.elapsed() < EARLY_CANCEL_TTL {
                    return None;
                }
            }
        }
        *state.under_way.entry(fingerprint).or_default() += 1;
        drop(state);
        Some(UnderWay {
            cancels: self.clone(),
            fingerprint,
            targeted: Some(targeted),
        })
    }

    /// Whether call `id`, under way, was cancelled; the cancellation is
    /// spent.
    fn take(&self, id: &str) -> bool {
        self.lock().targeted.remove(id)
    }

    /// Completes when a cancellation next names a call under way.
    fn next(&self) -> tokio::sync::futures::OwnedNotified {
        Arc::clone(&self.0.targeted).notified_owned()
    }
}

/// At most this many cancellations naming no call under way are kept,
/// each for at most [`EARLY_CANCEL_TTL`].
const EARLY_CANCELS: usize = 4096;
const EARLY_CANCEL_TTL: Duration = Duration::from_secs(30);

/// A call handed to the replicas, not yet answered.
struct Started<O> {
    run: Run<'static, O>,
    deadline: Option<Instant>,
    /// With a call id: counted as under way, for cancellations.
    under_way: Option<UnderWay>,
}

impl<S: StepFn> Served<S> {
    /// A subscription ended: unless the worker is leaving, its
    /// connection is gone for good.
    fn ended(&self) {
        if !self.leaving.load(Ordering::SeqCst) {
            self.lost.notify_one();
        }
    }

    async fn take_cancels(self: Arc<Self>, mut cancels: async_nats::Subscriber) {
        while let Some(message) = cancels.next().await {
            let Ok(call_id) = std::str::from_utf8(&message.payload) else {
                continue;
            };
            // No call of ours has a longer id: nothing to cancel or keep.
            if call_id.len() > protocol::MAX_CALL_ID {
                continue;
            }
            self.cancels.add(call_id);
        }
        self.ended();
    }

    /// Takes requests in arrival order: each is decoded and handed to the
    /// replicas here (so the replicas' queue keeps that order), then
    /// awaited with the others taken, in this task (a task per call cost
    /// more than the rest of the worker's own work per call). Once the
    /// endpoint's stream ends (drained), the calls still running go on in
    /// a task of their own, each holding its `in_flight` guard.
    async fn take_requests(
        self: Arc<Self>,
        mut endpoint: impl futures::Stream<Item = service::Request> + Unpin,
    ) {
        use futures::stream::FuturesUnordered;
        use futures::FutureExt;
        use std::task::Poll;
        let mut calls = FuturesUnordered::new();
        let mut open = true;
        let stop = self.stop_taking.notified();
        tokio::pin!(stop);
        futures::future::poll_fn(|cx| {
            if open && stop.as_mut().poll(cx).is_ready() {
                open = false;
            }
            // New requests first (each handed to the replicas as it is
            // taken), then whichever calls are ready.
            while open {
                match endpoint.poll_next_unpin(cx) {
                    Poll::Ready(Some(request)) => calls.push(
                        // A panic answering a call stays with that call.
                        std::panic::AssertUnwindSafe(Arc::clone(&self).take(request))
                            .catch_unwind()
                            .map(drop),
                    ),
                    Poll::Ready(None) => {
                        open = false;
                        self.ended();
                    }
                    Poll::Pending => break,
                }
            }
            while let Poll::Ready(Some(())) = calls.poll_next_unpin(cx) {}
            if open {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        if !calls.is_empty() {
            tokio::spawn(async move { while calls.next().await.is_some() {} });
        }
    }

    /// Starts one request's call; the future answers it.
    fn take(
        self: Arc<Self>,
        request: service::Request,
    ) -> impl Future<Output = ()> + Send + 'static {
        {
            let guard = self.in_flight.clone();
            let headers = request.message.headers.as_ref();
            let request_id = header(headers, &protocol::REQUEST_ID);
            let span = tracing::info_span!(
                "remote_step",
                step = self.node,
                request_id = request_id.unwrap_or("")
            );
            let started = span.in_scope(|| self.start(&request, headers, request_id));
            let step = self;
            async move {
                let answer = match started {
                    // Boxed, as the answer's future is (see `respond`):
                    // the future of every call stays under the size
                    // glibc's malloc serves from its per-thread cache
                    // (848 bytes, from 1,760 with both inline).
                    Ok(call) => Box::pin(step.finish(&request, call)).await,
                    Err(answer) => answer,
                };
                if let Some(answer) = answer {
                    step.respond(&request, answer).await;
                }
                drop(guard);
            }
            .instrument(span)
        }
    }

    /// Checks a request and hands it to the replicas; an answer at once
    /// if it cannot run.
    fn start(
        &self,
        request: &service::Request,
        headers: Option<&HeaderMap>,
        request_id: Option<&str>,
    ) -> Result<Started<S::Output>, Option<Answer>> {
        let header = |key: &HeaderName| header(headers, key);
        if self.leaving.load(Ordering::SeqCst) {
            return Err(Some(Err((code::REFUSED, "the worker is leaving".into()))));
        }
        // A request without the header (a plain NATS client's) runs with
        // no deadline, no cancellation and no fingerprint check.
        let call = match header(&protocol::CALL).map(protocol::CallHeader::parse) {
            None => None,
            Some(Some(call)) => Some(call),
            Some(None) => {
                return Err(Some(Err((
                    code::BAD_INPUT,
                    format!(
                        "the `{}` header is not `<call id> <timeout ms> <digest>` (a call id of at most {} bytes)",
                        protocol::CALL,
                        protocol::MAX_CALL_ID
                    ),
                ))))
            }
        };
        if let Some(theirs) = call.map(|c| c.digest) {
            if theirs != self.digest {
                return Err(Some(Err((
                    code::MISMATCH,
                    format!(
                        "the worker serves `{}` as `{}` (digest {}), the pipeline's differs (digest {theirs}); \
                         rebuild one from the other's step definition",
                        self.node, self.fingerprint, self.digest
                    ),
                ))));
            }
        }
        let budget = call.map(|c| Duration::from_millis(c.timeout_ms));
        if budget.is_some_and(|b| b.is_zero()) {
            return Err(Some(Err((
                code::DEADLINE,
                "the deadline passed before it started".into(),
            ))));
        }
        let inputs = self
            .wire
            .decode_inputs(&request.message.payload)
            .map_err(|e| Some(Err((wire_code(&e, code::BAD_INPUT), chain(&e)))))?;
        let deadline = budget.and_then(|b| Instant::now().checked_add(b));
        let meta = CallMeta {
            deadline,
            request_id: request_id.map(Arc::from),
        };
        let under_way = match call.map(|call| self.cancels.start(call.call_id)) {
            // Its cancellation came first: the caller is gone.
            Some(None) => return Err(None),
            Some(Some(under_way)) => Some(under_way),
            None => None,
        };
        let run = self.runner.run(inputs, RunCx::detached(&meta)).into_owned();
        let Ok(run) = run else {
            return Err(Some(Err((
                code::WORKER,
                "the step's runner returned a borrowed call".into(),
            ))));
        };
        if let Run::Done(Some(Err(PipelineError::Overloaded { .. }))) = &run {
            return Err(Some(Err((
                code::REFUSED,
                "the worker's queue is full".into(),
            ))));
        }
        Ok(Started {
            run,
            deadline,
            under_way,
        })
    }

    /// Waits for a started call; `None` when its caller cancelled it.
    async fn finish(&self, request: &service::Request, call: Started<S::Output>) -> Option<Answer> {
        let Started {
            mut run,
            deadline,
            under_way,
        } = call;
        let wait = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(wait);
        let cancel = async {
            // (Held until the call ends: it counts the call as under way.)
            let Some(mut under_way) = under_way else {
                return std::future::pending().await;
            };
            let Some(first) = under_way.targeted.take() else {
                return std::future::pending().await;
            };
            let mut targeted = std::pin::pin!(first);
            loop {
                targeted.as_mut().await;
                // Armed again before looking, so no later one is missed.
                targeted.set(under_way.cancels.next());
                let id = header(request.message.headers.as_ref(), &protocol::CALL)
                    .and_then(protocol::CallHeader::parse)
                    .map(|c| c.call_id);
                if id.is_some_and(|id| under_way.cancels.take(id)) {
                    return;
                }
            }
        };
        let outcome = tokio::select! {
            result = &mut run => Some(self.encode(result)),
            () = cancel => None,
            () = &mut wait => Some(Err((code::DEADLINE, "the deadline passed".into()))),
        };
        if outcome.is_none() {
            tracing::debug!(step = self.node, "the caller cancelled the call");
        }
        outcome
    }

    fn encode(&self, result: Result<S::Output, PipelineError>) -> Answer {
        match result {
            Ok(output) => {
                let bytes = self
                    .wire
                    .encode_output(&output)
                    .map_err(|e| (wire_code(&e, code::WORKER), chain(&e)))?;
                if bytes.len() > self.max_payload {
                    return Err((
                        code::WORKER,
                        format!(
                            "the answer is {} bytes, over the NATS server's max_payload of {} bytes",
                            bytes.len(),
                            self.max_payload
                        ),
                    ));
                }
                Ok(bytes)
            }
            Err(e) => Err(match &e {
                PipelineError::Overloaded { .. } | PipelineError::ShuttingDown => {
                    (code::REFUSED, e.to_string())
                }
                PipelineError::Panicked { message, .. } => (code::PANICKED, message.clone()),
                PipelineError::Step { .. } => (
                    code::STEP_FAILED,
                    std::error::Error::source(&e)
                        .map(chain)
                        .unwrap_or_else(|| e.to_string()),
                ),
                PipelineError::DeadlineExceeded { .. } => (code::DEADLINE, e.to_string()),
                _ => (code::WORKER, chain(&e)),
            }),
        }
    }

    /// Answers over the subscribing connection (which counts it in the
    /// service's STATS) or, once that one is draining or closed, over the
    /// answering one.
    async fn respond(&self, request: &service::Request, answer: Answer) {
        let (payload, error) = match answer {
            Ok(bytes) => (bytes::Bytes::from(bytes), None),
            Err((code, text)) => (
                bytes::Bytes::new(),
                Some((code, one_line(&text, self.max_payload))),
            ),
        };
        // A `Bytes` clone shares the buffer (no copy).
        let result = match &error {
            None => Ok(payload.clone()),
            Some((code, status)) => Err(service::error::Error {
                status: status.clone(),
                code: *code,
            }),
        };
        // Boxed: async-nats' `respond` future is 968 bytes; held in every
        // call's future it made each one past the 1,032 bytes glibc's
        // malloc serves from its per-thread cache (a slow `malloc` and
        // `free` per call); boxed alone it fits.
        let sent = Box::pin(request.respond(result)).await;
        if sent.is_ok() && !self.leaving.load(Ordering::SeqCst) {
            return;
        }
        // Leaving: the draining connection may drop what it was given, so
        // the answer goes (again, harmlessly: the caller takes the first)
        // over the answering one.
        let Some(reply) = request.message.reply.clone() else {
            return;
        };
        let mut headers = HeaderMap::new();
        if let Some((code, status)) = &error {
            headers.insert(service::NATS_SERVICE_ERROR, status.as_str());
            headers.insert(service::NATS_SERVICE_ERROR_CODE, code.to_string().as_str());
        }
        // Boxed: a rare path, whose future would otherwise make every
        // call's bigger.
        let _ = Box::pin(self.replies.publish_with_headers(reply, headers, payload)).await;
    }
}

/// The code to answer a wire error with: a panic in the type's own
/// `Serialize` or `Deserialize` is the step's panic (`Panicked` for the
/// caller), anything else `otherwise`.
fn wire_code(e: &WireError, otherwise: usize) -> usize {
    match e {
        WireError::Panicked { .. } => code::PANICKED,
        _ => otherwise,
    }
}

/// An error and its causes, each once: `a: b: c`.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

fn header<'a>(headers: Option<&'a HeaderMap>, key: &HeaderName) -> Option<&'a str> {
    // A scan, not `get`: a request has a header or two, and `get` hashes
    // the name with SipHash (two lookups a call cost about 850
    // instructions, `benches/remote.rs` under callgrind).
    let (_, values) = headers?.iter().find(|(name, _)| *name == key)?;
    values.first().map(|v| v.as_str())
}

/// A header value holds one line, and the whole message must stay under
/// the server's max payload: an error text is cut at [`MAX_ERROR_TEXT`]
/// bytes (on a character boundary), saying so.
fn one_line(text: &str, max_payload: usize) -> String {
    let limit = MAX_ERROR_TEXT.min(max_payload / 4);
    let mut line = text.replace(['\r', '\n'], " ");
    if line.len() > limit {
        let mut cut = limit.saturating_sub(32);
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        let total = line.len();
        line.truncate(cut);
        line.push_str(&format!(" ... ({total} bytes, cut)"));
    }
    line
}

/// The longest error text a worker sends back.
const MAX_ERROR_TEXT: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_early_cancellation_skips_its_call_once_and_only_within_its_time() {
        let cancels = Cancels::default();
        cancels.add("p.1");
        cancels.add("p.1");
        assert!(cancels.start("p.1").is_none(), "cancelled before it came");
        assert!(cancels.start("p.1").is_some(), "spent once");
        cancels.add("p.2");
        cancels.lock().early.insert(
            "p.2".into(),
            Instant::now() - EARLY_CANCEL_TTL - Duration::from_millis(1),
        );
        assert!(cancels.start("p.2").is_some(), "past its time");
    }

    #[test]
    fn a_cancellation_of_a_call_under_way_is_kept_for_it_past_a_flood() {
        let cancels = Cancels::default();
        let under_way = cancels.start("p.7").unwrap();
        for i in 0..2 * EARLY_CANCELS {
            cancels.add(&format!("ghost.{i}"));
        }
        assert_eq!(cancels.lock().early.len(), EARLY_CANCELS, "bounded");
        assert!(!cancels.take("p.7"));
        cancels.add("p.7");
        assert!(cancels.take("p.7"));
        assert!(!cancels.take("p.7"), "spent once");
        // Ended: nothing kept for it, and a later cancellation waits for a
        // call yet to come (the set is full: it is not kept).
        cancels.add("p.7");
        drop(under_way);
        let state = cancels.lock();
        assert!(state.under_way.is_empty() && state.targeted.is_empty());
    }

    #[test]
    fn a_call_under_way_is_woken_by_its_cancellation() {
        let cancels = Cancels::default();
        let mut under_way = cancels.start("p.3").unwrap();
        let woken = under_way.targeted.take().unwrap();
        let mut woken = std::pin::pin!(woken);
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(woken.as_mut().poll(&mut cx).is_pending());
        cancels.add("other.9");
        assert!(
            woken.as_mut().poll(&mut cx).is_pending(),
            "names no call under way"
        );
        cancels.add("p.3");
        assert!(woken.as_mut().poll(&mut cx).is_ready());
        assert!(cancels.take("p.3"));
    }

    #[test]
    fn two_calls_with_one_id_one_cancellation_skips_one() {
        let cancels = Cancels::default();
        let (a, b) = (cancels.start("x").unwrap(), cancels.start("x").unwrap());
        cancels.add("x");
        assert!(cancels.take("x"));
        assert!(!cancels.take("x"));
        drop(a);
        assert_eq!(cancels.lock().under_way.len(), 1);
        drop(b);
        assert!(cancels.lock().under_way.is_empty());
    }
}
