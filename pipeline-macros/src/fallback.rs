//! What a rejected item expands to (thiserror's fallback expansion): the
//! item as written, plus a node constructor (a function step's
//! `name(..)`, a model's `Model::bind(..)`) that accepts any nodes and
//! returns a `Rejected` node fitting any edge. The macro's one error is then
//! the only one: code that uses the step adds none.
//!
//! Best effort and silent: this reads what it can from the item and never
//! reports anything itself.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, ToTokens};
use syn::visit::Visit;
use syn::{FnArg, ImplItem, ImplItemFn, Item, ItemFn, ItemImpl, Pat, ReturnType, Type};

use crate::ast;

/// The names of the methods a newcomer gives the one that runs the model,
/// in the order they are taken for it when there is no `call`.
pub(crate) const CALL_LIKE: &[&str] = &[
    "predict", "forward", "infer", "run", "process", "__call__", "handle", "apply",
];

pub(crate) fn expand(item: Item) -> TokenStream {
    match item {
        Item::Fn(f) => function(f),
        Item::Impl(i) => model(i),
        other => other.into_token_stream(),
    }
}

fn function(item: ItemFn) -> TokenStream {
    let p = quote!(::pipeline_core::__private);
    let vis = &item.vis;
    let name = &item.sig.ident;
    let inputs = typed_names(item.sig.inputs.iter());
    let out = output(&item.sig.output, &item.sig.generics);
    let (gens, params, input) = constructor_params(&inputs);
    let ret = quote!(#p::Rejected<#input, #out>);
    // The body is still compiled (inside an anonymous const, out of the
    // constructor's way), so mistakes in it are reported as usual.
    // Not when the signature cannot stand on its own (a `self` outside an
    // impl, a returned reference with no lifetime): rustc would report it
    // again.
    let elided_output = match &item.sig.output {
        ReturnType::Type(_, ty) => matches!(&**ty, Type::Reference(r) if r.lifetime.is_none()),
        ReturnType::Default => false,
    };
    let body = match item.sig.inputs.first() {
        Some(FnArg::Receiver(_)) => TokenStream::new(),
        _ if elided_output => TokenStream::new(),
        _ => quote!(const _: () = { #[allow(dead_code, unused, clippy::all)] #item };),
    };
    quote! {
        #[allow(non_camel_case_types, dead_code)]
        #vis type #name<__I> = #p::Rejected<__I, #out>;

        #[allow(dead_code, clippy::too_many_arguments)]
        #vis fn #name<#(#gens),*>(#(#params),*) -> #ret {
            #p::Rejected::new()
        }

        #body
    }
}

fn model(item: ItemImpl) -> TokenStream {
    let p = quote!(::pipeline_core::__private);
    let method = |name: &str| {
        item.items.iter().find_map(|i| match i {
            ImplItem::Fn(f) if f.sig.ident == name => Some(f),
            _ => None,
        })
    };
    let has_bind = method("bind").is_some();
    if item.trait_.is_some() || has_bind || !matches!(&*item.self_ty, Type::Path(_)) {
        return item.into_token_stream();
    }
    let ctor = method("new");
    let call = method("call").or_else(|| CALL_LIKE.iter().find_map(|n| method(n)));
    let init: Vec<(Ident, Type)> = ctor
        .map(|f| {
            typed_names(f.sig.inputs.iter())
                .into_iter()
                .filter(|(_, ty)| !ast::is_context(ty))
                .collect()
        })
        .unwrap_or_default();
    // With no input (or no `call`) to read, `bind` takes one node: what a
    // user who wrote `call(&mut self)` passes.
    let inputs = call
        .map(|f| {
            typed_names(f.sig.inputs.iter())
                .into_iter()
                .filter(|(_, ty)| !ast::is_context(ty))
                .collect::<Vec<_>>()
        })
        .filter(|inputs| !inputs.is_empty())
        .unwrap_or_else(|| vec![(format_ident!("input"), syn::parse_quote!(_))]);
    let out = call.map_or_else(
        || quote!(#p::Unknown),
        |f| output(&f.sig.output, &f.sig.generics),
    );
    let vis = ctor.map_or_else(|| quote!(pub), |f: &ImplItemFn| f.vis.to_token_stream());
    let (gens, params, input) = constructor_params(&inputs);
    let init_params = init.iter().map(|(n, ty)| quote!(#n: #ty));
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    let self_ty = &item.self_ty;
    quote! {
        #item

        impl #impl_generics #self_ty #where_clause {
            #[allow(dead_code, clippy::too_many_arguments, unused_variables)]
            #vis fn bind<#(#gens),*>(#(#init_params,)* #(#params),*) -> #p::Rejected<#input, #out> {
                #p::Rejected::new()
            }
        }
    }
}

/// The constructor's generics, parameters and the pipeline input type of
/// the node it returns.
fn constructor_params(
    inputs: &[(Ident, Type)],
) -> (Vec<TokenStream>, Vec<TokenStream>, TokenStream) {
    let p = quote!(::pipeline_core::__private);
    if inputs.is_empty() {
        // `step()`: a node of no pipeline input (nothing can name one).
        return (Vec::new(), Vec::new(), quote!(#p::Unknown));
    }
    let gens = std::iter::once(quote!(__I: ::core::marker::Send + 'static))
        .chain((0..inputs.len()).map(|i| {
            let g = format_ident!("__A{}", i);
            quote!(#g: #p::Upstream<Input = __I>)
        }))
        .collect();
    let params = inputs
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let g = format_ident!("__A{}", i);
            quote!(#name: #g)
        })
        .collect();
    (gens, params, quote!(__I))
}

/// Each typed argument's name (or `__inN`) and type.
fn typed_names<'a>(args: impl Iterator<Item = &'a FnArg>) -> Vec<(Ident, Type)> {
    args.filter_map(|a| match a {
        FnArg::Typed(t) => Some(t),
        FnArg::Receiver(_) => None,
    })
    .enumerate()
    .map(|(i, t)| {
        let name = match &*t.pat {
            Pat::Ident(p) if p.subpat.is_none() && p.ident != "self" => {
                Ident::new(&p.ident.to_string(), p.ident.span())
            }
            _ => Ident::new(&format!("__in{i}"), Span::call_site()),
        };
        (name, (*t.ty).clone())
    })
    .collect()
}

/// The declared output (the `T` of `Result<T, E>`), when it can stand in a
/// type outside the item (and is `Send`, as far as the macro can tell); else
/// `Unknown`.
fn output(ret: &ReturnType, generics: &syn::Generics) -> TokenStream {
    let ty = match ret {
        ReturnType::Default => return quote!(()),
        ReturnType::Type(_, ty) => ast::result_ok_type(ty).unwrap_or_else(|| (**ty).clone()),
    };
    let params = generics.type_params().map(|t| t.ident.clone()).collect();
    let mut check = Portable(true, params);
    check.visit_type(&ty);
    if check.0 && ast::not_send(&ty).is_none() {
        ty.into_token_stream()
    } else {
        quote!(::pipeline_core::__private::Unknown)
    }
}

/// Whether a type means the same outside its item: no `impl Trait`, no
/// references (lifetimes), no `_`, no `Self`, none of the item's type
/// parameters.
struct Portable(bool, Vec<Ident>);

impl Visit<'_> for Portable {
    fn visit_type(&mut self, ty: &Type) {
        match ty {
            Type::ImplTrait(_) | Type::Reference(_) | Type::Infer(_) | Type::Macro(_) => {
                self.0 = false
            }
            Type::Path(p)
                if p.qself.is_none()
                    && p.path
                        .get_ident()
                        .is_some_and(|i| i == "Self" || self.1.contains(i)) =>
            {
                self.0 = false
            }
            _ => syn::visit::visit_type(self, ty),
        }
    }
    fn visit_lifetime(&mut self, _: &syn::Lifetime) {
        self.0 = false;
    }
}
