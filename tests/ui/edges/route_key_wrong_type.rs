//! A branch keyed by a number where the key node produces a `String`.
use pipeline_core::prelude::*;

#[step]
fn language(text: String) -> String {
    text[..2].to_string()
}

#[step]
fn english(text: String) -> usize {
    text.len()
}

#[step]
fn french(text: String) -> usize {
    text.len() * 10
}

fn main() {
    let text = Input::<String>::new().shared();
    let _ = route(language(text.clone()))
        .branch("en", english(text.clone()))
        .branch(2, french(text))
        .deploy();
}
