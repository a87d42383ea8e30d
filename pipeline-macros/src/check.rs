//! The checks between the model of a step (`ast`) and the attribute
//! (`attr`) that need both, as serde_derive's `check` stage: after it,
//! generation cannot fail. Each problem is reported once and resolved to
//! what keeps the expansion closest to what the user declared, so that code
//! using the step adds no errors.

use quote::ToTokens;
use syn::Item;

use crate::ast::{self, Output, Step, StepInput};
use crate::attr::{self, StepAttr};
use crate::ctxt::Ctxt;

/// A batched step: its body takes `Vec<item>` and returns `Vec<out>`; the
/// graph sees `item -> out`.
pub(crate) struct Batched {
    pub(crate) input: StepInput,
    pub(crate) out: syn::Type,
    pub(crate) policy: attr::Batch,
}

/// Checks `step` against `attr`, dropping the keys that do not apply (each
/// reported), and resolves `batch(..)` to the item types. A batched step
/// whose signature is not `Vec` in and out is reported and handed back as
/// an item for the fallback expansion (its graph then sees item types).
pub(crate) fn check(
    step: Step,
    attr: &mut StepAttr,
    cx: &Ctxt,
) -> Result<(Step, Option<Batched>), Box<Item>> {
    let batched = match &step {
        Step::Fn(f) => {
            if let Some(span) = attr.concurrent.take() {
                cx.push(syn::Error::new(
                    span,
                    "`concurrent` is for model steps: a function step's calls already run at once",
                ));
            }
            attr.batch
                .map(|b| batched(&f.item.sig, &f.inputs, &f.output, b, cx))
        }
        Step::Model(m) => {
            if let Some(span) = attr.concurrent {
                if attr.mode == attr::Mode::Actors {
                    attr.concurrent = None;
                    cx.push(syn::Error::new(
                        span,
                        "`concurrent` applies to `mode = \"tasks\"` (and local) model steps: an actor replica serves its calls one at a time",
                    ));
                } else if let Some(receiver) = m.call.mut_receiver {
                    attr.concurrent = None;
                    cx.push(syn::Error::new(
                        receiver,
                        "a `concurrent` step's calls share one model: `call` must take `&self`, not `&mut self`",
                    ));
                }
            }
            attr.batch
                .map(|b| batched(&m.call_sig, &m.call.inputs, &m.call.output, b, cx))
        }
    };
    match batched {
        None => Ok((step, None)),
        Some(Some(b)) => Ok((step, Some(b))),
        Some(None) => Err(Box::new(match step {
            Step::Fn(f) => Item::Fn(f.item),
            Step::Model(m) => Item::Impl(m.item),
        })),
    }
}

/// Checks the signature of a `batch(..)` step; on a mismatch reports it
/// (`None`).
fn batched(
    sig: &syn::Signature,
    inputs: &[StepInput],
    output: &Output,
    policy: attr::Batch,
    cx: &Ctxt,
) -> Option<Batched> {
    let item = match inputs {
        [only] => ast::vec_item(&only.ty).map(|ty| StepInput {
            name: only.name.clone(),
            ty,
        }),
        _ => None,
    };
    let out = ast::vec_item(&output.ty);
    match (item, out) {
        (Some(input), Some(out)) => Some(Batched { input, out, policy }),
        (item, _) => {
            let culprit = match item {
                Some(_) => sig.output.to_token_stream(),
                None => sig.inputs.to_token_stream(),
            };
            cx.error_spanned(
                culprit,
                "a batched step takes one `Vec<In>` and returns `Vec<Out>` (or `Result<Vec<Out>, E>`), \
                 one output per input; the graph then sees `In -> Out`",
            );
            None
        }
    }
}
