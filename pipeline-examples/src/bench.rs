//! Helpers the benchmarks share.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use pipeline_core::Pipeline;

/// Calls per second of `p` over `inputs`, `in_flight` calls at a time;
/// panics unless every call answered `Ok`.
pub fn throughput<I, O>(
    rt: &tokio::runtime::Runtime,
    p: &Arc<Pipeline<I, O>>,
    inputs: &[I],
    in_flight: usize,
) -> f64
where
    I: Clone + Send + 'static,
    O: Send + 'static,
{
    let start = Instant::now();
    let done = rt.block_on(async {
        futures::stream::iter(inputs.iter().cloned())
            .map(|x| {
                let p = Arc::clone(p);
                async move { p.call_async(x).await.is_ok() }
            })
            .buffer_unordered(in_flight)
            .filter(|ok| std::future::ready(*ok))
            .count()
            .await
    });
    assert_eq!(done, inputs.len(), "every call answered");
    inputs.len() as f64 / start.elapsed().as_secs_f64()
}
