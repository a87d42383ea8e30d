//! A documented step pasted twice, the copy edited: one error, at the copy.
use pipeline_core::prelude::*;

/// Adds the tax.
#[step(mode = "actors", replicas = 2)]
pub fn with_tax(price: f64) -> f64 {
    price * 1.2
}

/// Adds the tax (reduced rate).
#[step(mode = "actors", replicas = 2)]
pub fn with_tax(price: f64) -> f64 {
    price * 1.05
}

fn main() {
    let p = with_tax(Input::<f64>::new()).deploy().unwrap();
    let _ = p.call(10.0);
}
