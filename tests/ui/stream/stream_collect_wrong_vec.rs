use pipeline_core::prelude::*;

#[step]
fn sentences(doc: String) -> ItemStream<String> {
    ItemStream::iter(doc.split('.').map(String::from).collect::<Vec<_>>())
}

#[step]
fn total(xs: Vec<usize>) -> usize {
    xs.iter().sum()
}

fn main() {
    let _ = total(sentences(Input::<String>::new()).collect()).deploy();
}
