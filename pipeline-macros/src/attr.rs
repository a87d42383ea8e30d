//! Parses `#[step(mode = "actors", replicas = 2)]`: every key once, known
//! keys only, values checked, near misses get a suggestion.

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, Meta, Token};

use crate::ctxt::Ctxt;

const KEYS: &[&str] = &["mode", "replicas", "placement", "batch"];

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
            "batch" => attr.batch = parse_batch(meta, cx),
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
    if let Some(batch) = attr.batch {
        if attr.mode != Mode::Actors {
            cx.push(syn::Error::new(
                batch.span,
                "`batch(..)` batches the calls queued at an actor replica and needs `mode = \"actors\"`",
            ));
            attr.batch = None;
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

/// `batch(max_size = 32, wait_ms = 5)`; either key may be left out.
fn parse_batch(meta: &Meta, cx: &Ctxt) -> Option<Batch> {
    const USAGE: &str = "expected `batch(max_size = 32, wait_ms = 5)`";
    let Meta::List(list) = meta else {
        cx.error_spanned(meta, USAGE);
        return None;
    };
    let inner = match list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated) {
        Ok(inner) => inner,
        Err(e) => {
            cx.push(syn::Error::new(e.span(), format!("{e}; {USAGE}")));
            return None;
        }
    };
    let mut batch = Batch {
        max_size: 32,
        wait_ms: 5,
        span: meta.span(),
    };
    let mut seen = Vec::new();
    let mut ok = true;
    for m in &inner {
        let key = m
            .path()
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        if seen.contains(&key) {
            cx.error_spanned(
                m.path(),
                format!("duplicate `{key}`: each key may appear once"),
            );
            ok = false;
            continue;
        }
        seen.push(key.clone());
        let int = match m {
            Meta::NameValue(nv) => match &nv.value {
                Expr::Lit(ExprLit {
                    lit: Lit::Int(int), ..
                }) => Some(int),
                _ => None,
            },
            _ => None,
        };
        match (key.as_str(), int.map(|i| (i, i.base10_parse::<u64>()))) {
            ("max_size", Some((_, Ok(n)))) if n >= 1 => batch.max_size = n as usize,
            ("max_size", Some((int, _))) => {
                cx.error_spanned(int, "`max_size` must be a whole number >= 1");
                ok = false;
            }
            ("wait_ms", Some((_, Ok(n)))) => batch.wait_ms = n,
            ("max_size" | "wait_ms", _) => {
                cx.error_spanned(m, format!("`{key}` takes a whole number, e.g. `{key} = 8`"));
                ok = false;
            }
            (other, _) => {
                cx.error_spanned(
                    m.path(),
                    format!("unknown batch setting `{other}`; expected `max_size` and `wait_ms`"),
                );
                ok = false;
            }
        }
    }
    ok.then_some(batch)
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
    let Some(value) = string_value(meta) else {
        cx.error_spanned(meta, format!("expected `{key} = \"...\"`; {expected}"));
        return None;
    };
    let word = value.value();
    if let Some((_, choice)) = choices.iter().find(|(name, _)| *name == word) {
        return Some(*choice);
    }
    let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
    let hint = suggest(&word, &names)
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default();
    cx.error_spanned(value, format!("unknown {key} `{word}`{hint}; {expected}"));
    None
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
