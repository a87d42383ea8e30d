//! The shapes the diagnostics work touched, used right: a tuple gathers
//! nodes of different steps, `bind` infers literal constructor arguments,
//! a route key needs only `PartialEq + Debug`, `.shared()` of a `Clone`
//! output, `&'static` outputs, and a step defined through `macro_rules!`.
use pipeline_core::prelude::*;

#[step]
fn plus(x: i64) -> i64 {
    x + 1
}

#[step]
fn times(x: i64) -> i64 {
    x * 2
}

#[step]
fn sum(xs: Vec<i64>) -> i64 {
    xs.iter().sum()
}

#[step]
fn label(x: i64) -> &'static str {
    if x > 10 { "big" } else { "small" }
}

struct Scale {
    name: String,
    k: i64,
}

#[step(mode = "actors", replicas = 2)]
impl Scale {
    fn new(name: String, k: i64) -> Self {
        Scale { name, k }
    }
    fn call(&self, x: i64) -> i64 {
        let _ = &self.name;
        x * self.k
    }
}

macro_rules! batched {
    ($name:ident, $mode:literal, $max:literal, $wait:expr) => {
        #[step(mode = $mode, batch(max_size = $max, wait_ms = $wait))]
        fn $name(xs: Vec<i64>) -> Vec<i64> {
            xs.into_iter().map(|x| x - 1).collect()
        }
    };
}

batched!(minus, "actors", 4, 0);

fn main() {
    let x = Input::<i64>::new().shared();
    let scaled = Scale::bind("s".to_string(), 3, x.clone()).shared();
    let p = sum((plus(x.clone()), times(x.clone()), scaled.clone(), minus(x.clone())))
        .deploy()
        .unwrap();
    assert_eq!(p.call(10).unwrap(), 11 + 20 + 30 + 9);

    drop(x);
    let y = Input::<i64>::new().shared();
    let r = route(label(y.clone()))
        .branch("small", plus(y.clone()))
        .branch("big", times(y))
        .deploy()
        .unwrap();
    assert_eq!((r.call(1).unwrap(), r.call(20).unwrap()), (2, 40));
    drop(scaled);
}
