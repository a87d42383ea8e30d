//! `autoscale(min_replicas = .., max_replicas = .., ..)`, Ray Serve's keys.

use syn::punctuated::Punctuated;
use syn::{Meta, Token};

use super::value::{first_time, suggest, value_of, whole_number};
use super::Autoscale;
use crate::ctxt::Ctxt;

/// The keys of `autoscale(..)`, Ray Serve's names.
pub(super) const AUTOSCALE_KEYS: &[&str] = &[
    "min_replicas",
    "max_replicas",
    "target_ongoing_requests",
    "upscale_delay_ms",
    "downscale_delay_ms",
];

/// `pipeline_core::AutoscalePolicy::DEFAULT`, mirrored: the macro checks
/// `min_replicas <= max_replicas` against the defaults of the keys left out,
/// and emits whole policies. `tests/ui/pass/autoscale.rs` asserts that a bare
/// `autoscale` equals `AutoscalePolicy::DEFAULT`, so the two cannot drift.
pub(super) const AUTOSCALE_DEFAULT: Autoscale = Autoscale {
    min_replicas: 1,
    max_replicas: 8,
    target_ongoing_requests: 2,
    upscale_delay_ms: 1_000,
    downscale_delay_ms: 30_000,
};

/// `autoscale`, `autoscale()` or `autoscale(min_replicas = 1, ..)`: every key
/// may be left out and then takes `AutoscalePolicy::DEFAULT`'s value. `None`
/// after any mistake (each reported once).
pub(super) fn parse_autoscale(meta: &Meta, cx: &Ctxt) -> Option<Autoscale> {
    const USAGE: &str = "expected `autoscale` (the defaults) or \
         `autoscale(min_replicas = 1, max_replicas = 8, target_ongoing_requests = 2, upscale_delay_ms = 1000, downscale_delay_ms = 30000)` \
         (every key optional)";
    let list = match meta {
        Meta::Path(_) => return Some(AUTOSCALE_DEFAULT),
        Meta::List(list) => list,
        Meta::NameValue(_) => {
            cx.error_spanned(meta, USAGE);
            return None;
        }
    };
    let inner = match list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated) {
        Ok(inner) => inner,
        Err(e) => {
            cx.push(syn::Error::new(e.span(), format!("{e}; {USAGE}")));
            return None;
        }
    };
    let mut policy = AUTOSCALE_DEFAULT;
    let mut seen = Vec::new();
    let mut ok = true;
    // `min_replicas` and `max_replicas` as written, for the check between
    // them; it stays silent when either already has an error.
    let mut min_key: Option<&Meta> = None;
    let mut max_key: Option<&Meta> = None;
    let mut bounds_reported = false;
    for m in &inner {
        let path = m.path();
        let Some(key) = first_time(m, &mut seen, cx) else {
            ok = false;
            continue;
        };
        if !AUTOSCALE_KEYS.contains(&key.as_str()) {
            cx.error_spanned(path, unknown_autoscale_key(&key));
            ok = false;
            continue;
        }
        let Some(n) = whole_number(m, &key, &example_value(&key).to_string(), cx) else {
            ok = false;
            bounds_reported |= key.ends_with("_replicas");
            continue;
        };
        let at_least_one = |why: &str| {
            if n == 0 {
                cx.error_spanned(value_of(m), format!("`{key}` must be at least 1: {why}"));
            }
            n >= 1
        };
        match key.as_str() {
            "min_replicas" => {
                if at_least_one(
                    "a step keeps one replica to take calls (scaling to zero is not supported)",
                ) {
                    policy.min_replicas = n as usize;
                    min_key = Some(m);
                } else {
                    ok = false;
                    bounds_reported = true;
                }
            }
            "max_replicas" => {
                policy.max_replicas = n as usize;
                max_key = Some(m);
            }
            "target_ongoing_requests" => {
                if at_least_one("it is how many calls (queued + running) one replica should carry")
                {
                    policy.target_ongoing_requests = n as usize;
                } else {
                    ok = false;
                }
            }
            "upscale_delay_ms" => policy.upscale_delay_ms = n,
            "downscale_delay_ms" => policy.downscale_delay_ms = n,
            _ => unreachable!("checked against AUTOSCALE_KEYS"),
        }
    }
    if !bounds_reported && policy.max_replicas < policy.min_replicas {
        let (min, max) = (policy.min_replicas, policy.max_replicas);
        match (min_key, max_key) {
            (_, Some(max_key)) => {
                let min_said = match min_key {
                    Some(_) => format!("`min_replicas = {min}`"),
                    None => format!("the default `min_replicas` ({min})"),
                };
                cx.error_spanned(
                    max_key,
                    format!(
                        "`max_replicas = {max}` is below {min_said}: the step scales between the two, \
                         so set `max_replicas` to {min} or more"
                    ),
                );
            }
            (Some(min_key), None) => cx.error_spanned(
                min_key,
                format!(
                    "`min_replicas = {min}` is above the default `max_replicas` ({max}): \
                     add `max_replicas = {min}` (or more)"
                ),
            ),
            (None, None) => unreachable!("the defaults are in order"),
        }
        ok = false;
    }
    ok.then_some(policy)
}

/// "unknown autoscale setting" with a hint: a typo gets "did you mean", and
/// Ray Serve's delays in seconds (`upscale_delay_s`) get the key in ms.
pub(super) fn unknown_autoscale_key(key: &str) -> String {
    let in_ms = key
        .strip_suffix("_s")
        .map(|stem| format!("{stem}_ms"))
        .filter(|ms| AUTOSCALE_KEYS.contains(&ms.as_str()));
    let hint = match (in_ms, suggest(key, AUTOSCALE_KEYS)) {
        (Some(ms), _) => format!(" (delays are in milliseconds: did you mean `{ms}`?)"),
        (None, Some(s)) => format!(" (did you mean `{s}`?)"),
        (None, None) => String::new(),
    };
    format!(
        "unknown autoscale setting `{key}`{hint}; expected `min_replicas`, `max_replicas`, \
         `target_ongoing_requests`, `upscale_delay_ms` or `downscale_delay_ms`"
    )
}

/// The value in the usage examples (`AutoscalePolicy::DEFAULT`'s).
pub(super) fn example_value(key: &str) -> u64 {
    let d = AUTOSCALE_DEFAULT;
    match key {
        "min_replicas" => d.min_replicas as u64,
        "max_replicas" => d.max_replicas as u64,
        "target_ongoing_requests" => d.target_ongoing_requests as u64,
        "upscale_delay_ms" => d.upscale_delay_ms,
        _ => d.downscale_delay_ms,
    }
}
