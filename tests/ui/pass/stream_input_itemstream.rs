use pipeline_core::prelude::*;

#[step]
fn sentences(doc: String) -> ItemStream<String> {
    ItemStream::iter(doc.split('.').map(String::from).collect::<Vec<_>>())
}

#[step]
fn count(items: ItemStream<String>) -> usize {
    let _ = items;
    0
}

fn main() {
    let _ = count(sentences(Input::<String>::new())).deploy();
}
