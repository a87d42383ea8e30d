// Should compile: a destructuring pattern as the input.
use pipeline_core::prelude::*;

#[derive(Clone)]
pub struct Point {
    pub x: i64,
    pub y: i64,
}

#[step]
fn manhattan(Point { x, y }: Point) -> i64 {
    x.abs() + y.abs()
}

fn main() {
    let p = manhattan(Input::<Point>::new()).deploy().unwrap();
    let _ = p.call(Point { x: 1, y: -2 });
}
