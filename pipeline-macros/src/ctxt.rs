//! Collects errors so that all of them are reported at once (serde's
//! `Ctxt`): parsing goes on after a mistake, and the expansion carries every
//! message, each spanned on the offending tokens.

use std::cell::RefCell;

use proc_macro2::TokenStream;
use quote::ToTokens;

#[derive(Default)]
pub(crate) struct Ctxt {
    errors: RefCell<Vec<syn::Error>>,
}

impl Ctxt {
    pub(crate) fn error_spanned(&self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens.into_token_stream(), message));
    }

    pub(crate) fn push(&self, error: syn::Error) {
        self.errors.borrow_mut().push(error);
    }

    /// The collected errors as `compile_error!`s.
    pub(crate) fn into_compile_errors(self) -> TokenStream {
        self.errors
            .into_inner()
            .into_iter()
            .map(|e| e.to_compile_error())
            .collect()
    }
}

impl Ctxt {
    pub(crate) fn len(&self) -> usize {
        self.errors.borrow().len()
    }

    /// The collected messages, for unit tests of the parsers.
    #[cfg(test)]
    pub(crate) fn into_messages(self) -> Vec<String> {
        self.errors
            .into_inner()
            .iter()
            .map(ToString::to_string)
            .collect()
    }
}
