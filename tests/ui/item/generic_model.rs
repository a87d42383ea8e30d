use pipeline_core::prelude::*;

struct Model<T> {
    k: T,
}

#[step(mode = "actors")]
impl<T: Clone + Send + Sync + 'static> Model<T> {
    fn new(k: T) -> Self {
        Model { k }
    }
    fn call(&mut self, x: i64) -> i64 {
        let _ = &self.k;
        x
    }
}

fn main() {
    let _ = Model::bind(1u8, Input::<i64>::new()).deploy();
}
