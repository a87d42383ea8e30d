// A stream pipeline's `call` answers the stream, not the collected items.
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
    let p = sentences(Input::<String>::new()).deploy().unwrap();
    let v: Vec<String> = p.call("a. b".into()).unwrap();
    let _ = v;
}
