use pipeline_core::prelude::*;

#[step]
fn split(s: String) -> (i64, String) {
    (s.len() as i64, s)
}

#[step]
fn join(n: i64, s: String) -> String {
    format!("{n}:{s}")
}

fn main() {
    let _ = join(split(Input::<String>::new())).deploy();
}
