// A stream node passed where a plain `String` is expected.
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
    let _ = shout(sentences(Input::new()));
}
