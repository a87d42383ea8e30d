use pipeline_core::prelude::*;

fn main() {
    let add_one = #[step] |x: i64| x + 1;
    let _ = add_one(Input::<i64>::new()).deploy();
}
