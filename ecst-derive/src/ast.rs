//! The borrowed IR between `syn` and code generation: the user's struct with
//! its parsed attributes, keeping references to the original nodes for spans.

use syn::{Attribute, Data, DeriveInput, Fields, Ident, Type, Visibility};

use crate::attr::{self, Kind};
use crate::ctxt::Ctxt;
use crate::passthrough::{self, Item};

pub struct Input<'a> {
    /// An entity (`StateEvent`) or a nested type (`Versioned`).
    pub kind: Kind,
    /// A nested enum: its history is its variants'.
    pub is_enum: bool,
    /// A nested enum's variants, with their `added`/`renamed` attributes.
    pub variants: Vec<Variant<'a>>,
    pub ident: &'a Ident,
    /// The container's doc comments: a nested type's older versions carry
    /// them, so that their schemas stay what they were.
    pub docs: Vec<&'a Attribute>,
    pub vis: &'a Visibility,
    pub attrs: attr::Container,
    /// The container's `#[serde(..)]` items (its docs are not copied).
    pub serde: Vec<Item>,
    pub fields: Vec<Field<'a>>,
}

/// A variant of a nested enum; its attributes are read like a field's
/// (validation allows only `added` and `renamed` there).
pub struct Variant<'a> {
    pub ident: &'a Ident,
    pub fields: &'a Fields,
    pub attrs: attr::Field,
    pub passthrough: Vec<Item>,
}

impl Variant<'_> {
    /// The version this variant appeared at (1 unless `added`).
    pub fn added_at(&self) -> u32 {
        self.attrs
            .added
            .as_ref()
            .and_then(|a| a.since.as_ref())
            .map_or(1, |s| s.version)
    }

    /// The variant's name at `version`, like [`Field::name_at`].
    pub fn name_at(&self, version: u32) -> &Ident {
        self.attrs
            .renamed
            .iter()
            .filter_map(|r| Some((r.since.as_ref()?.version, &r.from.as_ref()?.ident)))
            .filter(|(since, _)| *since > version)
            .min_by_key(|(since, _)| *since)
            .map_or(self.ident, |(_, from)| from)
    }
}

pub struct Field<'a> {
    pub ident: &'a Ident,
    pub ty: &'a Type,
    pub vis: &'a Visibility,
    pub attrs: attr::Field,
    pub passthrough: Vec<Item>,
}

impl<'a> Input<'a> {
    /// Reads the struct; `None` (with the reason in `cx`) for anything that
    /// is not a non-generic struct with named fields.
    pub fn from_syn(cx: &mut Ctxt, input: &'a DeriveInput, kind: Kind) -> Option<Self> {
        let attrs = attr::container(cx, &input.attrs, kind);
        let derive = match kind {
            Kind::Entity => "StateEvent",
            Kind::Nested => "Versioned",
        };
        let first = match kind {
            Kind::Entity => "key",
            Kind::Nested => "field",
        };
        let serde = passthrough::items(&input.attrs)
            .into_iter()
            .filter(|item| item.key.is_some())
            .collect();
        let fields = match &input.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(named) => Some(&named.named),
                Fields::Unnamed(_) => {
                    cx.error_spanned_by(
                        &data.fields,
                        format!(
                            "`{derive}` needs named fields: a tuple struct has no field names \
                             to carry across versions; write `struct Name {{ field: Type, .. }}`"
                        ),
                    );
                    None
                }
                Fields::Unit => {
                    cx.error_spanned_by(
                        &input.ident,
                        format!(
                            "`{derive}` needs named fields: a unit struct carries no state; \
                             write `struct Name {{ {first}: Type, .. }}`"
                        ),
                    );
                    None
                }
            },
            // A nested enum: its variants are read below, it has no fields.
            Data::Enum(_) if kind == Kind::Nested => None,
            Data::Enum(data) => {
                cx.error_spanned_by(
                    data.enum_token,
                    "`StateEvent` can only be derived for structs with named fields: an entity's \
                     state is one struct; move the variants into a field, e.g. `status: Status`",
                );
                None
            }
            Data::Union(data) => {
                cx.error_spanned_by(
                    data.union_token,
                    format!(
                        "`{derive}` can only be derived for structs with named fields, not unions"
                    ),
                );
                None
            }
        };
        if !input.generics.params.is_empty() || input.generics.where_clause.is_some() {
            let params = &input.generics.params;
            let remove = if params.is_empty() {
                "the `where` clause".to_owned()
            } else {
                let params = quote::quote!(#params).to_string().replace(" ,", ",");
                format!("`<{params}>` and give the fields that use it a concrete type")
            };
            cx.error_spanned_by(
                &input.generics,
                format!(
                    "`{derive}` cannot be derived for a generic struct: each version is one \
                     concrete JSON Schema on the wire; remove {remove}"
                ),
            );
        }
        let variants = match &input.data {
            Data::Enum(data) if kind == Kind::Nested => data
                .variants
                .iter()
                .map(|variant| Variant {
                    ident: &variant.ident,
                    fields: &variant.fields,
                    attrs: attr::field(cx, &variant.attrs, kind),
                    passthrough: passthrough::items(&variant.attrs),
                })
                .collect(),
            _ => Vec::new(),
        };
        let nested_enum = kind == Kind::Nested && matches!(input.data, Data::Enum(_));
        let fields = match fields {
            Some(fields) => fields.iter().collect(),
            None if nested_enum => Vec::new(),
            None => return None,
        };
        let fields = fields
            .into_iter()
            .filter_map(|field: &'a syn::Field| {
                let ident = field.ident.as_ref()?;
                Some(Field {
                    ident,
                    ty: &field.ty,
                    vis: &field.vis,
                    attrs: attr::field(cx, &field.attrs, kind),
                    passthrough: passthrough::items(&field.attrs),
                })
            })
            .collect();
        Some(Input {
            kind,
            is_enum: matches!(input.data, Data::Enum(_)),
            variants,
            ident: &input.ident,
            docs: input
                .attrs
                .iter()
                .filter(|attr| attr.path().is_ident("doc"))
                .collect(),
            vis: &input.vis,
            attrs,
            serde,
            fields,
        })
    }

    /// The current (newest) version; 1 until validation says otherwise.
    pub fn version(&self) -> u32 {
        self.attrs.version.as_ref().map_or(1, |v| v.version)
    }

    pub fn key(&self) -> Option<&Field<'a>> {
        self.fields.iter().find(|f| f.attrs.key.is_some())
    }
}

impl Field<'_> {
    /// The version this field appeared at (1 unless `added`).
    pub fn added_at(&self) -> u32 {
        self.attrs
            .added
            .as_ref()
            .and_then(|a| a.since.as_ref())
            .map_or(1, |s| s.version)
    }

    pub fn exists_at(&self, version: u32) -> bool {
        version >= self.added_at()
    }

    /// The field's name at `version`: the `from` of the earliest rename that
    /// happened after it, else the current name.
    pub fn name_at(&self, version: u32) -> &Ident {
        self.attrs
            .renamed
            .iter()
            .filter_map(|r| Some((r.since.as_ref()?.version, &r.from.as_ref()?.ident)))
            .filter(|(since, _)| *since > version)
            .min_by_key(|(since, _)| *since)
            .map_or(self.ident, |(_, from)| from)
    }

    /// The field's type at `version`, like [`Field::name_at`].
    pub fn ty_at(&self, version: u32) -> &Type {
        self.attrs
            .retyped
            .iter()
            .filter_map(|r| Some((r.since.as_ref()?.version, r.from.as_ref()?)))
            .filter(|(since, _)| *since > version)
            .min_by_key(|(since, _)| *since)
            .map_or(self.ty, |(_, from)| from)
    }
}

impl attr::Removed {
    /// Removed fields exist in every version before `since`.
    pub fn exists_at(&self, version: u32) -> bool {
        self.since.as_ref().is_some_and(|s| version < s.version)
    }
}
