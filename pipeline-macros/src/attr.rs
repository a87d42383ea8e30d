//! Parses `#[step(mode = "actors", replicas = 2)]`: every key once, known
//! keys only, values checked, near misses get a suggestion.

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, Meta, Token};

use crate::ctxt::Ctxt;

const KEYS: &[&str] = &["mode", "replicas", "placement", "batch"];
const PLACEMENTS: &[&str] = &["thread", "task"];
const MODES: &[&str] = &["local", "tasks", "actors"];

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
}

pub(crate) fn parse(args: TokenStream, cx: &Ctxt) -> StepAttr {
    let mut attr = StepAttr {
        mode: Mode::Local,
        replicas: 1,
        placement: "Auto",
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
            "mode" => {
                if let Some(mode) = parse_mode(meta, cx) {
                    attr.mode = mode;
                }
            }
            "replicas" => {
                if let Some(n) = parse_replicas(meta, cx) {
                    replicas = Some((n, meta.span()));
                }
            }
            "placement" => {
                if let Some(p) = parse_placement(meta, cx) {
                    placement = Some((p, meta.span()));
                }
            }
            "batch" => cx.error_spanned(
                meta,
                "`batch(...)` is reserved for dynamic batching, which is not supported yet; remove it",
            ),
            other => {
                let hint = suggest(other, KEYS)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                cx.error_spanned(
                    path,
                    format!("unknown step attribute `{other}`{hint}; expected one of: `mode`, `replicas`, `placement`, `batch`"),
                );
            }
        }
    }

    if let Some((n, span)) = replicas {
        if attr.mode == Mode::Actors {
            attr.replicas = n;
        } else {
            let mode = match attr.mode {
                Mode::Local => "local",
                Mode::Tasks => "tasks",
                Mode::Actors => unreachable!(),
            };
            cx.push(syn::Error::new(
                span,
                format!(
                    "`replicas` needs `mode = \"actors\"`: a {mode} step has no replicas; add `mode = \"actors\"` or remove `replicas`"
                ),
            ));
        }
    }
    if let Some((p, span)) = placement {
        if attr.mode == Mode::Actors {
            attr.placement = p;
        } else {
            cx.push(syn::Error::new(
                span,
                "`placement` says where actor replicas run and needs `mode = \"actors\"`",
            ));
        }
    }
    attr
}

fn parse_placement(meta: &Meta, cx: &Ctxt) -> Option<&'static str> {
    let Some(value) = string_value(meta) else {
        cx.error_spanned(
            meta,
            "expected `placement = \"thread\"` or `placement = \"task\"`",
        );
        return None;
    };
    match value.value().as_str() {
        "thread" => Some("Thread"),
        "task" => Some("Task"),
        other => {
            let hint = suggest(other, PLACEMENTS)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            cx.error_spanned(
                value,
                format!("unknown placement `{other}`{hint}; expected `thread` (blocking work) or `task` (light or async work)"),
            );
            None
        }
    }
}

fn parse_mode(meta: &Meta, cx: &Ctxt) -> Option<Mode> {
    let Some(value) = string_value(meta) else {
        cx.error_spanned(
            meta,
            "expected `mode = \"local\"`, `mode = \"tasks\"` or `mode = \"actors\"`",
        );
        return None;
    };
    match value.value().as_str() {
        "local" => Some(Mode::Local),
        "tasks" => Some(Mode::Tasks),
        "actors" => Some(Mode::Actors),
        other => {
            let hint = suggest(other, MODES)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            cx.error_spanned(
                value,
                format!(
                    "unknown mode `{other}`{hint}; expected one of: `local`, `tasks`, `actors`"
                ),
            );
            None
        }
    }
}

fn parse_replicas(meta: &Meta, cx: &Ctxt) -> Option<usize> {
    let value = match meta {
        Meta::NameValue(nv) => &nv.value,
        _ => {
            cx.error_spanned(meta, "expected `replicas = N` with a whole number N >= 1");
            return None;
        }
    };
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => match int.base10_parse::<usize>() {
            Ok(0) => {
                cx.error_spanned(int, "`replicas` must be at least 1");
                None
            }
            Ok(n) => Some(n),
            Err(_) => {
                cx.error_spanned(int, "`replicas` takes a whole number, e.g. `replicas = 2`");
                None
            }
        },
        other => {
            cx.error_spanned(
                other,
                "`replicas` takes a whole number, e.g. `replicas = 2`",
            );
            None
        }
    }
}

fn string_value(meta: &Meta) -> Option<&syn::LitStr> {
    match meta {
        Meta::NameValue(nv) => match &nv.value {
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
