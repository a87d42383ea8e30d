use pipeline_core::prelude::*;

#[step]
fn check(x: i64) -> Result<i64, NotAnError> {
    if x > 0 { Ok(x) } else { Err(NotAnError) }
}

#[derive(Debug)]
struct NotAnError;

fn main() {
    let _ = check(Input::<i64>::new()).deploy();
}
