//! A function step's expansion: the node type `name<In>`, the constructor
//! `name(..)`, the body as `name::call`, the `StepFn` impl on `name<()>`.

use proc_macro2::{Ident, TokenStream};
use quote::quote;

use super::{
    call_body, edge_bounds, edges_type, edges_value, generics, info, inputs_tuple, step_fn_calls,
    wire_fn,
};
use crate::ast::FnStep;
use crate::attr::StepAttr;
use crate::check::Batched;

pub(super) fn expand_fn(step: &FnStep, attr: &StepAttr, batched: Option<&Batched>) -> TokenStream {
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
    // The graph's view: a batched step's item types.
    let (inputs, out_ty) = match batched {
        Some(b) => (std::slice::from_ref(&b.input), &b.out),
        None => (&step.inputs[..], &step.output.ty),
    };
    let gens = generics(inputs);
    let tys: Vec<_> = inputs.iter().map(|i| &i.ty).collect();
    let args: Vec<_> = inputs.iter().map(|i| &i.name).collect();
    // `name<()>` carries the body (`name::call`) and the StepFn impl; nodes
    // are `name<PipelineInput>`.
    let marker = quote!(#name<()>);
    let edges = edges_type(&quote!(__I), inputs);
    let inputs_tuple = inputs_tuple(&tys);
    let edges_value = edges_value(&args, inputs);
    let bounds = edge_bounds(&gens, inputs);
    let info = info(&name_str, attr, "Function", step.is_async);
    let wire = wire_fn(attr, &tys, out_ty);
    let calls = step_fn_calls(inputs, out_ty, batched, |args| {
        call_body(
            quote!(<#marker>::call),
            args,
            &step.output,
            step.is_async,
            batched.is_some(),
        )
    });
    let mut call_sig = sig.clone();
    call_sig.ident = Ident::new("call", sig.ident.span());
    // Inside the body the step's name is the body itself, so a recursive
    // step (`fact(x - 1)`) calls itself rather than making a node (unless a
    // parameter has the name).
    let shadows = sig.inputs.iter().any(|a| match a {
        syn::FnArg::Typed(t) => matches!(&*t.pat, syn::Pat::Ident(p) if p.ident == *name),
        syn::FnArg::Receiver(_) => false,
    });
    let block = if shadows {
        quote!(#block)
    } else {
        let stmts = &block.stmts;
        quote!({
            #[allow(unused_variables, clippy::redundant_locals)]
            let #name = <#marker>::call;
            #(#stmts)*
        })
    };
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
        #vis fn #name<__I, #(#gens),*>(#(#args: #gens),*) -> #name<__I>
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
        impl<__I> #name<__I> {
            /// Names this node in graphs, metrics, errors and deploy
            /// options (see `pipeline_core::StepNode::named`).
            #vis fn named(self, name: &str) -> Self {
                #name {
                    __node: self.__node.named(name),
                }
            }
        }

        /// Shares the node, as `.shared()` does: the step runs once per call
        /// and each clone's consumer gets a clone of its output.
        #[automatically_derived]
        impl<__I> ::core::clone::Clone for #name<__I>
        where
            #p::Output<#out_ty, __I>: #p::IsClone<#out_ty>,
        {
            fn clone(&self) -> Self {
                #name {
                    __node: self.__node.share(
                        <#p::Output<#out_ty, __I> as #p::IsClone<#out_ty>>::clone_fn(),
                    ),
                }
            }
        }

        #[automatically_derived]
        impl<__I> ::core::fmt::Debug for #name<__I> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                ::core::fmt::Formatter::write_str(f, #name_str)
            }
        }

        #[automatically_derived]
        impl #p::StepFn for #marker {
            type Inputs = #inputs_tuple;
            type Output = #out_ty;
            type State = ();
            type Init = ();
            const INFO: #p::StepInfo = #info;
            #wire

            fn build(
                _: &#p::ReplicaContext,
                _: &(),
            ) -> ::core::result::Result<(), #p::BoxError> {
                ::core::result::Result::Ok(())
            }

            #calls
        }

        #[automatically_derived]
        impl<__I: ::core::marker::Send + 'static> #p::Upstream for #name<__I> {
            type Input = __I;
            type Output = #out_ty;
            type Eval = #p::StepNodeEval<#marker, (#(#p::BoxedEval<#tys>,)*)>;

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
