// A stream step marked `remote`: its output cannot cross to a worker.
use pipeline_core::prelude::*;

#[step(remote)]
fn sentences(doc: String) -> ItemStream<String> {
    ItemStream::iter(doc.split('.').map(String::from).collect::<Vec<_>>())
}

fn main() {
    let _ = sentences(Input::<String>::new());
}
