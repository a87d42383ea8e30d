//! Code generation. Generated code names everything by absolute path through
//! `::pipeline_core::__private` and prefixes its own names with `__`, so it
//! works whatever the user's module shadows (`Result`, `Ok`, `Vec`, ...).
//!
//! For `#[step] fn add(a: i64, b: i64) -> i64` it writes:
//! - `struct add<__I>`: the node type (holds the checked edges), in a
//!   module named for this expansion (`__step_add_<hash>`) and imported as
//!   `add`, so that a step defined twice is one error: the copies' impls are
//!   on two types, and only the names clash, at one span;
//! - `fn add<__A0, __A1>(a: __A0, b: __A1) -> add<__A0, __A1>` whose
//!   `Produces<i64>` bounds are the edge checks, reported at the argument;
//! - `impl add<Input<i64>, Input<i64>> { fn call(a, b) -> i64 { body } }`, so
//!   `add::call(1, 2)` runs the body directly;
//! - the hidden `StepFn` and `Upstream` impls.
//!
//! For `#[step] impl Model { fn new(..); fn call(&mut self, ..) }` it keeps
//! the impl, adds `Model::bind(init.., inputs..)` and the `StepFn` impl.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::Item;

use crate::ast::{self, Output, Step, StepInput};
use crate::attr::{self, StepAttr};
use crate::check::{self, Batched};
use crate::ctxt::Ctxt;

mod function;

use function::expand_fn;

mod model;

use model::expand_model;

pub(crate) fn step(args: TokenStream, item: TokenStream) -> TokenStream {
    let cx = Ctxt::default();
    let written = if args.is_empty() {
        "#[step]".to_string()
    } else {
        format!("#[step({args})]")
            .replace(" = ", "=")
            .replace('=', " = ")
            .replace(" ,", ",")
    };
    let mut attr = attr::parse(args, &cx);
    let mut item: Item = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(e) => {
            let mut out = e.to_compile_error();
            out.extend(item);
            return out;
        }
    };
    second_attributes(&mut item, &written, &cx);
    // Attribute mistakes still expand (with defaults for the bad keys), so
    // code that uses the step compiles and each mistake is one error; a
    // rejected item gets the fallback expansion, for the same reason.
    let mut out = match ast::parse(item, &written, &cx) {
        Ok(step) => match check::check(step, &mut attr, &cx) {
            Ok((Step::Fn(step), batched)) => expand_fn(&step, &attr, batched.as_ref()),
            Ok((Step::Model(step), batched)) => expand_model(&step, &attr, batched.as_ref()),
            Err(item) => crate::fallback::expand(*item, true),
        },
        Err(item) => crate::fallback::expand(*item, attr.batch.is_some()),
    };
    out.extend(cx.into_compile_errors());
    out
}

/// A second `#[step(..)]` on the same item (`#[step(mode = "actors")]
/// #[step(replicas = 2)]`) is one error, and is dropped so that the item
/// expands once.
fn second_attributes(item: &mut Item, written: &str, cx: &Ctxt) {
    let attrs = match item {
        Item::Fn(f) => &mut f.attrs,
        Item::Impl(i) => &mut i.attrs,
        _ => return,
    };
    attrs.retain(|a| {
        let is_step = a.path().segments.last().is_some_and(|s| s.ident == "step");
        if is_step {
            let args = match &a.meta {
                syn::Meta::List(l) => l.tokens.to_string(),
                _ => String::new(),
            };
            let merged = match (written.strip_suffix(")]"), args.is_empty()) {
                (Some(first), false) => format!("{first}, {args})]"),
                (None, false) => format!("#[step({args})]"),
                _ => written.to_string(),
            };
            cx.error_spanned(
                a,
                format!("one `#[step]` per item: put every key in one attribute, `{merged}`"),
            );
        }
        !is_step
    });
}

fn info(name: &str, attr: &StepAttr, kind: &str, is_async: bool) -> TokenStream {
    let mode = Ident::new(attr.mode.variant(), Span::call_site());
    let kind = Ident::new(kind, Span::call_site());
    let replicas = attr.replicas;
    let placement = Ident::new(attr.placement, Span::call_site());
    let remote = attr.remote;
    let autoscale = match attr.autoscale {
        None => quote!(::core::option::Option::None),
        Some(attr::Autoscale {
            min_replicas,
            max_replicas,
            target_ongoing_requests,
            upscale_delay_ms,
            downscale_delay_ms,
        }) => quote! {
            ::core::option::Option::Some(::pipeline_core::__private::AutoscalePolicy {
                min_replicas: #min_replicas,
                max_replicas: #max_replicas,
                target_ongoing_requests: #target_ongoing_requests,
                upscale_delay_ms: #upscale_delay_ms,
                downscale_delay_ms: #downscale_delay_ms,
            })
        },
    };
    quote! {
        ::pipeline_core::__private::StepInfo {
            name: #name,
            mode: ::pipeline_core::__private::Mode::#mode,
            replicas: #replicas,
            kind: ::pipeline_core::__private::StepKind::#kind,
            is_async: #is_async,
            placement: ::pipeline_core::__private::Placement::#placement,
            autoscale: #autoscale,
            remote: #remote,
        }
    }
}

/// `StepFn::pump`: `Some` when the step's output is an `ItemStream<T>` (a
/// stream step), found by autoref on the concrete output type.
fn pump_fn() -> TokenStream {
    let p = quote!(::pipeline_core::__private);
    quote! {
        fn pump() -> ::core::option::Option<#p::Pump<Self::Output>> {
            #[allow(unused_imports)]
            use #p::{PumpOfStream as _, PumpOfValue as _};
            (&&#p::Probe::<<Self as #p::StepFn>::Output>::new()).pump()
        }
    }
}

/// `StepFn::wire` for a `remote` step: how its inputs and output cross to a
/// worker. Each type is checked by its own `wire_type::<T>()`, spanned on
/// the user's type, so a type that is not serde is one error at its tokens.
/// Written with [`pump_fn`]'s `StepFn::pump`, which every step has.
fn wire_fn(attr: &StepAttr, tys: &[&syn::Type], out_ty: &syn::Type) -> TokenStream {
    let pump = pump_fn();
    if !attr.remote {
        return pump;
    }
    let p = quote!(::pipeline_core::__private);
    let check = |ty: &syn::Type| quote_spanned!(ty.span()=> #p::wire_type::<#ty>());
    let inputs = tys.iter().map(|ty| check(ty));
    let output = check(out_ty);
    quote! {
        #pump
        fn wire() -> ::core::option::Option<#p::Wire<Self::Inputs, Self::Output>> {
            ::core::option::Option::Some(
                #p::Wire::new((#(#inputs,)*), #output).defined_in(::core::concat!(
                    ::core::env!("CARGO_PKG_NAME"),
                    " ",
                    ::core::env!("CARGO_PKG_VERSION")
                )),
            )
        }
    }
}

/// `(T0, T1, ..)`, spanned on `T0`: an input type that is not `Send` is
/// reported at the user's signature.
fn inputs_tuple(tys: &[&syn::Type]) -> TokenStream {
    let span = tys.first().map_or_else(Span::call_site, |t| t.span());
    quote_spanned!(span=> (#(#tys,)*))
}

fn generics(inputs: &[StepInput]) -> Vec<Ident> {
    (0..inputs.len())
        .map(|i| format_ident!("__A{}", i))
        .collect()
}

/// The constructor's bounds: `__Ak: Produces<Tk> + Upstream<Input = __I>`
/// (spanned on the parameter's type, so "required by this bound" points at
/// it): each edge produces the parameter's type, and all inputs of one step
/// read the same pipeline input `__I`. The pipeline input is a parameter of
/// its own rather than a projection (`<__A0 as Upstream>::Input`), so an
/// argument that is not a node at all (`add_one(5)`) is one error.
fn edge_bounds(gens: &[Ident], inputs: &[StepInput]) -> TokenStream {
    let p = quote!(::pipeline_core::__private);
    let bounds = gens.iter().zip(inputs).map(|(g, input)| {
        let ty = &input.ty;
        let g = Ident::new(&g.to_string(), ty.span());
        quote_spanned!(ty.span()=> #g: #p::Produces<#ty> + #p::Upstream<Input = __I>)
    });
    quote!(#(#bounds),*)
}

/// The type-erased input edges of a step reading pipeline input `input`.
fn edges_type(input: &TokenStream, inputs: &[StepInput]) -> TokenStream {
    let tys = inputs.iter().map(|i| &i.ty);
    quote!((#(::pipeline_core::__private::Node<#input, #tys>,)*))
}

/// `(edge::<T0, _>(a), edge::<T1, _>(b), ..)`: checks and erases each edge.
fn edges_value(names: &[&Ident], inputs: &[StepInput]) -> TokenStream {
    let tys = inputs.iter().map(|i| &i.ty);
    quote!((#(::pipeline_core::__private::edge::<#tys, _>(#names),)*))
}

/// The value of one run of the user's body on `args`, as
/// `Result<Output, BoxError>` (`.await`ed inside when the body is async).
fn run_body(
    callee: TokenStream,
    args: &[impl ToTokens],
    output: &Output,
    is_async: bool,
) -> TokenStream {
    let invoke = if is_async {
        quote!(#callee(#(#args),*).await)
    } else {
        quote!(#callee(#(#args),*))
    };
    if let Some(span) = output.error {
        step_error(invoke, span)
    } else {
        quote!(::core::result::Result::<_, ::pipeline_core::__private::BoxError>::Ok(#invoke))
    }
}

/// `result` (a `Result<T, E>`) with `E` boxed; an `E` that is not an error
/// type is reported once, at `E` (`error_span`).
fn step_error(result: TokenStream, error_span: Span) -> TokenStream {
    // The error's binding and its use are both spanned at `E`, so they
    // share its hygiene: a type from a `macro_rules!` fragment carries
    // that macro's, under which a binding of the macro's own would not be
    // seen.
    let e = Ident::new("__e", error_span);
    let into =
        quote_spanned!(error_span=> ::pipeline_core::__private::IntoStepError::into_step_error(#e));
    quote! {
        match #result {
            ::core::result::Result::Ok(__v) => ::core::result::Result::Ok(__v),
            ::core::result::Result::Err(#e) => ::core::result::Result::Err(#into),
        }
    }
}

/// The body of `StepFn::call`: a ready future for sync bodies (the body runs
/// when called, with no state machine), an `async move` block for async ones.
///
/// A single call's ready future goes through `ready_output::<Self>`, so its
/// `Send` comes from `StepFn::Output: Send` (a non-`Send` output is then
/// reported once, at the output type); a batch's is a plain `ready`.
fn call_body(
    callee: TokenStream,
    args: &[impl ToTokens],
    output: &Output,
    is_async: bool,
    batch: bool,
) -> TokenStream {
    let value = run_body(callee, args, output, is_async);
    if is_async {
        quote!(async move { #value })
    } else if batch {
        quote!(::pipeline_core::__private::ready(#value))
    } else {
        quote!(::pipeline_core::__private::ready_output::<Self>(#value))
    }
}

/// `StepFn::call` (and, for batched steps, `BATCH` and `call_batch`).
/// `run(args)` is a future of `Result<Out, BoxError>` running the user's body
/// on `args` (the body's own parameters, as token streams).
fn step_fn_calls(
    inputs: &[StepInput],
    out_ty: &syn::Type,
    batched: Option<&Batched>,
    run: impl Fn(&[TokenStream]) -> TokenStream,
) -> TokenStream {
    let p = quote!(::pipeline_core::__private);
    let tys: Vec<_> = inputs.iter().map(|i| &i.ty).collect();
    let vars: Vec<Ident> = (0..tys.len()).map(|i| format_ident!("__in{}", i)).collect();
    let future = |out: &syn::Type| quote!(impl #p::Future<Output = ::core::result::Result<#out, #p::BoxError>> + ::core::marker::Send + '_);
    let Some(b) = batched else {
        let body = run(&vars
            .iter()
            .map(ToTokens::to_token_stream)
            .collect::<Vec<_>>());
        let ret = future(out_ty);
        return quote! {
            fn call(__state: &Self::State, (#(#vars,)*): Self::Inputs) -> #ret {
                #body
            }
        };
    };
    let (max_size, wait_ms) = (b.policy.max_size, b.policy.wait_ms);
    let item = &b.input.ty;
    let body = run(&[quote!(__items)]);
    let ret_one = future(&b.out);
    let vec_out: syn::Type = syn::parse_quote!(::std::vec::Vec<#out_ty>);
    let ret_many = future(&vec_out);
    quote! {
        const BATCH: ::core::option::Option<#p::BatchPolicy> =
            ::core::option::Option::Some(#p::BatchPolicy { max_size: #max_size, wait_ms: #wait_ms });

        fn call(__state: &Self::State, __inputs: Self::Inputs) -> #ret_one {
            async move {
                let mut __outs = <Self as #p::StepFn>::call_batch(__state, ::std::vec![__inputs]).await?;
                match (__outs.pop(), __outs.is_empty()) {
                    (::core::option::Option::Some(__out), true) => ::core::result::Result::Ok(__out),
                    _ => ::core::result::Result::Err(#p::BoxError::from(
                        "a batched step must return one output per input",
                    )),
                }
            }
        }

        fn call_batch(__state: &Self::State, __batch: ::std::vec::Vec<Self::Inputs>) -> #ret_many {
            let __items: ::std::vec::Vec<#item> = ::core::iter::Iterator::collect(
                ::core::iter::Iterator::map(::core::iter::IntoIterator::into_iter(__batch), |(__x,)| __x),
            );
            #body
        }
    }
}
