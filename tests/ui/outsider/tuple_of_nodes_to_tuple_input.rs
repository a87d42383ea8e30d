use pipeline_core::prelude::*;

#[step]
fn len(s: String) -> i64 {
    s.len() as i64
}

#[step]
fn shout(s: String) -> String {
    s.to_uppercase()
}

#[step]
fn join(pair: (i64, String)) -> String {
    format!("{}:{}", pair.0, pair.1)
}

fn main() {
    let x = Input::<String>::new().shared();
    let _ = join((len(x.clone()), shout(x))).deploy();
}
