//! `remote` steps of every shape: functions, models, batched, several
//! inputs, serde structs, and `remote` beside other keys.
use pipeline_core::prelude::*;
use pipeline_core::StepFn;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Request {
    pub text: String,
}

#[step(remote)]
fn length(r: Request) -> usize {
    r.text.len()
}

#[step(mode = "tasks", remote)]
async fn join(a: String, b: Vec<u8>) -> Result<(String, usize), std::io::Error> {
    Ok((a, b.len()))
}

pub struct Embed;

#[step(mode = "actors", replicas = 2, remote, batch(max_size = 8, wait_ms = 1))]
impl Embed {
    fn new() -> Self {
        Embed
    }
    fn call(&self, xs: Vec<String>) -> Vec<Vec<f32>> {
        xs.iter().map(|x| vec![x.len() as f32]).collect()
    }
}

fn main() {
    assert!(<length<()> as StepFn>::INFO.remote);
    assert!(<length<()> as StepFn>::wire().is_some());
    assert!(<join<()> as StepFn>::wire().is_some());
    assert!(<Embed as StepFn>::wire().is_some());
    let wire = <Embed as StepFn>::wire().unwrap();
    let bytes = wire.encode_inputs(&("hi".to_string(),)).unwrap();
    assert_eq!(wire.decode_inputs(&bytes).unwrap().0, "hi");
}
