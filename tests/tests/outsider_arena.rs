//! An outsider's hostile tests of the per-call arena (the block each call
//! places its type-erased futures in, step runners' own futures included),
//! through the public API only: async step bodies whose futures hold big
//! or over-aligned state across an await, in local, tasks and actors
//! modes; chains, gathers, routes and shared fan-outs; calls cancelled,
//! timed out, panicking, failing, shut down; thousands of calls moving
//! between threads; calls outliving the thread that started them (some
//! dropped by a thread-local's destructor); streams. Every value a step
//! makes counts its drops: each must be dropped exactly once, and its
//! contents must read back unchanged.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::Context;
use std::time::Duration;

use futures::StreamExt;
use pipeline_core::prelude::*;
use pipeline_core::{Node, Shared};
use tokio::sync::Semaphore;

mod support;
use support::{wait_until, wait_until_async};

// ------------------------------------------------------------ the state

/// What the steps of one test made and dropped, and a gate to hold them.
#[derive(Debug)]
struct Tally {
    made: AtomicUsize,
    dropped: AtomicUsize,
    bad: AtomicUsize,
    entered: AtomicUsize,
    gate: Semaphore,
}

impl Tally {
    fn new() -> Arc<Self> {
        Arc::new(Tally {
            made: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            bad: AtomicUsize::new(0),
            entered: AtomicUsize::new(0),
            gate: Semaphore::new(0),
        })
    }
    fn counts(&self) -> (usize, usize, usize) {
        (
            self.made.load(SeqCst),
            self.dropped.load(SeqCst),
            self.bad.load(SeqCst),
        )
    }
    /// Everything made was dropped once, nothing read back wrong.
    fn assert_clean(&self, made: usize) {
        assert_eq!(self.counts(), (made, made, 0), "(made, dropped, bad)");
    }
}

/// A call's input and answer: a number and the test's tally.
#[derive(Clone, Debug)]
struct Job {
    x: u64,
    t: Arc<Tally>,
}

fn job(x: u64, t: &Arc<Tally>) -> Job {
    Job { x, t: t.clone() }
}

const LIVE: u64 = 0x1157_AB1E_0000_0001;
const DEAD: u64 = 0xDEAD_DEAD_DEAD_DEAD;

fn mix(seed: u64, i: usize) -> u64 {
    (seed ^ 0x9E37_79B9_7F4A_7C15)
        .wrapping_mul(2 * i as u64 + 1)
        .rotate_left((i % 61) as u32)
}

fn fold(acc: u64, w: u64) -> u64 {
    acc.rotate_left(5) ^ w
}

/// What `Big::<N>::sum` must read for `seed`.
fn expect_sum(seed: u64, n: usize) -> u64 {
    (0..n).fold(n as u64, |acc, i| fold(acc, mix(seed, i)))
}

/// The next number of a chain after a step that summed `n` words.
fn next(x: u64, n: usize) -> u64 {
    x.wrapping_mul(31).wrapping_add(expect_sum(x, n))
}

/// `n` words filled from a seed, counted when made and when dropped.
struct Big<const N: usize> {
    magic: u64,
    words: [u64; N],
    t: Arc<Tally>,
}

impl<const N: usize> Big<N> {
    fn new(seed: u64, t: &Arc<Tally>) -> Self {
        t.made.fetch_add(1, SeqCst);
        let mut words = [0u64; N];
        for (i, w) in words.iter_mut().enumerate() {
            *w = mix(seed, i);
        }
        Big {
            magic: LIVE,
            words,
            t: t.clone(),
        }
    }
    /// The words' checksum; a word changed since `new` is counted bad.
    fn sum(&self, seed: u64) -> u64 {
        let intact = self.magic == LIVE
            && self
                .words
                .iter()
                .enumerate()
                .all(|(i, &w)| w == mix(seed, i));
        if !intact {
            self.t.bad.fetch_add(1, SeqCst);
        }
        self.words.iter().fold(N as u64, |acc, &w| fold(acc, w))
    }
}

impl<const N: usize> Drop for Big<N> {
    fn drop(&mut self) {
        if self.magic != LIVE {
            self.t.bad.fetch_add(1, SeqCst);
        }
        self.magic = DEAD;
        self.t.dropped.fetch_add(1, SeqCst);
    }
}

/// Declares async steps holding a `Big<N>` across two awaits.
macro_rules! big_step {
    ($($(#[$m:meta])* $name:ident = $n:expr;)*) => {$(
        $(#[$m])*
        async fn $name(j: Job) -> Job {
            let b = Big::<{ $n }>::new(j.x, &j.t);
            tokio::task::yield_now().await;
            tokio::task::yield_now().await;
            let s = b.sum(j.x);
            assert_eq!(s, expect_sum(j.x, $n), "step {} read wrong words", stringify!($name));
            Job { x: next(j.x, $n), t: j.t }
        }
    )*};
}

big_step! {
    #[step] w1 = 1;
    #[step] w8 = 8;
    #[step] w64 = 64;
    #[step] w250 = 250;
    #[step] w375 = 375;
    #[step] w480 = 480;
    #[step] w496 = 496;
    #[step] w500 = 500;
    #[step] w504 = 504;
    #[step] w508 = 508;
    #[step] w512 = 512;
    #[step] w1000 = 1000;
    #[step(mode = "tasks")] t375 = 375;
    #[step(mode = "tasks")] t1000 = 1000;
    #[step(mode = "actors", replicas = 3)] a375 = 375;
    #[step(mode = "actors", placement = "thread", replicas = 2)] a500 = 500;
}

type Link = (fn(Node<Job, Job>) -> Node<Job, Job>, usize);
type Chain = Vec<Link>;

/// A chain of steps, each with its number of words.
macro_rules! links {
    ($($name:ident $n:literal),*) => { vec![$(((|n| $name(n).boxed()) as fn(_) -> _, $n)),*] };
}

/// Every local size, around a block's 4 KiB.
fn sizes() -> Chain {
    links![w1 1, w8 8, w64 64, w250 250, w375 375, w480 480, w496 496, w500 500, w504 504,
        w508 508, w512 512, w1000 1000]
}

fn mixed_modes() -> Chain {
    links![t375 375, a375 375, w512 512, t1000 1000, a500 500, w1000 1000]
}

fn build_chain(chain: &Chain) -> Node<Job, Job> {
    chain
        .iter()
        .fold(Input::<Job>::new().boxed(), |n, (f, _)| f(n))
}

fn chain_answer(chain: &Chain, x: u64) -> u64 {
    chain.iter().fold(x, |x, &(_, n)| next(x, n))
}

fn wide() -> DeployOptions {
    DeployOptions::new().default_queue_bound(1 << 20)
}

fn multi_rt(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_stack_size(32 << 20)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `f` on a thread with a big stack (deep chains recurse per step).
fn on_big_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

// ------------------------------------------------------ sizes and shapes

/// Futures of every size around a block's 4 KiB, in a chain forward and
/// backward and in a gather: answers right, each state dropped once.
#[test]
fn futures_of_every_size_around_a_block_answer_right() {
    let t = Tally::new();
    let fwd = sizes();
    let mut back = sizes();
    back.reverse();
    let p = build_chain(&fwd).deploy().unwrap();
    let q = build_chain(&back).deploy().unwrap();
    let x = Input::<Job>::new().shared();
    let gather: Vec<Node<Job, Job>> = sizes().iter().map(|(f, _)| f(x.clone().boxed())).collect();
    drop(x);
    let g = gather.deploy().unwrap();
    for x in 0..40u64 {
        assert_eq!(p.call(job(x, &t)).unwrap().x, chain_answer(&fwd, x));
        assert_eq!(q.call(job(x, &t)).unwrap().x, chain_answer(&back, x));
        let all: Vec<u64> = g.call(job(x, &t)).unwrap().iter().map(|j| j.x).collect();
        let want: Vec<u64> = sizes().iter().map(|&(_, n)| next(x, n)).collect();
        assert_eq!(all, want);
    }
    t.assert_clean(40 * 3 * 12);
}

#[repr(align(64))]
struct Al64([u8; 64]);
#[repr(align(4096))]
struct Al4k([u8; 4096]);

/// Holds values aligned to 64 and 4096 and a `Big` across awaits;
/// answers `x + 1` if they stayed aligned and unchanged.
macro_rules! aligned_step {
    ($($(#[$m:meta])* $name:ident;)*) => {$(
        $(#[$m])*
        async fn $name(j: Job) -> Job {
            let (a, b) = (Al64([j.x as u8; 64]), Al4k([!j.x as u8; 4096]));
            let before = (&a as *const Al64 as usize, &b as *const Al4k as usize);
            tokio::task::yield_now().await;
            let w = Big::<512>::new(j.x, &j.t);
            tokio::task::yield_now().await;
            let here = (&a as *const Al64 as usize, &b as *const Al4k as usize);
            let ok = here.0 % 64 == 0 && here.1 % 4096 == 0 && before.0 % 64 == 0
                && before.1 % 4096 == 0 && a.0.iter().all(|&v| v == j.x as u8)
                && b.0.iter().all(|&v| v == !j.x as u8) && w.sum(j.x) == expect_sum(j.x, 512);
            Job { x: j.x + u64::from(ok), t: j.t }
        }
    )*};
}

aligned_step! {
    #[step] al;
    #[step] al2;
    #[step(mode = "tasks")] t_al;
}

/// Over-aligned state held across awaits beside big state, in a chain
/// and a gather: stays aligned and unchanged, all dropped once.
#[test]
fn over_aligned_state_stays_aligned_and_is_dropped_once() {
    let t = Tally::new();
    let p = t_al(al2(al(w1000(Input::<Job>::new())))).deploy().unwrap();
    let x = Input::<Job>::new().shared();
    let g = vec![
        al(x.clone()).boxed(),
        w496(x.clone()).boxed(),
        t_al(x).boxed(),
    ];
    let g = g.deploy().unwrap();
    for x in 0..30u64 {
        assert_eq!(p.call(job(x, &t)).unwrap().x, next(x, 1000) + 3);
        let got: Vec<u64> = g.call(job(x, &t)).unwrap().iter().map(|j| j.x).collect();
        assert_eq!(got, vec![x + 1, next(x, 496), x + 1]);
    }
    t.assert_clean(30 * 4 + 30 * 3);
}

/// A chain of 200 async steps (1000 words each, a tasks step every 20th):
/// most futures cannot share a block; answers right, all dropped once.
#[test]
fn a_chain_of_two_hundred_big_async_steps() {
    let t = Tally::new();
    let t2 = t.clone();
    on_big_stack(move || {
        let (w, t): (Chain, Chain) = (links![w1000 1000], links![t1000 1000]);
        let chain: Chain = (0..200)
            .map(|i| if i % 20 == 7 { t[0] } else { w[0] })
            .collect();
        let p = build_chain(&chain).deploy().unwrap();
        for x in 0..5u64 {
            assert_eq!(p.call(job(x, &t2)).unwrap().x, chain_answer(&chain, x));
        }
    });
    t.assert_clean(200 * 5);
}

#[step]
fn pick(j: Job) -> u64 {
    j.x % 4
}

#[step]
fn total(all: Vec<Job>) -> Job {
    let x = all.iter().fold(0u64, |a, j| a.wrapping_add(j.x));
    Job {
        x,
        t: all[0].t.clone(),
    }
}

/// A route among branches of mixed modes and sizes, each branch a shared
/// node that is also gathered: only the chosen branch's futures run.
#[test]
fn routes_and_shared_fan_outs_of_mixed_modes() {
    let t = Tally::new();
    let x = Input::<Job>::new().shared();
    let s = t1000(w375(x.clone())).shared();
    let p = route(pick(x.clone()))
        .branch(0, a375(s.clone()))
        .branch(1, w1000(a500(s.clone())))
        .branch(2, t375(w8(x.clone())))
        .otherwise(total(vec![
            w512(s.clone()).boxed(),
            a500(s.clone()).boxed(),
            s.boxed(),
        ]));
    let p = p.deploy_with(wide()).unwrap();
    for x in 0..60u64 {
        let s = next(next(x, 375), 1000);
        let want = match x % 4 {
            0 => next(s, 375),
            1 => next(next(s, 500), 1000),
            2 => next(next(x, 8), 375),
            _ => next(s, 512).wrapping_add(next(s, 500)).wrapping_add(s),
        };
        assert_eq!(p.call(job(x, &t)).unwrap().x, want, "input {x}");
    }
    // per input: 0 -> 3, 1 -> 4, 2 -> 2, 3 -> 4
    t.assert_clean(15 * (3 + 4 + 2 + 4));
}

// ------------------------------------------------- many calls, many threads

fn mixed_answer(x: u64) -> u64 {
    chain_answer(&mixed_modes(), x)
}

/// 6,000 calls in flight at once through a chain of local, tasks and
/// actors steps, half polled by one `join_all`, half spawned (so they move
/// between workers): every answer right, every state dropped once.
#[test]
fn six_thousand_concurrent_calls_across_workers() {
    let t = Tally::new();
    let rt = multi_rt(4);
    rt.block_on(async {
        let p = build_chain(&mixed_modes()).deploy_with(wide()).unwrap();
        let joined = futures::future::join_all((0..3000u64).map(|x| {
            let p = &p;
            let t = &t;
            async move { (x, p.call_async(job(x, t)).await) }
        }));
        let mut set = tokio::task::JoinSet::new();
        for x in 3000..6000u64 {
            let (p, j) = (p.clone(), job(x, &t));
            set.spawn(async move { (x, p.call_async(j).await) });
        }
        for (x, r) in joined.await {
            assert_eq!(r.unwrap().x, mixed_answer(x), "input {x}");
        }
        while let Some(done) = set.join_next().await {
            let (x, r) = done.unwrap();
            assert_eq!(r.unwrap().x, mixed_answer(x), "input {x}");
        }
    });
    t.assert_clean(6000 * 6);
}

/// Blocking calls from 24 OS threads (each its own block cache, exiting
/// at the end), then more from this thread: all right, all dropped once.
#[test]
fn blocking_calls_from_many_threads_that_then_exit() {
    let t = Tally::new();
    let p = build_chain(&mixed_modes()).deploy_with(wide()).unwrap();
    let q = build_chain(&sizes()).deploy().unwrap();
    std::thread::scope(|s| {
        for k in 0..24u64 {
            let (p, q, t) = (&p, &q, &t);
            s.spawn(move || {
                for i in 0..60u64 {
                    let x = k * 1000 + i;
                    assert_eq!(p.call(job(x, t)).unwrap().x, mixed_answer(x));
                    assert_eq!(q.call(job(x, t)).unwrap().x, chain_answer(&sizes(), x));
                }
            });
        }
    });
    for x in 0..50u64 {
        assert_eq!(p.call(job(x, &t)).unwrap().x, mixed_answer(x));
    }
    t.assert_clean(24 * 60 * 18 + 50 * 6);
}

// ---------------------------------------------------- held, then let go

/// Holds a `Big<400>` at the test's gate.
macro_rules! held_step {
    ($($(#[$m:meta])* $name:ident;)*) => {$(
        $(#[$m])*
        async fn $name(j: Job) -> Job {
            let b = Big::<400>::new(j.x, &j.t);
            j.t.entered.fetch_add(1, SeqCst);
            j.t.gate.acquire().await.unwrap().forget();
            assert_eq!(b.sum(j.x), expect_sum(j.x, 400));
            Job { x: next(j.x, 400), t: j.t }
        }
    )*};
}

held_step! {
    #[step] h_local;
    #[step(mode = "tasks")] h_tasks;
    #[step(mode = "actors", placement = "task", replicas = 64)] h_actors;
    #[step(mode = "actors", placement = "thread", replicas = 64)] h_thread;
}

fn held_pipelines() -> Vec<Pipeline<Job, Job>> {
    let held: Chain = links![h_local 400, h_tasks 400, h_actors 400, h_thread 400];
    let around = |(f, _): &Link| w500(f(w1000(Input::<Job>::new()).boxed()));
    held.iter()
        .map(|h| around(h).deploy_with(wide()).unwrap())
        .collect()
}

/// Calls that reached the held step (an actor router may queue two at one
/// replica while another is free, so not all of them need be inside).
fn reached(p: &Pipeline<Job, Job>) -> u64 {
    p.metrics()
        .iter()
        .filter(|m| m.step.starts_with("h_"))
        .map(|m| m.requests)
        .sum()
}

/// Everything made was dropped once and read back right; returns how
/// many were made.
fn settled(t: &Tally) -> usize {
    wait_until("every value dropped", || t.counts().0 == t.counts().1);
    assert_eq!(t.counts().2, 0, "a value read back wrong or dropped twice");
    t.counts().0
}

fn held_answer(x: u64) -> u64 {
    next(next(next(x, 1000), 400), 500)
}

/// Calls held inside a big step and cancelled (aborted, dropped by
/// `select!`, timed out both ways) in every mode: each value made is
/// dropped once, the calls left answer right, later calls work.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelled_calls_drop_their_state_once_in_every_mode() {
    for (mode, p) in held_pipelines().into_iter().enumerate() {
        let t = Tally::new();
        let calls: Vec<_> = (0..8u64)
            .map(|x| {
                let (p, j) = (p.clone(), job(x, &t));
                tokio::spawn(async move { p.call_async(j).await })
            })
            .collect();
        wait_until_async("8 calls held", || reached(&p) == 8).await;
        let mut live = Vec::new();
        for (x, call) in (0..8u64).zip(calls) {
            if x % 2 == 1 {
                call.abort();
                assert!(call.await.unwrap_err().is_cancelled());
            } else {
                live.push((x, call));
            }
        }
        tokio::select! {
            _ = p.call_async(job(100, &t)) => panic!("a held call answered"),
            _ = wait_until_async("the 9th call held", || reached(&p) == 9) => {}
        }
        let r = tokio::time::timeout(Duration::from_millis(2), p.call_async(job(101, &t))).await;
        assert!(r.is_err(), "mode {mode}: a held call answered");
        let r = p
            .call_async_timeout(job(102, &t), Duration::from_millis(2))
            .await;
        assert!(
            matches!(r, Err(PipelineError::DeadlineExceeded { .. })),
            "mode {mode}: {r:?}"
        );
        t.gate.add_permits(1000);
        for (x, call) in live {
            assert_eq!(
                call.await.unwrap().unwrap().x,
                held_answer(x),
                "mode {mode}"
            );
        }
        assert_eq!(p.call_async(job(7, &t)).await.unwrap().x, held_answer(7));
        let made = tokio::task::block_in_place(|| settled(&t));
        // 5 answered (3 each); 6 cancelled, 1 or 2 each (a call cancelled
        // before an actor or task reached it never ran there), 4 of them
        // surely held.
        assert!((22..=29).contains(&made), "mode {mode}: {made}");
    }
}

/// `shutdown()` with calls held in every mode: new calls are refused, the
/// held ones answer right once let go, shutdown returns, all dropped once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_with_calls_held_in_every_mode() {
    for p in held_pipelines() {
        let t = Tally::new();
        let calls: Vec<_> = (0..16u64)
            .map(|x| {
                let (p, j) = (p.clone(), job(x, &t));
                tokio::spawn(async move { p.call_async(j).await })
            })
            .collect();
        wait_until_async("16 calls held", || reached(&p) == 16).await;
        let closing = {
            let p = p.clone();
            tokio::spawn(async move { p.shutdown_async().await })
        };
        wait_until_async("shutdown began", || p.is_shutting_down()).await;
        let r = p.call_async(job(99, &t)).await;
        assert!(matches!(r, Err(PipelineError::ShuttingDown)), "{r:?}");
        t.gate.add_permits(16);
        for (x, call) in (0..16u64).zip(calls) {
            assert_eq!(call.await.unwrap().unwrap().x, held_answer(x));
        }
        closing.await.unwrap();
        t.assert_clean(16 * 3);
    }
}

type Call = std::pin::Pin<Box<dyn Future<Output = Result<Job, PipelineError>> + Send>>;

fn boxed_call(p: &Pipeline<Job, Job>, j: Job) -> Call {
    let p = p.clone();
    Box::pin(async move { p.call_async(j).await })
}

/// Polls every call (with a waker that does nothing) until all are held.
fn poll_until_held(calls: &mut [Call], p: &Pipeline<Job, Job>) {
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    wait_until("calls held", || {
        for c in calls.iter_mut() {
            assert!(c.as_mut().poll(&mut cx).is_pending(), "a call answered");
        }
        reached(p) == calls.len() as u64
    });
}

thread_local! {
    static STASH: std::cell::RefCell<Vec<Call>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// On a thread that then exits (its block cache with it), 40 calls are
/// polled into the held step: 10 are left in a thread-local its exit
/// drops (registered before or after the library's own), 30 go to another
/// thread, which drops 10 and finishes 20. Every mode: right answers,
/// each value dropped once, nothing crashes.
#[test]
fn calls_outliving_the_thread_that_started_them() {
    for (k, p) in held_pipelines().into_iter().enumerate() {
        let t = Tally::new();
        let (p2, t2) = (p.clone(), t.clone());
        let calls = std::thread::spawn(move || {
            if k % 2 == 0 {
                STASH.with(|s| s.borrow_mut().clear());
            }
            let mut calls: Vec<Call> = (0..40).map(|x| boxed_call(&p2, job(x, &t2))).collect();
            poll_until_held(&mut calls, &p2);
            let stashed = calls.split_off(30);
            STASH.with(|s| s.borrow_mut().extend(stashed));
            calls
        });
        let calls = calls.join().unwrap();
        let t3 = t.clone();
        let answers = std::thread::spawn(move || {
            let mut calls = calls;
            drop(calls.split_off(20));
            t3.gate.add_permits(40);
            let answers = calls.into_iter().map(futures::executor::block_on);
            answers.map(|r| r.unwrap().x).collect::<Vec<_>>()
        });
        let answers = answers.join().unwrap();
        assert_eq!(answers, (0..20).map(held_answer).collect::<Vec<_>>());
        let made = settled(&t);
        // 40 made w1000; up to 40 the held step's; 20 w500.
        assert!((80..=100).contains(&made), "{made}");
    }
}

// ------------------------------------------------- panics, errors, drops

/// Fails by `x % 4`: 0 panics before its await, 1 after, 2 returns `Err`
/// after, 3 answers; a `Big` is held throughout.
macro_rules! failing_step {
    ($($(#[$m:meta])* $name:ident;)*) => {$(
        $(#[$m])*
        async fn $name(j: Job) -> Result<Job, std::io::Error> {
            let b = Big::<450>::new(j.x, &j.t);
            assert!(j.x % 4 != 0, "boom before the await");
            tokio::task::yield_now().await;
            assert!(j.x % 4 != 1, "boom after the await");
            if j.x % 4 == 2 {
                return Err(std::io::Error::other("refused"));
            }
            assert_eq!(b.sum(j.x), expect_sum(j.x, 450));
            Ok(Job { x: next(j.x, 450), t: j.t })
        }
    )*};
}

failing_step! {
    #[step] f_local;
    #[step(mode = "tasks")] f_tasks;
    #[step(mode = "actors", placement = "task", replicas = 2)] f_actors;
    #[step(mode = "actors", placement = "thread")] f_thread;
}

/// A gather of a big step and a failing one (then another big step).
fn failing(f: fn(Shared<Job, Job>) -> Node<Job, Job>) -> Pipeline<Job, Vec<Job>> {
    let x = Input::<Job>::new().shared();
    vec![w1000(x.clone()).boxed(), w500(f(x)).boxed()]
        .deploy_with(wide())
        .unwrap()
}

/// Panics before and after an await and `Err`s, in every mode, beside a
/// big step in a gather (cancelled when its sibling fails), from 8
/// threads at once: each call fails or answers as its input says, and
/// every value made is dropped once.
#[test]
fn panics_and_errors_drop_state_once_in_every_mode() {
    let t = Tally::new();
    let ps = [
        failing(|x| f_local(x).boxed()),
        failing(|x| f_tasks(x).boxed()),
        failing(|x| f_actors(x).boxed()),
        failing(|x| f_thread(x).boxed()),
    ];
    std::thread::scope(|s| {
        for k in 0..8u64 {
            let (ps, t) = (&ps, &t);
            s.spawn(move || {
                for x in k * 100..k * 100 + 40 {
                    match (x % 4, ps[(x / 4 % 4) as usize].call(job(x, t))) {
                        (0 | 1, Err(PipelineError::Panicked { message, .. })) => {
                            assert!(message.contains("boom"), "{message}")
                        }
                        (2, Err(PipelineError::Step { .. })) => {}
                        (3, Ok(j)) => assert_eq!(
                            j.iter().map(|j| j.x).collect::<Vec<_>>(),
                            [next(x, 1000), next(next(x, 450), 500)]
                        ),
                        (_, r) => panic!("input {x}: {r:?}"),
                    }
                }
            });
        }
    });
    // Per 4 inputs: at most 2 + 2 + 2 + 3 values, at least 1 + 1 + 1 + 3.
    let made = settled(&t);
    assert!((8 * 10 * 6..=8 * 10 * 9).contains(&made), "{made}");
}

/// Panics when dropped (unless already unwinding); counts the drop.
struct Bomb(Arc<Tally>);
impl Drop for Bomb {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, SeqCst);
        if !std::thread::panicking() {
            panic!("bomb dropped");
        }
    }
}

/// Holds a `Big`, a `Bomb` and another `Big` at the gate.
#[step]
async fn bombed(j: Job) -> Job {
    let a = Big::<300>::new(j.x, &j.t);
    j.t.made.fetch_add(1, SeqCst);
    let bomb = Bomb(j.t.clone());
    let c = Big::<300>::new(j.x, &j.t);
    j.t.entered.fetch_add(1, SeqCst);
    j.t.gate.acquire().await.unwrap().forget();
    drop((a, c));
    drop(bomb);
    j
}

/// A value whose drop panics, in a future held in the arena: dropped when
/// the call is cancelled (the panic comes out of the caller's drop) and
/// when the body ends (the call fails `Panicked`). Either way every value
/// is dropped exactly once and later calls work.
#[test]
fn a_drop_that_panics_inside_a_placed_future() {
    let t = Tally::new();
    let p = w500(bombed(w1000(Input::<Job>::new()))).deploy().unwrap();
    let mut calls: Vec<Call> = (0..4).map(|x| boxed_call(&p, job(x, &t))).collect();
    let mut cx = Context::from_waker(futures::task::noop_waker_ref());
    wait_until("4 calls held", || {
        calls
            .iter_mut()
            .for_each(|c| assert!(c.as_mut().poll(&mut cx).is_pending()));
        t.entered.load(SeqCst) == 4
    });
    for c in calls {
        let dropped = std::panic::catch_unwind(AssertUnwindSafe(|| drop(c)));
        assert!(dropped.is_err(), "the bomb's panic came out of the drop");
    }
    assert_eq!(
        t.counts(),
        (16, 16, 0),
        "(made, dropped, bad) after cancelling"
    );
    t.gate.add_permits(10);
    for x in 0..3 {
        let r = p.call(job(x, &t));
        assert!(matches!(r, Err(PipelineError::Panicked { .. })), "{r:?}");
    }
    t.assert_clean(16 + 3 * 4);
}

// ------------------------------------------------------------- streams

/// A stream step holding a `Big` across an await before it answers, whose
/// stream holds another across each item's await.
#[step]
async fn spring(j: Job) -> ItemStream<Job> {
    let b = Big::<600>::new(j.x, &j.t);
    tokio::task::yield_now().await;
    assert_eq!(b.sum(j.x), expect_sum(j.x, 600));
    let state = (0u64, Big::<300>::new(j.x, &j.t), j);
    ItemStream::new(futures::stream::unfold(state, |(i, b, j)| async move {
        if i == 12 {
            return None;
        }
        tokio::task::yield_now().await;
        assert_eq!(b.sum(j.x), expect_sum(j.x, 300));
        let item = job(j.x * 100 + i, &j.t);
        Some((item, (i + 1, b, j)))
    }))
}

fn item_answer(x: u64, i: u64) -> u64 {
    next(next(next(x * 100 + i, 375), 1000), 500)
}

/// 200 streams read at once on a multi-thread runtime, each item through
/// a tasks step, a local step and an actor step (`map_each`), half of
/// them dropped after 3 items: items right and in order, every value
/// dropped once.
#[test]
fn streams_of_big_futures_read_and_dropped() {
    let t = Tally::new();
    let rt = multi_rt(4);
    let p = spring(Input::<Job>::new())
        .map_each(|item| a500(w1000(t375(item))))
        .deploy_with(wide())
        .unwrap();
    rt.block_on(async {
        let reads = (0..200u64).map(|x| {
            let (p, t) = (p.clone(), t.clone());
            tokio::spawn(async move {
                let want = if x % 2 == 0 { 12 } else { 3 };
                let items: Vec<u64> = p
                    .call_stream(job(x, &t))
                    .take(want)
                    .map(|r| r.unwrap().x)
                    .collect()
                    .await;
                assert_eq!(
                    items,
                    (0..want as u64)
                        .map(|i| item_answer(x, i))
                        .collect::<Vec<_>>()
                );
            })
        });
        for r in futures::future::join_all(reads).await {
            r.unwrap();
        }
    });
    let made = settled(&t);
    // Per stream 2, plus 3 per item taken (at most 16 more per dropped one).
    assert!(
        (200 * 2 + 100 * 36 + 100 * 9..=200 * 2 + 200 * 36).contains(&made),
        "{made}"
    );
}
