//! A `concurrent` model step: its calls share one model, unlocked, so an
//! async call that waits does not hold the others back.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use pipeline_core::prelude::*;

struct Gate {
    inside: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

#[step(mode = "tasks", concurrent)]
impl Gate {
    fn new(inside: Arc<AtomicUsize>, most: Arc<AtomicUsize>) -> Self {
        Gate { inside, most }
    }

    async fn call(&self, x: u64) -> u64 {
        let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        // Wait until a second call is inside at the same time (or give up
        // after enough yields, and the assertion below fails).
        for _ in 0..100_000 {
            if self.most.load(Ordering::SeqCst) >= 2 {
                break;
            }
            tokio::task::yield_now().await;
        }
        self.inside.fetch_sub(1, Ordering::SeqCst);
        x + 1
    }
}

struct Sum;

#[step(concurrent)]
impl Sum {
    fn new() -> Self {
        Sum
    }
    fn call(&self, a: u64, b: u64) -> u64 {
        a + b
    }
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (inside, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let p = Gate::bind(inside, most.clone(), Input::<u64>::new())
        .deploy()
        .unwrap();
    let (a, b) = rt.block_on(async { tokio::join!(p.call_async(1), p.call_async(2)) });
    assert_eq!((a.unwrap(), b.unwrap()), (2, 3));
    assert_eq!(most.load(Ordering::SeqCst), 2, "both calls were inside at once");

    let x = Input::<u64>::new().shared();
    let s = Sum::bind(x.clone(), x).deploy().unwrap();
    assert_eq!(s.call(4).unwrap(), 8);
}
