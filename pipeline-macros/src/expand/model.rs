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
use crate::ast::{ModelStep, StepInput};
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

    let bind = if init_tys.is_empty() {
        quote! {
            impl #self_ty {
                #[doc = #bind_doc]
                #[allow(clippy::too_many_arguments)]
                #ctor_vis fn bind<__I, #(#gens),*>(
                    #(#in_names: #gens),*
                ) -> #p::StepNode<#self_ty, #edges>
                where #bounds
                {
                    #p::StepNode::new((), #edges_value)
                }
            }
        }
    } else {
        bind_with_init(
            step,
            &BindParts {
                doc: &bind_doc,
                vis: ctor_vis,
                init_names: &init_names,
                init_tys: &init_tys,
                in_names: &in_refs,
                inputs,
                gens: &gens,
                bounds: &bounds,
                edges: &edges,
                edges_value: &edges_value,
            },
        )
    };

    quote! {
        #item

        #bind

        #[automatically_derived]
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
        impl #p::StepOutput<#out_ty> for #self_ty {
            #[inline(always)]
            fn cast_output(output: #out_ty) -> #out_ty {
                output
            }
        }
    }
}

pub(super) struct BindParts<'a> {
    doc: &'a str,
    vis: &'a syn::Visibility,
    init_names: &'a [&'a Ident],
    init_tys: &'a [&'a syn::Type],
    in_names: &'a [&'a Ident],
    inputs: &'a [StepInput],
    gens: &'a [Ident],
    bounds: &'a TokenStream,
    edges: &'a TokenStream,
    edges_value: &'a TokenStream,
}

/// `Model::bind(init.., nodes..)` for a model with constructor arguments.
/// Its parameters are all generic and checked together, as one tuple,
/// through a trait of this model's: arguments in the wrong places (nodes
/// first, an init argument where a node goes) are then one error that says
/// what `bind` takes, and right ones infer as if the parameters were typed
/// (`Model::bind(3, x)` makes `3` an `i64` when `new` takes one). The
/// trait's second impl (for arguments that are never valid) keeps rustc from
/// reading the one real impl into the argument types, which would report a
/// swap as two mismatches.
pub(super) fn bind_with_init(step: &ModelStep, b: &BindParts<'_>) -> TokenStream {
    let p = quote!(::pipeline_core::__private);
    let self_ty = &step.self_ty;
    let name = &step.name;
    let bind_trait = format_ident!("__{}_bind", name);
    let never_trait = format_ident!("{}_bind_takes_init_args_first", name);
    let BindParts {
        doc,
        vis,
        init_names,
        init_tys,
        in_names,
        inputs,
        gens,
        bounds,
        edges,
        edges_value,
    } = b;
    let init_gens: Vec<Ident> = (0..init_tys.len())
        .map(|i| format_ident!("__B{}", i))
        .collect();
    let init_list = init_names
        .iter()
        .zip(init_tys.iter())
        .map(|(n, t)| format!("`{n}: {}`", type_text(t)))
        .collect::<Vec<_>>()
        .join(", ");
    let node_list = inputs
        .iter()
        .map(|i| format!("`{}`", type_text(&i.ty)))
        .collect::<Vec<_>>()
        .join(", ");
    let nodes = if inputs.len() == 1 {
        format!("a node producing {node_list}")
    } else {
        format!("nodes producing {node_list}")
    };
    let message = format!(
        "`{name}::bind` takes the constructor arguments first, then the input nodes: {init_list}, then {nodes}"
    );
    let label = "arguments out of place";
    let never_ty = format_ident!("__{}_bind_unused", name);
    let any: Vec<Ident> = (0..init_tys.len() + inputs.len())
        .map(|i| format_ident!("__X{}", i))
        .collect();
    let any_first = &any[0];
    let any_rest = &any[1..];
    quote! {
        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        #[diagnostic::on_unimplemented(message = #message, label = #label)]
        #vis trait #bind_trait<__I> {
            fn __bind(self) -> #p::StepNode<#self_ty, #edges>;
        }

        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        #[diagnostic::on_unimplemented(message = #message, label = #label)]
        #vis trait #never_trait {}

        // So that rustc does not call the trait unimplemented ("consider
        // adding one") when it reports arguments out of place.
        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        #vis enum #never_ty {}
        impl #never_trait for #never_ty {}

        #[allow(clippy::too_many_arguments)]
        impl<__I, #(#gens),*> #bind_trait<__I> for (#(#init_tys,)* #(#gens,)*)
        where #bounds
        {
            fn __bind(self) -> #p::StepNode<#self_ty, #edges> {
                let (#(#init_names,)* #(#in_names,)*) = self;
                #p::StepNode::new((#(#init_names,)*), #edges_value)
            }
        }

        impl<__I, #any_first: #never_trait, #(#any_rest),*> #bind_trait<__I> for (#(#any,)*) {
            fn __bind(self) -> #p::StepNode<#self_ty, #edges> {
                ::core::unreachable!()
            }
        }

        impl #self_ty {
            #[doc = #doc]
            #[allow(clippy::too_many_arguments)]
            #vis fn bind<__I, #(#init_gens,)* #(#gens),*>(
                #(#init_names: #init_gens,)*
                #(#in_names: #gens),*
            ) -> #p::StepNode<#self_ty, #edges>
            where (#(#init_gens,)* #(#gens,)*): #bind_trait<__I>
            {
                #bind_trait::__bind((#(#init_names,)* #(#in_names,)*))
            }
        }
    }
}

pub(super) fn type_text(ty: &syn::Type) -> String {
    quote!(#ty)
        .to_string()
        .replace(" < ", "<")
        .replace("< ", "<")
        .replace(" >", ">")
        .replace(" ,", ",")
        .replace("& ", "&")
}

pub(super) fn prepend(first: TokenStream, args: &[TokenStream]) -> Vec<TokenStream> {
    std::iter::once(first).chain(args.iter().cloned()).collect()
}
