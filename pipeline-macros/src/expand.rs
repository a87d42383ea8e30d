//! Code generation. Generated code names everything by absolute path through
//! `::pipeline_core::__private` and prefixes its own names with `__`, so it
//! works whatever the user's module shadows (`Result`, `Ok`, `Vec`, ...).
//!
//! For `#[step] fn add(a: i64, b: i64) -> i64` it writes:
//! - `struct add<__A0, __A1>`: the node type (holds the checked edges);
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

use crate::ast::{self, FnStep, ModelStep, Output, Step, StepInput};
use crate::attr::{self, StepAttr};
use crate::ctxt::Ctxt;

pub(crate) fn step(args: TokenStream, item: TokenStream) -> TokenStream {
    let cx = Ctxt::default();
    let attr = attr::parse(args, &cx);
    let item: Item = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(e) => {
            let mut out = e.to_compile_error();
            out.extend(item);
            return out;
        }
    };
    // Attribute mistakes still expand (with defaults for the bad keys), so
    // code that uses the step compiles and each mistake is one error.
    let mut out = match ast::parse(item, &cx) {
        Ok(Step::Fn(step)) => expand_fn(&step, &attr),
        Ok(Step::Model(step)) => expand_model(&step, &attr),
        Err(item) => item.into_token_stream(),
    };
    out.extend(cx.into_compile_errors());
    out
}

fn info(name: &str, attr: &StepAttr, kind: &str, is_async: bool) -> TokenStream {
    let mode = Ident::new(attr.mode.variant(), Span::call_site());
    let kind = Ident::new(kind, Span::call_site());
    let replicas = attr.replicas;
    let placement = Ident::new(attr.placement, Span::call_site());
    quote! {
        ::pipeline_core::__private::StepInfo {
            name: #name,
            mode: ::pipeline_core::__private::Mode::#mode,
            replicas: #replicas,
            kind: ::pipeline_core::__private::StepKind::#kind,
            is_async: #is_async,
            placement: ::pipeline_core::__private::Placement::#placement,
        }
    }
}

fn generics(inputs: &[StepInput]) -> Vec<Ident> {
    (0..inputs.len())
        .map(|i| format_ident!("__A{}", i))
        .collect()
}

/// The constructor's bounds: `__A0: Produces<T0>` (spanned on the parameter's
/// type, so "required by this bound" points at it) and, for the other
/// inputs, `Produces<Ti> + Upstream<Input = <__A0 as Upstream>::Input>` (all
/// inputs of one step read the same pipeline input).
fn edge_bounds(gens: &[Ident], inputs: &[StepInput]) -> TokenStream {
    let p = quote!(::pipeline_core::__private);
    let bounds = gens.iter().zip(inputs).enumerate().map(|(i, (g, input))| {
        let ty = &input.ty;
        let g = Ident::new(&g.to_string(), ty.span());
        let same_input =
            (i > 0).then(|| quote!(+ #p::Upstream<Input = <__A0 as #p::Upstream>::Input>));
        quote_spanned!(ty.span()=> #g: #p::Produces<#ty> #same_input)
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
    if output.fallible {
        quote!(::core::result::Result::map_err(#invoke, ::core::convert::Into::<::pipeline_core::__private::BoxError>::into))
    } else {
        quote!(::core::result::Result::<_, ::pipeline_core::__private::BoxError>::Ok(#invoke))
    }
}

/// The body of `StepFn::call`: a ready future for sync bodies (the body runs
/// when called, with no state machine), an `async move` block for async ones.
fn call_body(
    callee: TokenStream,
    args: &[impl ToTokens],
    output: &Output,
    is_async: bool,
) -> TokenStream {
    let value = run_body(callee, args, output, is_async);
    if is_async {
        quote!(async move { #value })
    } else {
        quote!(::pipeline_core::__private::ready(#value))
    }
}

fn expand_fn(step: &FnStep, attr: &StepAttr) -> TokenStream {
    let syn::ItemFn {
        attrs,
        vis,
        sig,
        block,
        ..
    } = &step.item;
    let p = quote!(::pipeline_core::__private);
    let name = &sig.ident;
    let name_str = name.to_string();
    let gens = generics(&step.inputs);
    let tys: Vec<_> = step.inputs.iter().map(|i| &i.ty).collect();
    let args: Vec<_> = step.inputs.iter().map(|i| &i.name).collect();
    let vars: Vec<_> = (0..tys.len()).map(|i| format_ident!("__in{}", i)).collect();
    let out_ty = &step.output.ty;
    // `name<()>` carries the body (`name::call`) and the StepFn impl; nodes
    // are `name<PipelineInput>`.
    let marker = quote!(#name<()>);
    let edges = edges_type(&quote!(__I), &step.inputs);
    let edges_value = edges_value(&args, &step.inputs);
    let bounds = edge_bounds(&gens, &step.inputs);
    let info = info(&name_str, attr, "Function", step.is_async);
    let body = call_body(quote!(<#marker>::call), &vars, &step.output, step.is_async);
    let mut call_sig = sig.clone();
    call_sig.ident = Ident::new("call", sig.ident.span());
    let struct_doc = format!(
        "The node type of the `{name_str}` step on a pipeline whose input is `__I`. \
         `{name_str}(..)` on upstream nodes makes one; `{name_str}::call(..)` runs the step's body directly."
    );

    quote! {
        #[doc = #struct_doc]
        #[allow(non_camel_case_types)]
        #[must_use = "a step node does nothing until its graph is deployed"]
        #vis struct #name<__I> {
            __node: #p::StepNode<#marker, #edges>,
        }

        #(#attrs)*
        #[allow(clippy::too_many_arguments)]
        #vis fn #name<#(#gens),*>(#(#args: #gens),*) -> #name<<__A0 as #p::Upstream>::Input>
        where #bounds
        {
            #name {
                __node: #p::StepNode::new((), #edges_value),
            }
        }

        impl #marker {
            #(#attrs)*
            #[allow(clippy::too_many_arguments)]
            #vis #call_sig #block
        }

        #[automatically_derived]
        impl<__I> ::core::fmt::Debug for #name<__I> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                ::core::fmt::Formatter::write_str(f, #name_str)
            }
        }

        #[automatically_derived]
        impl #p::StepFn for #marker {
            type Inputs = (#(#tys,)*);
            type Output = #out_ty;
            type State = ();
            type Init = ();
            const INFO: #p::StepInfo = #info;

            fn build(
                _: &#p::ReplicaContext,
                _: &(),
            ) -> ::core::result::Result<(), #p::BoxError> {
                ::core::result::Result::Ok(())
            }

            fn call(
                _: &(),
                (#(#vars,)*): (#(#tys,)*),
            ) -> impl #p::Future<
                Output = ::core::result::Result<#out_ty, #p::BoxError>,
            > + ::core::marker::Send + '_ {
                #body
            }
        }

        #[automatically_derived]
        impl<__I: ::core::marker::Send + 'static> #p::Upstream for #name<__I> {
            type Input = __I;
            type Output = #out_ty;
            type Eval = #p::StepEval<#marker, (#(#p::BoxedEval<#tys>,)*)>;

            fn lower(
                self,
                lowering: &mut #p::Lowering<'_>,
            ) -> ::core::result::Result<Self::Eval, #p::DeployError> {
                #p::Upstream::lower(self.__node, lowering)
            }

            fn describe(&self, graph: &mut #p::GraphBuilder) -> #p::NodeId {
                #p::Upstream::describe(&self.__node, graph)
            }
        }

        #[automatically_derived]
        impl<__I: ::core::marker::Send + 'static> #p::Produces<#out_ty> for #name<__I> {
            #[inline(always)]
            fn cast(output: #out_ty) -> #out_ty {
                output
            }
        }
    }
}

fn expand_model(step: &ModelStep, attr: &StepAttr) -> TokenStream {
    let item = &step.item;
    let self_ty = &step.self_ty;
    let call = &step.call;
    let ctor = &step.ctor;
    let gens = generics(&call.inputs);
    let tys: Vec<_> = call.inputs.iter().map(|i| &i.ty).collect();
    let init_tys: Vec<_> = ctor.args.iter().map(|i| &i.ty).collect();
    let init_names: Vec<_> = ctor.args.iter().map(|i| &i.name).collect();
    // Inputs keep their names unless a constructor argument has the same.
    let in_names: Vec<Ident> = call
        .inputs
        .iter()
        .map(|i| {
            if init_names.iter().any(|n| **n == i.name) {
                format_ident!("{}_node", i.name)
            } else {
                i.name.clone()
            }
        })
        .collect();
    let in_refs: Vec<&Ident> = in_names.iter().collect();
    let vars: Vec<_> = (0..tys.len()).map(|i| format_ident!("__in{}", i)).collect();
    let init_vars: Vec<_> = (0..init_tys.len())
        .map(|i| format_ident!("__init{}", i))
        .collect();
    let out_ty = &call.output.ty;
    let p = quote!(::pipeline_core::__private);
    let edges = edges_type(&quote!(<__A0 as #p::Upstream>::Input), &call.inputs);
    let edges_value = edges_value(&in_refs, &call.inputs);
    let bounds = edge_bounds(&gens, &call.inputs);
    let info = info(&step.name, attr, "Model", call.is_async);
    let ctor_vis = &ctor.vis;

    let ctx_arg = ctor.takes_context.then(|| quote!(__ctx,));
    let mut build = quote!(<#self_ty>::new(#ctx_arg #(#init_vars),*));
    if ctor.fallible {
        build = quote!(::core::result::Result::map_err(#build, ::core::convert::Into::<#p::BoxError>::into)?);
    }
    // One call at a time per replica, whether `call` takes `&self` or
    // `&mut self`: models are often `Send` but not `Sync` (a `tch::Tensor`
    // is), and a replica's lock is uncontended once replicas own their
    // state. Async bodies hold the lock across `.await`, so they get an
    // async mutex.
    let args = prepend(quote!(&mut *__guard), &vars);
    let (state_ty, wrap, body) = if call.is_async {
        let value = run_body(quote!(<#self_ty>::call), &args, &call.output, true);
        (
            quote!(#p::AsyncMutex<#self_ty>),
            quote!(#p::AsyncMutex::new(__model)),
            quote!(async move {
                let mut __guard = __state.lock().await;
                #value
            }),
        )
    } else {
        let value = call_body(quote!(<#self_ty>::call), &args, &call.output, false);
        (
            quote!(#p::StdMutex<#self_ty>),
            quote!(#p::StdMutex::new(__model)),
            quote!({
                let mut __guard = __state.lock().unwrap_or_else(#p::PoisonError::into_inner);
                #value
            }),
        )
    };
    let bind_doc = format!(
        "Makes a `{}` step node: the constructor's arguments (cloned into each replica), then the upstream nodes.",
        step.name
    );

    quote! {
        #item

        impl #self_ty {
            #[doc = #bind_doc]
            #[allow(clippy::too_many_arguments)]
            #ctor_vis fn bind<#(#gens),*>(
                #(#init_names: #init_tys,)*
                #(#in_names: #gens),*
            ) -> #p::StepNode<#self_ty, #edges>
            where #bounds
            {
                #p::StepNode::new((#(#init_names,)*), #edges_value)
            }
        }

        #[automatically_derived]
        impl #p::StepFn for #self_ty {
            type Inputs = (#(#tys,)*);
            type Output = #out_ty;
            type State = #state_ty;
            type Init = (#(#init_tys,)*);
            const INFO: #p::StepInfo = #info;

            fn build(
                __ctx: &#p::ReplicaContext,
                __init: &Self::Init,
            ) -> ::core::result::Result<Self::State, #p::BoxError> {
                let _ = __ctx;
                let (#(#init_vars,)*) = ::core::clone::Clone::clone(__init);
                let __model = #build;
                ::core::result::Result::Ok(#wrap)
            }

            fn call(
                __state: &Self::State,
                (#(#vars,)*): Self::Inputs,
            ) -> impl #p::Future<
                Output = ::core::result::Result<#out_ty, #p::BoxError>,
            > + ::core::marker::Send + '_ {
                #body
            }
        }

        #[automatically_derived]
        impl #p::StepOutput<#out_ty> for #self_ty {
            #[inline(always)]
            fn cast_output(output: #out_ty) -> #out_ty {
                output
            }
        }
    }
}

fn prepend(first: TokenStream, vars: &[Ident]) -> Vec<TokenStream> {
    std::iter::once(first)
        .chain(vars.iter().map(|v| v.to_token_stream()))
        .collect()
}
