use pipeline_core::prelude::*;

struct Model<T> {
    k: T,
}

#[step(mode = "actors")]
impl<T> Model<T>
where
    T: Into<i64> + Copy + Send + 'static,
{
    fn new(k: T) -> Self {
        Model { k }
    }
    fn call(&mut self, x: i64) -> i64 {
        x + self.k.into()
    }
}

fn main() {
    let _ = Model::bind(1i32, Input::<i64>::new()).deploy();
}
