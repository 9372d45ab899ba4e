//! `schema_for!` without an instance per type: every generated
//! `StateEvent::schema` arm calls [`root_schema`] with the version's
//! `JsonSchema` functions as pointers, so the crate compiles schemars'
//! `into_root_schema_for` once, for [`Root`], instead of once for every
//! version of every entity. The schema is the one `schema_for!` gives:
//! `Root` answers each call with the pointed-to type's functions.

use std::borrow::Cow;
use std::cell::Cell;

use schemars::{JsonSchema, Schema, SchemaGenerator};

/// A type's `JsonSchema` functions, as the root generator calls them.
#[derive(Clone, Copy)]
pub struct SchemaOf {
    /// `<T as JsonSchema>::schema_name`.
    pub name: fn() -> Cow<'static, str>,
    /// `<T as JsonSchema>::schema_id`.
    pub id: fn() -> Cow<'static, str>,
    /// `<T as JsonSchema>::json_schema`.
    pub json: fn(&mut SchemaGenerator) -> Schema,
}

thread_local! {
    static CURRENT: Cell<Option<SchemaOf>> = const { Cell::new(None) };
}

/// `schema_for!(T)` for the type whose functions `of` holds.
pub fn root_schema(of: SchemaOf) -> Schema {
    let _restore = Restore(CURRENT.with(|current| current.replace(Some(of))));
    SchemaGenerator::default().into_root_schema_for::<Root>()
}

/// Puts back the type an outer [`root_schema`] was describing (if a
/// `json_schema` builds another root schema), also on unwinding.
struct Restore(Option<SchemaOf>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|current| current.set(previous));
    }
}

/// Stands for the type [`root_schema`] is describing.
struct Root;

impl Root {
    fn of() -> SchemaOf {
        match CURRENT.with(Cell::get) {
            Some(of) => of,
            // Only `root_schema` names `Root`, and sets `CURRENT` first.
            None => unreachable!("ecst: Root described outside root_schema"),
        }
    }
}

impl JsonSchema for Root {
    fn schema_name() -> Cow<'static, str> {
        (Root::of().name)()
    }

    fn schema_id() -> Cow<'static, str> {
        (Root::of().id)()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        (Root::of().json)(generator)
    }
}
