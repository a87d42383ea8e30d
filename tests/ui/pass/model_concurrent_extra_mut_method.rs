use pipeline_core::prelude::*;

struct Cache {
    hits: u64,
}

#[step(mode = "tasks", concurrent)]
impl Cache {
    fn new() -> Self {
        Cache { hits: 0 }
    }
    async fn call(&self, x: u64) -> u64 {
        x + self.hits
    }
    fn bump(&mut self) {
        self.hits += 1;
    }
}

fn main() {
    let _ = Cache::bind(Input::<u64>::new()).deploy();
}
