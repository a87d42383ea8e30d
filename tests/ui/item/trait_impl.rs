use pipeline_core::prelude::*;

struct Model;

#[step]
impl Default for Model {
    fn default() -> Self {
        Model
    }
}

fn main() {}
