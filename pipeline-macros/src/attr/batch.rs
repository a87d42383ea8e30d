//! `batch(max_size = 32, wait_ms = 5)`.

use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, Meta, Token};

use super::value::{first_time, suggest, ungroup, value_of, whole_number};
use super::Batch;
use crate::ctxt::Ctxt;

pub(super) fn parse_batch(meta: &Meta, cx: &Ctxt) -> Option<Batch> {
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
        let Some(key) = first_time(m, &mut seen, cx) else {
            continue;
        };
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
