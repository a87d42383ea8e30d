use pipeline_core::prelude::*;

#[step]
async fn slow(x: i64) -> impl std::future::Future<Output = i64> {
    async move { x + 1 }
}

fn main() {
    let _ = slow(Input::<i64>::new()).deploy();
}
