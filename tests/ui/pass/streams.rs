//! Stream steps in every form that should compile: from an iterator, a
//! `Stream`, `Result` items, a model step, async; `.map_each` with a step
//! name or a capturing closure, chained, shared, collected.
use futures::StreamExt;
use pipeline_core::prelude::*;

#[step]
fn words(s: String) -> ItemStream<String> {
    let words: Vec<String> = s.split_whitespace().map(String::from).collect();
    ItemStream::iter(words)
}

#[step(mode = "tasks")]
fn parsed(s: String) -> ItemStream<u32> {
    let items: Vec<Result<u32, std::num::ParseIntError>> = s.split(',').map(str::parse).collect();
    ItemStream::try_iter(items)
}

#[step(mode = "actors", replicas = 2)]
async fn ticks(n: u32) -> ItemStream<u32> {
    ItemStream::new(futures::stream::iter(0..n).then(|i| async move { i }))
}

struct Repeat {
    times: usize,
}

#[step(mode = "actors")]
impl Repeat {
    fn new(times: usize) -> Self {
        Repeat { times }
    }
    fn call(&self, s: String) -> ItemStream<String> {
        ItemStream::iter(std::iter::repeat_n(s, self.times))
    }
}

#[step]
fn len(s: String) -> usize {
    s.len()
}

#[step]
fn total(xs: Vec<usize>, ys: Vec<u32>) -> usize {
    xs.iter().sum::<usize>() + ys.iter().map(|&y| y as usize).sum::<usize>()
}

fn main() {
    let _ = words(Input::<String>::new()).map_each(len).collect();
    let _ = ticks(Input::<u32>::new()).map_each(|x| x).collect();
    let times = 3;
    let _ = words(Input::<String>::new())
        .map_each_with(move |w| Repeat::bind(times, w).collect())
        .in_flight(4);
    let s = Input::<String>::new().shared();
    let _ = total(
        Repeat::bind(2, s.clone()).map_each(len).collect(),
        parsed(s).collect(),
    );
    let p: Pipeline<String, ItemStream<usize>> =
        words(Input::<String>::new()).map_each(len).deploy().unwrap();
    let _: Vec<Result<usize, PipelineError>> = p.call_iter("a bc".into()).collect();
}
