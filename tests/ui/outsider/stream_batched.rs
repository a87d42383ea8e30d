use pipeline_core::prelude::*;

// The README says a batched stream step is refused at deploy.
#[step(mode = "actors", batch(max_size = 8, wait_ms = 2))]
fn sentences(docs: Vec<String>) -> Vec<ItemStream<String>> {
    docs.into_iter()
        .map(|d| ItemStream::iter(d.split('.').map(String::from).collect::<Vec<_>>()))
        .collect()
}

fn main() {
    let p = sentences(Input::<String>::new()).collect().deploy().unwrap();
    let _ = p.call("a. b".to_string());
}
