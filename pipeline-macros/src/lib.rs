//! The `#[step]` attribute. Use it through `pipeline_core::step`; its
//! documentation lives there.
//!
//! The work is split as serde and thiserror split theirs:
//! `attr` parses the attribute's keys, `ast` reads the item into this crate's
//! model of a step (checking it), `check` checks the two against each other,
//! `expand` writes the code and cannot fail. Every error is collected by
//! `ctxt` and reported at once, each on the user's tokens; a mistake in the
//! attribute still expands the step (defaults for the bad keys), and an item
//! `ast` rejects expands to `fallback`'s stand-in, so that code using the
//! step adds no errors of its own: one mistake, one error.
//!
//! | module | does |
//! | --- | --- |
//! | `attr/` | the attribute's keys (`batch`, `autoscale`, values) |
//! | `ast/` | the item: a function step, or a model's `new` and `call` (`model.rs`), their types (`types.rs`) |
//! | `check` | attribute against item (batching, `concurrent`) |
//! | `expand/` | code: shared pieces, `function.rs`, `model.rs` |
//! | `fallback` | a rejected item's stand-in |
//! | `ctxt` | the collected errors |

mod ast;
mod attr;
mod check;
mod ctxt;
mod expand;
mod fallback;

use proc_macro::TokenStream;

/// Turns a function or a model type's `impl` block into a typed pipeline
/// step. See `pipeline_core::step` for the full documentation.
#[proc_macro_attribute]
pub fn step(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::step(args.into(), item.into()).into()
}
