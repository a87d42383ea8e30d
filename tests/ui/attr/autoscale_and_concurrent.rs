use pipeline_core::prelude::*;

struct Search;

#[step(mode = "actors", autoscale(max_replicas = 4), concurrent)]
impl Search {
    fn new() -> Self {
        Search
    }
    async fn call(&self, q: String) -> usize {
        q.len()
    }
}

fn main() {
    let _ = Search::bind(Input::<String>::new()).deploy();
}
