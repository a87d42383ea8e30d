use pipeline_core::prelude::*;

#[step]
fn scale(x: i64, #[cfg(feature = "gpu")] factor: i64) -> i64 {
    x
}

fn main() {
    let _ = scale(Input::<i64>::new()).deploy();
}
