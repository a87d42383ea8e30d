use pipeline_core::prelude::*;

#[step]
enum Choice {
    A,
    B,
}

fn main() {
    let _ = Choice::A;
}
