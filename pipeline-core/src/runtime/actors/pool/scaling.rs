//! Scaling a pool: replicas added off the request path (each built where
//! it will run, joining the live set once built) and removed by closing
//! their mailbox (they drain first), as the autoscaler's [`Scale`] asks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{lock, Left, Pool, Replica};
use crate::runtime::autoscale::Scale;
use crate::step::{Placement, StepFn};

/// A replica being built for the autoscaler, which may give up on it.
pub(super) struct Pending {
    /// Which build (an index may be built twice: see [`Builds`]).
    id: u64,
    index: usize,
    cancelled: Arc<AtomicBool>,
    /// A thread-placed replica's thread, running its constructor: kept
    /// with the pool's once it joins. Dropped unjoined if the build is
    /// given up on for good (the pool closes): a constructor cannot be
    /// stopped, and dropping a pipeline must not wait for one loading
    /// weights; the thread drops what it built when it returns.
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Replicas being built off the request path.
#[derive(Default)]
pub(super) struct Builds {
    /// Wanted: each joins the live set once built.
    pending: Vec<Pending>,
    /// Given up on (the target fell) while their constructor still runs:
    /// taken back if their index is wanted again before it returns (so
    /// one index is never built twice at once, and no more models exist
    /// than the largest target asked for), else dropped once built.
    given_up: Vec<Pending>,
    next_id: u64,
}

impl Builds {
    fn position(list: &[Pending], id: u64) -> Option<usize> {
        list.iter().position(|p| p.id == id)
    }

    /// The pool closes: every build still running stops at its next
    /// failure, and none joins (nor is its thread joined: see
    /// [`Pending::thread`]).
    pub(super) fn give_up_all(&mut self) {
        for p in self.pending.drain(..) {
            p.cancelled.store(true, Ordering::SeqCst);
        }
        self.given_up.clear();
    }
}

impl<S: StepFn> Pool<S> {
    /// One more replica: the one given up on with the lowest free index,
    /// taken back, or else a new one (see [`add`](Self::add)).
    fn want(&self, builds: &mut Builds) {
        let index = self.free_index(&builds.pending);
        if let Some(at) = builds.given_up.iter().position(|p| p.index == index) {
            let back = builds.given_up.swap_remove(at);
            back.cancelled.store(false, Ordering::SeqCst);
            builds.pending.push(back);
            return;
        }
        self.add(builds, index);
    }

    /// Starts replica `index` off the request path: it is built where it
    /// will run, retrying while its constructor fails, and joins the live
    /// set once built, unless the pool gave up on it meanwhile.
    fn add(&self, builds: &mut Builds, index: usize) {
        let id = builds.next_id;
        builds.next_id += 1;
        let cancelled = Arc::new(AtomicBool::new(false));
        builds.pending.push(Pending {
            id,
            index,
            cancelled: Arc::clone(&cancelled),
            thread: None,
        });
        let (worker, replica) = self.worker(index);
        let me = self.me.clone();
        let work = async move {
            let stop = || cancelled.load(Ordering::SeqCst);
            let state = loop {
                let built = worker.build_retrying(stop, true).await;
                let Some(pool) = me.upgrade() else { return };
                match built {
                    Some(state) => break state,
                    // Given up on: done, unless taken back meanwhile.
                    None if pool.taken_back(id) => continue,
                    None => return,
                }
            };
            let Some(pool) = me.upgrade() else { return };
            if pool.join_pending(id, replica) {
                drop(pool);
                tracing::info!(step = worker.ctx.step(), replica = index, "replica added");
                worker.serve(state).await;
            }
        };
        if self.plan.placement == Placement::Task {
            self.handle.spawn(work);
            return;
        }
        // (The build cannot join before this returns: joining takes the
        // builds' lock, held by our caller.)
        match self.spawn_thread(index, work) {
            Ok(thread) => {
                if let Some(at) = Builds::position(&builds.pending, id) {
                    builds.pending[at].thread = Some(thread);
                }
            }
            Err(e) => {
                tracing::error!(step = self.plan.node, error = %e, "could not start a replica thread");
                builds.pending.retain(|p| p.id != id);
            }
        }
    }

    /// The lowest index no live or pending replica has: a replica added
    /// takes the place (and so the device) of one that left, and every
    /// index stays below the replica count (`ReplicaContext::index` is
    /// `0..replicas()`). A replica that left may still be answering the
    /// calls queued at it when its index is taken again.
    fn free_index(&self, pending: &[Pending]) -> usize {
        let mut taken: Vec<usize> = pending.iter().map(|p| p.index).collect();
        self.with_live(|live| taken.extend(live.iter().map(|r| r.index)));
        taken.sort_unstable();
        taken.dedup();
        // The first gap, else one past the end.
        taken
            .iter()
            .enumerate()
            .find(|&(i, &index)| i != index)
            .map_or(taken.len(), |(i, _)| i)
    }

    /// Lets build `id` join the live set, unless the pool gave up on it
    /// or closed meanwhile. Done under the builds' lock, so a replica is
    /// always in exactly one of the sets for `scale_to`, and `close` never
    /// misses one.
    fn join_pending(&self, id: u64, replica: Replica<S>) -> bool {
        let mut builds = lock(&self.builds);
        let Some(at) = Builds::position(&builds.pending, id) else {
            builds.given_up.retain(|p| p.id != id);
            return false;
        };
        let joined = builds.pending.swap_remove(at);
        if let Some(thread) = joined.thread {
            self.keep_thread(thread);
        }
        if self.closed.load(Ordering::SeqCst) {
            return false;
        }
        self.join(replica);
        true
    }

    /// Build `id` stopped because it was given up on: whether it was taken
    /// back since (then it goes on); if not, it is forgotten.
    fn taken_back(&self, id: u64) -> bool {
        let mut builds = lock(&self.builds);
        if Builds::position(&builds.pending, id).is_some() {
            return true;
        }
        builds.given_up.retain(|p| p.id != id);
        false
    }
}

impl<S: StepFn> Scale for Pool<S> {
    fn load(&self) -> usize {
        let refused = self.refused.swap(0, Ordering::Relaxed);
        self.with_live(|live| live.iter().map(Replica::outstanding).sum::<usize>())
            .saturating_add(refused)
    }

    fn target(&self) -> usize {
        self.target.load(Ordering::SeqCst)
    }

    fn scale_to(&self, target: usize) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let target = target.max(1);
        let mut builds = lock(&self.builds);
        self.target.store(target, Ordering::SeqCst);
        self.counters
            .target_replicas
            .store(target, Ordering::Relaxed);
        let live = self.with_live(<[Replica<S>]>::len);
        let have = live + builds.pending.len();
        if target > have {
            for _ in have..target {
                self.want(&mut builds);
            }
            return;
        }
        // Fewer: give up on replicas still being built first, then close
        // the newest built ones' mailboxes (they drain, then stop).
        let mut excess = have - target;
        while excess > 0 {
            let Some(p) = builds.pending.pop() else { break };
            p.cancelled.store(true, Ordering::SeqCst);
            builds.given_up.push(p);
            excess -= 1;
        }
        let Some(mut live) = self.scaled() else {
            return;
        };
        while excess > 0 && live.len() > 1 {
            if let Some(leaving) = live.pop() {
                let left = leaving.mailbox.close();
                let mut draining = lock(&self.draining);
                draining.retain(Left::is_held);
                draining.push(left);
            }
            excess -= 1;
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}
