use pipeline_core::prelude::*;

#[step]
fn scale(x: i64, factor: f64, label: String) -> String {
    format!("{label}: {}", x as f64 * factor)
}

#[step]
fn parse(s: String) -> i64 {
    s.len() as i64
}

#[step]
fn weight(s: String) -> f32 {
    s.len() as f32
}

fn main() {
    let input = Input::<String>::new().shared();
    let _ = scale(parse(input.clone()), weight(input.clone()), input).deploy();
}
