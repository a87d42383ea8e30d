// `call_stream` on a pipeline that answers one value.
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
    let p = shout(Input::<String>::new()).deploy().unwrap();
    let _ = p.call_stream("a".into());
}
