// `.map_each` with a step whose input is not the items' type.
use pipeline_core::prelude::*;

#[step]
fn sentences(doc: String) -> ItemStream<String> {
    ItemStream::iter(doc.split('.').map(String::from).collect::<Vec<_>>())
}

#[step]
fn shout(s: String) -> String {
    s.to_uppercase()
}

#[step]
fn double(x: u64) -> u64 {
    x * 2
}

fn main() {
    let _ = sentences(Input::new()).map_each(double);
}
