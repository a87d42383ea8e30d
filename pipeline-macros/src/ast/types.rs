//! The checks on a step's types, each reported once at the type: outputs
//! that are not concrete or owned, types that cannot cross threads (the
//! standard library's, which the macro knows; rustc reports the others),
//! what `new` returns.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{ReturnType, Type};

use super::{first_type_arg, owned, result_ok_type, type_text};
use crate::ctxt::Ctxt;

/// A step's output crosses to the next step: it needs a concrete type that
/// can be sent between threads.
pub(super) fn check_output(ret: &ReturnType, cx: &Ctxt) {
    let ReturnType::Type(_, ty) = ret else { return };
    let ty = result_ok_type(ty).unwrap_or_else(|| (**ty).clone());
    match &ty {
        Type::ImplTrait(it) if crate::fallback::future_output(it).is_some() => cx.error_spanned(
            it,
            "a step that waits is an `async fn`: write `async fn` and return the future's `Output` type \
             instead of `impl Future`",
        ),
        Type::ImplTrait(it) if crate::fallback::stream_item(it).is_some() => cx.error_spanned(
            it,
            format!(
                "a stream step returns `ItemStream<{}>`: write that type and wrap the items, \
                 `ItemStream::iter(..)` for an iterator or `ItemStream::new(..)` for a `Stream` \
                 (`try_iter` / `try_new` for `Result` items)",
                crate::fallback::stream_item(it).map_or_else(|| "T".to_string(), |t| type_text(&t))
            ),
        ),
        Type::ImplTrait(it) => cx.error_spanned(
            it,
            "a step's output needs a concrete type, not `impl Trait`: the next step (and the pipeline's \
             caller) receive it by type; name the type, or return `Box<dyn Trait + Send>`",
        ),
        Type::Reference(r) if r.lifetime.as_ref().is_none_or(|l| l.ident != "static") => cx
            .error_spanned(
                r,
                format!(
                    "a step's output is an owned value passed to the next step: return `{}` instead of a reference",
                    owned(&r.elem)
                ),
            ),
        ty => {
            let _ = check_sized(ty, "step output", "return", cx)
                || check_nested_impl_trait(ty, "step output", cx)
                || check_boxed_future(ty, cx)
                || check_owned(ty, "step output", cx)
                || check_send(ty, "step output", cx);
        }
    }
}

/// A function step's parameters and output cannot name `Self`; each
/// check below reports at most once and says whether it did.
pub(super) fn check_no_self(ty: &Type, cx: &Ctxt) -> bool {
    struct Find(Option<proc_macro2::Span>);
    impl syn::visit::Visit<'_> for Find {
        fn visit_ident(&mut self, i: &proc_macro2::Ident) {
            if self.0.is_none() && i == "Self" {
                self.0 = Some(i.span());
            }
        }
    }
    let mut find = Find(None);
    syn::visit::Visit::visit_type(&mut find, ty);
    let Some(span) = find.0 else { return false };
    cx.push(syn::Error::new(
        span,
        "a function step is no method: there is no `Self` here; name the type (`i64`, `MyType`)",
    ));
    true
}

/// A type without a size known at compile time (`str`, `[T]`, `dyn
/// Trait`) cannot be passed by value: suggest the owned type that holds
/// one.
pub(super) fn check_sized(ty: &Type, what: &str, verb: &str, cx: &Ctxt) -> bool {
    let fix = match ty {
        Type::Slice(_) => super::owned(ty),
        Type::Path(p) if p.qself.is_none() && p.path.is_ident("str") => "String".into(),
        Type::TraitObject(t) => {
            let bounds = type_text(&t.bounds);
            if bounds.contains("Send") {
                format!("Box<dyn {bounds}>")
            } else {
                format!("Box<dyn {bounds} + Send>")
            }
        }
        _ => return false,
    };
    cx.error_spanned(
        ty,
        format!(
            "a {what} needs a size known at compile time, and `{}` has none: {verb} `{fix}` instead",
            type_text(ty)
        ),
    );
    true
}

/// `impl Trait` inside a type (`Vec<impl Display>`): the top level is
/// checked by the caller.
pub(super) fn check_nested_impl_trait(ty: &Type, what: &str, cx: &Ctxt) -> bool {
    struct Find(Option<syn::TypeImplTrait>);
    impl syn::visit::Visit<'_> for Find {
        fn visit_type_impl_trait(&mut self, it: &syn::TypeImplTrait) {
            if self.0.is_none() {
                self.0 = Some(it.clone());
            }
        }
        // `Box<dyn Fn(impl ..)>` is not valid Rust anyway; rustc says so.
        fn visit_type_bare_fn(&mut self, _: &syn::TypeBareFn) {}
    }
    let mut find = Find(None);
    syn::visit::Visit::visit_type(&mut find, ty);
    let Some(it) = find.0 else { return false };
    cx.error_spanned(
        &it,
        format!(
            "a {what} needs a concrete type, not `impl Trait` (here inside `{}`): name the type, \
             e.g. `Vec<i64>`, or use `Box<dyn Trait + Send>`",
            type_text(ty)
        ),
    );
    true
}

/// An output that is a boxed future (`Pin<Box<dyn Future<..>>>`): the
/// graph would pass the future on instead of waiting for it.
fn check_boxed_future(ty: &Type, cx: &Ctxt) -> bool {
    let Some(inner) = super::first_type_arg(ty, "Pin", Some(1)) else {
        return false;
    };
    let Some(Type::TraitObject(t)) = super::first_type_arg(&inner, "Box", Some(1)) else {
        return false;
    };
    let is_future = t.bounds.iter().any(|b| {
        matches!(b, syn::TypeParamBound::Trait(t)
            if t.path.segments.last().is_some_and(|s| s.ident == "Future"))
    });
    if !is_future {
        return false;
    }
    cx.error_spanned(
        ty,
        "a step that waits is an `async fn`: make the step `async fn` and return the future's \
         `Output` type, not a boxed future (the next step would receive the future itself)",
    );
    true
}

/// `#[cfg]` (or `#[cfg_attr]`) on a step's parameter: the macro sees the
/// parameter before cfg is applied, so the node's constructor would not
/// agree with the function.
pub(super) fn check_cfg(attrs: &[syn::Attribute], cx: &Ctxt) -> bool {
    let Some(attr) = attrs.iter().find(|a| super::is_cfg(a)) else {
        return false;
    };
    cx.error_spanned(
        attr,
        "`#[cfg]` on a step's parameter is not supported: the graph's node takes every input; \
         put `#[cfg]` on the whole `#[step]` item (one version per configuration), or branch inside the body",
    );
    true
}

/// A type that borrows (a lifetime other than `'static`) cannot move
/// between threads; reported once, at the lifetime. `true` if reported.
pub(super) fn check_owned(ty: &Type, what: &str, cx: &Ctxt) -> bool {
    struct Find(Option<syn::Lifetime>);
    impl syn::visit::Visit<'_> for Find {
        fn visit_lifetime(&mut self, l: &syn::Lifetime) {
            if self.0.is_none() && l.ident != "static" {
                self.0 = Some(l.clone());
            }
        }
        fn visit_type_reference(&mut self, r: &syn::TypeReference) {
            match &r.lifetime {
                None if self.0.is_none() => {
                    self.0 = Some(syn::Lifetime::new("'_", r.and_token.span));
                }
                _ => syn::visit::visit_type_reference(self, r),
            }
        }
        // `dyn Fn(&str) -> T` and `for<'a>` bounds borrow only inside.
        fn visit_type_bare_fn(&mut self, _: &syn::TypeBareFn) {}
        fn visit_parenthesized_generic_arguments(
            &mut self,
            _: &syn::ParenthesizedGenericArguments,
        ) {
        }
    }
    let mut find = Find(None);
    syn::visit::Visit::visit_type(&mut find, ty);
    let Some(lifetime) = find.0 else { return false };
    let text = type_text(ty);
    cx.error_spanned(
        ty,
        format!(
            "a {what} must own its data (be `'static`), because it moves between threads: `{text}` borrows \
             for `{lifetime}`; use an owned type (`String`, `Vec<T>`, `Arc<T>`)"
        ),
    );
    true
}

/// The standard library's types that cannot be sent between threads, and
/// what to use instead. Caught here so the mistake is one error in the
/// framework's words; other non-`Send` types are reported by rustc at the
/// type.
pub(super) const NOT_SEND: &[(&str, &str)] = &[
    ("Rc", "use `std::sync::Arc` instead of `Rc`"),
    ("NonNull", "wrap it in a type that is `Send`"),
    ("MutexGuard", "pass the value itself, not a lock guard"),
    ("RwLockReadGuard", "pass the value itself, not a lock guard"),
    (
        "RwLockWriteGuard",
        "pass the value itself, not a lock guard",
    ),
];

pub(super) fn check_send(ty: &Type, what: &str, cx: &Ctxt) -> bool {
    let Some((culprit, fix)) = not_send(ty) else {
        return false;
    };
    let text = type_text(&culprit);
    cx.error_spanned(
        culprit,
        format!(
            "`{text}` cannot be sent between threads, and a {what} moves between them (replicas, tasks, \
             the caller's thread): {fix}"
        ),
    );
    true
}

/// Standard traits whose objects are not `Send` unless they add `+ Send`.
pub(super) const STD_NOT_SEND_TRAITS: &[&str] = &[
    "Fn", "FnMut", "FnOnce", "Any", "Error", "Display", "Debug", "Iterator", "Read", "Write",
    "Future",
];

/// The first standard type in `ty` that is not `Send` (`Rc`, raw pointers,
/// lock guards), with the fix.
pub(crate) fn not_send(ty: &Type) -> Option<(Type, &'static str)> {
    struct Find(Option<(Type, &'static str)>);
    impl syn::visit::Visit<'_> for Find {
        fn visit_type(&mut self, ty: &Type) {
            if self.0.is_some() {
                return;
            }
            match ty {
                Type::Ptr(_) => {
                    self.0 = Some((ty.clone(), "pass an owned value instead of a raw pointer"));
                }
                // The standard library's traits, which are not `Send` unless
                // the object says so (a user's trait may have `Send` as a
                // supertrait, so only these are judged here).
                Type::TraitObject(t)
                    if t.bounds.iter().any(|b| {
                        matches!(b, syn::TypeParamBound::Trait(t) if t.path.segments.last().is_some_and(|s| STD_NOT_SEND_TRAITS.iter().any(|n| s.ident == n)))
                    }) && !t.bounds.iter().any(|b| {
                        matches!(b, syn::TypeParamBound::Trait(t) if t.path.segments.last().is_some_and(|s| s.ident == "Send"))
                    }) =>
                {
                    self.0 = Some((ty.clone(), "say so with `+ Send` (and `+ Sync` for a value shared between calls): `dyn Trait + Send + Sync`"));
                }
                Type::Path(p) if p.qself.is_none() => {
                    let fix = p.path.segments.last().and_then(|seg| {
                        NOT_SEND
                            .iter()
                            .find(|(name, _)| seg.ident == name)
                            .map(|(_, fix)| *fix)
                    });
                    match fix {
                        Some(fix) => self.0 = Some((ty.clone(), fix)),
                        None => syn::visit::visit_type(self, ty),
                    }
                }
                _ => syn::visit::visit_type(self, ty),
            }
        }
    }
    let mut find = Find(None);
    syn::visit::Visit::visit_type(&mut find, ty);
    find.0
}

/// `new` returns `Self` (or the type's name) or `Result<Self, E>`.
pub(super) fn check_constructor_return(ret: &ReturnType, name_span: Span, model: &str, cx: &Ctxt) {
    let is_self = |ty: &Type| match ty {
        Type::Path(p) if p.qself.is_none() => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "Self" || s.ident == model),
        _ => false,
    };
    let (span, found) = match ret {
        ReturnType::Default => (name_span, None),
        ReturnType::Type(_, ty) => {
            let ok = result_ok_type(ty);
            if is_self(ty) || ok.as_ref().is_some_and(is_self) {
                return;
            }
            (ty.span(), Some(&**ty))
        }
    };
    let hint = match found {
        None => " (it returns nothing)".to_string(),
        Some(ty) if is_option(ty) => {
            ": turn the `Option` into a `Result`, e.g. `-> Result<Self, String>` with `.ok_or(\"why\")?`".to_string()
        }
        Some(ty) if result_ok_type(ty).is_some() => {
            format!(": the `Ok` value is the model itself, `{model}`")
        }
        Some(_) => format!(": it builds one `{model}` per replica"),
    };
    cx.push(syn::Error::new(
        span,
        format!("the constructor `new` must return `Self` or `Result<Self, E>`{hint}"),
    ));
}

pub(super) fn is_option(ty: &Type) -> bool {
    first_type_arg(ty, "Option", Some(1)).is_some()
}
