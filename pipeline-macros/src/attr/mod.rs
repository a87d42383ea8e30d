//! Parses `#[step(mode = "actors", replicas = 2)]`: every key once, known
//! keys only, values checked, near misses get a suggestion.
//!
//! A key with a bad value is reported and left at its default, so the step
//! still expands and the mistake is one error.
//!
//! | file | reads |
//! | --- | --- |
//! | `mod.rs` | the keys, and the checks between them (what needs actors) |
//! | `batch.rs` | `batch(..)` |
//! | `autoscale.rs` | `autoscale(..)` |
//! | `value.rs` | one value: numbers, words, flags, near misses |

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, Meta, Token};

use crate::ctxt::Ctxt;

mod autoscale;
mod batch;
#[cfg(test)]
mod tests;
mod value;

use autoscale::parse_autoscale;
use batch::parse_batch;
use value::{first_time, parse_choice, parse_flag, suggest, ungroup, value_of, whole_number};

const KEYS: &[&str] = &[
    "mode",
    "replicas",
    "placement",
    "batch",
    "autoscale",
    "remote",
    "concurrent",
];

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

/// `key: value` written for `key = value` (as in a struct literal or
/// YAML): the key and the colon. A path's `::` is no such colon.
fn colon_after_key(args: &TokenStream) -> Option<(proc_macro2::Ident, Span)> {
    use proc_macro2::{Spacing, TokenTree};
    let tokens: Vec<TokenTree> = args.clone().into_iter().collect();
    tokens.windows(3).find_map(|w| match w {
        [TokenTree::Ident(key), TokenTree::Punct(colon), next]
            if colon.as_char() == ':'
                && colon.spacing() == Spacing::Alone
                && !matches!(next, TokenTree::Punct(p) if p.as_char() == ':') =>
        {
            Some((key.clone(), colon.span()))
        }
        _ => None,
    })
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
    if let Some((key, colon)) = colon_after_key(&args) {
        cx.push(syn::Error::new(
            colon,
            format!("a step attribute's key takes `=`, not `:`: write `{key} = ..`, e.g. `#[step(mode = \"actors\", replicas = 2)]`"),
        ));
        return attr;
    }
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
        let Some(key) = first_time(meta, &mut seen, cx) else {
            continue;
        };
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
            other
                if matches!(meta, Meta::Path(_))
                    && ["local", "tasks", "actors"]
                        .contains(&other.to_ascii_lowercase().as_str()) =>
            {
                // `#[step(actors)]`: a mode written without its key. Taken
                // as that mode (once the key is added, nothing else changes),
                // so keys that need it are not reported on top.
                let mode = other.to_ascii_lowercase();
                cx.error_spanned(
                    path,
                    format!("a mode is given with its key: write `mode = \"{mode}\"`"),
                );
                mode_failed = true;
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
                    "max_ongoing_requests" | "max_concurrent_queries" | "queue_bound" | "max_queued_requests" => {
                        " (a replica's queue bound is a deploy setting: `queue_bound` in `DeployOptions` or the deploy file)"
                            .to_string()
                    }
                    "ray_actor_options" | "num_gpus" | "num_cpus" | "device" | "devices" => {
                        " (devices are chosen at deploy: `device = \"cuda:0\"` for a step in the deploy file, or `DeployOptions::device`; replicas spread over the GPUs by default)"
                            .to_string()
                    }
                    "name" => " (a node is named where it is built: `node.named(\"..\")`)".to_string(),
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
