use pipeline_core::prelude::*;

#[step]
fn to_text<T>(x: T) -> String
where
    T: std::fmt::Display + Send + 'static,
{
    x.to_string()
}

fn main() {
    let _ = to_text(Input::<i64>::new()).deploy();
}
