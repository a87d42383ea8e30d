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

#[test]
fn chaining_shape_preprocess_then_model() {
    use pipeline_examples::{preprocess, Classifier};
    let features = Input::<Vec<u8>>::new().then(preprocess);
    let p = Classifier::bind("resnet18".to_string(), features)
        .deploy()
        .unwrap();
    let top5 = p.call(vec![0, 64, 128, 255]).unwrap();
    assert_eq!(top5.len(), 5);
    assert!(top5.iter().all(|(c, _)| c.starts_with("resnet18:")));
    assert!(
        top5.windows(2).all(|w| w[0].1 >= w[1].1),
        "sorted best first"
    );
    let labels: Vec<_> = p.graph().nodes().iter().map(|n| n.label.clone()).collect();
    assert_eq!(labels, ["input", "preprocess", "Classifier"]);
}

#[test]
fn ensemble_shape_preprocess_two_models_combine() {
    use pipeline_examples::{combine, preprocess, Classifier};
    let pre = preprocess(Input::<Vec<u8>>::new()).shared();
    let models = ["resnet18", "resnet34"].map(|m| Classifier::bind(m.to_string(), pre.clone()));
    let p = combine(models).deploy().unwrap();
    let categories = p.call(vec![0, 64, 128, 255]).unwrap();
    assert_eq!(categories.len(), 10);
    assert!(categories[..5].iter().all(|c| c.starts_with("resnet18:")));
    assert!(categories[5..].iter().all(|c| c.starts_with("resnet34:")));
}
