//! This crate's model of a step, read from the annotated item and checked:
//! a function step ([`FnStep`]) or a model step ([`ModelStep`]). Each
//! problem is recorded in the `Ctxt`, spanned on the user's tokens.

use proc_macro2::{Ident, Span};
use syn::spanned::Spanned;
use syn::{
    FnArg, GenericArgument, Item, ItemFn, ItemImpl, Pat, PathArguments, ReturnType, Signature, Type,
};

use crate::ctxt::Ctxt;

mod model;

use model::model_step;

mod types;

pub(crate) use types::not_send;
use types::{
    check_cfg, check_nested_impl_trait, check_no_self, check_output, check_owned, check_send,
    check_sized,
};

/// The most inputs a step may take (pipeline-core implements edge tuples up
/// to this arity).
const MAX_INPUTS: usize = 8;

pub(crate) enum Step {
    Fn(Box<FnStep>),
    Model(Box<ModelStep>),
}

/// What a step's body returns.
pub(crate) struct Output {
    /// The value type the graph sees.
    pub(crate) ty: Type,
    /// `-> Result<T, E>`: the error is boxed into the pipeline error. The
    /// span of `E` (of the whole return type for `Result<T>` aliases), where
    /// an `E` that is not an error type is reported.
    pub(crate) error: Option<Span>,
}

/// One input of a step.
pub(crate) struct StepInput {
    /// A name for the generated constructor's parameter.
    pub(crate) name: Ident,
    pub(crate) ty: Type,
}

pub(crate) struct FnStep {
    pub(crate) item: ItemFn,
    pub(crate) inputs: Vec<StepInput>,
    pub(crate) output: Output,
    pub(crate) is_async: bool,
}

pub(crate) struct ModelStep {
    pub(crate) item: ItemImpl,
    /// The `call` method's signature.
    pub(crate) call_sig: Signature,
    pub(crate) self_ty: Type,
    pub(crate) name: String,
    pub(crate) ctor: Ctor,
    pub(crate) call: Call,
}

pub(crate) struct Ctor {
    pub(crate) vis: syn::Visibility,
    pub(crate) takes_context: bool,
    pub(crate) args: Vec<StepInput>,
    /// As [`Output::error`].
    pub(crate) error: Option<Span>,
}

pub(crate) struct Call {
    pub(crate) is_async: bool,
    /// The `&mut self` receiver, when `call` takes one.
    pub(crate) mut_receiver: Option<proc_macro2::Span>,
    pub(crate) inputs: Vec<StepInput>,
    pub(crate) output: Output,
}

/// `attr` is the attribute as written (`#[step(..)]`), quoted in advice.
pub(crate) fn parse(mut item: Item, attr: &str, cx: &Ctxt) -> Result<Step, Box<Item>> {
    // A type from a `macro_rules!` fragment (`$t:ty`) arrives in an
    // invisible group: judged as what it holds (`&str`, `str`, `impl ..`).
    syn::visit_mut::VisitMut::visit_item_mut(&mut Ungroup, &mut item);
    match item {
        Item::Fn(f) => match fn_step(&f, cx) {
            Some(step) => Ok(Step::Fn(Box::new(step))),
            None => Err(Box::new(Item::Fn(f))),
        },
        Item::Impl(i) => match model_step(&i, cx) {
            Some(step) => Ok(Step::Model(Box::new(step))),
            None => Err(Box::new(Item::Impl(i))),
        },
        Item::Struct(s) => {
            let name = &s.ident;
            let span = s
                .struct_token
                .span
                .join(s.ident.span())
                .unwrap_or(s.ident.span());
            cx.push(syn::Error::new(
                span,
                format!(
                    "`{attr}` goes on the `impl {name}` block that has `new` and `call`, not on the struct: \
                     move it there, `{attr} impl {name} {{ fn new(..) -> Self {{ .. }} fn call(&mut self, x: In) -> Out {{ .. }} }}`; \
                     the step then binds as `{name}::bind(constructor args.., input nodes..)`"
                ),
            ));
            Err(Box::new(Item::Struct(s)))
        }
        other => {
            let (what, span) = match &other {
                Item::Enum(e) => (
                    "an enum",
                    e.enum_token
                        .span
                        .join(e.ident.span())
                        .unwrap_or(e.ident.span()),
                ),
                Item::Trait(t) => (
                    "a trait",
                    t.trait_token
                        .span
                        .join(t.ident.span())
                        .unwrap_or(t.ident.span()),
                ),
                Item::Mod(m) => (
                    "a module",
                    m.mod_token
                        .span
                        .join(m.ident.span())
                        .unwrap_or(m.ident.span()),
                ),
                _ => ("this item", other.span()),
            };
            cx.push(syn::Error::new(
                span,
                format!(
                    "`#[step]` goes on a `fn` or on the `impl` block of a model type, not on {what}; \
                     for a model write `{attr} impl Model {{ fn new(..) -> Self {{ .. }} fn call(&mut self, x: In) -> Out {{ .. }} }}`"
                ),
            ));
            Err(Box::new(other))
        }
    }
}

fn fn_step(item: &ItemFn, cx: &Ctxt) -> Option<FnStep> {
    let sig = &item.sig;
    let before = cx_errors(cx);
    check_signature(sig, cx);
    if let Some(FnArg::Receiver(r)) = sig.inputs.first() {
        cx.error_spanned(
            r,
            "a function step takes no `self`; put `#[step]` on the `impl` block for a model step",
        );
    }
    let inputs = step_inputs(sig.inputs.iter(), sig, Place::Fn, cx);
    let output = output_of(&sig.output);
    match &sig.output {
        ReturnType::Type(_, ty) if check_no_self(ty, cx) => {}
        ret => check_output(ret, cx),
    }
    (cx_errors(cx) == before).then(|| FnStep {
        item: item.clone(),
        inputs,
        output,
        is_async: sig.asyncness.is_some(),
    })
}

fn check_signature(sig: &Signature, cx: &Ctxt) {
    // Lifetime parameters alone are reported where they are used (a
    // borrowed input or output), once.
    if sig.generics.type_params().next().is_some() || sig.generics.const_params().next().is_some() {
        cx.error_spanned(
            &sig.generics,
            "generic steps are not supported; give the step concrete types",
        );
    }
    if let Some(u) = &sig.unsafety {
        cx.error_spanned(
            u,
            "a step cannot be an `unsafe fn`: the graph calls it for you; make it safe, with an `unsafe` block inside",
        );
    }
    if let Some(v) = &sig.variadic {
        cx.error_spanned(v, "variadic functions cannot be steps");
    }
}

fn step_inputs<'a>(
    args: impl Iterator<Item = &'a FnArg>,
    sig: &Signature,
    place: Place,
    cx: &Ctxt,
) -> Vec<StepInput> {
    let inputs = typed_inputs(args, cx, place);
    if inputs.is_empty() {
        cx.error_spanned(
            &sig.ident,
            format!(
                "step `{}` takes no input: a step needs at least one, e.g. `fn {}(x: In) -> Out`",
                sig.ident, sig.ident
            ),
        );
    } else if inputs.len() > MAX_INPUTS {
        cx.error_spanned(
            &sig.inputs,
            format!("a step takes at most {MAX_INPUTS} inputs; group them in a struct"),
        );
    }
    inputs
}

/// Where a parameter list is: the messages differ.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// A function step's parameters.
    Fn,
    /// A model's `call`, after `self`.
    Call,
    /// A model's `new`, after its `ctx`.
    Ctor,
}

fn typed_inputs<'a>(
    args: impl Iterator<Item = &'a FnArg>,
    cx: &Ctxt,
    place: Place,
) -> Vec<StepInput> {
    let what = match place {
        Place::Ctor => "constructor argument",
        Place::Fn | Place::Call => "step input",
    };
    let mut out = Vec::new();
    for (i, arg) in args.enumerate() {
        let FnArg::Typed(t) = arg else { continue };
        match &*t.ty {
            _ if mentions_context(&t.ty) && !is_context(&t.ty) => cx.error_spanned(
                &t.ty,
                "take the replica's context by shared reference, `ctx: &ReplicaContext`, as `new`'s first argument",
            ),
            Type::Reference(_) if is_context(&t.ty) => cx.error_spanned(
                t,
                match place {
                    Place::Ctor => "`ctx: &ReplicaContext` must be the constructor's first argument: move it before the others",
                    Place::Call => "the replica's context goes to the constructor, not to `call`: take it as `new(ctx: &ReplicaContext, ..)`'s first argument and keep what `call` needs in the model",
                    Place::Fn => "a function step has no replica context: make it a model step, `#[step] impl Model { fn new(ctx: &ReplicaContext, ..) -> Self; fn call(&self, x: In) -> Out }`, and read the context in `new`",
                },
            ),
            // A `&'static` value is owned enough: `Clone + Send + 'static`.
            Type::Reference(r) if r.lifetime.as_ref().is_some_and(|l| l.ident == "static") => {}
            Type::Reference(r) => cx.error_spanned(
                r,
                match place {
                    Place::Ctor => format!(
                        "a constructor argument is cloned into each replica: take `{}` instead of a reference",
                        owned(&r.elem)
                    ),
                    _ => format!(
                        "a step input is an owned value passed between steps: take `{}` instead of a reference",
                        owned(&r.elem)
                    ),
                },
            ),
            Type::ImplTrait(it) => cx.error_spanned(it, format!("a {what} needs a concrete type, not `impl Trait`")),
            ty => {
                let _ = check_sized(ty, what, "take", cx)
                    || check_cfg(&t.attrs, cx)
                    || check_nested_impl_trait(ty, what, cx)
                    || (place == Place::Fn && check_no_self(ty, cx))
                    || check_owned(ty, what, cx)
                    || check_send(ty, what, cx);
            }
        }
        let name = match &*t.pat {
            Pat::Ident(p) if p.subpat.is_none() => p.ident.clone(),
            _ => Ident::new(&format!("input{i}"), Span::call_site()),
        };
        out.push(StepInput {
            name,
            ty: (*t.ty).clone(),
        });
    }
    out
}

fn output_of(ret: &ReturnType) -> Output {
    match ret {
        ReturnType::Default => Output {
            ty: syn::parse_quote!(()),
            error: None,
        },
        ReturnType::Type(_, ty) => match result_ok_type(ty) {
            Some(ok) => Output {
                ty: ok,
                error: Some(result_err_span(ty)),
            },
            None => Output {
                ty: (**ty).clone(),
                error: None,
            },
        },
    }
}

/// The span of `E` in `Result<T, E>`, else of the whole type.
fn result_err_span(ty: &Type) -> Span {
    let Type::Path(p) = ty else { return ty.span() };
    match p.path.segments.last().map(|s| &s.arguments) {
        Some(PathArguments::AngleBracketed(args)) if args.args.len() == 2 => args.args[1].span(),
        _ => ty.span(),
    }
}

/// `T` of a return type spelled `Result<T, E>` or `Result<T>` (any path
/// ending in `Result`): such steps are fallible.
pub(crate) fn result_ok_type(ty: &Type) -> Option<Type> {
    first_type_arg(ty, "Result", None)
}

/// `T` of a type spelled `Vec<T>` (any path ending in `Vec`).
pub(crate) fn vec_item(ty: &Type) -> Option<Type> {
    first_type_arg(ty, "Vec", Some(1))
}

/// The first type argument of a path type whose last segment is `name`
/// (with exactly `arity` arguments, if given).
fn first_type_arg(ty: &Type, name: &str, arity: Option<usize>) -> Option<Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    if last.ident != name || arity.is_some_and(|n| args.args.len() != n) {
        return None;
    }
    match args.args.first()? {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    }
}

/// The owned type to suggest for a borrowed `elem`: `String` for `str`,
/// `Vec<T>` for `[T]`, `PathBuf` for `Path`, ..., else `elem` itself.
pub(crate) fn owned(elem: &Type) -> String {
    let text = |t: &Type| type_text(t);
    match elem {
        Type::Slice(s) => format!("Vec<{}>", text(&s.elem)),
        Type::Path(p) if p.qself.is_none() && p.path.segments.len() == 1 => {
            match p.path.segments[0].ident.to_string().as_str() {
                "str" => "String".into(),
                "Path" => "PathBuf".into(),
                "OsStr" => "OsString".into(),
                "CStr" => "CString".into(),
                _ => text(elem),
            }
        }
        _ => text(elem),
    }
}

/// `ReplicaContext` taken some other way than `&ReplicaContext` (by value,
/// `&mut`): also a context parameter, for the fallback.
pub(crate) fn mentions_context(ty: &Type) -> bool {
    let path = match ty {
        Type::Reference(r) => &*r.elem,
        other => other,
    };
    matches!(path, Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "ReplicaContext"))
}

pub(crate) fn is_context(ty: &Type) -> bool {
    match ty {
        Type::Reference(r) if r.mutability.is_none() => match &*r.elem {
            Type::Path(p) => p
                .path
                .segments
                .last()
                .is_some_and(|s| s.ident == "ReplicaContext"),
            _ => false,
        },
        _ => false,
    }
}

fn cx_errors(cx: &Ctxt) -> usize {
    cx.len()
}

/// A type as a user would write it in a message (`Vec<Rc<i64>>`, not
/// `Vec < Rc < i64 > >` as tokens print).
pub(crate) fn type_text(ty: &dyn quote::ToTokens) -> String {
    ty.to_token_stream()
        .to_string()
        .replace(" :: ", "::")
        .replace(" < ", "<")
        .replace("< ", "<")
        .replace(" >", ">")
        .replace(" ,", ",")
        .replace("& ", "&")
        .replace("* const ", "*const ")
        .replace("* mut ", "*mut ")
        .replace(" (", "(")
}

/// `#[cfg(..)]` or `#[cfg_attr(..)]`: applied after the macro has read the
/// item, so what it guards cannot be judged here.
pub(crate) fn is_cfg(attr: &syn::Attribute) -> bool {
    if attr.path().is_ident("cfg") {
        return true;
    }
    if !attr.path().is_ident("cfg_attr") {
        return false;
    }
    // `cfg_attr(pred, attrs..)` removes nothing unless one of its
    // attributes is a `cfg` (or another `cfg_attr`, judged the same way);
    // `#[cfg_attr(test, allow(unused_mut))]` is only a lint setting.
    use syn::punctuated::Punctuated;
    let Ok(list) = attr.parse_args_with(Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated)
    else {
        return true;
    };
    list.iter()
        .skip(1)
        .any(|m| m.path().is_ident("cfg") || m.path().is_ident("cfg_attr"))
}

/// Replaces each invisible-group type with the type it holds.
struct Ungroup;

impl syn::visit_mut::VisitMut for Ungroup {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        while let Type::Group(g) = ty {
            *ty = (*g.elem).clone();
        }
        syn::visit_mut::visit_type_mut(self, ty);
    }
}
