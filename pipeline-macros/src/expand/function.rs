//! A function step's expansion: the node type `name<In>`, the constructor
//! `name(..)`, the body as `name::call`, the `StepFn` impl on `name<()>`.

use proc_macro2::{Ident, TokenStream};
use quote::{quote, ToTokens};
use syn::ext::IdentExt;

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
    // `r#match` is the step `match`.
    let name_str = name.unraw().to_string();
    // The graph's view: a batched step's item types.
    let (inputs, out_ty) = match batched {
        Some(b) => (std::slice::from_ref(&b.input), &b.out),
        None => (&step.inputs[..], &step.output.ty),
    };
    let gens = generics(inputs);
    let tys: Vec<_> = inputs.iter().map(|i| &i.ty).collect();
    let args: Vec<_> = inputs.iter().map(|i| &i.name).collect();
    // The node type `name<PipelineInput>` lives in a module of its own,
    // named for this expansion, and is imported under the step's name; the
    // impls below name it by that module's path. A step defined twice is
    // then one error (the import and the constructor clash, at the step's
    // name, reported once), not one per generated impl: each copy's impls
    // are on its own type. `name<()>` carries the body (`name::call`) and
    // the StepFn impl.
    let module = node_module(step);
    let struct_vis = inner_vis(vis);
    let node = quote!(#module::#name);
    let marker = quote!(#node<()>);
    // The import's name is spanned where the constructor's item is (the
    // attribute), so that a second definition of the step clashes in both
    // namespaces at one span, which rustc reports once.
    let mut import = name.clone();
    import.set_span(proc_macro2::Span::call_site());
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
    // parameter has the name: an item of the block would hide the
    // parameter). It is a fn item of the block (not a `let`), so that items
    // nested in the body (a helper `fn`) see it too.
    let shadows = sig.inputs.iter().any(|a| match a {
        syn::FnArg::Typed(t) => matches!(&*t.pat, syn::Pat::Ident(p) if p.ident == *name),
        syn::FnArg::Receiver(_) => false,
    });
    let arg_tys: Vec<_> = sig
        .inputs
        .iter()
        .filter_map(|a| match a {
            syn::FnArg::Typed(t) => Some(&t.ty),
            syn::FnArg::Receiver(_) => None,
        })
        .collect();
    let shim_args: Vec<_> = (0..arg_tys.len())
        .map(|i| quote::format_ident!("__arg{}", i))
        .collect();
    let (asyncness, output, stmts) = (&sig.asyncness, &sig.output, &block.stmts);
    let answer = match sig.asyncness {
        Some(_) => quote!(<#marker>::call(#(#shim_args),*).await),
        None => quote!(<#marker>::call(#(#shim_args),*)),
    };
    let block = if shadows {
        quote!(#block)
    } else {
        quote!({
            #[allow(dead_code, deprecated, clippy::too_many_arguments)]
            #asyncness fn #name(#(#shim_args: #arg_tys),*) #output {
                #answer
            }
            #(#stmts)*
        })
    };
    // The constructor has the step's attributes too, but not its body: a
    // lint expectation (`#[expect(unused_variables)]`) is about the body,
    // fulfilled in `call`, and only allowed here.
    let ctor_attrs: Vec<syn::Attribute> = attrs
        .iter()
        .map(|a| {
            let mut a = a.clone();
            if let syn::Meta::List(list) = &mut a.meta {
                if list.path.is_ident("expect") {
                    list.path = syn::parse_quote!(allow);
                }
            }
            a
        })
        .collect();
    let struct_doc = format!(
        "The node type of the `{name_str}` step on a pipeline whose input is `__I`. \
         `{name_str}(..)` on upstream nodes makes one; `{name_str}::call(..)` runs the step's body directly."
    );

    quote! {
        #[doc(hidden)]
        #[allow(non_snake_case)]
        mod #module {
            #[doc = #struct_doc]
            #[allow(non_camel_case_types, unreachable_pub)]
            #[must_use = "a step node does nothing until its graph is deployed"]
            #struct_vis struct #name<__I> {
                #[doc(hidden)]
                pub __node: #p::StepNode<#name<()>, <#name<()> as #p::StepEdges<__I>>::Edges>,
            }
        }

        #[allow(unused_imports)]
        #vis use #module::#import;

        #[automatically_derived]
        #[allow(deprecated, unused_qualifications)]
        impl<__I> #p::StepEdges<__I> for #marker {
            type Edges = #edges;
        }

        #[allow(clippy::too_many_arguments, unused_qualifications)]
        #(#ctor_attrs)*
        #vis fn #name<__I, #(#gens),*>(#(#args: #gens),*) -> #node<__I>
        where #bounds
        {
            #node {
                __node: #p::StepNode::new((), #edges_value),
            }
        }

        #[allow(unused_qualifications)]
        impl #marker {
            #(#attrs)*
            #[allow(clippy::too_many_arguments)]
            #vis #call_sig #block
        }

        #[automatically_derived]
        #[allow(deprecated, unused_qualifications)]
        impl<__I> #node<__I> {
            /// Names this node in graphs, metrics, errors and deploy
            /// options (see `pipeline_core::StepNode::named`).
            #vis fn named(self, name: &str) -> Self {
                #node {
                    __node: self.__node.named(name),
                }
            }
        }

        /// Shares the node, as `.shared()` does: the step runs once per call
        /// and each clone's consumer gets a clone of its output.
        #[automatically_derived]
        #[allow(deprecated, unused_qualifications)]
        impl<__I> ::core::clone::Clone for #node<__I>
        where
            #p::Output<#out_ty, __I>: #p::IsClone<#out_ty>,
        {
            fn clone(&self) -> Self {
                #node {
                    __node: self.__node.share(
                        <#p::Output<#out_ty, __I> as #p::IsClone<#out_ty>>::clone_fn(),
                    ),
                }
            }
        }

        #[automatically_derived]
        #[allow(deprecated, unused_qualifications)]
        impl<__I> ::core::fmt::Debug for #node<__I> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                ::core::fmt::Formatter::write_str(f, #name_str)
            }
        }

        #[automatically_derived]
        #[allow(deprecated, unused_qualifications)]
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
        #[allow(deprecated, unused_qualifications)]
        impl<__I: ::core::marker::Send + 'static> #p::Upstream for #node<__I> {
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
        #[allow(deprecated, unused_qualifications)]
        #[diagnostic::do_not_recommend]
        impl<__I> ::pipeline_core::RouteOn for #node<__I>
        where
            Self: #p::Upstream,
        {
            type Node = Self;
            fn node(self) -> Self {
                self
            }
        }

        #[automatically_derived]
        #[allow(deprecated, unused_qualifications)]
        impl<__I: ::core::marker::Send + 'static> #p::Produces<#out_ty> for #node<__I> {
            #[inline(always)]
            fn cast(output: #out_ty) -> #out_ty {
                output
            }
        }
    }
}

/// The module holding a function step's node type: `__step_<name>_<hash>`,
/// the hash of the item and where it is, so that two copies of one step
/// get two modules.
fn node_module(step: &FnStep) -> Ident {
    use std::hash::{Hash, Hasher};
    let name = &step.item.sig.ident;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    step.item.to_token_stream().to_string().hash(&mut hasher);
    format!("{:?}", name.span()).hash(&mut hasher);
    Ident::new(
        &format!("__step_{}_{:016x}", name.unraw(), hasher.finish()),
        name.span(),
    )
}

/// The step's visibility, said from inside the node type's module: the
/// node type is exactly as visible as the step (no more, or a private
/// input type would leak through the step contract's types).
fn inner_vis(vis: &syn::Visibility) -> TokenStream {
    match vis {
        syn::Visibility::Inherited => quote!(pub(super)),
        syn::Visibility::Public(_) => quote!(pub),
        syn::Visibility::Restricted(r) => {
            let path = &r.path;
            let first = path.segments.first().map(|s| s.ident.to_string());
            match first.as_deref() {
                Some("crate") => quote!(pub(in #path)),
                Some("self") => {
                    let rest = path.segments.iter().skip(1);
                    quote!(pub(in super #(::#rest)*))
                }
                _ => quote!(pub(in super::#path)),
            }
        }
    }
}
