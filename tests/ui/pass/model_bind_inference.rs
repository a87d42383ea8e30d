//! `Model::bind`'s constructor arguments take `new`'s types: `.into()`,
//! integer and float literals and `Default::default()` infer from them, and
//! arguments coerce to them (`Arc<T>` to `Arc<dyn Trait>`, a function to a
//! `fn` pointer, an array reference to a slice), with nodes of every kind
//! in a model with two inputs. (Generic parameters checked as one tuple
//! would make a swap of nodes and arguments one error, but lose these
//! coercions.)
use pipeline_core::prelude::*;

struct Scaler {
    path: String,
    k: i64,
    w: f32,
}

#[step(mode = "actors")]
impl Scaler {
    fn new(path: String, k: i64, w: f32) -> Self {
        Scaler { path, k, w }
    }
    fn call(&self, x: i64, y: i64) -> i64 {
        (x + y) * self.k + self.path.len() as i64 + self.w as i64
    }
}

trait Tokenizer: Send + Sync {
    fn count(&self, s: &str) -> usize;
}

struct Chars;

impl Tokenizer for Chars {
    fn count(&self, s: &str) -> usize {
        s.chars().count()
    }
}

struct Coerced {
    tokenizer: std::sync::Arc<dyn Tokenizer>,
    post: fn(i64) -> i64,
    table: &'static [u8],
}

#[step(mode = "actors")]
impl Coerced {
    fn new(tokenizer: std::sync::Arc<dyn Tokenizer>, post: fn(i64) -> i64, table: &'static [u8]) -> Self {
        Coerced { tokenizer, post, table }
    }
    fn call(&self, x: i64) -> i64 {
        (self.post)(x) + self.tokenizer.count("ab") as i64 + self.table.len() as i64
    }
}

fn inc(x: i64) -> i64 {
    x + 1
}

#[step]
fn double(x: i64) -> i64 {
    x * 2
}

fn main() {
    let x = Input::<i64>::new();
    let _ = Scaler::bind("m.pt".into(), 3, 1.5, x.clone(), double(x.clone()));
    let k = 4;
    let _ = Scaler::bind(String::new(), k, Default::default(), x.clone(), x.clone().boxed());
    let _: i64 = k;
    let shared = double(x.clone()).shared();
    let p = Scaler::bind("m".to_owned(), 1, 0.0, shared.clone(), shared)
        .deploy()
        .unwrap();
    assert_eq!(p.call(1).unwrap(), 5);
    let c = Coerced::bind(std::sync::Arc::new(Chars), inc, b"abc", x).deploy().unwrap();
    assert_eq!(c.call(1).unwrap(), 7);
}
