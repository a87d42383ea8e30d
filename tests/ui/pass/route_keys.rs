//! Branch keys infer from the key node's output: integer literals for a
//! `u32` key, `&str` or `String` for a `String` key, `&'static str` for a
//! `&'static str` key, an enum's variants.
use pipeline_core::prelude::*;

#[derive(Debug, PartialEq)]
enum Size {
    Small,
    Large,
}

#[step]
fn bucket(x: u32) -> u32 {
    x % 3
}

#[step]
fn lang(x: u32) -> String {
    if x > 5 { "fr".to_string() } else { "en".to_string() }
}

#[step]
fn label(x: u32) -> &'static str {
    if x > 5 { "big" } else { "small" }
}

#[step]
fn size(x: u32) -> Size {
    if x > 5 { Size::Large } else { Size::Small }
}

#[step]
fn same(x: u32) -> u32 {
    x
}

#[step]
fn tenfold(x: u32) -> u32 {
    x * 10
}

fn main() {
    let x = Input::<u32>::new().shared();
    let by_number = route(bucket(x.clone()))
        .branch(0, same(x.clone()))
        .branch(1, tenfold(x.clone()))
        .otherwise(same(x));
    assert_eq!(by_number.deploy().unwrap().call(4).unwrap(), 40);

    let x = Input::<u32>::new().shared();
    let by_lang = route(lang(x.clone()))
        .branch("en", same(x.clone()))
        .branch(String::from("fr"), tenfold(x));
    assert_eq!(by_lang.deploy().unwrap().call(7).unwrap(), 70);

    let x = Input::<u32>::new().shared();
    let by_label = route(label(x.clone()))
        .branch("small", same(x.clone()))
        .branch("big", tenfold(x));
    assert_eq!(by_label.deploy().unwrap().call(2).unwrap(), 2);

    let x = Input::<u32>::new().shared();
    let by_size = route(size(x.clone()))
        .branch(Size::Small, same(x.clone()))
        .branch(Size::Large, tenfold(x));
    assert_eq!(by_size.deploy().unwrap().call(9).unwrap(), 90);
}
