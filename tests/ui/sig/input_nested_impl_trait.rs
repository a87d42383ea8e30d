use pipeline_core::prelude::*;

#[step]
fn join(xs: Vec<impl std::fmt::Display>) -> String {
    xs.iter().map(|x| x.to_string()).collect()
}

fn main() {
    let _ = join(Input::<Vec<i64>>::new()).deploy();
}
