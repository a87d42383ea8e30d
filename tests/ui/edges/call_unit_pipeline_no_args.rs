use pipeline_core::prelude::*;

#[step]
fn tick(_t: ()) -> u64 {
    42
}

fn main() {
    let p = tick(Input::<()>::new()).deploy().unwrap();
    let _ = p.call();
}
