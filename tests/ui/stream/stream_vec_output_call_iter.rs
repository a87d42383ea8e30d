use pipeline_core::prelude::*;

#[step]
fn sentences(doc: String) -> Vec<String> {
    doc.split('.').map(String::from).collect()
}

fn main() {
    let p = sentences(Input::<String>::new()).deploy().unwrap();
    for s in p.call_iter("a. b".to_string()) {
        let _ = s;
    }
}
