//! Paths used by code that `#[derive(StateEvent)]` generates. Not public API.

pub use core::convert::{From, Into, TryFrom};
pub use core::default::Default;
pub use core::option::Option::{self, None, Some};
pub use core::result::Result::{self, Err, Ok};
pub use inventory;
pub use schemars;
pub use serde;
pub use std::string::String;

pub use crate::catalog::{EventType, Registration};
pub use crate::compatibility::Mode;
pub use crate::event::{deserialize_and_upcast, StateEvent, Upcast};
pub use crate::upcast::{DecodeVersionError, UpcastError};

mod read;
mod schema;

pub use read::{next_element, next_value, read_struct, take, FromSlots, Layout, Slots};
pub use schema::{object_schema, property, root_schema, Property, SchemaOf};
pub use std::borrow::Cow;

/// The value of an `added` field in an event older than the field: its
/// `Default`, with an error that says what to write when there is none.
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no `Default`, so `added` cannot fill it in events older than the field",
    label = "`{Self}` needs a value in older events",
    note = "write `added(since = .., default = f)` with `fn f() -> {Self}`, or `with = f` with `fn f(&Previous) -> {Self}`; or implement `Default` for `{Self}`"
)]
pub trait AddedDefault: Sized {
    /// The value.
    fn added_default() -> Self;
}

impl<T: Default> AddedDefault for T {
    #[inline]
    fn added_default() -> Self {
        T::default()
    }
}

/// Calls a user hop/retype function and names the hop if it fails.
#[inline]
pub fn convert<T, E>(
    result: Result<T, E>,
    entity: &'static str,
    from: u32,
    to: u32,
    field: Option<&'static str>,
) -> Result<T, UpcastError>
where
    E: Into<crate::upcast::BoxError>,
{
    match result {
        Ok(value) => Ok(value),
        Err(e) => Err(UpcastError::new(entity, from, to, field, e)),
    }
}

/// An older version of a nested type (`#[derive(Versioned)]`) brought up
/// to a newer one: the hops between them, chained. The derive implements it
/// for every pair of versions; it lifts through `Option`, `Vec` and `Box`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an older version of `{Target}`",
    label = "no history leads from `{Self}` to `{Target}`",
    note = "`nested(since = .., from = T)` takes a version that `#[derive(Versioned)]` generated for the field's type (e.g. `from = AddressV1` for `Address`); for any other change of type write `retyped(since = .., from = T, with = f)`"
)]
pub trait UpgradeTo<Target>: Sized {
    /// The newer version.
    fn upgrade(self) -> Result<Target, UpcastError>;
}

#[diagnostic::do_not_recommend]
impl<A: UpgradeTo<B>, B> UpgradeTo<Option<B>> for Option<A> {
    fn upgrade(self) -> Result<Option<B>, UpcastError> {
        self.map(A::upgrade).transpose()
    }
}

#[diagnostic::do_not_recommend]
impl<A: UpgradeTo<B>, B> UpgradeTo<std::vec::Vec<B>> for std::vec::Vec<A> {
    fn upgrade(self) -> Result<std::vec::Vec<B>, UpcastError> {
        self.into_iter().map(A::upgrade).collect()
    }
}

#[diagnostic::do_not_recommend]
impl<A: UpgradeTo<B>, B> UpgradeTo<std::boxed::Box<B>> for std::boxed::Box<A> {
    fn upgrade(self) -> Result<std::boxed::Box<B>, UpcastError> {
        (*self).upgrade().map(std::boxed::Box::new)
    }
}
