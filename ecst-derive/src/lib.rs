//! `#[derive(StateEvent)]` for [ecst](https://docs.rs/ecst). Use it through
//! the `ecst` crate, which documents the attributes.
//!
//! The pipeline follows the model derive crates: `attr.rs` parses what the
//! user wrote into the borrowed IR of `ast.rs`, `valid.rs` checks that it
//! makes sense together (every mistake reported at once, via `ctxt.rs`), and
//! `expand.rs` generates code that reaches the runtime only through
//! `::ecst::__private`.
//!
//! # What the older versions implement
//!
//! A generated older version (`CustomerV1`, `AddressV1`) is read and
//! described, never written: it derives serde's `Deserialize` and schemars'
//! `JsonSchema`, and nothing else unless the user lists more in
//! `#[state_event(derive(..))]` (`#[versioned(derive(..))]` for a nested
//! type), e.g. `derive(Serialize, Clone, Debug, PartialEq)` to build old
//! payloads in tests. These structs' derives are most of the compile time
//! the derive adds (`scripts/compile-bench` measures it), so whatever
//! reading and the schema lock do not need is opt-in, and the two they need
//! are generated compactly where that is exact: an older version without
//! `#[serde]` attributes (bar a container `rename_all`) reads through one
//! set of typed slots per entity (`read.rs`) instead of serde's derive, and
//! an older entity version that also has no `#[schemars]` attributes is
//! described by a property table (`describe.rs`) instead of schemars'
//! derive. `StateEvent::schema` builds every version's root schema through
//! one `__private::root_schema`, not a `schema_for!` per version.
//!
//! # Nested types that evolve
//!
//! An entity's struct often holds other structs (`Order { ship_to:
//! Address }`), and they change too. Their schemas are part of every frozen
//! version of the entity, so a nested type cannot simply change: `Order`
//! v1's schema, with `Address` as it was, must stay byte for byte what was
//! locked. The design:
//!
//! - `#[derive(Versioned)]` gives the nested type a history of its own,
//!   with the entity's vocabulary (`#[versioned(version = N)]` on the type;
//!   `added`, `renamed`, `retyped`, `removed`, `hop` as on an entity; no
//!   entity name, key or compatibility mode, which belong to the entity).
//!   It generates the older versions, `AddressV1` .., exactly as for an
//!   entity, but each keeps the newest type's schema name and doc comments,
//!   so the `$defs/Address` an old entity version refers to is unchanged;
//!   and the hops `TryFrom<AddressV1> for AddressV2` ...; and, for every
//!   pair of versions `i < j`, `__private::UpgradeTo<AddressVj> for
//!   AddressVi`, the hops chained. `UpgradeTo` lifts through `Option`, `Vec`
//!   and `Box`, so `Vec<LineV1>` upgrades to `Vec<Line>`.
//! - On the entity, `#[state_event(nested(since = N, from = AddressVk))]`
//!   says that the field held version `k` of the nested type before entity
//!   version `N`: a `retyped` whose conversion is the nested type's own
//!   history. The older entity structs hold `AddressVk` there, and the
//!   generated hop into `N` upgrades it; a failing nested hop is an
//!   `UpcastError` of the entity naming the field, its source the nested
//!   type's error. Several `nested` on one field chain as `retyped` does
//!   (`OrderV1` holds `AddressV1`, `OrderV2` `AddressV2`, `Order` `Address`).
//! - A nested enum's history is its variants': `#[versioned(added(since =
//!   N))]` on a variant leaves it out of the versions before `N`, and
//!   `renamed(since = N, from = "Old")` names it as it was. The hops map
//!   variant to variant, fields moved as they are. A variant's fields do
//!   not change type (add a variant instead); `removed` and `hop` do not
//!   apply to an enum. An older version read with a newer variant fails
//!   with serde's "unknown variant" (`PayloadError::Mismatch` for the
//!   entity), never a guess; a consumer that wants a fallback declares it
//!   with serde's own `#[serde(other)]`.

#![forbid(unsafe_code)]

mod ast;
mod attr;
mod ctxt;
mod describe;
mod expand;
mod history;
mod passthrough;
mod read;
mod symbol;
mod valid;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Derives `ecst::StateEvent`; see the `ecst` crate for the attributes.
///
/// The older versions it generates derive `Deserialize` and `JsonSchema`;
/// `#[state_event(derive(Serialize, Clone, Debug, ..))]` adds more.
#[proc_macro_derive(StateEvent, attributes(state_event))]
pub fn derive_state_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    derive(&input, attr::Kind::Entity).into()
}

/// Derives the history of a type nested in an entity (a struct held by a
/// `StateEvent` field): its older versions (`AddressV1`, ..) and the hops
/// between them, so that an entity version can hold an older version of it
/// (`#[state_event(nested(since = 2, from = AddressV1))]`); see the `ecst`
/// crate for the attributes. The older versions derive `Deserialize` and
/// `JsonSchema`; `#[versioned(derive(Serialize, Clone, Debug, ..))]` adds
/// more.
#[proc_macro_derive(Versioned, attributes(versioned))]
pub fn derive_versioned(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    derive(&input, attr::Kind::Nested).into()
}

fn derive(input: &DeriveInput, kind: attr::Kind) -> proc_macro2::TokenStream {
    let mut cx = ctxt::Ctxt::new();
    let parsed = ast::Input::from_syn(&mut cx, input, kind);
    let history = parsed.as_ref().and_then(|p| valid::check(&mut cx, p));
    match (cx.check(), history) {
        (Ok(()), Some(history)) => expand::derive(&history),
        (Err(errors), _) => {
            let krate = parsed.as_ref().and_then(|p| p.attrs.krate.as_ref());
            let mut out = errors.into_compile_error();
            if kind == attr::Kind::Entity {
                out.extend(expand::fallback(input, krate));
            }
            out
        }
        (Ok(()), None) if kind == attr::Kind::Entity => expand::fallback(input, None),
        (Ok(()), None) => proc_macro2::TokenStream::new(),
    }
}
