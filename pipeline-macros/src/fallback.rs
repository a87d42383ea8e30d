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
use syn::{FnArg, ImplItem, Item, ItemFn, ItemImpl, Pat, ReturnType, Type};

use crate::ast;

/// The names of the methods a newcomer gives the one that runs the model,
/// in the order they are taken for it when there is no `call`.
pub(crate) const CALL_LIKE: &[&str] = &[
    "predict", "forward", "infer", "run", "process", "__call__", "handle", "apply",
];

/// The names a newcomer gives the constructor, taken for it when there is
/// no `new`.
pub(crate) const NEW_LIKE: &[&str] =
    &["__init__", "init", "create", "build", "load", "from_config"];

/// `batched`: the attribute asked for `batch(..)`, so the graph sees the
/// item types of the `Vec`s the body declares.
pub(crate) fn expand(item: Item, batched: bool) -> TokenStream {
    match item {
        Item::Fn(f) => function(f, batched),
        Item::Impl(i) => model(i, batched),
        other => other.into_token_stream(),
    }
}

fn function(item: ItemFn, batched: bool) -> TokenStream {
    let p = quote!(::pipeline_core::__private);
    // A method (`#[step]` on one fn of an impl block): only the item, since
    // no node type can live inside an impl.
    if let Some(FnArg::Receiver(_)) = item.sig.inputs.first() {
        return item.into_token_stream();
    }
    let vis = &item.vis;
    let name = &item.sig.ident;
    let inputs = typed_names(item.sig.inputs.iter().filter(|a| match a {
        FnArg::Typed(t) => !ast::mentions_context(&t.ty),
        FnArg::Receiver(_) => false,
    }));
    let out = output(&item.sig.output, &item.sig.generics, batched);
    let (gens, params, input) = constructor_params(&inputs);
    let ret = quote!(#p::Rejected<#input, #out>);
    // The body is still compiled (inside an anonymous const, out of the
    // constructor's way), so mistakes in it are reported as usual.
    // Not when the signature cannot stand on its own (a `self` outside an
    // impl, a returned reference with no lifetime): rustc would report it
    // again.
    let elided_output = match &item.sig.output {
        ReturnType::Type(_, ty) => elides(ty),
        ReturnType::Default => false,
    };
    let unsized_input = item.sig.inputs.iter().any(|a| match a {
        FnArg::Typed(t) => is_unsized(&t.ty),
        FnArg::Receiver(_) => false,
    });
    let body = if elided_output || unsized_input {
        TokenStream::new()
    } else {
        quote!(const _: () = { #[allow(dead_code, unused, clippy::all)] #item };)
    };
    quote! {
        #[allow(non_camel_case_types, dead_code)]
        #vis type #name<__I> = #p::Rejected<__I, #out>;

        #[allow(dead_code, unused_variables, clippy::too_many_arguments)]
        #vis fn #name<#(#gens),*>(#(#params),*) -> #ret {
            #p::Rejected::new()
        }

        #body
    }
}

fn model(item: ItemImpl, batched: bool) -> TokenStream {
    let p = quote!(::pipeline_core::__private);
    let method = |name: &str| {
        item.items.iter().find_map(|i| match i {
            ImplItem::Fn(f) if f.sig.ident == name => Some(f),
            _ => None,
        })
    };
    let has_bind = method("bind").is_some();
    if has_bind || !matches!(&*item.self_ty, Type::Path(_)) {
        return item.into_token_stream();
    }
    let ctor = method("new").or_else(|| NEW_LIKE.iter().find_map(|n| method(n)));
    let call = method("call").or_else(|| CALL_LIKE.iter().find_map(|n| method(n)));
    let init: Vec<(Ident, Type)> = ctor
        .map(|f| {
            typed_names(f.sig.inputs.iter())
                .into_iter()
                .filter(|(_, ty)| !ast::mentions_context(ty))
                .collect()
        })
        .unwrap_or_default();
    // With no input (or no `call`) to read, `bind` takes one node: what a
    // user who wrote `call(&mut self)` passes.
    let inputs = call
        .map(|f| {
            typed_names(f.sig.inputs.iter())
                .into_iter()
                .filter(|(_, ty)| !ast::mentions_context(ty))
                .collect::<Vec<_>>()
        })
        .filter(|inputs| !inputs.is_empty())
        .unwrap_or_else(|| vec![(format_ident!("input"), syn::parse_quote!(_))]);
    let out = call.map_or_else(
        || quote!(#p::Unknown),
        |f| output(&f.sig.output, &f.sig.generics, batched),
    );
    // A trait impl's methods take no `pub`; the model's `bind` is public
    // then, as a user who wrote it would expect.
    let vis = match ctor {
        Some(f) if item.trait_.is_none() => f.vis.to_token_stream(),
        _ => quote!(pub),
    };
    let (gens, params, input) = constructor_params(&inputs);
    let init_params = init.iter().map(|(n, ty)| quote!(#n: #ty));
    let (impl_generics, _, where_clause) = item.generics.split_for_impl();
    let self_ty = &item.self_ty;
    if item.trait_.is_some() && method("call").is_none() && ctor.is_none() {
        return item.into_token_stream();
    }
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
        // `step()`: its pipeline input is whatever the graph around it
        // reads.
        return (
            vec![quote!(__I: ::core::marker::Send + 'static)],
            Vec::new(),
            quote!(__I),
        );
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

/// Whether `ty` has a reference with an elided lifetime (`&T`,
/// `Option<&T>`): a return type rustc rejects on its own.
fn elides(ty: &Type) -> bool {
    struct Find(bool);
    impl Visit<'_> for Find {
        fn visit_type_reference(&mut self, r: &syn::TypeReference) {
            self.0 |= r.lifetime.as_ref().is_none_or(|l| l.ident == "_");
            syn::visit::visit_type_reference(self, r);
        }
        fn visit_type_bare_fn(&mut self, _: &syn::TypeBareFn) {}
        fn visit_parenthesized_generic_arguments(
            &mut self,
            _: &syn::ParenthesizedGenericArguments,
        ) {
        }
    }
    let mut find = Find(false);
    find.visit_type(ty);
    find.0
}

/// `str`, `[T]`, `dyn Trait` by value: a parameter rustc rejects on its own.
fn is_unsized(ty: &Type) -> bool {
    match ty {
        Type::Slice(_) | Type::TraitObject(_) => true,
        Type::Path(p) => p.qself.is_none() && p.path.is_ident("str"),
        _ => false,
    }
}

/// Each typed argument's name (or `__inN`) and type; a `#[cfg]`'d one is
/// left out (the call was most likely written without it).
fn typed_names<'a>(args: impl Iterator<Item = &'a FnArg>) -> Vec<(Ident, Type)> {
    args.filter_map(|a| match a {
        FnArg::Typed(t) if !t.attrs.iter().any(ast::is_cfg) => Some(t),
        _ => None,
    })
    .enumerate()
    .map(|(i, t)| {
        let name = match &*t.pat {
            Pat::Ident(p) if p.subpat.is_none() && p.ident != "self" => p.ident.clone(),
            _ => Ident::new(&format!("__in{i}"), Span::call_site()),
        };
        (name, (*t.ty).clone())
    })
    .collect()
}

/// The declared output (the `T` of `Result<T, E>`; for a batched step the
/// item of its `Vec`), repaired where the mistake has an obvious intent (a
/// borrowed `&str` is the `String` the step should return, an
/// `impl Future<Output = T>` is `T`), when it can stand outside the item;
/// else `Unknown`.
fn output(ret: &ReturnType, generics: &syn::Generics, batched: bool) -> TokenStream {
    let ty = match ret {
        ReturnType::Default => return quote!(()),
        ReturnType::Type(_, ty) => ast::result_ok_type(ty).unwrap_or_else(|| (**ty).clone()),
    };
    let ty = repaired(ty);
    let ty = match batched {
        true => match ast::vec_item(&ty) {
            Some(item) => item,
            None => return quote!(::pipeline_core::__private::Unknown),
        },
        false => ty,
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

/// What a rejected output type was meant to be.
fn repaired(ty: Type) -> Type {
    match ty {
        Type::Reference(r) if r.lifetime.as_ref().is_none_or(|l| l.ident != "static") => {
            syn::parse_str(&ast::owned(&r.elem)).unwrap_or(Type::Reference(r))
        }
        Type::ImplTrait(it) => match stream_item(&it) {
            Some(item) => syn::parse_quote!(::pipeline_core::ItemStream<#item>),
            None => future_output(&it).unwrap_or(Type::ImplTrait(it)),
        },
        Type::Path(p)
            if p.path
                .segments
                .last()
                .is_some_and(|s| s.ident.to_string().ends_with("Guard")) =>
        {
            match p.path.segments.last().map(|s| &s.arguments) {
                Some(syn::PathArguments::AngleBracketed(args)) => args
                    .args
                    .iter()
                    .find_map(|a| match a {
                        syn::GenericArgument::Type(t) => Some(t.clone()),
                        _ => None,
                    })
                    .unwrap_or(Type::Path(p)),
                _ => Type::Path(p),
            }
        }
        ty => ty,
    }
}

/// `T` of `impl Future<Output = T>`.
pub(crate) fn future_output(it: &syn::TypeImplTrait) -> Option<Type> {
    bound_assoc(it, &["Future"], "Output")
}

/// `T` of `impl Iterator<Item = T>`, `impl IntoIterator<Item = T>` or
/// `impl Stream<Item = T>`, the `T` of `Result<T, E>` items: what a stream
/// step's items were meant to be.
pub(crate) fn stream_item(it: &syn::TypeImplTrait) -> Option<Type> {
    let item = bound_assoc(it, &["Iterator", "IntoIterator", "Stream"], "Item")?;
    Some(ast::result_ok_type(&item).unwrap_or(item))
}

/// The associated type `assoc` of the first bound naming one of `traits`.
fn bound_assoc(it: &syn::TypeImplTrait, traits: &[&str], assoc: &str) -> Option<Type> {
    it.bounds.iter().find_map(|b| match b {
        syn::TypeParamBound::Trait(t) => {
            let last = t.path.segments.last()?;
            if !traits.iter().any(|name| last.ident == name) {
                return None;
            }
            match &last.arguments {
                syn::PathArguments::AngleBracketed(args) => {
                    args.args.iter().find_map(|a| match a {
                        syn::GenericArgument::AssocType(at) if at.ident == assoc => {
                            Some(at.ty.clone())
                        }
                        _ => None,
                    })
                }
                _ => None,
            }
        }
        _ => None,
    })
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
