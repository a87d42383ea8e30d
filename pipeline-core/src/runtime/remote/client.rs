//! The pipeline's side of a remote step: one NATS request per call,
//! refused calls retried on another worker a bounded number of times,
//! deadlines and cancellation sent along.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::client::RequestErrorKind;
use async_nats::service::NATS_SERVICE_ERROR_CODE;
use async_nats::{Client, HeaderMap};
use futures::StreamExt;
use tokio::runtime::Handle;

use super::protocol::{self, code};
use crate::error::{DeployError, PipelineError, RemoteError};
use crate::eval::CallMeta;
use crate::runtime::executor::Runtimes;
use crate::runtime::metrics::StepCounters;
use crate::runtime::options::RemoteUrl;
use crate::runtime::plan::StepPlan;
use crate::runtime::runner::{Run, StepRunner};
use crate::step::{StepFn, Wire};

/// How long a call with no deadline waits for its worker's answer (a
/// worker killed mid-call never answers).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// How many times a refused call is sent again (to whichever worker the
/// queue group picks).
pub(crate) const RETRIES: usize = 3;
/// How often the pipeline counts a remote step's workers.
const PING_EVERY: Duration = Duration::from_secs(1);
/// How long it waits for their answers to one count.
const PING_WAIT: Duration = Duration::from_millis(250);

pub(crate) struct RemoteRunner<S: StepFn> {
    step: &'static str,
    client: Client,
    subject: async_nats::Subject,
    cancel_subject: async_nats::Subject,
    wire: Arc<Wire<S::Inputs, S::Output>>,
    fingerprint: String,
    counters: Arc<StepCounters>,
    io: Handle,
    workers: tokio::task::JoinHandle<()>,
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
        self.workers.abort();
    }
}

/// Runs `future` to completion on `io` from any thread, even one inside a
/// runtime (deploy may be called from async code): on a thread of its own.
fn block_on_io<T: Send + 'static>(
    io: &Handle,
    future: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, DeployError> {
    let io = io.clone();
    std::thread::spawn(move || io.block_on(future))
        .join()
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
        let fingerprint = Wire::<S::Inputs, S::Output>::fingerprint();
        let service = protocol::service(step);
        let theirs = {
            let url = url.as_str();
            block_on_io(&io, async move {
                let client = async_nats::ConnectOptions::new()
                    .name(format!("pipeline ({step})"))
                    .connect(url)
                    .await?;
                // One worker's INFO (if any is up): its fingerprint. Workers
                // may also join later; each call carries the fingerprint too.
                let info = client
                    .request(format!("$SRV.INFO.{service}"), "".into())
                    .await;
                let theirs = match info {
                    Ok(message) => serde_json::from_slice::<serde_json::Value>(&message.payload)
                        .ok()
                        .and_then(|v| {
                            v["metadata"][protocol::META_FINGERPRINT]
                                .as_str()
                                .map(str::to_owned)
                        }),
                    Err(_) => None,
                };
                Ok::<_, async_nats::Error>((client, theirs))
            })?
        };
        let (client, theirs) = theirs.map_err(|e| DeployError::Remote {
            step,
            message: format!("could not connect to the NATS server at `{url}`"),
            source: Some(e),
        })?;
        if let Some(theirs) = theirs.filter(|t| *t != fingerprint) {
            return Err(DeployError::Remote {
                step,
                message: format!(
                    "a worker serves it with other types: the worker has `{theirs}`, this pipeline \
                     expects `{fingerprint}`; rebuild the worker from the same step definition"
                ),
                source: None,
            });
        }
        counters.replicas.store(0, Ordering::Relaxed);
        counters.target_replicas.store(0, Ordering::Relaxed);
        let workers = io.spawn(count_workers(
            client.clone(),
            protocol::service(step),
            Arc::clone(&counters),
        ));
        Ok(RemoteRunner {
            step,
            subject: protocol::subject(step).into(),
            cancel_subject: protocol::cancel_subject(step).into(),
            client,
            wire: Arc::new(wire),
            fingerprint,
            counters,
            io,
            workers,
        })
    }

    async fn call(&self, inputs: S::Inputs, meta: CallMeta) -> Result<S::Output, PipelineError> {
        let step = self.step;
        let payload: bytes::Bytes = self
            .wire
            .encode_inputs(&inputs)
            .map_err(|e| PipelineError::step_failed(step, e.into()))?
            .into();
        let limit = self.client.server_info().max_payload;
        if payload.len() > limit {
            return Err(PipelineError::PayloadTooLarge {
                step,
                size: payload.len(),
                limit,
            });
        }
        let started = Instant::now();
        let deadline = meta.deadline.unwrap_or(started + DEFAULT_TIMEOUT);
        let budget = deadline.saturating_duration_since(started);
        for attempt in 0..=RETRIES {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PipelineError::DeadlineExceeded { after: budget });
            }
            let call_id = self.client.new_inbox();
            let mut headers = HeaderMap::new();
            headers.insert(protocol::CALL_ID, call_id.as_str());
            headers.insert(protocol::TIMEOUT_MS, left.as_millis().to_string().as_str());
            headers.insert(protocol::FINGERPRINT, self.fingerprint.as_str());
            if let Some(id) = &meta.request_id {
                headers.insert(protocol::REQUEST_ID, &**id);
            }
            let request = async_nats::Request::new()
                .payload(payload.clone())
                .headers(headers)
                .timeout(Some(left));
            // Dropped before the answer (the caller gave up, or the
            // deadline passed): the worker is told to skip the call.
            let mut cancel = CancelOnDrop {
                client: &self.client,
                io: &self.io,
                subject: &self.cancel_subject,
                call_id: Some(call_id),
            };
            let answer = self
                .client
                .send_request(self.subject.clone(), request)
                .await;
            let answer = match answer {
                Ok(message) => {
                    cancel.call_id = None;
                    message
                }
                Err(e) => {
                    return Err(match e.kind() {
                        RequestErrorKind::NoResponders => {
                            cancel.call_id = None;
                            PipelineError::Unavailable {
                                step,
                                reason: "no worker serves it (NATS: no responders)".into(),
                            }
                        }
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
                let code = h.get(NATS_SERVICE_ERROR_CODE)?.as_str().parse::<usize>().ok()?;
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
                    .map_err(|e| PipelineError::step_failed(step, e.into()));
            };
            match code {
                code::REFUSED => {
                    self.counters.remote_refused.fetch_add(1, Ordering::Relaxed);
                    if attempt < RETRIES {
                        self.counters.remote_retries.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(step, attempt, reason = %text, "a worker refused the call; sending it again");
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
                    return Err(PipelineError::step_failed(step, Box::new(RemoteError(text))))
                }
                code::MISMATCH => {
                    return Err(PipelineError::Unavailable {
                        step,
                        reason: text,
                    })
                }
                _ => {
                    return Err(PipelineError::step_failed(
                        step,
                        Box::new(RemoteError(format!("worker error {code}: {text}"))),
                    ))
                }
            }
        }
        Err(PipelineError::Overloaded { step })
    }
}

/// Tells the step's workers to skip call `call_id` if it is dropped armed.
struct CancelOnDrop<'a> {
    client: &'a Client,
    io: &'a Handle,
    subject: &'a async_nats::Subject,
    call_id: Option<String>,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(call_id) = self.call_id.take() {
            let (client, subject) = (self.client.clone(), self.subject.clone());
            self.io.spawn(async move {
                let _ = client.publish(subject, call_id.into()).await;
            });
        }
    }
}

impl<S: StepFn> StepRunner<S> for RemoteRunner<S> {
    fn run(&self, inputs: S::Inputs, meta: &CallMeta) -> Run<'_, S::Output> {
        Run::Boxed(Box::pin(self.call(inputs, meta.clone())))
    }
}

/// Counts the workers answering `$SRV.PING.<service>` about once a second,
/// as the step's replica count (what health, reports and `/graph` show).
async fn count_workers(client: Client, service: String, counters: Arc<StepCounters>) {
    let subject = format!("$SRV.PING.{service}");
    loop {
        let inbox = client.new_inbox();
        let count = match client.subscribe(inbox.clone()).await {
            Ok(mut answers) => {
                let _ = client
                    .publish_with_reply(subject.clone(), inbox, "".into())
                    .await;
                let mut n = 0;
                let wait = tokio::time::sleep(PING_WAIT);
                tokio::pin!(wait);
                loop {
                    tokio::select! {
                        answer = answers.next() => match answer {
                            Some(_) => n += 1,
                            None => break,
                        },
                        () = &mut wait => break,
                    }
                }
                n
            }
            Err(_) => 0,
        };
        counters.replicas.store(count, Ordering::Relaxed);
        counters.target_replicas.store(count, Ordering::Relaxed);
        tokio::time::sleep(PING_EVERY).await;
    }
}
