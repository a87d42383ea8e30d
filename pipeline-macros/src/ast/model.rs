//! A model step read from its `impl` block: `new` (the constructor, with
//! its optional context), `call` (the step), each checked.

use syn::{FnArg, ImplItem, ImplItemFn, ItemImpl, Type};

use super::types::{check_constructor_return, check_output};
use super::{
    check_signature, cx_errors, is_context, output_of, step_inputs, typed_inputs, Call, Ctor,
    ModelStep, Place,
};
use crate::ctxt::Ctxt;

pub(super) fn model_step(item: &ItemImpl, cx: &Ctxt) -> Option<ModelStep> {
    let before = cx_errors(cx);
    if let Some((_, path, _)) = &item.trait_ {
        cx.error_spanned(
            path,
            "`#[step]` goes on the model's own `impl` block (`impl Model { .. }`), not on a trait impl",
        );
        return None;
    }
    if !item.generics.params.is_empty() {
        let only_lifetimes = item.generics.type_params().next().is_none()
            && item.generics.const_params().next().is_none();
        cx.error_spanned(
            &item.generics,
            if only_lifetimes {
                "a model cannot borrow (a lifetime parameter): each replica owns its model on its own thread; \
                 make the model own its data (`String`, `Vec<T>`, `Arc<T>`) and drop the lifetime"
            } else {
                "generic model steps are not supported; make the model type concrete"
            },
        );
        // Its methods' types name the parameters: not judged on top.
        return None;
    }
    let self_ty = (*item.self_ty).clone();
    let name = match &self_ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| {
            // `r#type` is the step `type`, as a function step `r#match` is `match`.
            syn::ext::IdentExt::unraw(&s.ident).to_string()
        }),
        _ => None,
    };
    let Some(name) = name else {
        cx.error_spanned(
            &self_ty,
            "a model step must be a named type (`impl Model { .. }`)",
        );
        return None;
    };
    // A cfg'd `new` or `call` (or two, one per configuration): the macro
    // reads the methods before cfg is applied, so it cannot know which
    // one the build keeps.
    let cfgd = item.items.iter().find_map(|i| match i {
        ImplItem::Fn(f) if f.sig.ident == "new" || f.sig.ident == "call" => f
            .attrs
            .iter()
            .find(|a| super::is_cfg(a))
            .map(|a| (a, &f.sig.ident)),
        _ => None,
    });
    if let Some((attr, method)) = cfgd {
        cx.error_spanned(
            attr,
            format!(
                "`#[cfg]` on `{method}` inside a `#[step]` impl is not supported: the macro reads `new` and \
                 `call` before cfg applies; put `#[cfg]` on the whole `#[step] impl` (one per configuration), \
                 or branch inside `{method}`'s body"
            ),
        );
        return None;
    }
    let method = |wanted: &str| {
        item.items.iter().find_map(|i| match i {
            ImplItem::Fn(f) if f.sig.ident == wanted => Some(f),
            _ => None,
        })
    };
    let ctor = match method("new") {
        Some(f) => ctor(f, &name, cx),
        None if crate::fallback::NEW_LIKE
            .iter()
            .any(|n| method(n).is_some()) =>
        {
            let f = crate::fallback::NEW_LIKE
                .iter()
                .find_map(|n| method(n))
                .expect("checked");
            cx.error_spanned(
                &f.sig.ident,
                format!(
                    "a model step builds each replica with its `new`: rename `{}` to `new`",
                    f.sig.ident
                ),
            );
            None
        }
        None => {
            cx.error_spanned(
                &self_ty,
                format!(
                    "model step `{name}` has no constructor: add `fn new(args..) -> Self` \
                     (optionally taking `ctx: &ReplicaContext` first; it may return `Result<Self, E>`)"
                ),
            );
            None
        }
    };
    let call_sig = method("call").map(|f| f.sig.clone());
    let call = match method("call") {
        Some(f) => call(f, cx),
        None => {
            let like = crate::fallback::CALL_LIKE.iter().find_map(|n| method(n));
            match like {
                Some(f) => cx.error_spanned(
                    &f.sig.ident,
                    format!(
                        "a model step runs its `call` method: rename `{}` to `call`",
                        f.sig.ident
                    ),
                ),
                None => cx.error_spanned(
                    &self_ty,
                    format!(
                        "model step `{name}` has no `call` method: add `fn call(&mut self, input: In) -> Out` (or `&self`)"
                    ),
                ),
            }
            None
        }
    };
    let (ctor, call, call_sig) = (ctor?, call?, call_sig?);
    (cx_errors(cx) == before).then(|| ModelStep {
        item: item.clone(),
        call_sig,
        self_ty,
        name,
        ctor,
        call,
    })
}

pub(super) fn ctor(f: &ImplItemFn, model: &str, cx: &Ctxt) -> Option<Ctor> {
    let sig = &f.sig;
    check_signature(sig, cx);
    if let Some(a) = &sig.asyncness {
        cx.error_spanned(a, "the constructor `new` must not be `async`: it runs once per replica, on the replica's own thread");
    }
    let mut args = sig.inputs.iter().peekable();
    if let Some(FnArg::Receiver(r)) = args.peek() {
        cx.error_spanned(r, "the constructor `new` takes no `self`");
        return None;
    }
    let takes_context = matches!(args.peek(), Some(FnArg::Typed(t)) if is_context(&t.ty));
    if takes_context {
        args.next();
    }
    let inputs = typed_inputs(args, cx, Place::Ctor);
    check_constructor_return(&sig.output, sig.ident.span(), model, cx);
    let ret = output_of(&sig.output);
    Some(Ctor {
        vis: f.vis.clone(),
        takes_context,
        args: inputs,
        error: ret.error,
    })
}

/// `&Self` or `&mut Self` (with the `mut`'s span); `None` for any other
/// type.
fn self_reference(ty: &Type) -> Option<Option<proc_macro2::Span>> {
    match ty {
        Type::Reference(r) if matches!(&*r.elem, Type::Path(p) if p.qself.is_none() && p.path.is_ident("Self")) => {
            Some(r.mutability.map(|m| m.span))
        }
        _ => None,
    }
}

pub(super) fn call(f: &ImplItemFn, cx: &Ctxt) -> Option<Call> {
    let sig = &f.sig;
    check_signature(sig, cx);
    let mut_receiver = match sig.inputs.first() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() => r.mutability.map(|m| m.span),
        // The same, written out: `self: &Self`, `self: &mut Self`.
        Some(FnArg::Receiver(r)) if self_reference(&r.ty).is_some() => {
            self_reference(&r.ty).flatten()
        }
        Some(FnArg::Receiver(r)) => {
            cx.error_spanned(r, "`call` must take `&self` or `&mut self`: the replica keeps the model between calls");
            return None;
        }
        _ => {
            cx.error_spanned(
                &sig.ident,
                "`call` must take `&self` or `&mut self` as its first parameter",
            );
            return None;
        }
    };
    let inputs = step_inputs(sig.inputs.iter().skip(1), sig, Place::Call, cx);
    check_output(&sig.output, cx);
    Some(Call {
        is_async: sig.asyncness.is_some(),
        mut_receiver,
        inputs,
        output: output_of(&sig.output),
    })
}
