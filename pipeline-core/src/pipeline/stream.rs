//! Calling a pipeline whose output is a stream ([`ItemStream`]): each item
//! as it is ready, async ([`Pipeline::call_stream`]) or blocking
//! ([`Pipeline::call_iter`]).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt, TryStreamExt};

use super::calls::Pipeline;
use crate::error::PipelineError;
use crate::step::ItemStream;

impl<In: Send + 'static, T: Send + 'static> Pipeline<In, ItemStream<T>> {
    /// Calls the pipeline and streams its items as each is ready: a stream
    /// of `Result<T, PipelineError>` that ends after the last item, or
    /// after the first error (which names the step). Dropping it stops the
    /// producing steps within one channel bound.
    ///
    /// ```
    /// use futures::StreamExt;
    /// use pipeline_core::prelude::*;
    ///
    /// #[step(mode = "tasks")]
    /// fn count_to(n: u32) -> ItemStream<u32> { ItemStream::iter(1..=n) }
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let p = count_to(Input::<u32>::new()).deploy()?;
    /// let items: Vec<u32> = p.call_stream(3).map(|r| r.unwrap()).collect().await;
    /// assert_eq!(items, [1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
    /// ```
    pub fn call_stream(&self, input: In) -> ItemStream<T> {
        let p = self.clone();
        let call = async move { p.call_async(input).await };
        ItemStream::from_results(futures::stream::once(call).try_flatten())
    }

    /// [`call_stream`](Self::call_stream) with a deadline for the whole
    /// stream: once it passes, the stream ends with
    /// [`PipelineError::DeadlineExceeded`] (after the items that came in
    /// time) and the producers are stopped.
    pub fn call_stream_timeout(&self, input: In, deadline: Duration) -> ItemStream<T> {
        self.stream_with_deadline(input, deadline, None)
    }

    /// [`call_stream_timeout`](Self::call_stream_timeout) with the
    /// request's id (the HTTP ingress's).
    pub(crate) fn stream_with_deadline(
        &self,
        input: In,
        deadline: Duration,
        request_id: Option<std::sync::Arc<str>>,
    ) -> ItemStream<T> {
        let sleep = match self.timer(deadline) {
            Ok(sleep) => Box::pin(sleep),
            Err(e) => return ItemStream::from_results(futures::stream::once(async { Err(e) })),
        };
        let p = self.clone();
        let call = async move { p.call_with_deadline(input, deadline, request_id).await };
        ItemStream::from_results(Deadline {
            items: Some(Box::pin(futures::stream::once(call).try_flatten())),
            sleep,
            at: std::time::Instant::now().checked_add(deadline),
            after: deadline,
        })
    }

    /// The blocking form of [`call_stream`](Self::call_stream), for sync
    /// callers: an iterator over the items (each `next` waits for one).
    /// Like [`call`](Pipeline::call), it must not be used on a thread that
    /// runs an async runtime: it then yields
    /// [`PipelineError::BlockingCallInAsyncContext`] once.
    ///
    /// ```
    /// use pipeline_core::prelude::*;
    ///
    /// #[step(mode = "actors")]
    /// fn count_to(n: u32) -> ItemStream<u32> { ItemStream::iter(1..=n) }
    ///
    /// let p = count_to(Input::<u32>::new()).deploy()?;
    /// let items: Vec<u32> = p.call_iter(3).collect::<Result<_, _>>()?;
    /// assert_eq!(items, [1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn call_iter(&self, input: In) -> impl Iterator<Item = Result<T, PipelineError>> + Send {
        let p = self.clone();
        // `None` once ended: the stream goes then (its producers stop and
        // free their replicas), not when the iterator is dropped.
        let mut items = Some(self.call_stream(input));
        std::iter::from_fn(move || {
            let next = p.block_on(items.as_mut()?.next().map(Ok));
            let item = match next {
                Ok(item) => item,
                Err(e) => Some(Err(e)),
            };
            if !matches!(item, Some(Ok(_))) {
                items = None;
            }
            item
        })
    }
}

/// A stream cut off at a deadline.
struct Deadline<S> {
    /// `None` once the deadline passed (dropped: that stops the producers).
    items: Option<Pin<Box<S>>>,
    sleep: Pin<Box<tokio::time::Sleep>>,
    /// When the deadline passes (read on every poll too: the timer of a
    /// deadline already passed fires only at the driver's next tick).
    at: Option<std::time::Instant>,
    after: Duration,
}

impl<T, S: Stream<Item = Result<T, PipelineError>>> Stream for Deadline<S> {
    type Item = Result<T, PipelineError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.items.is_none() {
            return Poll::Ready(None);
        }
        // The deadline first: once it has passed, no item counts as in
        // time, even one that is ready.
        if self.at.is_some_and(|at| std::time::Instant::now() >= at)
            || self.sleep.poll_unpin(cx).is_ready()
        {
            self.items = None;
            return Poll::Ready(Some(Err(PipelineError::DeadlineExceeded {
                after: self.after,
            })));
        }
        let Some(items) = self.items.as_mut() else {
            return Poll::Ready(None);
        };
        let item = std::task::ready!(items.as_mut().poll_next(cx));
        if item.is_none() {
            self.items = None;
        }
        Poll::Ready(item)
    }
}
