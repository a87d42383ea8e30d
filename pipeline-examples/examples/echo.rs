//! Seed: the echo pipeline. `cargo run -p pipeline-examples --example echo`
use pipeline_core::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let echo = Input::<i64>::new().deploy()?;
    let out = echo.call(42)?;
    assert_eq!(out, 42);
    println!("echo(42) = {out}");
    Ok(())
}
