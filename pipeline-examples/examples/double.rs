//! Seed: `double(add_one(INPUT))`, where `double` squares.
//! `cargo run -p pipeline-examples --example double`
use pipeline_core::prelude::*;

#[step]
fn add_one(x: i64) -> i64 {
    x + 1
}

#[step]
fn double(x: i64) -> i64 {
    x * x
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let p = double(add_one(Input::<i64>::new())).deploy()?;
    let out = p.call(1)?;
    assert_eq!(out, 4);
    println!("double(add_one(1)) = {out}");
    println!("{}", p.graph().to_mermaid());
    Ok(())
}
