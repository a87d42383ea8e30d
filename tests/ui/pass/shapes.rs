//! Every supported step shape compiles and wires.
use pipeline_core::prelude::*;

#[step]
fn sync_plain(x: i64) -> i64 {
    x
}

#[step]
async fn async_plain(x: i64) -> i64 {
    x
}

#[step]
fn sync_fallible(x: i64) -> Result<i64, std::num::TryFromIntError> {
    i64::try_from(x as u64)
}

#[step]
async fn async_fallible(x: i64) -> Result<i64, String> {
    Ok(x)
}

#[step]
fn several(a: i64, b: String, (c, d): (u8, u8)) -> String {
    format!("{a}{b}{c}{d}")
}

#[step]
fn unit_out(_x: String) {}

#[step]
fn pair(x: i64) -> (u8, u8) {
    (x as u8, 1)
}

#[step]
fn to_string(x: i64) -> String {
    x.to_string()
}

pub struct Shared {
    k: i64,
}

#[step(mode = "actors", replicas = 3)]
impl Shared {
    pub fn new(k: i64, _name: String) -> Self {
        Shared { k }
    }
    pub fn call(&self, x: i64) -> i64 {
        x * self.k
    }
}

struct AsyncMut {
    seen: usize,
}

#[step(mode = "tasks")]
impl AsyncMut {
    fn new(_ctx: &ReplicaContext) -> Result<Self, std::io::Error> {
        Ok(AsyncMut { seen: 0 })
    }
    async fn call(&mut self, x: i64, y: i64) -> Result<i64, std::io::Error> {
        self.seen += 1;
        Ok(x + y)
    }
}

fn main() {
    let x = Input::<i64>::new().shared();
    let a = async_fallible(sync_fallible(async_plain(sync_plain(x.clone()))));
    let b = Shared::bind(2, "s".to_string(), x.clone());
    let c = AsyncMut::bind(a, b).shared();
    let s = several(c.clone(), to_string(c.clone()), pair(c));
    let p = unit_out(s).deploy().unwrap();
    p.call(1).unwrap();
}
