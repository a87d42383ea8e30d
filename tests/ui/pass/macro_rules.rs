//! Attribute values that arrive through `macro_rules!` (as `$x:expr`, which
//! rustc wraps in an invisible group) read as if written in place.
use pipeline_core::prelude::*;
use pipeline_core::StepFn;

macro_rules! scaled {
    ($name:ident, $mode:expr, $max:expr) => {
        #[step(mode = $mode, placement = "task", autoscale(max_replicas = $max, min_replicas = 2))]
        fn $name(x: i64) -> i64 {
            x + 1
        }
    };
}

macro_rules! fixed {
    ($name:ident, $n:literal) => {
        #[step(mode = "actors", replicas = $n)]
        fn $name(x: i64) -> i64 {
            x * 2
        }
    };
}

scaled!(inc, "actors", 5);
fixed!(dbl, 3);

fn main() {
    let info = <inc<()> as StepFn>::INFO;
    assert_eq!(info.mode, Mode::Actors);
    assert_eq!(info.autoscale.map(|p| (p.min_replicas, p.max_replicas)), Some((2, 5)));
    assert_eq!(<dbl<()> as StepFn>::INFO.replicas, 3);
    let p = dbl(inc(Input::<i64>::new())).deploy().unwrap();
    assert_eq!(p.call(1).unwrap(), 4);
}
