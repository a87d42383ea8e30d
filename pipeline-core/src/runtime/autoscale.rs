//! Autoscaling of actor replicas: [`Autoscaler`] decides (a pure function
//! of the load it is shown over time), [`control`] samples a step's load on
//! a timer and applies the decisions. Adding and draining replicas is the
//! pool's business (`actors/pool.rs`); this file never touches a replica.
//!
//! Load is calls queued at the step's replicas plus calls running there,
//! plus calls refused for a full queue since the last sample: Ray Serve
//! counts only the ones at replicas, which its users report as never
//! scaling a step whose queue is the bottleneck (ray #24793, #20977); a
//! queue bound under `target_ongoing_requests` would otherwise cap the
//! load where no replica is ever wanted.

use std::sync::Weak;
use std::time::Duration;

use tokio::time::Instant;

use crate::step::AutoscalePolicy;

/// What the controller needs of a step: its load, its replica target, and
/// a way to change that target.
pub(crate) trait Scale: Send + Sync {
    /// Calls queued at the step's replicas plus calls running there, plus
    /// calls refused for a full queue since the last call of `load`.
    fn load(&self) -> usize;
    /// The replicas the step is heading for (built or being built).
    fn target(&self) -> usize;
    /// Starts or drains replicas until `target` are up.
    fn scale_to(&self, target: usize);
    /// The step is shutting down: stop controlling it.
    fn is_closed(&self) -> bool;
}

/// Decides replica targets from load samples. Scales up once every sample
/// for `upscale_delay_ms` wanted more replicas, to the fewest of them
/// wanted (so a single spike adds nothing); down once every sample for
/// `downscale_delay_ms` wanted fewer, to the most of them wanted (so a lull
/// shorter than the delay removes nothing).
#[derive(Debug)]
pub(crate) struct Autoscaler {
    policy: AutoscalePolicy,
    /// Since when every sample wanted more, and the least wanted since.
    over: Option<(Instant, usize)>,
    /// Since when every sample wanted fewer, and the most wanted since.
    under: Option<(Instant, usize)>,
}

impl Autoscaler {
    pub(crate) fn new(policy: AutoscalePolicy) -> Self {
        Autoscaler {
            policy,
            over: None,
            under: None,
        }
    }

    /// The replicas `load` calls want: one per `target_ongoing_requests`,
    /// within `min_replicas..=max_replicas`.
    pub(crate) fn wanted(&self, load: usize) -> usize {
        let p = &self.policy;
        load.div_ceil(p.target_ongoing_requests.max(1))
            .clamp(p.min_replicas, p.max_replicas.max(p.min_replicas))
    }

    /// Takes one sample at `now`: with `current` replicas targeted and
    /// `load` calls at the step, returns a new target when it is time to
    /// change.
    pub(crate) fn observe(&mut self, now: Instant, current: usize, load: usize) -> Option<usize> {
        let wanted = self.wanted(load);
        let p = &self.policy;
        // Outside the bounds (a policy changed under a running step, say):
        // move at once.
        if current < p.min_replicas || current > p.max_replicas.max(p.min_replicas) {
            self.over = None;
            self.under = None;
            return Some(wanted);
        }
        if wanted > current {
            self.under = None;
            let (since, least) = self.over.map_or((now, wanted), |(s, l)| (s, l.min(wanted)));
            self.over = Some((since, least));
            if now.duration_since(since) >= Duration::from_millis(p.upscale_delay_ms) {
                self.over = None;
                return Some(least);
            }
        } else if wanted < current {
            self.over = None;
            let (since, most) = self
                .under
                .map_or((now, wanted), |(s, m)| (s, m.max(wanted)));
            self.under = Some((since, most));
            if now.duration_since(since) >= Duration::from_millis(p.downscale_delay_ms) {
                self.under = None;
                return Some(most);
            }
        } else {
            self.over = None;
            self.under = None;
        }
        None
    }

    /// How often to sample: a tenth of the shorter delay, between 10 ms and
    /// 1 s, so a decision comes at most a tenth late.
    pub(crate) fn interval(&self) -> Duration {
        let shorter = self
            .policy
            .upscale_delay_ms
            .min(self.policy.downscale_delay_ms);
        Duration::from_millis((shorter / 10).clamp(10, 1_000))
    }
}

/// Samples `step`'s load every [`Autoscaler::interval`] and applies the
/// decisions, until the step closes or is dropped. Each decision is a
/// tracing event.
pub(crate) async fn control(step: Weak<dyn Scale>, name: &'static str, policy: AutoscalePolicy) {
    let mut scaler = Autoscaler::new(policy);
    let mut ticks = tokio::time::interval(scaler.interval());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(step) = step.upgrade() else { return };
        if step.is_closed() {
            return;
        }
        let (current, load) = (step.target(), step.load());
        if let Some(target) = scaler.observe(Instant::now(), current, load) {
            if target != current {
                tracing::info!(
                    step = name,
                    load,
                    from = current,
                    to = target,
                    "autoscaling"
                );
                step.scale_to(target);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> AutoscalePolicy {
        AutoscalePolicy {
            min_replicas: 1,
            max_replicas: 4,
            target_ongoing_requests: 2,
            upscale_delay_ms: 100,
            downscale_delay_ms: 1_000,
        }
    }

    #[test]
    fn wanted_is_load_over_target_within_bounds() {
        let s = Autoscaler::new(policy());
        let wanted: Vec<_> = [0, 1, 2, 3, 5, 100].map(|l| s.wanted(l)).to_vec();
        assert_eq!(wanted, [1, 1, 1, 2, 3, 4]);
    }

    #[test]
    fn scales_up_after_the_delay_to_the_sustained_level() {
        let mut s = Autoscaler::new(policy());
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(s.observe(ms(0), 1, 8), None); // wants 4
        assert_eq!(s.observe(ms(50), 1, 4), None); // wants 2
        assert_eq!(s.observe(ms(100), 1, 8), Some(2)); // the least wanted throughout
                                                       // A spike shorter than the delay adds nothing.
        assert_eq!(s.observe(ms(110), 2, 8), None);
        assert_eq!(s.observe(ms(150), 2, 4), None);
        assert_eq!(s.observe(ms(300), 2, 8), None);
    }

    #[test]
    fn scales_down_slowly_and_never_below_min() {
        let mut s = Autoscaler::new(policy());
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(s.observe(ms(0), 4, 0), None);
        assert_eq!(s.observe(ms(500), 4, 3), None); // wants 2: the most wanted so far
        assert_eq!(s.observe(ms(999), 4, 0), None);
        assert_eq!(s.observe(ms(1_000), 4, 0), Some(2));
        assert_eq!(s.observe(ms(1_100), 2, 0), None);
        assert_eq!(s.observe(ms(2_100), 2, 0), Some(1));
        assert_eq!(s.observe(ms(9_000), 1, 0), None);
    }

    #[test]
    fn steady_load_resets_the_clocks() {
        let mut s = Autoscaler::new(policy());
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(s.observe(ms(0), 2, 8), None);
        assert_eq!(s.observe(ms(90), 2, 4), None); // wants exactly 2: reset
        assert_eq!(s.observe(ms(120), 2, 8), None);
        assert_eq!(s.observe(ms(219), 2, 8), None);
        assert_eq!(s.observe(ms(220), 2, 8), Some(4));
    }

    #[test]
    fn out_of_bounds_moves_at_once() {
        let mut s = Autoscaler::new(policy());
        assert_eq!(s.observe(Instant::now(), 9, 0), Some(1));
        assert_eq!(s.observe(Instant::now(), 0, 0), Some(1));
    }

    #[test]
    fn sampling_interval_follows_the_shorter_delay() {
        assert_eq!(
            Autoscaler::new(policy()).interval(),
            Duration::from_millis(10)
        );
        let slow = AutoscalePolicy {
            upscale_delay_ms: 5_000,
            ..policy()
        };
        assert_eq!(Autoscaler::new(slow).interval(), Duration::from_millis(100));
    }
}
