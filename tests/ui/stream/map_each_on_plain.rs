// `.map_each` on a node that produces one value, not a stream.
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
    let _ = shout(Input::<String>::new()).map_each(shout);
}
