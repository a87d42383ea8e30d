// A stream step written with `impl Iterator` instead of `ItemStream<T>`.
use pipeline_core::prelude::*;

#[step]
fn sentences(doc: String) -> impl Iterator<Item = String> {
    doc.split('.').map(String::from).collect::<Vec<_>>().into_iter()
}

fn main() {
    let _ = sentences(Input::<String>::new()).collect();
}
