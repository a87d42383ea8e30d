use pipeline_core::prelude::*;

struct Labels {
    names: Vec<String>,
}

#[step(mode = "actors")]
impl Labels {
    fn new() -> Self {
        Labels { names: vec!["cat".into(), "dog".into()] }
    }
    fn call(&self, i: usize) -> &str {
        &self.names[i % self.names.len()]
    }
}

fn main() {
    let _ = Labels::bind(Input::<usize>::new()).deploy();
}
