// Should compile: two `_` inputs.
use pipeline_core::prelude::*;

#[step]
fn constant(_: i64, _: String) -> i64 {
    7
}

fn main() {
    let x = Input::<i64>::new().shared();
    #[step]
    fn text(x: i64) -> String {
        x.to_string()
    }
    let _ = constant(x.clone(), text(x)).deploy();
}
