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
use crate::check::{self, Batched};
use crate::ctxt::Ctxt;

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

/// `StepFn::wire` for a `remote` step: how its inputs and output cross to a
/// worker. Each type is checked by its own `wire_type::<T>()`, spanned on
/// the user's type, so a type that is not serde is one error at its tokens.
fn wire_fn(attr: &StepAttr, tys: &[&syn::Type], out_ty: &syn::Type) -> TokenStream {
    if !attr.remote {
        return TokenStream::new();
    }
    let p = quote!(::pipeline_core::__private);
    let check = |ty: &syn::Type| quote_spanned!(ty.span()=> #p::wire_type::<#ty>());
    let inputs = tys.iter().map(|ty| check(ty));
    let output = check(out_ty);
    quote! {
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
    let into = quote_spanned!(error_span=> ::pipeline_core::__private::IntoStepError::into_step_error(__e));
    quote! {
        match #result {
            ::core::result::Result::Ok(__v) => ::core::result::Result::Ok(__v),
            ::core::result::Result::Err(__e) => ::core::result::Result::Err(#into),
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

fn expand_fn(step: &FnStep, attr: &StepAttr, batched: Option<&Batched>) -> TokenStream {
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
            #p::StepNode<#marker, #edges>: ::core::clone::Clone,
        {
            fn clone(&self) -> Self {
                #name {
                    __node: ::core::clone::Clone::clone(&self.__node),
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

fn expand_model(step: &ModelStep, attr: &StepAttr, batched: Option<&Batched>) -> TokenStream {
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

struct BindParts<'a> {
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
fn bind_with_init(step: &ModelStep, b: &BindParts<'_>) -> TokenStream {
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

fn type_text(ty: &syn::Type) -> String {
    quote!(#ty)
        .to_string()
        .replace(" < ", "<")
        .replace("< ", "<")
        .replace(" >", ">")
        .replace(" ,", ",")
        .replace("& ", "&")
}

fn prepend(first: TokenStream, args: &[TokenStream]) -> Vec<TokenStream> {
    std::iter::once(first).chain(args.iter().cloned()).collect()
}
