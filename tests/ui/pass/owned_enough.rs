//! Accepted: `&'static` values (owned enough to cross threads), a step
//! that calls itself (its name inside the body is the body), `ctx` first.
use pipeline_core::prelude::*;

#[step]
fn fact(x: u64) -> u64 {
    if x <= 1 {
        1
    } else {
        x * fact(x - 1)
    }
}

#[step]
fn greet(name: &'static str) -> String {
    format!("hello {name}")
}

struct Prefix {
    prefix: &'static str,
}

#[step(mode = "actors")]
impl Prefix {
    fn new(ctx: &ReplicaContext, prefix: &'static str) -> Self {
        let _ = ctx.index();
        Prefix { prefix }
    }
    fn call(&self, x: u64) -> String {
        format!("{}{x}", self.prefix)
    }
}

fn main() {
    let p = Prefix::bind("n=", fact(Input::<u64>::new())).deploy().unwrap();
    assert_eq!(p.call(4).unwrap(), "n=24");
    let g = greet(Input::<&'static str>::new()).deploy().unwrap();
    assert_eq!(g.call("you").unwrap(), "hello you");
}
