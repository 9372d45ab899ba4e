//! How the older versions are read: instead of serde's derive on every
//! older struct, one set of typed slots per entity (`__EcstSlots`, an
//! `Option<T>` per distinct field of the older versions) and, per version,
//! a small `Deserialize` impl that reads a map or a sequence into the slots
//! with the version's field names ([`__private::Layout`]) and takes its
//! fields out. The map and sequence handling is generic code of the
//! runtime (`__private::read_struct`), compiled once per deserializer, not
//! once per version. serde's derive reads the same input with the same
//! errors for a struct without `#[serde]` attributes, which is where this
//! applies; a version with any other `#[serde]` attribute (on the container
//! besides `rename_all = ".."`, or on a field as it is in that version)
//! keeps serde's derive.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, Meta, Type};

use crate::history::{FieldAt, History};
use crate::passthrough::{Depends, Item};

/// The older versions read through slots, and what they need.
pub struct SlotReads<'h, 'a> {
    history: &'h History<'a>,
    rule: RenameRule,
    /// The slots' types, in slot order.
    slots: Vec<&'a Type>,
    /// The versions read this way, oldest first.
    versions: Vec<ReadVersion<'a>>,
}

/// An older version read through the slots.
pub struct ReadVersion<'a> {
    pub number: u32,
    /// Its struct's fields, in declaration order.
    pub fields: Vec<ReadField<'a>>,
}

/// A field of an older version read through the slots.
pub struct ReadField<'a> {
    pub rust: &'a syn::Ident,
    /// The serialized name (`rename_all` applied).
    pub wire: String,
    pub slot: usize,
    pub ty: &'a Type,
    /// Its doc comment as schemars' derive joins the lines (`Ok(None)`
    /// without one); `Err(())` if a line is not a string literal or a
    /// `#[schemars]` attribute applies, so that only schemars' derive can
    /// describe it.
    pub doc: Result<Option<String>, ()>,
}

/// Where a slot's value comes from: a field of the newest struct (by
/// position) or a removed field (by its position among the `removed`), with
/// the type it has there.
#[derive(PartialEq)]
enum Source {
    Field(usize),
    Removed(usize),
}

impl<'h, 'a> SlotReads<'h, 'a> {
    /// The plan for a struct's older versions; versions it cannot read
    /// exactly as serde's derive would are left out.
    pub fn plan(history: &'h History<'a>) -> Self {
        let input = history.input;
        let mut plan = SlotReads {
            history,
            rule: RenameRule::None,
            slots: Vec::new(),
            versions: Vec::new(),
        };
        if input.is_enum || derives_deserialize(&input.attrs.derives) {
            return plan;
        }
        let Some(rule) = container_rule(&input.serde) else {
            return plan;
        };
        plan.rule = rule;
        let mut sources: Vec<(Source, &'a Type)> = Vec::new();
        let mut slot_of = |source: Source, ty: &'a Type| -> usize {
            let found = sources
                .iter()
                .position(|(s, t)| *s == source && core::ptr::eq(*t, ty));
            found.unwrap_or_else(|| {
                sources.push((source, ty));
                sources.len() - 1
            })
        };
        for v in 1..history.newest() {
            let fields: Vec<FieldAt<'a>> = history.fields_at(v).collect();
            if fields.iter().any(has_serde_attr) {
                continue;
            }
            let mut layout = Vec::new();
            for f in &fields {
                layout.push(ReadField {
                    rust: f.name,
                    wire: rule.apply(&f.name.unraw().to_string()),
                    slot: slot_of(Source::Field(f.index), f.ty),
                    ty: f.ty,
                    doc: field_doc(f),
                });
            }
            for r in history.removed_at(v) {
                layout.push(ReadField {
                    rust: r.name,
                    wire: rule.apply(&r.name.unraw().to_string()),
                    slot: slot_of(Source::Removed(r.index), r.ty),
                    ty: r.ty,
                    // `expand::removed_field`'s doc, as schemars reads it.
                    doc: Ok(Some(format!("Removed in version {}.", r.since))),
                });
            }
            plan.versions.push(ReadVersion {
                number: v,
                fields: layout,
            });
        }
        plan.slots = sources.into_iter().map(|(_, ty)| ty).collect();
        plan
    }

    /// Whether version `v` is read through the slots (its struct then does
    /// not derive `Deserialize`).
    pub fn covers(&self, v: u32) -> bool {
        self.version(v).is_some()
    }

    /// Version `v`, if it is read through the slots.
    pub fn version(&self, v: u32) -> Option<&ReadVersion<'a>> {
        self.versions.iter().find(|version| version.number == v)
    }

    /// The slots and the `Deserialize` impls, for the entity's `const _`.
    pub fn expand(&self, private: &TokenStream) -> TokenStream {
        if self.versions.is_empty() {
            return TokenStream::new();
        }
        let slot = |i: usize| format_ident!("__ecst_slot_{}", i);
        let names: Vec<_> = (0..self.slots.len()).map(slot).collect();
        let types = self.slots.iter().map(|ty| quote_spanned!(ty.span()=> #ty));
        let arms: Vec<_> = (0..self.slots.len()).collect();
        let impls = self.versions.iter().map(|version| {
            let layout = &version.fields;
            let ident = format_ident!("{}V{}", self.history.input.ident, version.number);
            let name = ident.to_string();
            let fields = layout.iter().map(|f| &f.wire);
            let slots = layout.iter().map(|f| f.slot);
            let expected_len = match layout.len() {
                1 => format!("struct {name} with 1 element"),
                n => format!("struct {name} with {n} elements"),
            };
            let takes = layout.iter().map(|f| {
                let (rust, wire, slot) = (f.rust, &f.wire, &names[f.slot]);
                quote!(#rust: #private::take(slots.#slot, #wire)?)
            });
            quote! {
                #[automatically_derived]
                impl #private::FromSlots<__EcstSlots> for #ident {
                    fn from_slots<__E>(slots: __EcstSlots) -> #private::Result<Self, __E>
                    where
                        __E: #private::serde::de::Error,
                    {
                        #private::Ok(#ident { #(#takes,)* })
                    }
                }

                #[automatically_derived]
                impl<'de> #private::serde::Deserialize<'de> for #ident {
                    fn deserialize<__D>(deserializer: __D) -> #private::Result<Self, __D::Error>
                    where
                        __D: #private::serde::Deserializer<'de>,
                    {
                        static LAYOUT: #private::Layout = #private::Layout {
                            name: #name,
                            fields: &[#(#fields),*],
                            slots: &[#(#slots),*],
                            expected_len: #expected_len,
                        };
                        #private::read_struct::<__EcstSlots, Self, __D>(deserializer, &LAYOUT)
                    }
                }
            }
        });
        quote! {
            struct __EcstSlots {
                #(#names: #private::Option<#types>,)*
            }

            impl #private::Slots for __EcstSlots {
                fn empty() -> Self {
                    __EcstSlots { #(#names: #private::None,)* }
                }

                fn read_value<'de, __A>(
                    &mut self,
                    slot: usize,
                    name: &'static str,
                    map: &mut __A,
                ) -> #private::Result<(), __A::Error>
                where
                    __A: #private::serde::de::MapAccess<'de>,
                {
                    match slot {
                        #(#arms => #private::next_value(&mut self.#names, name, map),)*
                        _ => #private::Ok(()),
                    }
                }

                fn read_element<'de, __A>(
                    &mut self,
                    slot: usize,
                    index: usize,
                    seq: &mut __A,
                    layout: &'static #private::Layout,
                ) -> #private::Result<(), __A::Error>
                where
                    __A: #private::serde::de::SeqAccess<'de>,
                {
                    match slot {
                        #(#arms => #private::next_element(&mut self.#names, index, seq, layout),)*
                        _ => #private::Ok(()),
                    }
                }
            }

            #(#impls)*
        }
    }
}

/// Whether the user's `derive(..)` for older versions already has a
/// `Deserialize`.
fn derives_deserialize(derives: &[syn::Path]) -> bool {
    derives.iter().any(|path| {
        path.segments
            .last()
            .is_some_and(|s| s.ident == "Deserialize")
    })
}

/// The container's `rename_all` rule, if its `#[serde]` items are at most
/// a `rename_all = ".."`; `None` if it has any other.
fn container_rule(items: &[Item]) -> Option<RenameRule> {
    let mut rule = RenameRule::None;
    for item in items.iter().filter(|item| item.is_serde) {
        let Some(Meta::NameValue(nv)) = &item.serde else {
            return None;
        };
        if !nv.path.is_ident("rename_all") {
            return None;
        }
        let Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) = &nv.value
        else {
            return None;
        };
        rule = RenameRule::from_str(&lit.value())?;
    }
    Some(rule)
}

/// The field's doc comment as schemars' derive reads it (`get_doc`: each
/// line without one leading space, joined by newlines).
fn field_doc(at: &FieldAt) -> Result<Option<String>, ()> {
    let same_type = core::ptr::eq(at.ty, at.field.ty);
    let mut lines = Vec::new();
    for item in &at.field.passthrough {
        if item.is_schemars && (same_type || item.depends != Depends::Type) {
            return Err(());
        }
        match &item.doc {
            Some(Some(text)) => lines.push(text.strip_prefix(' ').unwrap_or(text).to_owned()),
            Some(None) => return Err(()),
            None => {}
        }
    }
    Ok((!lines.is_empty()).then(|| lines.join("\n")))
}

/// Whether a `#[serde]` attribute of the field applies in this version
/// (those that depend on a name or type it does not have there are left
/// out, as `expand::field_at` leaves them out of the version's struct).
fn has_serde_attr(at: &FieldAt) -> bool {
    let same_name = at.name == at.field.ident;
    let same_type = core::ptr::eq(at.ty, at.field.ty);
    at.field.passthrough.iter().any(|item| {
        item.is_serde
            && match item.depends {
                Depends::Name => same_name,
                Depends::Type => same_type,
                Depends::Nothing => true,
            }
    })
}

/// serde's `rename_all` rules, applied to field names as serde_derive
/// applies them (`internals/case.rs`).
#[derive(Clone, Copy)]
enum RenameRule {
    None,
    LowerCase,
    UpperCase,
    PascalCase,
    CamelCase,
    SnakeCase,
    ScreamingSnakeCase,
    KebabCase,
    ScreamingKebabCase,
}

impl RenameRule {
    fn from_str(rule: &str) -> Option<Self> {
        Some(match rule {
            "lowercase" => RenameRule::LowerCase,
            "UPPERCASE" => RenameRule::UpperCase,
            "PascalCase" => RenameRule::PascalCase,
            "camelCase" => RenameRule::CamelCase,
            "snake_case" => RenameRule::SnakeCase,
            "SCREAMING_SNAKE_CASE" => RenameRule::ScreamingSnakeCase,
            "kebab-case" => RenameRule::KebabCase,
            "SCREAMING-KEBAB-CASE" => RenameRule::ScreamingKebabCase,
            _ => return None,
        })
    }

    fn apply(self, field: &str) -> String {
        match self {
            RenameRule::None | RenameRule::LowerCase | RenameRule::SnakeCase => field.to_owned(),
            RenameRule::UpperCase | RenameRule::ScreamingSnakeCase => field.to_ascii_uppercase(),
            RenameRule::PascalCase => {
                let mut pascal = String::new();
                let mut capitalize = true;
                for ch in field.chars() {
                    if ch == '_' {
                        capitalize = true;
                    } else if capitalize {
                        pascal.push(ch.to_ascii_uppercase());
                        capitalize = false;
                    } else {
                        pascal.push(ch);
                    }
                }
                pascal
            }
            RenameRule::CamelCase => {
                let pascal = RenameRule::PascalCase.apply(field);
                let mut chars = pascal.chars();
                match chars.next() {
                    Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
                    None => pascal,
                }
            }
            RenameRule::KebabCase => field.replace('_', "-"),
            RenameRule::ScreamingKebabCase => field.to_ascii_uppercase().replace('_', "-"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RenameRule;

    #[test]
    fn rename_rules_match_serde() {
        let cases = [
            ("lowercase", "full_name"),
            ("UPPERCASE", "FULL_NAME"),
            ("PascalCase", "FullName"),
            ("camelCase", "fullName"),
            ("snake_case", "full_name"),
            ("SCREAMING_SNAKE_CASE", "FULL_NAME"),
            ("kebab-case", "full-name"),
            ("SCREAMING-KEBAB-CASE", "FULL-NAME"),
        ];
        for (rule, expected) in cases {
            let rule = RenameRule::from_str(rule).map(|r| r.apply("full_name"));
            assert_eq!(rule.as_deref(), Some(expected));
        }
        assert!(RenameRule::from_str("Title Case").is_none());
    }
}
