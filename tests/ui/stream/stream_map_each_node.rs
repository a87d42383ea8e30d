use pipeline_core::prelude::*;

#[step]
fn sentences(doc: String) -> ItemStream<String> {
    ItemStream::iter(doc.split('.').map(String::from).collect::<Vec<_>>())
}

#[step]
fn shout(s: String) -> String {
    s.to_uppercase()
}

fn main() {
    let x = Input::<String>::new().shared();
    let _ = sentences(x.clone()).map_each(shout(x)).deploy();
}
