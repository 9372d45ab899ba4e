//! `#[derive(StateEvent)]` for [ecst](https://docs.rs/ecst). Use it through
//! the `ecst` crate, which documents the attributes.
//!
//! The pipeline follows the model derive crates: `attr.rs` parses what the
//! user wrote into the borrowed IR of `ast.rs`, `valid.rs` checks that it
//! makes sense together (every mistake reported at once, via `ctxt.rs`), and
//! `expand.rs` generates code that reaches the runtime only through
//! `::ecst::__private`.

#![forbid(unsafe_code)]

mod ast;
mod attr;
mod ctxt;
mod expand;
mod history;
mod passthrough;
mod symbol;
mod valid;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Derives `ecst::StateEvent`; see the `ecst` crate for the attributes.
#[proc_macro_derive(StateEvent, attributes(state_event))]
pub fn derive_state_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    derive(&input).into()
}

fn derive(input: &DeriveInput) -> proc_macro2::TokenStream {
    let mut cx = ctxt::Ctxt::new();
    let parsed = ast::Input::from_syn(&mut cx, input);
    let history = parsed.as_ref().and_then(|p| valid::check(&mut cx, p));
    match (cx.check(), history) {
        (Ok(()), Some(history)) => expand::derive(&history),
        (Err(errors), _) => {
            let krate = parsed.as_ref().and_then(|p| p.attrs.krate.as_ref());
            let mut out = errors.into_compile_error();
            out.extend(expand::fallback(input, krate));
            out
        }
        (Ok(()), None) => expand::fallback(input, None),
    }
}
