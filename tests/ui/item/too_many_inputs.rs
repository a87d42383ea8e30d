use pipeline_core::prelude::*;

#[step]
fn sum9(a: i64, b: i64, c: i64, d: i64, e: i64, f: i64, g: i64, h: i64, i: i64) -> i64 {
    a + b + c + d + e + f + g + h + i
}

fn main() {
    let x = Input::<i64>::new().shared();
    let _ = sum9(x.clone(), x.clone(), x.clone(), x.clone(), x.clone(), x.clone(), x.clone(), x.clone(), x).deploy();
}
