//! The pipeline's side of a remote step: one NATS request per call,
//! refused calls retried on another worker a bounded number of times,
//! deadlines and cancellation sent along.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_nats::client::RequestErrorKind;
use async_nats::service::NATS_SERVICE_ERROR_CODE;
use async_nats::{Client, HeaderMap};
use futures::StreamExt;
use tokio::runtime::Handle;

use super::protocol::{self, code};
use crate::error::{DeployError, PipelineError, RemoteError};
use crate::eval::CallMeta;
use crate::runtime::executor::{blocking, Runtimes};
use crate::runtime::metrics::StepCounters;
use crate::runtime::options::RemoteUrl;
use crate::runtime::plan::StepPlan;
use crate::runtime::runner::{Run, RunCx, StepRunner};
use crate::step::{StepFn, Wire, WireError};

/// How long a call with no deadline waits for its worker's answer (a
/// worker killed mid-call never answers).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// How many times a refused call is sent again (to whichever worker the
/// queue group picks).
pub(crate) const RETRIES: usize = 3;
/// How long a call waits for a connection closed for good to be made again
/// before it fails with `Unavailable` (see `Conn`).
const RECONNECT_WAIT: Duration = Duration::from_secs(1);
/// How often the pipeline asks a remote step's workers for their INFO.
const DISCOVER_EVERY: Duration = Duration::from_secs(1);
/// How long it waits for their answers.
const DISCOVER_WAIT: Duration = Duration::from_millis(250);

pub(crate) struct RemoteRunner<S: StepFn> {
    step: &'static str,
    conn: Arc<Conn>,
    subject: async_nats::Subject,
    cancel_subject: async_nats::Subject,
    wire: Arc<Wire<S::Inputs, S::Output>>,
    /// `Wire::fingerprint_digest()`, sent with every call.
    digest: String,
    /// Call ids: this prefix (random per runner) and a count.
    call_prefix: String,
    calls: AtomicU64,
    counters: Arc<StepCounters>,
    io: Handle,
    /// The workers this pipeline knows of, kept by `watch`.
    registry: Arc<Registry>,
    watch: tokio::task::JoinHandle<()>,
}

impl<S: StepFn> std::fmt::Debug for RemoteRunner<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteRunner")
            .field("step", &self.step)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl<S: StepFn> Drop for RemoteRunner<S> {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

/// A remote step's connection to the NATS server, replaced when it is
/// closed for good. async-nats reconnects by itself after a network
/// fault, but its reader stops for good on a message it cannot parse
/// (0.51 panics on a header value holding a bare `\r`, which anyone
/// allowed to publish on a subject the pipeline listens to can send):
/// every later request would then fail with "channel closed".
struct Conn {
    client: RwLock<Arc<Client>>,
    /// The current client is known closed; a new one is being made.
    lost: AtomicBool,
    /// Notified when a new client is in place.
    back: tokio::sync::Notify,
    url: String,
    step: &'static str,
}

impl Conn {
    fn now(&self) -> Arc<Client> {
        Arc::clone(&self.client.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The client to send on; while the connection is being replaced, the
    /// new one, waiting for it up to [`RECONNECT_WAIT`] (a server that
    /// is up takes milliseconds) but not past `deadline`.
    async fn current(
        &self,
        deadline: Instant,
        budget: Duration,
    ) -> Result<Arc<Client>, PipelineError> {
        let until = deadline.min(Instant::now() + RECONNECT_WAIT);
        loop {
            let back = self.back.notified();
            if !self.lost.load(Ordering::SeqCst) {
                return Ok(self.now());
            }
            if tokio::time::timeout_at(until.into(), back).await.is_err() {
                return Err(if until >= deadline {
                    PipelineError::DeadlineExceeded { after: budget }
                } else {
                    PipelineError::Unavailable {
                        step: self.step,
                        reason: "the connection to the NATS server was closed; connecting again"
                            .into(),
                    }
                });
            }
        }
    }

    async fn connect(url: &str, step: &'static str) -> Result<Client, async_nats::ConnectError> {
        async_nats::ConnectOptions::new()
            .name(format!("pipeline ({step})"))
            .connect(url)
            .await
    }

    /// The connection was closed for good: connects again (with backoff,
    /// until it succeeds) and puts the new client in place.
    async fn replace(&self) {
        self.lost.store(true, Ordering::SeqCst);
        tracing::error!(step = self.step, url = %self.url, "the connection to the NATS server was closed for good; connecting again");
        let mut backoff = Duration::from_millis(50);
        loop {
            match Conn::connect(&self.url, self.step).await {
                Ok(client) => {
                    *self.client.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(client);
                    self.lost.store(false, Ordering::SeqCst);
                    self.back.notify_waiters();
                    tracing::info!(step = self.step, url = %self.url, "connected to the NATS server again");
                    return;
                }
                Err(e) => {
                    tracing::warn!(step = self.step, url = %self.url, error = %e, ?backoff, "could not connect again; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Runs `future` to completion on `io` from any thread, even one inside a
/// runtime (deploy may be called from async code): on a thread of its own.
fn block_on_io<T: Send + 'static>(
    io: &Handle,
    future: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, DeployError> {
    let io = io.clone();
    let thread = std::thread::spawn(move || io.block_on(future));
    // Inside a multi-thread runtime (maybe `io` itself), let its other
    // threads go on driving I/O while this one waits.
    blocking(true, || thread.join())
        .map_err(|_| DeployError::Internal("the NATS connect thread panicked"))
}

impl<S: StepFn> RemoteRunner<S> {
    pub(crate) fn start(
        plan: &StepPlan,
        url: RemoteUrl,
        wire: Wire<S::Inputs, S::Output>,
        counters: Arc<StepCounters>,
        runtimes: &mut Runtimes,
    ) -> Result<Self, DeployError> {
        let step = plan.node;
        let io = runtimes.io()?;
        let fingerprint = wire.fingerprint();
        let service = protocol::service(step);
        let theirs = {
            let url = url.as_str();
            block_on_io(&io, async move {
                let client = Conn::connect(url, step).await?;
                // The workers up now (each answers INFO with its direct
                // subject and fingerprint); others are heard of as they join.
                let theirs = discover(&client, &service, DEPLOY_WAIT).await;
                Ok::<_, async_nats::Error>((client, theirs))
            })?
        };
        let (client, theirs) = theirs.map_err(|e| DeployError::Remote {
            step,
            message: format!("could not connect to the NATS server at `{url}`"),
            source: Some(e),
        })?;
        if let Some(other) = theirs.iter().find(|w| w.fingerprint != fingerprint) {
            let theirs = &other.fingerprint;
            return Err(DeployError::Remote {
                step,
                message: format!(
                    "a worker serves it with other types: the worker has `{theirs}`, this pipeline \
                     expects `{fingerprint}`; rebuild the worker from the same step definition"
                ),
                source: None,
            });
        }
        let call_prefix = call_prefix();
        let registry = Arc::new(Registry::default());
        registry.set(theirs.into_iter().map(|w| w.direct).collect(), &counters);
        let conn = Arc::new(Conn {
            client: RwLock::new(Arc::new(client)),
            lost: AtomicBool::new(false),
            back: tokio::sync::Notify::new(),
            url: url.as_str().to_string(),
            step,
        });
        let watch = {
            let _io = io.enter();
            tokio::spawn(watch(
                Arc::clone(&conn),
                step,
                fingerprint.clone(),
                Arc::clone(&registry),
                Arc::clone(&counters),
            ))
        };
        Ok(RemoteRunner {
            step,
            subject: protocol::subject(step).into(),
            cancel_subject: protocol::cancel_subject(step).into(),
            conn,
            digest: wire.fingerprint_digest(),
            wire: Arc::new(wire),
            call_prefix,
            calls: AtomicU64::new(0),
            counters,
            io,
            registry,
            watch,
        })
    }

    async fn call(&self, inputs: S::Inputs, meta: CallMeta) -> Result<S::Output, PipelineError> {
        let step = self.step;
        let payload: bytes::Bytes = self
            .wire
            .encode_inputs(&inputs)
            .map_err(|e| wire_error(step, e))?
            .into();
        // The server's limit counts the headers too (sent with every try).
        // (`max_payload()` reads the negotiated limit; `server_info()`
        // would clone the server's whole INFO on every call.)
        let started = Instant::now();
        let deadline = meta.deadline.unwrap_or(started + DEFAULT_TIMEOUT);
        let budget = deadline.saturating_duration_since(started);
        let client = self.conn.current(deadline, budget).await?;
        let limit = client.max_payload();
        let size =
            payload.len() + HEADERS_AT_MOST + meta.request_id.as_ref().map_or(0, |id| id.len());
        if size > limit {
            return Err(PipelineError::PayloadTooLarge { step, size, limit });
        }
        // With the server unreachable, a request would only wait in the
        // client's queue until the deadline (60 s with none): say so now.
        if client.connection_state() != async_nats::connection::State::Connected {
            return Err(PipelineError::Unavailable {
                step,
                reason: "not connected to the NATS server (reconnecting)".into(),
            });
        }
        // Workers that refused this call or are gone: not chosen again.
        let mut passed: Vec<Arc<Worker>> = Vec::new();
        let mut refusals = 0;
        // A worker answered with other types (reported if no other can).
        let mut mismatch: Option<String> = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PipelineError::DeadlineExceeded { after: budget });
            }
            // The least busy worker known, else the step's queue group
            // (unless a worker there already answered with other types).
            let worker = self.registry.pick(&passed);
            if let (None, Some(reason)) = (&worker, &mismatch) {
                return Err(PipelineError::Unavailable {
                    step,
                    reason: reason.clone(),
                });
            }
            let subject = worker
                .as_ref()
                .map_or_else(|| self.subject.clone(), |w| w.subject.clone());
            let _busy = worker.as_ref().map(Busy::new);
            let number = self.calls.fetch_add(1, Ordering::Relaxed);
            let call = protocol::CallHeader::write(
                &self.call_prefix,
                number,
                budget_ms(left),
                &self.digest,
            );
            let mut headers = HeaderMap::new();
            headers.insert(protocol::CALL.clone(), call);
            if let Some(id) = &meta.request_id {
                headers.insert(protocol::REQUEST_ID.clone(), &**id);
            }
            let request = async_nats::Request::new()
                .payload(payload.clone())
                .headers(headers)
                .timeout(Some(left));
            // Dropped before the answer (the caller gave up, or the
            // deadline passed): the worker is told to skip the call.
            let mut cancel = CancelOnDrop {
                client: &client,
                io: &self.io,
                subject: &self.cancel_subject,
                prefix: &self.call_prefix,
                number: Some(number),
            };
            let answer = client.send_request(subject, request).await;
            let answer = match answer {
                Ok(message) => {
                    cancel.number = None;
                    message
                }
                Err(e) if e.kind() == RequestErrorKind::NoResponders => {
                    // Nothing was delivered: safe to send elsewhere.
                    cancel.number = None;
                    match worker {
                        Some(gone) => {
                            self.registry.remove(&gone.subject, &self.counters);
                            passed.push(gone);
                            continue;
                        }
                        None => {
                            return Err(PipelineError::Unavailable {
                                step,
                                reason: "no worker serves it (NATS: no responders)".into(),
                            })
                        }
                    }
                }
                Err(e) => {
                    return Err(match e.kind() {
                        RequestErrorKind::TimedOut => {
                            PipelineError::DeadlineExceeded { after: budget }
                        }
                        _ => PipelineError::Unavailable {
                            step,
                            reason: format!("the request failed: {e}"),
                        },
                    })
                }
            };
            let status = answer.headers.as_ref().and_then(|h| {
                let code = h
                    .get(NATS_SERVICE_ERROR_CODE)?
                    .as_str()
                    .parse::<usize>()
                    .ok()?;
                let text = h
                    .get(async_nats::service::NATS_SERVICE_ERROR)
                    .map(|v| v.as_str().to_string())
                    .unwrap_or_default();
                Some((code, text))
            });
            let Some((code, text)) = status else {
                return self
                    .wire
                    .decode_output(&answer.payload)
                    .map_err(|e| wire_error(step, e));
            };
            match code {
                code::REFUSED => {
                    self.counters.remote_refused.fetch_add(1, Ordering::Relaxed);
                    refusals += 1;
                    if refusals <= RETRIES {
                        self.counters.remote_retries.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(step, refusals, reason = %text, "a worker refused the call; sending it to another");
                        passed.extend(worker);
                        continue;
                    }
                    return Err(PipelineError::Overloaded { step });
                }
                code::DEADLINE => return Err(PipelineError::DeadlineExceeded { after: budget }),
                code::PANICKED => {
                    return Err(PipelineError::Panicked {
                        step,
                        message: text,
                    })
                }
                code::STEP_FAILED => {
                    return Err(PipelineError::step_failed(
                        step,
                        Box::new(RemoteError(text)),
                    ))
                }
                code::MISMATCH => {
                    // Nothing ran: drop that worker and try another.
                    tracing::warn!(step, reason = %text, "a worker serves this step with other types; not sending it calls");
                    match worker {
                        Some(bad) => {
                            self.registry.leave(bad.subject.to_string(), &self.counters);
                            passed.push(bad);
                            mismatch = Some(text);
                            continue;
                        }
                        None => return Err(PipelineError::Unavailable { step, reason: text }),
                    }
                }
                _ => {
                    return Err(PipelineError::step_failed(
                        step,
                        Box::new(RemoteError(format!("worker error {code}: {text}"))),
                    ))
                }
            }
        }
    }
}

/// Ten random characters (`0-9A-Za-z`, about 60 bits) starting the call
/// ids of one remote runner, so that two pipelines calling one worker
/// never name the same call. (Taken from `Client::new_inbox` before: with
/// async-nats' `nuid` feature on in a user's build, its first characters
/// are the same for a whole process.)
fn call_prefix() -> String {
    use std::hash::{BuildHasher, Hash, Hasher};
    static RUNNERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    // std's `RandomState` keys are random per process and differ for
    // each one made; the count and the time set runners apart besides.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    RUNNERS.fetch_add(1, Ordering::Relaxed).hash(&mut hasher);
    std::process::id().hash(&mut hasher);
    std::time::SystemTime::now().hash(&mut hasher);
    let mut n = hasher.finish();
    (0..10)
        .map(|_| {
            let digit = DIGITS[(n % 62) as usize];
            n /= 62;
            char::from(digit)
        })
        .collect()
}

/// Tells the step's workers to skip attempt `number` if it is dropped
/// armed.
struct CancelOnDrop<'a> {
    client: &'a Client,
    io: &'a Handle,
    subject: &'a async_nats::Subject,
    prefix: &'a str,
    number: Option<u64>,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(number) = self.number.take() {
            let call_id = protocol::call_id(self.prefix, number);
            let (client, subject) = (self.client.clone(), self.subject.clone());
            self.io.spawn(async move {
                let _ = client.publish(subject, call_id.into()).await;
            });
        }
    }
}

impl<S: StepFn> StepRunner<S> for RemoteRunner<S> {
    fn run<'a>(&'a self, inputs: S::Inputs, cx: RunCx<'a>) -> Run<'a, S::Output> {
        Run::Boxed(cx.place(self.call(inputs, cx.meta().clone())))
    }
}

/// What the headers of a call add to its size, at most (names, a call
/// id, a timeout, a digest and the protocol's framing); a request id adds
/// its length.
const HEADERS_AT_MOST: usize = 256;

/// How long deploy waits for workers to answer INFO.
const DEPLOY_WAIT: Duration = Duration::from_millis(150);

/// One worker of a remote step, as a pipeline knows it.
#[derive(Debug)]
struct Worker {
    /// Its direct subject.
    subject: async_nats::Subject,
    /// This pipeline's calls at it now.
    outstanding: AtomicUsize,
}

/// Counts a call at a worker while it is held.
struct Busy(Arc<Worker>);

impl Busy {
    fn new(worker: &Arc<Worker>) -> Self {
        worker.outstanding.fetch_add(1, Ordering::Relaxed);
        Busy(Arc::clone(worker))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The workers of one remote step that this pipeline knows of.
#[derive(Debug, Default)]
struct Registry {
    workers: RwLock<Vec<Arc<Worker>>>,
    /// Where the next pick starts looking (ties rotate).
    turn: AtomicUsize,
    /// Workers that announced they are leaving, and when: not taken back
    /// from a discovery that still sees them.
    leaving: Mutex<HashMap<String, Instant>>,
}

impl Registry {
    /// The worker with the fewest of this pipeline's calls, ties to the
    /// first, among those not `passed`.
    fn pick(&self, passed: &[Arc<Worker>]) -> Option<Arc<Worker>> {
        let workers = self.workers.read().unwrap_or_else(PoisonError::into_inner);
        // Ties rotate, so that pipelines in several processes (each
        // counting only its own calls) do not all pick the same worker.
        let start = self.turn.fetch_add(1, Ordering::Relaxed) % workers.len().max(1);
        let (later, earlier) = workers.split_at(start);
        earlier
            .iter()
            .chain(later)
            .filter(|w| !passed.iter().any(|p| Arc::ptr_eq(p, w)))
            .min_by_key(|w| w.outstanding.load(Ordering::Relaxed))
            .cloned()
    }

    fn publish_count(&self, workers: &[Arc<Worker>], counters: &StepCounters) {
        counters.replicas.store(workers.len(), Ordering::Relaxed);
        counters
            .target_replicas
            .store(workers.len(), Ordering::Relaxed);
    }

    /// The workers a discovery found (keeping the counts of known ones).
    fn set(&self, found: Vec<String>, counters: &StepCounters) {
        let mut leaving = self.leaving.lock().unwrap_or_else(PoisonError::into_inner);
        leaving.retain(|_, at| at.elapsed() < FORGET_LEAVING);
        let mut workers = self.workers.write().unwrap_or_else(PoisonError::into_inner);
        let old = std::mem::take(&mut *workers);
        for subject in found {
            if leaving.contains_key(&subject) || workers.iter().any(|w| *w.subject == *subject) {
                continue;
            }
            let known = old.iter().find(|w| *w.subject == *subject).cloned();
            workers.push(known.unwrap_or_else(|| new_worker(subject)));
        }
        self.publish_count(&workers, counters);
    }

    fn join(&self, subject: String, counters: &StepCounters) {
        let mut workers = self.workers.write().unwrap_or_else(PoisonError::into_inner);
        if !workers.iter().any(|w| *w.subject == *subject) {
            workers.push(new_worker(subject));
        }
        self.publish_count(&workers, counters);
    }

    fn leave(&self, subject: String, counters: &StepCounters) {
        self.remove(&subject, counters);
        self.leaving
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(subject, Instant::now());
    }

    fn remove(&self, subject: &str, counters: &StepCounters) {
        let mut workers = self.workers.write().unwrap_or_else(PoisonError::into_inner);
        workers.retain(|w| *w.subject != *subject);
        self.publish_count(&workers, counters);
    }
}

/// How long a leaving worker's subject is kept out of discoveries.
const FORGET_LEAVING: Duration = Duration::from_secs(60);

fn new_worker(subject: String) -> Arc<Worker> {
    Arc::new(Worker {
        subject: subject.into(),
        outstanding: AtomicUsize::new(0),
    })
}

/// A worker's answer to INFO: its direct subject and fingerprint.
struct Found {
    direct: String,
    fingerprint: String,
}

/// Asks every worker of `service` for its INFO; the answers within `wait`.
async fn discover(client: &Client, service: &str, wait: Duration) -> Vec<Found> {
    let inbox = client.new_inbox();
    let Ok(mut answers) = client.subscribe(inbox.clone()).await else {
        return Vec::new();
    };
    if client
        .publish_with_reply(format!("$SRV.INFO.{service}"), inbox, "".into())
        .await
        .is_err()
    {
        return Vec::new();
    }
    let mut found = Vec::new();
    let until = tokio::time::sleep(wait);
    tokio::pin!(until);
    loop {
        tokio::select! {
            answer = answers.next() => {
                let Some(answer) = answer else { break };
                let Ok(info) = serde_json::from_slice::<async_nats::service::Info>(&answer.payload) else {
                    continue;
                };
                let meta = |key: &str| info.metadata.get(key).cloned().unwrap_or_default();
                found.push(Found {
                    direct: meta(protocol::META_DIRECT),
                    fingerprint: meta(protocol::META_FINGERPRINT),
                });
            }
            () = &mut until => break,
        }
    }
    found.retain(|f| !f.direct.is_empty());
    found
}

/// Keeps a remote step's workers known: joins and leaves as workers
/// announce them, and a discovery about once a second (which also finds
/// workers that died: they no longer answer).
async fn watch(
    conn: Arc<Conn>,
    node: &'static str,
    fingerprint: String,
    registry: Arc<Registry>,
    counters: Arc<StepCounters>,
) {
    let service = protocol::service(node);
    loop {
        let client = conn.now();
        // Ends (`None`) when the connection is closed for good.
        let mut announces = client
            .subscribe(protocol::announce_subject(node))
            .await
            .ok();
        let mut tick = tokio::time::interval(DISCOVER_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while let Some(subscribed) = announces.as_mut() {
            tokio::select! {
                announce = subscribed.next() => {
                    let Some(message) = announce else { break };
                    let Ok(a) = serde_json::from_slice::<protocol::Announce>(&message.payload) else {
                        continue;
                    };
                    if a.fingerprint != fingerprint {
                        tracing::warn!(step = node, worker = %a.direct, "a worker with other types joined; not sending it calls");
                    } else if a.leaving {
                        tracing::info!(step = node, worker = %a.direct, "a worker is leaving");
                        registry.leave(a.direct, &counters);
                    } else {
                        tracing::info!(step = node, worker = %a.direct, "a worker joined");
                        registry.join(a.direct, &counters);
                    }
                }
                _ = tick.tick() => {
                    let found = discover(&client, &service, DISCOVER_WAIT).await;
                    let same = found.into_iter().filter(|f| f.fingerprint == fingerprint);
                    registry.set(same.map(|f| f.direct).collect(), &counters);
                }
            }
        }
        // No worker is reachable until the new connection finds them.
        registry.set(Vec::new(), &counters);
        conn.replace().await;
        let found = discover(&conn.now(), &service, DISCOVER_WAIT).await;
        let same = found.into_iter().filter(|f| f.fingerprint == fingerprint);
        registry.set(same.map(|f| f.direct).collect(), &counters);
    }
}

/// The budget a call carries, in whole milliseconds rounded up: a live
/// budget under 1 ms is not "no time left" (0 tells the worker the
/// deadline passed before the call started).
fn budget_ms(left: Duration) -> u64 {
    u64::try_from(left.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// A wire error as the caller sees it: a panic in the type's own
/// `Serialize` or `Deserialize` is the step's `Panicked`, anything else
/// the step's failure (the `WireError` from `source()`).
fn wire_error(step: &'static str, e: WireError) -> PipelineError {
    match e {
        WireError::Panicked { message, .. } => PipelineError::Panicked { step, message },
        e => PipelineError::step_failed(step, e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_budget_is_rounded_up_to_whole_milliseconds() {
        for (left, ms) in [
            (Duration::ZERO, 0),
            (Duration::from_nanos(1), 1),
            (Duration::from_micros(900), 1),
            (Duration::from_millis(1), 1),
            (Duration::from_micros(1_001), 2),
            (Duration::from_secs(30), 30_000),
        ] {
            assert_eq!(budget_ms(left), ms, "{left:?}");
        }
    }

    #[test]
    fn each_runner_names_its_calls_apart() {
        let prefixes: std::collections::HashSet<String> =
            (0..1_000).map(|_| call_prefix()).collect();
        assert_eq!(prefixes.len(), 1_000);
        for p in &prefixes {
            assert_eq!(p.len(), 10, "{p}");
            assert!(p.chars().all(|c| c.is_ascii_alphanumeric()), "{p}");
        }
    }
}
