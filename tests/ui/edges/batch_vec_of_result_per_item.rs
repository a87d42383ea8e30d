use pipeline_core::prelude::*;

#[step(mode = "actors", batch(max_size = 16, wait_ms = 2))]
fn parse(texts: Vec<String>) -> Result<Vec<i64>, String> {
    texts.iter().map(|t| t.parse::<i64>().map_err(|e| e.to_string())).collect()
}

#[step]
fn double(x: Vec<i64>) -> i64 {
    x.iter().sum::<i64>() * 2
}

fn main() {
    let _ = double(parse(Input::<String>::new())).deploy();
}
