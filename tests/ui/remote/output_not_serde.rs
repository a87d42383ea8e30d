use pipeline_core::prelude::*;

pub struct Model;

/// Not serde.
pub struct Scores(pub Vec<f32>);

#[step(mode = "actors", remote)]
impl Model {
    fn new() -> Self {
        Model
    }
    fn call(&self, x: Vec<f32>) -> Result<Scores, std::io::Error> {
        Ok(Scores(x))
    }
}

fn main() {}
