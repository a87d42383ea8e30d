//! The deploy plan: a pure function from a step node's [`StepInfo`], its
//! node name and the [`DeployOptions`] to how it runs: mode, replicas,
//! placement, devices, queue bound, batching and autoscaling. Every check
//! of a deploy-time setting is here, so a bad value fails `deploy` before
//! any constructor runs, and the whole decision is testable without a
//! thread.

use crate::error::{BoxError, DeployError};
use crate::step::{AutoscalePolicy, BatchPolicy, Device, Mode, Placement, StepInfo};

use super::options::{DeployOptions, RemoteUrl};

/// How one step node runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StepPlan {
    /// The node's name (unique in its graph).
    pub(crate) node: &'static str,
    /// The step's own name.
    pub(crate) step: &'static str,
    /// The mode the attribute asked for.
    pub(crate) requested: Mode,
    /// The mode it runs in.
    pub(crate) mode: Mode,
    /// Replicas at start (actors; 1 otherwise).
    pub(crate) replicas: usize,
    /// Where actor replicas run.
    pub(crate) placement: Placement,
    /// A device every replica is pinned to, if the options name one.
    pub(crate) device: Option<Device>,
    /// CUDA devices to spread replicas over (0: all on the CPU).
    pub(crate) gpus: usize,
    /// Mailbox bound per replica (actors) or in-flight bound (tasks).
    pub(crate) queue_bound: usize,
    /// Dynamic batching (actors).
    pub(crate) batch: Option<BatchPolicy>,
    /// Autoscaling (actors).
    pub(crate) autoscale: Option<AutoscalePolicy>,
    /// Served by workers through this NATS server, not in this process.
    pub(crate) remote: Option<RemoteUrl>,
    /// Why `mode` differs from `requested`, if it does.
    pub(crate) note: Option<&'static str>,
}

impl StepPlan {
    /// The device replica `index` owns: the pinned one, else
    /// `cuda:(index % gpus)`, else the CPU. A replica added by the
    /// autoscaler takes the lowest index free, so the place (and device)
    /// of one that left: replicas stay spread over the devices as at
    /// deploy.
    pub(crate) fn device_of(&self, index: usize) -> Device {
        match (self.device, self.gpus) {
            (Some(pinned), _) => pinned,
            (None, 0) => Device::Cpu,
            (None, gpus) => Device::Cuda(index % gpus),
        }
    }

    /// A failed constructor of replica `replica`, as `deploy` reports it.
    pub(crate) fn build_error(&self, replica: usize, source: BoxError) -> DeployError {
        DeployError::Build {
            step: self.node,
            replica,
            source,
        }
    }
}

/// Plans the step node called `node`, a node of the step `info` describes
/// (`batch` is its batching policy). `gpus` counts the CUDA devices; it is
/// asked only when a replica's device depends on it.
pub(crate) fn plan(
    info: &StepInfo,
    batch: Option<BatchPolicy>,
    node: &'static str,
    options: &DeployOptions,
    gpus: &mut dyn FnMut() -> usize,
) -> Result<StepPlan, DeployError> {
    let invalid = |message: String| DeployError::InvalidOption {
        step: node.to_string(),
        message,
    };
    if node.trim().is_empty() {
        return Err(DeployError::InvalidOption {
            step: info.name.to_string(),
            message: "`.named(..)` needs a non-empty name".into(),
        });
    }
    let own = options.instance(node, info.name);
    let queue_bound = options.queue_bound_for(node, info.name);
    if !(1..=MAX_QUEUE_BOUND).contains(&queue_bound) {
        // The pipeline-wide bound is named `*`, not after the first step.
        let step = if own.queue_bound.is_some() { node } else { "*" };
        return Err(DeployError::InvalidOption {
            step: step.to_string(),
            message: if queue_bound == 0 {
                "queue_bound must be at least 1".into()
            } else {
                format!("queue_bound must be at most {MAX_QUEUE_BOUND}, got {queue_bound}")
            },
        });
    }
    let mode = if options.is_local() {
        Mode::Local
    } else {
        info.mode
    };
    if info.mode != Mode::Actors && (own.replicas.is_some() || own.autoscale.is_some()) {
        let key = if own.replicas.is_some() {
            "replicas"
        } else {
            "autoscale"
        };
        return Err(invalid(format!(
            "{key} applies to actor steps; this step is `{}`",
            info.mode
        )));
    }
    // A local step runs inline in its caller: nothing queues at it.
    if info.mode == Mode::Local && own.queue_bound.is_some() {
        return Err(invalid(
            "queue_bound applies to tasks and actor steps; this step is `local` (it runs inline in its caller: nothing queues)".into(),
        ));
    }
    if own.remote.is_some() && !info.remote {
        return Err(invalid(format!(
            "remote serves a step from worker processes, which needs its inputs and output to cross \
             the wire: mark it `#[step(remote)]` (step `{}`)",
            info.name
        )));
    }
    if let Some(url) = own.remote.filter(|u| u.as_str().trim().is_empty()) {
        return Err(invalid(format!(
            "remote needs a NATS URL such as `nats://127.0.0.1:4222`, got `{url}`"
        )));
    }
    if own.replicas.is_some() && own.autoscale.is_some() {
        return Err(invalid(
            "replicas and autoscale both set the replica count: give one".into(),
        ));
    }
    if own.replicas == Some(0) {
        return Err(invalid("replicas must be at least 1".into()));
    }
    if let Some(n) = own.replicas.filter(|&n| n > MAX_REPLICAS) {
        return Err(invalid(format!(
            "replicas must be at most {MAX_REPLICAS}, got {n}"
        )));
    }
    // Options' `replicas` fixes the count (autoscaling off); options'
    // `autoscale` starts from the attribute's policy, else the default.
    let autoscale = match (own.replicas, own.autoscale) {
        (Some(_), _) => None,
        (None, Some(o)) => Some(o.apply(info.autoscale.unwrap_or_default())),
        (None, None) => info.autoscale,
    };
    if let Some(p) = &autoscale {
        check_autoscale(p).map_err(|mut message| {
            // Say where a value the options did not set comes from.
            if let Some(o) = own
                .autoscale
                .filter(|o| o.min_replicas.is_none() || o.max_replicas.is_none())
            {
                let unset = if o.min_replicas.is_none() {
                    "min_replicas"
                } else {
                    "max_replicas"
                };
                let from = if info.autoscale.is_some() {
                    "the step's attribute"
                } else {
                    "the default"
                };
                message.push_str(&format!(
                    " ({unset} comes from {from}; set it in the options too)"
                ));
            }
            invalid(message)
        })?;
    }
    let autoscale = autoscale.filter(|_| mode == Mode::Actors);
    let replicas = match (mode, autoscale, own.replicas) {
        (Mode::Actors, Some(p), _) => p.min_replicas,
        (Mode::Actors, None, Some(n)) => n,
        (Mode::Actors, None, None) => info.replicas,
        _ => 1,
    };
    let needs_gpus = mode == Mode::Actors && own.device.is_none();
    let gpus = match own.device {
        Some(Device::Cuda(i)) => {
            let count = gpus();
            if i >= count {
                return Err(invalid(format!(
                    "device cuda:{i} requested, but this machine has {count} CUDA device(s){}",
                    if cfg!(feature = "torch") {
                        ""
                    } else {
                        " (CUDA needs the `torch` feature)"
                    }
                )));
            }
            count
        }
        _ if needs_gpus => gpus(),
        _ => 0,
    };
    Ok(StepPlan {
        node,
        step: info.name,
        requested: info.mode,
        mode,
        replicas,
        placement: info.resolved_placement(),
        device: own.device,
        gpus,
        queue_bound,
        batch: batch.filter(|_| mode == Mode::Actors),
        autoscale,
        remote: own.remote.filter(|_| !options.is_local()),
        note: (mode != info.mode).then_some("forced local by DeployOptions::local()"),
    })
}

/// How many CUDA devices replicas can own on this machine (none without
/// the `torch` feature).
pub(crate) fn cuda_device_count() -> usize {
    #[cfg(feature = "torch")]
    {
        crate::torch::cuda_device_count()
    }
    #[cfg(not(feature = "torch"))]
    {
        0
    }
}

/// The most replicas a step starts with (a fixed count, or autoscaling's
/// minimum): each replica is a thread or task holding its own model, so
/// more than this in one process is a typo, not a plan. An autoscaling
/// ceiling above it is fine (replicas are added one by one, under load).
pub(crate) const MAX_REPLICAS: usize = 4096;

/// The largest queue bound: tokio's semaphores and bounded channels hold
/// at most this many permits (`usize::MAX >> 3`).
pub(crate) const MAX_QUEUE_BOUND: usize = tokio::sync::Semaphore::MAX_PERMITS;

/// What makes an autoscale policy unusable, in the user's words.
fn check_autoscale(p: &AutoscalePolicy) -> Result<(), String> {
    if p.min_replicas == 0 {
        return Err("autoscale min_replicas must be at least 1".into());
    }
    if p.min_replicas > MAX_REPLICAS {
        return Err(format!(
            "autoscale min_replicas must be at most {MAX_REPLICAS}, got {}",
            p.min_replicas
        ));
    }
    if p.max_replicas < p.min_replicas {
        return Err(format!(
            "autoscale max_replicas ({}) is below min_replicas ({})",
            p.max_replicas, p.min_replicas
        ));
    }
    if p.target_ongoing_requests == 0 {
        return Err("autoscale target_ongoing_requests must be at least 1".into());
    }
    Ok(())
}

/// Deploy options may name a node, or a step (every node of it); a name
/// that is neither is a typo, reported with the names there are. `known`
/// holds each step node's `(node name, step name)`.
pub(crate) fn check_names(
    options: &DeployOptions,
    known: &[(&'static str, &'static str)],
) -> Result<(), DeployError> {
    let is_known = |name: &str| known.iter().any(|(n, s)| *n == name || *s == name);
    match options.step_names().find(|name| !is_known(name)) {
        None => Ok(()),
        Some(name) => {
            let mut names: Vec<&str> = known.iter().flat_map(|(n, s)| [*n, *s]).collect();
            names.sort_unstable();
            names.dedup();
            Err(DeployError::UnknownStep {
                name: name.to_string(),
                known: names.join(", "),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::StepKind;

    const ACTORS: StepInfo = StepInfo {
        name: "embed",
        mode: Mode::Actors,
        replicas: 2,
        kind: StepKind::Model,
        is_async: false,
        placement: Placement::Auto,
        autoscale: None,
        remote: false,
    };

    fn plan_of(info: &StepInfo, options: &DeployOptions) -> Result<StepPlan, DeployError> {
        plan(info, None, "embed", options, &mut || 0)
    }

    fn message(e: DeployError) -> String {
        match e {
            DeployError::InvalidOption { message, .. } => message,
            other => panic!("not an option error: {other}"),
        }
    }

    #[test]
    fn attributes_decide_unless_options_override() {
        let p = plan_of(&ACTORS, &DeployOptions::new()).unwrap();
        assert_eq!(
            (p.mode, p.replicas, p.placement),
            (Mode::Actors, 2, Placement::Thread)
        );
        assert_eq!(p.queue_bound, super::super::admission::DEFAULT_QUEUE_BOUND);
        let p = plan_of(
            &ACTORS,
            &DeployOptions::new()
                .replicas("embed", 5)
                .queue_bound("embed", 3),
        )
        .unwrap();
        assert_eq!((p.replicas, p.queue_bound), (5, 3));
        let p = plan_of(&ACTORS, &DeployOptions::local()).unwrap();
        assert_eq!(
            (p.mode, p.replicas, p.note.is_some()),
            (Mode::Local, 1, true)
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_fix() {
        let e = plan_of(&ACTORS, &DeployOptions::new().replicas("embed", 0)).unwrap_err();
        assert_eq!(message(e), "replicas must be at least 1");
        let e = plan_of(&ACTORS, &DeployOptions::new().queue_bound("embed", 0)).unwrap_err();
        assert_eq!(message(e), "queue_bound must be at least 1");
        let local = StepInfo {
            mode: Mode::Local,
            replicas: 1,
            ..ACTORS
        };
        let e = plan_of(&local, &DeployOptions::new().replicas("embed", 2)).unwrap_err();
        assert!(message(e).contains("applies to actor steps"));
        let bad = AutoscalePolicy {
            min_replicas: 4,
            max_replicas: 2,
            ..AutoscalePolicy::DEFAULT
        };
        let e = plan_of(&ACTORS, &DeployOptions::new().autoscale("embed", bad)).unwrap_err();
        assert_eq!(
            message(e),
            "autoscale max_replicas (2) is below min_replicas (4)"
        );
        let e = plan(&ACTORS, None, "  ", &DeployOptions::new(), &mut || 0).unwrap_err();
        assert!(message(e).contains("non-empty name"));
        let e = plan_of(&ACTORS, &DeployOptions::new().default_queue_bound(0)).unwrap_err();
        assert!(
            matches!(&e, DeployError::InvalidOption { step, .. } if step == "*"),
            "{e}"
        );
        let o = DeployOptions::from_toml_str("[steps.embed.autoscale]\nmin_replicas = 10").unwrap();
        assert_eq!(
            message(plan_of(&ACTORS, &o).unwrap_err()),
            "autoscale max_replicas (8) is below min_replicas (10) (max_replicas comes from the default; set it in the options too)"
        );
    }

    #[test]
    fn autoscale_starts_at_min_and_options_merge_over_the_attribute() {
        let policy = AutoscalePolicy {
            min_replicas: 2,
            max_replicas: 6,
            ..AutoscalePolicy::DEFAULT
        };
        let scaled = StepInfo {
            autoscale: Some(policy),
            remote: false,
            replicas: 2,
            ..ACTORS
        };
        let p = plan_of(&scaled, &DeployOptions::new()).unwrap();
        assert_eq!((p.replicas, p.autoscale), (2, Some(policy)));
        let o = DeployOptions::from_toml_str("[steps.embed.autoscale]\nmax_replicas = 3").unwrap();
        let p = plan_of(&scaled, &o).unwrap();
        assert_eq!(
            p.autoscale.map(|a| (a.min_replicas, a.max_replicas)),
            Some((2, 3))
        );
        // A fixed count in the options turns autoscaling off.
        let p = plan_of(&scaled, &DeployOptions::new().replicas("embed", 4)).unwrap();
        assert_eq!((p.replicas, p.autoscale), (4, None));
        let both = DeployOptions::from_toml_str(
            "[steps.embed]\nreplicas = 2\n[steps.embed.autoscale]\nmin_replicas = 1",
        )
        .unwrap();
        assert!(message(plan_of(&scaled, &both).unwrap_err()).contains("both set"));
    }

    #[test]
    fn devices_spread_over_gpus_unless_pinned() {
        let p = plan(&ACTORS, None, "embed", &DeployOptions::new(), &mut || 2).unwrap();
        let devices: Vec<_> = (0..3).map(|i| p.device_of(i)).collect();
        assert_eq!(devices, [Device::Cuda(0), Device::Cuda(1), Device::Cuda(0)]);
        let o = DeployOptions::new().device("embed", Device::Cpu);
        let p = plan(&ACTORS, None, "embed", &o, &mut || panic!("not asked")).unwrap();
        assert_eq!(p.device_of(1), Device::Cpu);
        let o = DeployOptions::new().device("embed", Device::Cuda(2));
        let e = plan(&ACTORS, None, "embed", &o, &mut || 2).unwrap_err();
        assert!(message(e).contains("has 2 CUDA device(s)"));
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let o = DeployOptions::new().replicas("embedd", 2);
        let e = check_names(&o, &[("embed_1", "embed"), ("score", "score")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "deploy options name step `embedd`, which is not in the graph; its steps are: embed, embed_1, score"
        );
        assert!(check_names(
            &DeployOptions::new().replicas("embed_1", 2),
            &[("embed_1", "embed")]
        )
        .is_ok());
    }
}
