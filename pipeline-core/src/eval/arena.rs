//! [`CallArena`]: the memory one call's type-erased futures live in.
//!
//! Why: a node whose type is erased ([`Node`](crate::Node), and every
//! input of a `#[step]`-generated node, which erases its upstream's type
//! so that node types stay flat) is evaluated through a boxed future, one
//! per node per call. With the system allocator that was a `malloc` and a
//! `free` per hop, about 150 instructions of a same-worker actor hop's
//! 3,200 (`benches/runtime.rs -- hop-loop` under callgrind); a runner's
//! own future (an async body's, a task's, a remote call's) was one more.
//! Here each call takes one block (from a per-thread cache backed by a
//! pool shared by all threads, so in a steady state no allocation at all)
//! and places its futures in it one after the other with a single atomic
//! add each; the block goes back to the cache when the call ends. A future that does not fit (a graph hundreds of
//! steps deep) or needs an alignment over 16 is boxed as before.
//!
//! Safety, in one place: a [`CxFuture`] borrows its arena for its whole
//! life (`'a`), so the block is only reused once every future placed in
//! it has been dropped (the borrow checker and drop check see to it; no
//! code here forgets one). Two futures never share bytes: each takes its
//! range with one `fetch_add` on the offset, so the arena can be placed
//! from several threads (`CallCx` is `Sync`), though one call's futures
//! are in practice placed by whichever thread polls the call.
//!
//! The one module of the runtime with `unsafe` code (the crate denies it
//! elsewhere; the libtorch bindings are the other place): placing a
//! future in memory it does not own by `Box` cannot be written without.
#![allow(unsafe_code)]

use std::alloc::Layout;
use std::cell::{RefCell, UnsafeCell};
use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};

/// Bytes in one call's block: a 4-step chain's futures take about 1 KiB.
const BLOCK: usize = 4096;
/// The alignment every placement gets (and the most it can give).
const ALIGN: usize = 16;
/// Blocks a thread keeps for its next calls; past this, [`BATCH`] of
/// them go to the shared [`POOL`].
const CACHED: usize = 16;
/// Blocks moved between a thread and the shared pool at once (one lock
/// per this many calls, at most).
const BATCH: usize = 8;
/// Blocks the shared pool keeps (1 MiB); past this, blocks are freed.
const POOLED: usize = 256;

#[repr(C, align(16))]
struct Unit([MaybeUninit<u8>; ALIGN]);

type Block = Box<[UnsafeCell<Unit>; BLOCK / ALIGN]>;

thread_local! {
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Spare blocks shared by all threads. A thread's cache alone does not
/// hold: with many calls in flight (64 in the remote benchmark) more
/// blocks are out than a cache keeps, and calls that start on one thread
/// and end on another (a task moved by tokio's work stealing) empty one
/// cache and overfill the other. Each then cost a 4 KiB `malloc` and
/// `free`, past glibc's per-thread cache (about 950 instructions a call).
/// Threads take and give blocks here [`BATCH`] at a time, as tcmalloc's
/// transfer cache does.
static POOL: Mutex<Vec<Block>> = Mutex::new(Vec::new());

/// A spare block: this thread's, else a batch from the pool, else a new one.
fn take_block() -> Block {
    BLOCKS
        .try_with(|blocks| take_from(&mut blocks.borrow_mut(), &POOL))
        .ok()
        .flatten()
        .unwrap_or_else(new_block)
}

/// Keeps `block` for a next call: in this thread's cache, handing a batch
/// to the pool when the cache is full (freed when the pool is full too).
fn give_block(block: Block) {
    let mut block = Some(block);
    let _ = BLOCKS.try_with(|blocks| {
        give_to(block.take(), &mut blocks.borrow_mut(), &POOL);
    });
}

fn take_from(cache: &mut Vec<Block>, pool: &Mutex<Vec<Block>>) -> Option<Block> {
    if cache.is_empty() {
        let mut pool = pool.lock().unwrap_or_else(PoisonError::into_inner);
        let from = pool.len().saturating_sub(BATCH);
        cache.extend(pool.drain(from..));
    }
    cache.pop()
}

fn give_to(block: Option<Block>, cache: &mut Vec<Block>, pool: &Mutex<Vec<Block>>) {
    cache.extend(block);
    if cache.len() > CACHED {
        let spill = cache.drain(CACHED - BATCH..);
        let mut pool = pool.lock().unwrap_or_else(PoisonError::into_inner);
        let room = POOLED.saturating_sub(pool.len());
        pool.extend(spill.take(room));
    }
}

fn new_block() -> Block {
    // Uninitialised bytes: `Unit` is plain memory that may hold anything.
    Box::new(std::array::from_fn(|_| {
        UnsafeCell::new(Unit([MaybeUninit::uninit(); ALIGN]))
    }))
}

/// The memory one call's boxed futures are placed in (see the module docs).
pub(crate) struct CallArena {
    block: Option<Block>,
    /// Bytes of `block` handed out (may run past its end: those placements
    /// went to the heap).
    used: AtomicUsize,
}

// The block is only written through ranges handed out once each (by
// `fetch_add`), and only read through the `CxFuture` that owns the range.
unsafe impl Sync for CallArena {}

impl std::fmt::Debug for CallArena {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallArena")
            .field("used", &self.used.load(Ordering::Relaxed))
            .finish()
    }
}

impl CallArena {
    /// An arena with a spare block (see [`take_block`]).
    pub(crate) fn new() -> Self {
        CallArena {
            block: Some(take_block()),
            used: AtomicUsize::new(0),
        }
    }

    /// The arena with no block: whatever is placed in it is boxed (for
    /// calls that must not borrow one of their own).
    pub(crate) fn heap() -> &'static CallArena {
        static HEAP: CallArena = CallArena {
            block: None,
            used: AtomicUsize::new(0),
        };
        &HEAP
    }

    /// `future`, placed in the arena if it fits, else boxed.
    pub(crate) fn place<'a, F>(&'a self, future: F) -> CxFuture<'a, F::Output>
    where
        F: Future + Send + 'a,
    {
        let layout = Layout::new::<F>();
        let size = layout.size().div_ceil(ALIGN) * ALIGN;
        if let (Some(block), true) = (&self.block, layout.align() <= ALIGN && size <= BLOCK) {
            let start = self.used.fetch_add(size, Ordering::Relaxed);
            if start.checked_add(size).is_some_and(|end| end <= BLOCK) {
                // In bounds and aligned (`start` is a multiple of ALIGN);
                // nobody else was handed these bytes. The pointer is made
                // from the whole block's, not from a reference to the one
                // unit at `start` (whose provenance would cover only those
                // 16 bytes, under Stacked Borrows): `add` stays within the
                // block, or one past its end for a zero-sized future.
                let at = unsafe { block.as_ptr().add(start / ALIGN) };
                let at = UnsafeCell::raw_get(at).cast::<F>();
                unsafe { at.write(future) };
                let at: *mut (dyn Future<Output = F::Output> + Send + 'a) = at;
                return CxFuture(Placed::Arena(unsafe { NonNull::new_unchecked(at) }));
            }
        }
        CxFuture(Placed::Heap(Box::pin(future)))
    }
}

impl Drop for CallArena {
    fn drop(&mut self) {
        if let Some(block) = self.block.take() {
            give_block(block);
        }
    }
}

/// A type-erased future placed in its call's arena (or, when it did not
/// fit, boxed): a `Pin<Box<dyn Future>>` whose memory is the call's.
pub struct CxFuture<'a, T>(Placed<'a, T>);

enum Placed<'a, T> {
    Arena(NonNull<dyn Future<Output = T> + Send + 'a>),
    Heap(Pin<Box<dyn Future<Output = T> + Send + 'a>>),
}

// It owns a `Send` future.
unsafe impl<T> Send for CxFuture<'_, T> {}

impl<T> std::fmt::Debug for CxFuture<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CxFuture")
    }
}

impl<T> Future for CxFuture<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match &mut self.get_mut().0 {
            // Placed once and never moved until dropped here.
            Placed::Arena(at) => unsafe { Pin::new_unchecked(at.as_mut()) }.poll(cx),
            Placed::Heap(future) => future.as_mut().poll(cx),
        }
    }
}

impl<T> Drop for CxFuture<'_, T> {
    fn drop(&mut self) {
        if let Placed::Arena(at) = &mut self.0 {
            // Ours alone, dropped once, in place; the bytes go back with
            // the arena.
            unsafe { std::ptr::drop_in_place(at.as_ptr()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn placed_futures_run_and_drop_their_state_once() {
        let dropped = Arc::new(AtomicUsize::new(0));
        struct Counted(Arc<AtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let arena = CallArena::new();
        let futures: Vec<_> = (0..10u64)
            .map(|i| {
                let c = Counted(Arc::clone(&dropped));
                arena.place(async move {
                    let _c = c;
                    i * 2
                })
            })
            .collect();
        let sum: u64 = futures.into_iter().map(futures::executor::block_on).sum();
        assert_eq!(sum, 90);
        assert_eq!(dropped.load(Ordering::SeqCst), 10);
        // Dropped unpolled: their state is dropped too.
        let unpolled: Vec<_> = (0..3)
            .map(|_| {
                let c = Counted(Arc::clone(&dropped));
                arena.place(async move { drop(c) })
            })
            .collect();
        drop(unpolled);
        assert_eq!(dropped.load(Ordering::SeqCst), 13);
    }

    #[test]
    fn what_does_not_fit_or_is_over_aligned_goes_to_the_heap() {
        let arena = CallArena::new();
        let big = [7u8; BLOCK];
        let f = arena.place(async move { big.iter().map(|&b| u64::from(b)).sum::<u64>() });
        assert!(matches!(f.0, Placed::Heap(_)));
        assert_eq!(futures::executor::block_on(f), 7 * BLOCK as u64);
        #[repr(align(64))]
        struct Wide(u8);
        let wide = Wide(3);
        let f = arena.place(async move {
            let wide = wide; // the whole value, not its field
            wide.0
        });
        assert!(matches!(f.0, Placed::Heap(_)));
        assert_eq!(futures::executor::block_on(f), 3);
        // Small ones still fit after a refusal.
        let f = arena.place(async { 1 });
        assert!(matches!(f.0, Placed::Arena(_)));
        assert_eq!(futures::executor::block_on(f), 1);
    }

    #[test]
    fn a_full_block_spills_to_the_heap_and_every_future_still_answers() {
        let arena = CallArena::new();
        let futures: Vec<_> = (0..1000u64)
            .map(|i| {
                let pad = [i; 8];
                arena.place(async move { pad[7] })
            })
            .collect();
        assert!(matches!(futures[0].0, Placed::Arena(_)));
        assert!(matches!(futures[999].0, Placed::Heap(_)));
        for (i, f) in futures.into_iter().enumerate() {
            assert_eq!(futures::executor::block_on(f), i as u64);
        }
    }

    #[test]
    fn a_zero_sized_future_fits_in_a_block_filled_exactly() {
        struct Pad([u8; 256]);
        impl Future for Pad {
            type Output = u8;
            fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<u8> {
                Poll::Ready(self.0[255])
            }
        }
        struct Zero;
        impl Future for Zero {
            type Output = u8;
            fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<u8> {
                Poll::Ready(7)
            }
        }
        let arena = CallArena::new();
        let full: Vec<_> = (0..BLOCK / 256)
            .map(|i| arena.place(Pad([i as u8; 256])))
            .collect();
        assert!(full.iter().all(|f| matches!(f.0, Placed::Arena(_))));
        assert_eq!(arena.used.load(Ordering::Relaxed), BLOCK);
        // Placed one past the block's last byte, which holds nothing.
        let zero = arena.place(Zero);
        assert!(matches!(zero.0, Placed::Arena(_)));
        assert_eq!(futures::executor::block_on(zero), 7);
        let sum: u32 = full
            .into_iter()
            .map(|f| u32::from(futures::executor::block_on(f)))
            .sum();
        assert_eq!(sum, (0..16u32).sum::<u32>());
    }

    #[test]
    fn blocks_go_through_the_pool_in_batches_and_the_pool_is_bounded() {
        let pool = Mutex::new(Vec::new());
        let address = |b: &Block| b.as_ptr() as usize;
        // One thread ends more calls than its cache keeps: the extra go to
        // the pool, a batch at a time.
        let mut ender = Vec::new();
        let mut given = Vec::new();
        for _ in 0..CACHED + 1 {
            let block = new_block();
            given.push(address(&block));
            give_to(Some(block), &mut ender, &pool);
        }
        assert_eq!(ender.len(), CACHED - BATCH);
        assert_eq!(pool.lock().unwrap().len(), BATCH + 1);
        // Another thread, its cache empty, takes them (a batch, then the
        // rest): no new block.
        let mut starter = Vec::new();
        for _ in 0..=BATCH {
            let block = take_from(&mut starter, &pool).expect("a pooled block");
            assert!(given.contains(&address(&block)));
        }
        assert!(take_from(&mut starter, &pool).is_none());
        // The pool keeps at most POOLED; the rest are freed.
        for _ in 0..POOLED * 2 {
            give_to(Some(new_block()), &mut ender, &pool);
        }
        assert_eq!(pool.lock().unwrap().len(), POOLED);
        assert!(ender.len() <= CACHED);
    }
}
