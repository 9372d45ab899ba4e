//! The resolved history: what validation hands to expansion.
//!
//! Every version from 1 to the newest, each with the changes that lead into
//! it from the one before. Nothing the user had to write is optional here,
//! so expansion never unwraps; a new kind of change is one more variant of
//! [`Change`].

use proc_macro2::Span;
use syn::{Ident, Path, Type};

use crate::ast::{Field, Input};

pub struct History<'a> {
    pub input: &'a Input<'a>,
    /// The entity name (`entity = ".."`); a nested type's own name, which
    /// names it in upcast errors.
    pub entity: String,
    /// The key field (`#[state_event(key)]`); `None` for a nested type.
    pub key: Option<&'a Field<'a>>,
    /// Where the `ecst` crate is: `crate = ".."`, or `::ecst`.
    pub krate: Path,
    /// Versions 1 to the newest, in order; version 1 has no changes.
    pub versions: Vec<Version<'a>>,
}

pub struct Version<'a> {
    pub number: u32,
    /// What changed from the previous version to this one.
    pub changes: Vec<Change<'a>>,
}

pub enum Change<'a> {
    /// `added(since = N, ..)`: the field is new; older events get `fill`.
    Added {
        field: &'a Field<'a>,
        fill: Fill<'a>,
    },
    /// `renamed(since = N, from = "old")`: the field was called `from`.
    Renamed {
        field: &'a Field<'a>,
        from: &'a Ident,
    },
    /// `retyped(since = N, from = Old, ..)`: the field was of type `from`.
    Retyped {
        field: &'a Field<'a>,
        from: &'a Type,
        with: Conversion<'a>,
    },
    /// `removed(since = N, field = "x", ty = T)`: `name: ty` existed before.
    Removed {
        name: &'a Ident,
        ty: &'a Type,
        /// Its position among the `removed` attributes, which orders the
        /// removed fields of a version.
        index: usize,
    },
    /// `hop(since = N, with = f)`: `f` builds this version from the
    /// previous one, instead of the generated conversion.
    Hop { with: &'a Path },
}

/// The value an `added` field gets in an event of an older version.
pub enum Fill<'a> {
    /// Nothing written: `Default::default()`, reported at `span` (the
    /// `added` keyword) if the type has no `Default`. In a version with a
    /// `hop`, the hop sets the field and this is unused.
    Default { span: Span },
    /// `default = f`: `fn() -> T`.
    Function(&'a Path),
    /// `with = f`: `fn(&Previous) -> T`.
    FromPrevious(&'a Path),
}

/// How a `retyped` field's old value becomes the new one.
pub enum Conversion<'a> {
    /// `with = f`: `fn(Old) -> Result<New, E>`.
    Function(&'a Path),
    /// The version's `hop` converts the whole struct.
    Hop,
    /// `nested(since = N, from = TypeVk)`: the nested type's own history
    /// (`#[derive(Versioned)]`) brings the old version up to the new one.
    Nested,
}

/// A field of the user's struct as it is in one version.
pub struct FieldAt<'a> {
    /// Its position among the struct's fields.
    pub index: usize,
    pub field: &'a Field<'a>,
    pub name: &'a Ident,
    pub ty: &'a Type,
}

/// A field that is gone from the newest version, as it is in an older one.
pub struct RemovedAt<'a> {
    pub index: usize,
    pub name: &'a Ident,
    pub ty: &'a Type,
    /// The version it was removed at.
    pub since: u32,
}

impl<'a> History<'a> {
    /// The newest version.
    pub fn newest(&self) -> u32 {
        self.versions.last().map_or(1, |v| v.number)
    }

    /// The versions after `number`, oldest first.
    fn after(&self, number: u32) -> impl Iterator<Item = &Version<'a>> {
        self.versions.iter().filter(move |v| v.number > number)
    }

    /// The struct's fields that exist at `number`, in declaration order,
    /// with their name and type there.
    pub fn fields_at(&self, number: u32) -> impl Iterator<Item = FieldAt<'a>> + '_ {
        self.input
            .fields
            .iter()
            .enumerate()
            .filter(move |(_, field)| self.added_at(field) <= number)
            .map(move |(index, field)| FieldAt {
                index,
                field,
                name: self.name_at(field, number),
                ty: self.ty_at(field, number),
            })
    }

    /// The removed fields that exist at `number`, in attribute order.
    pub fn removed_at(&self, number: u32) -> Vec<RemovedAt<'a>> {
        let mut removed: Vec<RemovedAt<'a>> = self
            .after(number)
            .flat_map(|version| {
                version
                    .changes
                    .iter()
                    .filter_map(move |change| match change {
                        Change::Removed { name, ty, index } => Some(RemovedAt {
                            index: *index,
                            name,
                            ty,
                            since: version.number,
                        }),
                        _ => None,
                    })
            })
            .collect();
        removed.sort_by_key(|r| r.index);
        removed
    }

    /// The version `field` appeared at: 1 unless `added`.
    fn added_at(&self, field: &Field) -> u32 {
        self.versions
            .iter()
            .find(|v| v.added(field).is_some())
            .map_or(1, |v| v.number)
    }

    /// The field's name at `number`: the `from` of the first rename after
    /// it, else its current name.
    fn name_at(&self, field: &'a Field<'a>, number: u32) -> &'a Ident {
        self.after(number)
            .find_map(|v| v.renamed(field))
            .unwrap_or(field.ident)
    }

    /// The field's type at `number`, like [`History::name_at`].
    fn ty_at(&self, field: &'a Field<'a>, number: u32) -> &'a Type {
        self.after(number)
            .find_map(|v| v.retyped(field).map(|(from, _)| from))
            .unwrap_or(field.ty)
    }
}

impl<'a> Version<'a> {
    /// `with` of the version's `hop`, if it has one.
    pub fn hop(&self) -> Option<&'a Path> {
        self.changes.iter().find_map(|change| match change {
            Change::Hop { with } => Some(*with),
            _ => None,
        })
    }

    /// How `field` is filled, if it is added at this version.
    pub fn added(&self, field: &Field) -> Option<&Fill<'a>> {
        self.changes.iter().find_map(|change| match change {
            Change::Added { field: f, fill } if core::ptr::eq(*f, field) => Some(fill),
            _ => None,
        })
    }

    /// The previous name of `field`, if it is renamed at this version.
    pub fn renamed(&self, field: &Field) -> Option<&'a Ident> {
        self.changes.iter().find_map(|change| match change {
            Change::Renamed { field: f, from } if core::ptr::eq(*f, field) => Some(*from),
            _ => None,
        })
    }

    /// The previous type of `field` and its conversion, if it is retyped at
    /// this version.
    pub fn retyped(&self, field: &Field) -> Option<(&'a Type, &Conversion<'a>)> {
        self.changes.iter().find_map(|change| match change {
            Change::Retyped {
                field: f,
                from,
                with,
            } if core::ptr::eq(*f, field) => Some((*from, with)),
            _ => None,
        })
    }
}
