use pipeline_core::prelude::*;

struct Model<'a> {
    labels: &'a [&'a str],
}

#[step(mode = "actors")]
impl<'a> Model<'a> {
    fn new(labels: &'a [&'a str]) -> Self {
        Model { labels }
    }
    fn call(&mut self, x: usize) -> String {
        self.labels[x % self.labels.len()].to_string()
    }
}

static LABELS: [&str; 2] = ["cat", "dog"];

fn main() {
    let _ = Model::bind(&LABELS[..], Input::<usize>::new()).deploy();
}
