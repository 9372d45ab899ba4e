//! Collects every error found while reading the input, so that all mistakes
//! are reported at once (after serde_derive's `internals/ctxt.rs`).
//!
//! A `Ctxt` must be consumed by [`Ctxt::check`]: dropping one unchecked
//! panics, so that no path through the derive can lose its errors.

use core::fmt::Display;
use std::thread;

use quote::ToTokens;

pub struct Ctxt {
    /// `None` once `check` has taken the errors.
    errors: Option<Vec<syn::Error>>,
}

impl Ctxt {
    pub fn new() -> Self {
        Ctxt {
            errors: Some(Vec::new()),
        }
    }

    /// An error spanning `tokens`.
    pub fn error_spanned_by<T: ToTokens, M: Display>(&mut self, tokens: T, message: M) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// An error at `span`.
    pub fn error_at<M: Display>(&mut self, span: proc_macro2::Span, message: M) {
        self.push(syn::Error::new(span, message));
    }

    /// A `syn` parse error.
    pub fn syn_error(&mut self, error: syn::Error) {
        self.push(error);
    }

    pub fn has_errors(&self) -> bool {
        self.errors
            .as_ref()
            .is_some_and(|errors| !errors.is_empty())
    }

    /// Consumes the context: all errors combined into one, if any.
    pub fn check(mut self) -> Result<(), syn::Error> {
        let mut errors = self.errors.take().into_iter().flatten();
        let Some(mut combined) = errors.next() else {
            return Ok(());
        };
        for error in errors {
            combined.combine(error);
        }
        Err(combined)
    }

    fn push(&mut self, error: syn::Error) {
        // `check` takes `self`, so the errors are always still here.
        if let Some(errors) = &mut self.errors {
            errors.push(error);
        }
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        if !thread::panicking() && self.errors.is_some() {
            panic!("forgot to check for errors");
        }
    }
}
