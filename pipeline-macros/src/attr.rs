//! Parses `#[step(mode = "actors", replicas = 2)]`: every key once, known
//! keys only, values checked, near misses get a suggestion.
//!
//! A key with a bad value is reported and left at its default, so the step
//! still expands and the mistake is one error.

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, Meta, Token};

use crate::ctxt::Ctxt;

const KEYS: &[&str] = &[
    "mode",
    "replicas",
    "placement",
    "batch",
    "autoscale",
    "remote",
    "concurrent",
];

/// The keys of `autoscale(..)`, Ray Serve's names.
const AUTOSCALE_KEYS: &[&str] = &[
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
const AUTOSCALE_DEFAULT: Autoscale = Autoscale {
    min_replicas: 1,
    max_replicas: 8,
    target_ongoing_requests: 2,
    upscale_delay_ms: 1_000,
    downscale_delay_ms: 30_000,
};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Local,
    Tasks,
    Actors,
}

impl Mode {
    pub(crate) fn variant(self) -> &'static str {
        match self {
            Mode::Local => "Local",
            Mode::Tasks => "Tasks",
            Mode::Actors => "Actors",
        }
    }
}

pub(crate) struct StepAttr {
    pub(crate) mode: Mode,
    pub(crate) replicas: usize,
    /// `Auto`, `Thread` or `Task` (the `Placement` variant).
    pub(crate) placement: &'static str,
    /// `batch(max_size = .., wait_ms = ..)`, with the attribute's span.
    pub(crate) batch: Option<Batch>,
    /// `autoscale(..)`, every key filled in; `replicas` is then its
    /// `min_replicas`.
    pub(crate) autoscale: Option<Autoscale>,
    /// `remote`: the step may be served by worker processes, so its
    /// inputs and output must cross the wire (serde types).
    pub(crate) remote: bool,
    /// `concurrent`: a model step whose calls share one model (`&self`,
    /// `Sync`) instead of taking turns; the key's span.
    pub(crate) concurrent: Option<Span>,
}

/// `pipeline_core::AutoscalePolicy`, as the macro writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Autoscale {
    pub(crate) min_replicas: usize,
    pub(crate) max_replicas: usize,
    pub(crate) target_ongoing_requests: usize,
    pub(crate) upscale_delay_ms: u64,
    pub(crate) downscale_delay_ms: u64,
}

#[derive(Clone, Copy)]
pub(crate) struct Batch {
    pub(crate) max_size: usize,
    pub(crate) wait_ms: u64,
    pub(crate) span: Span,
}

pub(crate) fn parse(args: TokenStream, cx: &Ctxt) -> StepAttr {
    let mut attr = StepAttr {
        mode: Mode::Local,
        replicas: 1,
        placement: "Auto",
        batch: None,
        autoscale: None,
        remote: false,
        concurrent: None,
    };
    let metas = match Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args) {
        Ok(metas) => metas,
        Err(e) => {
            cx.push(syn::Error::new(
                e.span(),
                format!("{e}; expected `#[step]` or `#[step(mode = \"actors\", replicas = 2)]`"),
            ));
            return attr;
        }
    };

    let mut seen: Vec<String> = Vec::new();
    let mut replicas: Option<(usize, Span)> = None;
    let mut placement: Option<(&'static str, Span)> = None;
    // The keys as written, for the checks that involve more than one key.
    let mut replicas_key: Option<&syn::Path> = None;
    let mut autoscale_key: Option<&syn::Path> = None;
    let mut autoscale: Option<Autoscale> = None;
    let mut mode_failed = false;
    // A batch the user meant under another key (reported as unknown).
    let mut batch_meant: Option<Batch> = None;
    for meta in &metas {
        let path = meta.path();
        let key = path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_else(|| quote::quote!(#path).to_string().replace(' ', ""));
        if seen.contains(&key) {
            cx.error_spanned(path, format!("duplicate `{key}`: each key may appear once"));
            continue;
        }
        seen.push(key.clone());
        match key.as_str() {
            "mode" => match parse_mode(meta, cx) {
                Some(mode) => attr.mode = mode,
                None => mode_failed = true,
            },
            "replicas" => {
                replicas_key = Some(path);
                if let Some(n) = parse_replicas(meta, cx) {
                    replicas = Some((n, meta.span()));
                }
            }
            "placement" => {
                if let Some(p) = parse_placement(meta, cx) {
                    placement = Some((p, meta.span()));
                }
            }
            "batch" => attr.batch = parse_batch(meta, cx),
            "autoscale" => {
                autoscale_key = Some(path);
                autoscale = parse_autoscale(meta, cx);
            }
            "remote" => attr.remote = parse_remote(meta, cx),
            "concurrent" => {
                if parse_flag(
                    meta,
                    cx,
                    "`concurrent` takes no value: write `#[step(mode = \"tasks\", concurrent)]`",
                ) {
                    attr.concurrent = Some(meta.span());
                }
            }
            other => {
                let batchy = other.contains("batch") || other == "max_size" || other == "wait_ms";
                if batchy {
                    batch_meant = Some(Batch {
                        max_size: 32,
                        wait_ms: 5,
                        span: meta.span(),
                    });
                }
                let value = match meta {
                    Meta::NameValue(nv) => match ungroup(&nv.value) {
                        Expr::Lit(ExprLit {
                            lit: Lit::Int(n), ..
                        }) => n.base10_digits().to_string(),
                        _ => "..".to_string(),
                    },
                    _ => "..".to_string(),
                };
                let hint = match other {
                    "max_batch_size" | "batch_size" | "max_size" => {
                        format!(" (batching settings go in `batch(..)`: write `batch(max_size = {value})`)")
                    }
                    "batch_wait_timeout_s" | "batch_wait_ms" | "batch_timeout_ms" | "wait_ms" => {
                        " (batching settings go in `batch(..)`: write `batch(wait_ms = ..)`, in milliseconds)"
                            .to_string()
                    }
                    _ => suggest(other, KEYS)
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default(),
                };
                cx.error_spanned(
                    path,
                    format!("unknown step attribute `{other}`{hint}; expected one of: `mode`, `replicas`, `placement`, `batch`, `autoscale`, `remote`, `concurrent`"),
                );
            }
        }
    }

    // A key that meant batching (`batching(..)`, Ray's `max_batch_size`)
    // was reported as unknown; the step still expands batched, so its edges
    // are item edges and add no errors.
    if batch_meant.is_some() && attr.batch.is_none() {
        attr.batch = batch_meant;
    }
    let batch_written = attr.batch.is_some() && batch_meant.is_none();

    // A mode that did not parse is reported once; keys only actors take
    // say what was meant, so they are not reported again on top of it.
    let actor_keys = replicas.is_some()
        || autoscale_key.is_some()
        || attr.batch.is_some()
        || placement.is_some();
    if mode_failed && actor_keys {
        attr.mode = Mode::Actors;
    }
    if attr.mode != Mode::Actors {
        // Every key that needs actors, as written; several are one error.
        let mut needs: Vec<(&str, Span)> = Vec::new();
        if let Some((_, span)) = replicas {
            needs.push(("replicas", span));
        }
        if let (true, Some(batch)) = (batch_written, attr.batch) {
            needs.push(("batch(..)", batch.span));
        }
        if let Some(key) = autoscale_key {
            needs.push(("autoscale", key.span()));
        }
        if let Some((_, span)) = placement {
            needs.push(("placement", span));
        }
        let mode = match attr.mode {
            Mode::Local => "local",
            _ => "tasks",
        };
        match needs.as_slice() {
            [] => {}
            [("replicas", span)] => cx.push(syn::Error::new(
                *span,
                format!(
                    "`replicas` needs `mode = \"actors\"`: a {mode} step has no replicas; add `mode = \"actors\"` or remove `replicas`"
                ),
            )),
            [("batch(..)", span)] => cx.push(syn::Error::new(
                *span,
                "`batch(..)` batches the calls queued at an actor replica and needs `mode = \"actors\"`",
            )),
            [("autoscale", span)] => cx.push(syn::Error::new(
                *span,
                "`autoscale` scales an actor step's replicas and needs `mode = \"actors\"`; add `mode = \"actors\"` or remove `autoscale`",
            )),
            [(_, span)] => cx.push(syn::Error::new(
                *span,
                "`placement` says where actor replicas run and needs `mode = \"actors\"`",
            )),
            [(_, span), ..] => {
                let keys = needs
                    .iter()
                    .map(|(k, _)| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                cx.push(syn::Error::new(
                    *span,
                    format!(
                        "{keys} need `mode = \"actors\"` (a {mode} step runs no replicas): add `mode = \"actors\"`"
                    ),
                ));
            }
        }
        // Kept: a batched step still expands with its item types, so edges
        // into it are not reported again.
    } else {
        if let Some((n, _)) = replicas {
            attr.replicas = n;
        }
        if let Some(replicas) = replicas_key.filter(|_| autoscale_key.is_some()) {
            cx.error_spanned(
                replicas,
                "`replicas` and `autoscale` both set the replica count: use `replicas = N` for a fixed count, \
                 or `autoscale(min_replicas = .., max_replicas = ..)`",
            );
        }
        if let Some(policy) = autoscale {
            attr.autoscale = Some(policy);
            attr.replicas = policy.min_replicas;
        }
        if let Some((p, _)) = placement {
            attr.placement = p;
        }
    }
    attr
}

/// `batch(max_size = 32, wait_ms = 5)`; either key may be left out.
/// `remote`, a bare flag: where the step runs is chosen at deploy time.
fn parse_remote(meta: &Meta, cx: &Ctxt) -> bool {
    parse_flag(
        meta,
        cx,
        "`remote` takes no value: write `#[step(remote)]`; which steps run remotely, and \
         where, is chosen at deploy time (`DeployOptions::remote(step, url)` or \
         `remote = \"nats://..\"` in the deploy file)",
    )
}

/// A bare flag key; `usage` when it was given a value.
fn parse_flag(meta: &Meta, cx: &Ctxt, usage: &str) -> bool {
    match meta {
        Meta::Path(_) => true,
        _ => {
            cx.error_spanned(meta, usage);
            false
        }
    }
}

fn parse_batch(meta: &Meta, cx: &Ctxt) -> Option<Batch> {
    const USAGE: &str = "expected `batch(max_size = 32, wait_ms = 5)` (either key optional)";
    // Whatever is wrong, the step still expands batched (defaults for the
    // bad keys): it declares `Vec` in and out, and its edges are item edges.
    let mut batch = Batch {
        max_size: 32,
        wait_ms: 5,
        span: meta.span(),
    };
    let list = match meta {
        Meta::List(list) => list,
        Meta::Path(_) => return Some(batch),
        Meta::NameValue(nv) => {
            let hint = match ungroup(&nv.value) {
                Expr::Lit(ExprLit {
                    lit: Lit::Int(n), ..
                }) => format!(": write `batch(max_size = {})`", n.base10_digits()),
                _ => String::new(),
            };
            cx.error_spanned(meta, format!("{USAGE}{hint}"));
            return Some(batch);
        }
    };
    let inner = match list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated) {
        Ok(inner) => inner,
        Err(e) => {
            cx.push(syn::Error::new(e.span(), format!("{e}; {USAGE}")));
            return Some(batch);
        }
    };
    let mut seen = Vec::new();
    for m in &inner {
        let path = m.path();
        let key = path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_else(|| quote::quote!(#path).to_string().replace(' ', ""));
        if seen.contains(&key) {
            cx.error_spanned(path, format!("duplicate `{key}`: each key may appear once"));
            continue;
        }
        seen.push(key.clone());
        match key.as_str() {
            "max_size" => {
                if let Some(n) = whole_number(m, &key, "8", cx) {
                    if n == 0 {
                        cx.error_spanned(
                            value_of(m),
                            "`max_size` must be at least 1: it is the most calls one batch holds",
                        );
                    } else {
                        batch.max_size = n as usize;
                    }
                }
            }
            "wait_ms" => {
                if let Some(n) = whole_number(m, &key, "5", cx) {
                    batch.wait_ms = n;
                }
            }
            other => {
                let hint = suggest(other, &["max_size", "wait_ms"])
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                cx.error_spanned(
                    path,
                    format!(
                        "unknown batch setting `{other}`{hint}; expected `max_size` and `wait_ms`"
                    ),
                );
            }
        }
    }
    Some(batch)
}

/// `autoscale`, `autoscale()` or `autoscale(min_replicas = 1, ..)`: every key
/// may be left out and then takes `AutoscalePolicy::DEFAULT`'s value. `None`
/// after any mistake (each reported once).
fn parse_autoscale(meta: &Meta, cx: &Ctxt) -> Option<Autoscale> {
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
        let key = path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_else(|| quote::quote!(#path).to_string().replace(' ', ""));
        if seen.contains(&key) {
            cx.error_spanned(path, format!("duplicate `{key}`: each key may appear once"));
            ok = false;
            continue;
        }
        seen.push(key.clone());
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
fn unknown_autoscale_key(key: &str) -> String {
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

/// `key = N`, N a whole number that fits a `usize` (and so a `u64`).
/// Anything else is reported on the value (or on the key when there is no
/// value), with the fix.
fn whole_number(m: &Meta, key: &str, example: &str, cx: &Ctxt) -> Option<u64> {
    let example = format!("`{key} = {example}`");
    let Meta::NameValue(nv) = m else {
        cx.error_spanned(m, format!("`{key}` takes a whole number, e.g. {example}"));
        return None;
    };
    let value = ungroup(&nv.value);
    let message = match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) if int.base10_digits().starts_with('-') => {
            format!("`{key}` takes a whole number, not a negative one, e.g. {example}")
        }
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => match int.base10_parse::<u64>() {
            Ok(n) if usize::try_from(n).is_ok() => return Some(n),
            _ => format!("`{key}` is too large"),
        },
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) if s.value().trim().parse::<u64>().is_ok() => format!(
            "`{key}` takes a number, not a string: write `{key} = {}`",
            s.value().trim()
        ),
        Expr::Lit(ExprLit {
            lit: Lit::Float(_), ..
        }) => format!("`{key}` takes a whole number, not a fraction, e.g. {example}"),
        _ => format!("`{key}` takes a whole number, e.g. {example}"),
    };
    cx.error_spanned(value, message);
    None
}

/// The value in the usage examples (`AutoscalePolicy::DEFAULT`'s).
fn example_value(key: &str) -> u64 {
    let d = AUTOSCALE_DEFAULT;
    match key {
        "min_replicas" => d.min_replicas as u64,
        "max_replicas" => d.max_replicas as u64,
        "target_ongoing_requests" => d.target_ongoing_requests as u64,
        "upscale_delay_ms" => d.upscale_delay_ms,
        _ => d.downscale_delay_ms,
    }
}

/// The value of `key = value`, else the whole meta (for spans).
fn value_of(m: &Meta) -> &dyn quote::ToTokens {
    match m {
        Meta::NameValue(nv) => ungroup(&nv.value),
        other => other,
    }
}

/// A value passed through a `macro_rules!` metavariable arrives wrapped in an
/// invisible group (serde's `ungroup`).
fn ungroup(mut expr: &Expr) -> &Expr {
    while let Expr::Group(group) = expr {
        expr = &group.expr;
    }
    expr
}

fn parse_mode(meta: &Meta, cx: &Ctxt) -> Option<Mode> {
    let choices = [
        ("local", Mode::Local),
        ("tasks", Mode::Tasks),
        ("actors", Mode::Actors),
    ];
    parse_choice(
        meta,
        cx,
        "mode",
        &choices,
        "expected one of: `local`, `tasks`, `actors`",
    )
}

fn parse_placement(meta: &Meta, cx: &Ctxt) -> Option<&'static str> {
    let choices = [("thread", "Thread"), ("task", "Task")];
    parse_choice(
        meta,
        cx,
        "placement",
        &choices,
        "expected `thread` (blocking work) or `task` (light or async work)",
    )
}

/// `key = "word"` where `word` is one of `choices`; a near miss gets a
/// "did you mean" hint.
fn parse_choice<T: Copy>(
    meta: &Meta,
    cx: &Ctxt,
    key: &str,
    choices: &[(&'static str, T)],
    expected: &str,
) -> Option<T> {
    let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
    let Some(value) = string_value(meta) else {
        // `mode = actors`: the word is right but needs quotes.
        let (span, message) = match meta {
            Meta::NameValue(nv) => {
                let value = ungroup(&nv.value);
                let word = match value {
                    Expr::Path(p) => p.path.get_ident().map(ToString::to_string),
                    _ => None,
                };
                let message = match word {
                    Some(word) => {
                        let fix = names
                            .iter()
                            .find(|n| n.eq_ignore_ascii_case(&word))
                            .copied()
                            .or_else(|| suggest(&word.to_lowercase(), &names))
                            .unwrap_or(&word);
                        format!("`{key}` takes a string: quote it, `{key} = \"{fix}\"`; {expected}")
                    }
                    None => format!(
                        "`{key}` takes a string, e.g. `{key} = \"{}\"`; {expected}",
                        names[names.len() - 1]
                    ),
                };
                (value.span(), message)
            }
            _ => (
                meta.span(),
                format!("expected `{key} = \"...\"`; {expected}"),
            ),
        };
        cx.push(syn::Error::new(span, message));
        return None;
    };
    let word = value.value();
    if let Some((_, choice)) = choices.iter().find(|(name, _)| *name == word) {
        return Some(*choice);
    }
    let hint = match names.iter().find(|n| n.eq_ignore_ascii_case(word.trim())) {
        Some(exact) => format!(" (did you mean `{exact}`? values are lower case)"),
        None => suggest(&word.trim().to_lowercase(), &names)
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default(),
    };
    cx.error_spanned(value, format!("unknown {key} `{word}`{hint}; {expected}"));
    None
}

fn parse_replicas(meta: &Meta, cx: &Ctxt) -> Option<usize> {
    match whole_number(meta, "replicas", "2", cx)? {
        0 => {
            cx.error_spanned(
                value_of(meta),
                "`replicas` must be at least 1: an actor step needs a replica to take its calls",
            );
            None
        }
        n => Some(n as usize),
    }
}

fn string_value(meta: &Meta) -> Option<&syn::LitStr> {
    match meta {
        Meta::NameValue(nv) => match ungroup(&nv.value) {
            Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// The closest known word, if it is close enough to be a typo.
fn suggest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(word, k), *k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(args: TokenStream) -> StepAttr {
        let cx = Ctxt::default();
        let attr = parse(args, &cx);
        assert_eq!(cx.into_messages(), Vec::<String>::new());
        attr
    }

    /// The one error `args` must give.
    fn one_error(args: TokenStream) -> String {
        let cx = Ctxt::default();
        parse(args, &cx);
        let mut messages = cx.into_messages();
        assert_eq!(messages.len(), 1, "{messages:?}");
        messages.remove(0)
    }

    #[test]
    fn autoscale_keys_left_out_take_the_defaults() {
        for args in [
            quote::quote!(mode = "actors", autoscale),
            quote::quote!(mode = "actors", autoscale()),
        ] {
            let attr = parse_ok(args);
            assert_eq!(attr.autoscale, Some(AUTOSCALE_DEFAULT));
            assert_eq!(attr.replicas, AUTOSCALE_DEFAULT.min_replicas);
        }
        let attr = parse_ok(quote::quote!(
            autoscale(min_replicas = 2, upscale_delay_ms = 0),
            mode = "actors"
        ));
        let want = Autoscale {
            min_replicas: 2,
            upscale_delay_ms: 0,
            ..AUTOSCALE_DEFAULT
        };
        assert_eq!((attr.autoscale, attr.replicas), (Some(want), 2));
    }

    #[test]
    fn each_autoscale_mistake_is_one_error() {
        let cases = [
            (
                quote::quote!(mode = "actors", autoscale(max_replica = 4)),
                "unknown autoscale setting `max_replica` (did you mean `max_replicas`?)",
            ),
            (
                quote::quote!(mode = "actors", autoscale(downscale_delay_s = 30)),
                "delays are in milliseconds: did you mean `downscale_delay_ms`?",
            ),
            (
                quote::quote!(
                    mode = "actors",
                    autoscale(min_replicas = 1, min_replicas = 2)
                ),
                "duplicate `min_replicas`",
            ),
            (
                quote::quote!(mode = "actors", autoscale(max_replicas = "4")),
                "`max_replicas` takes a number, not a string: write `max_replicas = 4`",
            ),
            (
                quote::quote!(mode = "actors", autoscale(min_replicas = -1)),
                "not a negative one",
            ),
            (
                quote::quote!(mode = "actors", autoscale(target_ongoing_requests = 1.5)),
                "not a fraction",
            ),
            (
                quote::quote!(
                    mode = "actors",
                    autoscale(min_replicas = 0, max_replicas = 0)
                ),
                "`min_replicas` must be at least 1",
            ),
            (
                quote::quote!(mode = "actors", autoscale(target_ongoing_requests = 0)),
                "`target_ongoing_requests` must be at least 1",
            ),
            (
                quote::quote!(
                    mode = "actors",
                    autoscale(min_replicas = 4, max_replicas = 2)
                ),
                "`max_replicas = 2` is below `min_replicas = 4`",
            ),
            (
                quote::quote!(mode = "actors", autoscale(max_replicas = 0)),
                "`max_replicas = 0` is below the default `min_replicas` (1)",
            ),
            (
                quote::quote!(mode = "actors", autoscale(min_replicas = 9)),
                "`min_replicas = 9` is above the default `max_replicas` (8)",
            ),
            (
                quote::quote!(mode = "tasks", autoscale),
                "needs `mode = \"actors\"`",
            ),
            (
                quote::quote!(mode = "actors", replicas = 2, autoscale),
                "`replicas` and `autoscale` both set the replica count",
            ),
            (
                quote::quote!(mode = "actors", autoscale = 4),
                "expected `autoscale` (the defaults) or `autoscale(",
            ),
            (
                quote::quote!(mode = "actors", autoscal),
                "(did you mean `autoscale`?)",
            ),
        ];
        for (args, want) in cases {
            let got = one_error(args.clone());
            assert!(got.contains(want), "{args}: got {got:?}, want {want:?}");
        }
    }
}
