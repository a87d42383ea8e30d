//! The generated code must not depend on the user's names: this module
//! shadows the prelude names that generated code could reach for.
#![allow(dead_code, non_camel_case_types, clippy::all)]

use pipeline_core::{step, Deploy, Input};

struct Result;
struct Ok;
struct Err;
struct Option;
struct Some;
struct None;
struct Vec;
struct Box;
struct String;
struct Send;
struct Sync;
struct Future;
struct Clone;
trait Into {}
mod core {}
mod std {}

#[step]
fn add_one(x: i64) -> i64 {
    x + 1
}

#[step(mode = "actors", replicas = 2)]
async fn add_two(x: i64) -> i64 {
    x + 2
}

#[step(mode = "actors", autoscale(max_replicas = 4))]
fn scaled(x: i64) -> i64 {
    x
}

#[step]
fn checked(x: i64) -> ::std::result::Result<i64, ::std::string::String> {
    if x >= 0 {
        ::std::result::Result::Ok(x)
    } else {
        ::std::result::Result::Err("negative".into())
    }
}

struct Counter {
    n: i64,
}

#[step]
impl Counter {
    fn new(ctx: &pipeline_core::ReplicaContext, start: i64) -> ::std::result::Result<Self, ::std::string::String> {
        let _ = ctx.index();
        ::std::result::Result::Ok(Counter { n: start })
    }
    fn call(&mut self, x: i64) -> i64 {
        self.n += 1;
        x + self.n
    }
}

fn main() {
    let node = Counter::bind(0, checked(scaled(add_two(add_one(Input::<i64>::new())))));
    let p = node.deploy().unwrap();
    assert_eq!(p.call(1).unwrap(), 5);
}
