//! Reading one key's value: whole numbers, one of a set of words, flags,
//! near misses; each mistake reported on the value with the fix.

use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, Meta};

use crate::ctxt::Ctxt;

/// A bare flag key; `usage` when it was given a value.
pub(super) fn parse_flag(meta: &Meta, cx: &Ctxt, usage: &str) -> bool {
    match meta {
        Meta::Path(_) => true,
        _ => {
            cx.error_spanned(meta, usage);
            false
        }
    }
}

/// `key = N`, N a whole number that fits a `usize` (and so a `u64`).
/// Anything else is reported on the value (or on the key when there is no
/// value), with the fix.
pub(super) fn whole_number(m: &Meta, key: &str, example: &str, cx: &Ctxt) -> Option<u64> {
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

/// The value of `key = value`, else the whole meta (for spans).
pub(super) fn value_of(m: &Meta) -> &dyn quote::ToTokens {
    match m {
        Meta::NameValue(nv) => ungroup(&nv.value),
        other => other,
    }
}

/// A value passed through a `macro_rules!` metavariable arrives wrapped in an
/// invisible group (serde's `ungroup`).
pub(super) fn ungroup(mut expr: &Expr) -> &Expr {
    while let Expr::Group(group) = expr {
        expr = &group.expr;
    }
    expr
}

/// `key = "word"` where `word` is one of `choices`; a near miss gets a
/// "did you mean" hint.
pub(super) fn parse_choice<T: Copy>(
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

pub(super) fn string_value(meta: &Meta) -> Option<&syn::LitStr> {
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
pub(super) fn suggest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(word, k), *k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// The key of `meta` as written, the first time it appears in `seen`;
/// a repeat is reported (once, on the key) and gives `None`.
pub(super) fn first_time(meta: &Meta, seen: &mut Vec<String>, cx: &Ctxt) -> Option<String> {
    let path = meta.path();
    let key = path
        .get_ident()
        .map(ToString::to_string)
        .unwrap_or_else(|| quote::quote!(#path).to_string().replace(' ', ""));
    if seen.contains(&key) {
        cx.error_spanned(path, format!("duplicate `{key}`: each key may appear once"));
        return None;
    }
    seen.push(key.clone());
    Some(key)
}
