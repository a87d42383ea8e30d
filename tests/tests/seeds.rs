//! The seed examples (Ray's pipeline API docs), translated: each shape runs
//! and gives the seed's answer.

use pipeline_core::prelude::*;

#[step]
fn add_one(x: i64) -> i64 {
    x + 1
}

/// The seed calls it `double`, and it squares.
#[step]
fn double(x: i64) -> i64 {
    x * x
}

struct Adder {
    increment: i64,
}

#[step]
impl Adder {
    fn new(increment: i64) -> Self {
        Adder { increment }
    }
    fn call(&self, x: i64) -> i64 {
        x + self.increment
    }
}

#[test]
fn echo_returns_its_input() {
    let echo = Input::<i64>::new().deploy().unwrap();
    assert_eq!(echo.call(42).unwrap(), 42);
}

#[test]
fn double_of_add_one() {
    let p = double(add_one(Input::<i64>::new())).deploy().unwrap();
    assert_eq!(p.call(1).unwrap(), 4);
    assert_eq!(p.call(2).unwrap(), 9);
}

#[test]
fn plain_functions_stay_callable() {
    assert_eq!(add_one::call(1), 2);
    assert_eq!(double::call(3), 9);
    assert_eq!(Adder::new(2).call(2), 4);
}

#[test]
fn adder_model_step() {
    let p = Adder::bind(2, Input::<i64>::new()).deploy().unwrap();
    assert_eq!(p.call(2).unwrap(), 4);
}

#[test]
fn then_chains_left_to_right() {
    let p = Input::<i64>::new()
        .then(add_one)
        .then(double)
        .deploy()
        .unwrap();
    assert_eq!(p.call(1).unwrap(), 4);
}
