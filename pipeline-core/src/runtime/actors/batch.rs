//! Dynamic batching at a replica: take up to `max_size` queued calls,
//! waiting at most `wait_ms` after the first for more, and run them as one
//! call of the step's `Vec` body. An error or a panic fails that batch's
//! calls, and only those.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::FutureExt;

use super::worker::ReplicaWorker;
use crate::error::PipelineError;
use crate::step::{BatchPolicy, StepFn};

impl<S: StepFn> ReplicaWorker<S> {
    pub(crate) async fn serve_batched(mut self, state: S::State, policy: BatchPolicy) {
        let name = self.ctx.step();
        let wait = Duration::from_millis(policy.wait_ms);
        let mut state = Some(state);
        while let Some(first) = self.inbox.recv().await {
            let mut jobs = vec![first];
            // Taken jobs count as this replica's work while the batch fills.
            self.busy.store(1, Ordering::Relaxed);
            let deadline = tokio::time::Instant::now() + wait;
            while jobs.len() < policy.max_size {
                // Once the pipeline stops taking calls, none can join: the
                // batch leaves with what is queued.
                let job = match self.inbox.try_recv() {
                    Some(job) => job,
                    None if self.stopping.is_closed() => break,
                    None => {
                        let next = self.inbox.recv_until(deadline, &self.timer, &self.stopping);
                        match next.await {
                            Some(job) => job,
                            None => break,
                        }
                    }
                };
                jobs.push(job);
                self.busy.store(jobs.len(), Ordering::Relaxed);
            }
            // Calls whose caller gave up are skipped.
            let (inputs, replies): (Vec<_>, Vec<_>) = jobs
                .into_iter()
                .filter(|job| !job.is_cancelled())
                .map(|job| (job.inputs, job.reply))
                .unzip();
            self.busy.store(replies.len(), Ordering::Relaxed);
            let Some(current) = &state else { break };
            if replies.is_empty() {
                continue;
            }
            let n = replies.len();
            self.counters.batches.fetch_add(1, Ordering::SeqCst);
            self.counters.batch_size.observe(n as f64);
            self.counters
                .batched_calls
                .fetch_add(n as u64, Ordering::SeqCst);
            let result = AssertUnwindSafe(async move { S::call_batch(current, inputs).await })
                .catch_unwind()
                .await;
            let mut panicked = false;
            let all_fail = |e: PipelineError| (0..n).map(|_| Err(e.clone())).collect();
            let outcomes: Vec<Result<S::Output, PipelineError>> = match result {
                Ok(Ok(outputs)) if outputs.len() == n => outputs.into_iter().map(Ok).collect(),
                Ok(Ok(outputs)) => all_fail(PipelineError::step_failed(
                    name,
                    format!(
                        "the batched step returned {} outputs for {n} inputs",
                        outputs.len()
                    )
                    .into(),
                )),
                Ok(Err(e)) => all_fail(PipelineError::step_failed(name, e)),
                Err(payload) => {
                    panicked = true;
                    all_fail(PipelineError::panicked(name, payload))
                }
            };
            if !panicked {
                self.busy.store(0, Ordering::Relaxed);
            }
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(outcome);
            }
            if panicked {
                tracing::warn!(
                    step = name,
                    replica = self.ctx.index(),
                    "batched step panicked; rebuilding the replica"
                );
                drop(state.take());
                state = self.rebuild().await;
                self.busy.store(0, Ordering::Relaxed);
            }
        }
    }
}
