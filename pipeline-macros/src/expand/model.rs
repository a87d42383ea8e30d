//! A model step's expansion: the impl kept, `Model::bind(init.., nodes..)`,
//! the `StepFn` impl whose state is the model (behind a lock unless
//! `concurrent`).

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use super::{
    call_body, edge_bounds, edges_type, edges_value, generics, info, inputs_tuple, run_body,
    step_error, step_fn_calls, wire_fn,
};
use crate::ast::ModelStep;
use crate::attr::StepAttr;
use crate::check::Batched;

pub(super) fn expand_model(
    step: &ModelStep,
    attr: &StepAttr,
    batched: Option<&Batched>,
) -> TokenStream {
    let item = &step.item;
    let self_ty = &step.self_ty;
    let call = &step.call;
    let ctor = &step.ctor;
    // The graph's view: a batched step's item types.
    let (inputs, out_ty) = match batched {
        Some(b) => (std::slice::from_ref(&b.input), &b.out),
        None => (&call.inputs[..], &call.output.ty),
    };
    let gens = generics(inputs);
    let tys: Vec<_> = inputs.iter().map(|i| &i.ty).collect();
    let init_tys: Vec<_> = ctor.args.iter().map(|i| &i.ty).collect();
    let inputs_tuple = inputs_tuple(&tys);
    // Spanned on the first argument's type, so that an argument that is not
    // `Clone + Send + Sync` is reported in the user's `new`.
    let init_span = init_tys.first().map_or_else(Span::call_site, |t| t.span());
    let init_tuple = quote_spanned!(init_span=> (#(#init_tys,)*));
    let init_names: Vec<_> = ctor.args.iter().map(|i| &i.name).collect();
    // Inputs keep their names unless a constructor argument has the same.
    let in_names: Vec<Ident> = inputs
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
    let init_vars: Vec<_> = (0..init_tys.len())
        .map(|i| format_ident!("__init{}", i))
        .collect();
    let p = quote!(::pipeline_core::__private);
    let edges = edges_type(&quote!(__I), inputs);
    let edges_value = edges_value(&in_refs, inputs);
    let bounds = edge_bounds(&gens, inputs);
    let info = info(&step.name, attr, "Model", call.is_async);
    let wire = wire_fn(attr, &tys, out_ty);
    let ctor_vis = &ctor.vis;

    let ctx_arg = ctor.takes_context.then(|| quote!(__ctx,));
    let mut build = quote!(<#self_ty>::new(#ctx_arg #(#init_vars),*));
    if let Some(span) = ctor.error {
        let result = step_error(build, span);
        build = quote!(#result?);
    }
    // One call at a time per replica, whether `call` takes `&self` or
    // `&mut self`: models are often `Send` but not `Sync` (a `tch::Tensor`
    // is), and a replica's lock is uncontended once replicas own their
    // state. Async bodies hold the lock across `.await`, so they get an
    // async mutex.
    // `concurrent`: calls share the model, unlocked (it must be `Sync`).
    let concurrent = attr.concurrent.is_some();
    let (state_ty, wrap) = if let Some(span) = attr.concurrent {
        (quote_spanned!(span=> #self_ty), quote!(__model))
    } else if call.is_async {
        (
            quote_spanned!(self_ty.span()=> ::pipeline_core::__private::AsyncMutex<#self_ty>),
            quote!(#p::AsyncMutex::new(__model)),
        )
    } else {
        // Spanned on the model type: a model that is not `Send` (an `Rc`
        // field) is reported at `impl Model`.
        (
            quote_spanned!(self_ty.span()=> ::pipeline_core::__private::StdMutex<#self_ty>),
            quote!(#p::StdMutex::new(__model)),
        )
    };
    let calls = step_fn_calls(inputs, out_ty, batched, |args| {
        if concurrent {
            let args = prepend(quote!(__state), args);
            return if call.is_async {
                let value = run_body(quote!(<#self_ty>::call), &args, &call.output, true);
                quote!(async move { #value })
            } else {
                call_body(
                    quote!(<#self_ty>::call),
                    &args,
                    &call.output,
                    false,
                    batched.is_some(),
                )
            };
        }
        let args = prepend(quote!(&mut *__guard), args);
        if call.is_async {
            let value = run_body(quote!(<#self_ty>::call), &args, &call.output, true);
            quote!(async move {
                let mut __guard = __state.lock().await;
                #value
            })
        } else {
            let value = call_body(
                quote!(<#self_ty>::call),
                &args,
                &call.output,
                false,
                batched.is_some(),
            );
            quote!({
                let mut __guard = __state.lock().unwrap_or_else(#p::PoisonError::into_inner);
                #value
            })
        }
    });
    let bind_doc = format!(
        "Makes a `{}` step node: the constructor's arguments (cloned into each replica), then the upstream nodes.",
        step.name
    );

    // Constructor arguments keep their declared types, so literals and
    // `.into()` infer from them (`Model::bind("m.pt".into(), x)`).
    let bind = quote! {
        #[allow(deprecated, unused_qualifications)]
        impl #self_ty {
            #[doc = #bind_doc]
            #[allow(clippy::too_many_arguments)]
            #ctor_vis fn bind<__I, #(#gens),*>(
                #(#init_names: #init_tys,)*
                #(#in_refs: #gens),*
            ) -> #p::StepNode<#self_ty, #edges>
            where #bounds
            {
                #p::StepNode::new((#(#init_names,)*), #edges_value)
            }
        }
    };

    quote! {
        #item

        #bind

        #[automatically_derived]
        #[allow(deprecated, unused_qualifications)]
        impl #p::StepFn for #self_ty {
            type Inputs = #inputs_tuple;
            type Output = #out_ty;
            type State = #state_ty;
            type Init = #init_tuple;
            const INFO: #p::StepInfo = #info;
            #wire

            fn build(
                __ctx: &#p::ReplicaContext,
                __init: &Self::Init,
            ) -> ::core::result::Result<Self::State, #p::BoxError> {
                let _ = __ctx;
                let (#(#init_vars,)*) = #p::clone_init::<Self>(__init);
                let __model = #build;
                ::core::result::Result::Ok(#wrap)
            }

            #calls
        }

        #[automatically_derived]
        #[allow(deprecated, unused_qualifications)]
        impl #p::StepOutput<#out_ty> for #self_ty {
            #[inline(always)]
            fn cast_output(output: #out_ty) -> #out_ty {
                output
            }
        }
    }
}

pub(super) fn prepend(first: TokenStream, args: &[TokenStream]) -> Vec<TokenStream> {
    std::iter::once(first).chain(args.iter().cloned()).collect()
}
