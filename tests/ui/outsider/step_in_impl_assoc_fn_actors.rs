use pipeline_core::prelude::*;

pub struct Steps;

impl Steps {
    #[step(mode = "tasks")]
    pub async fn fetch(url: String) -> usize {
        url.len()
    }
}

fn main() {
    let _ = Steps::fetch(Input::<String>::new()).deploy();
}
