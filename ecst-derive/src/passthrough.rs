//! The user's own `#[serde(..)]`, `#[schemars(..)]`, doc and lint-level
//! (`#[allow(..)]`, `#[expect(..)]`) attributes, split into single items so
//! each generated version gets the ones that still mean the same thing there.

use proc_macro2::TokenStream;
use quote::quote;
use syn::punctuated::Punctuated;
use syn::{Attribute, Meta, Token};

/// What an attribute item depends on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Depends {
    /// The field's name (`rename`, `alias`): dropped where it had another name.
    Name,
    /// The field's type (`with`, `default = ..`, `skip_serializing_if`, every
    /// `schemars` item): dropped where it had another type.
    Type,
    /// Neither (`skip`, `flatten`, docs): kept in every version.
    Nothing,
}

/// One item of a `#[serde(..)]` or `#[schemars(..)]` list, or a doc line.
pub struct Item {
    pub tokens: TokenStream,
    pub depends: Depends,
    /// The item's key, e.g. `from` in `#[serde(from = "X")]`.
    pub key: Option<syn::Path>,
    /// The parsed item, for `#[serde(..)]` items.
    pub serde: Option<Meta>,
    /// Whether it is a `#[serde(..)]` attribute, parsed or not.
    pub is_serde: bool,
    /// Whether it is a `#[schemars(..)]` attribute, parsed or not.
    pub is_schemars: bool,
    /// A doc line: `Some(text)` for `#[doc = "text"]`, `Some(None)` for a
    /// doc that is not a string literal (`#[doc = include_str!(..)]`).
    pub doc: Option<Option<String>>,
}

/// The pass-through items of a list of attributes.
pub fn items(attrs: &[Attribute]) -> Vec<Item> {
    let mut out = Vec::new();
    for attr in attrs {
        let path = attr.path();
        if path.is_ident("doc") {
            let text = match &attr.meta {
                Meta::NameValue(syn::MetaNameValue {
                    value:
                        syn::Expr::Lit(syn::ExprLit {
                            lit: syn::Lit::Str(text),
                            ..
                        }),
                    ..
                }) => Some(text.value()),
                _ => None,
            };
            out.push(Item {
                tokens: quote!(#attr),
                depends: Depends::Nothing,
                key: None,
                serde: None,
                is_serde: false,
                is_schemars: false,
                doc: Some(text),
            });
            continue;
        }
        if path.is_ident("allow") || path.is_ident("expect") {
            // A lint the user silenced on their struct (say `non_snake_case`
            // for JSON-shaped names) is silenced on the generated versions
            // too. `expect` becomes `allow` there: the lint need not fire in
            // every version, and an unmet expectation would warn.
            if let Meta::List(list) = &attr.meta {
                let tokens = &list.tokens;
                out.push(Item {
                    tokens: quote!(#[allow(#tokens)]),
                    depends: Depends::Nothing,
                    key: Some(path.clone()),
                    serde: None,
                    is_serde: false,
                    is_schemars: false,
                    doc: None,
                });
            }
            continue;
        }
        let schemars = path.is_ident("schemars");
        if !schemars && !path.is_ident("serde") {
            continue;
        }
        match attr.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated) {
            Ok(metas) => {
                for meta in metas {
                    let key = meta.path().clone();
                    let depends = if schemars {
                        Depends::Type
                    } else {
                        serde_depends(&key)
                    };
                    out.push(Item {
                        tokens: quote!(#[#path(#meta)]),
                        depends,
                        key: Some(key),
                        serde: (!schemars).then_some(meta),
                        is_serde: !schemars,
                        is_schemars: schemars,
                        doc: None,
                    });
                }
            }
            // Not a plain list: serde itself will report it on the user's
            // struct; copy it whole where the field is unchanged.
            Err(_) => out.push(Item {
                tokens: quote!(#attr),
                depends: Depends::Type,
                key: None,
                serde: None,
                is_serde: !schemars,
                is_schemars: schemars,
                doc: None,
            }),
        }
    }
    out
}

fn serde_depends(key: &syn::Path) -> Depends {
    const NAME: &[&str] = &["rename", "alias"];
    const TYPE: &[&str] = &[
        "with",
        "serialize_with",
        "deserialize_with",
        "skip_serializing_if",
        "default",
        "bound",
        "borrow",
        "getter",
    ];
    if NAME.iter().any(|k| key.is_ident(k)) {
        Depends::Name
    } else if TYPE.iter().any(|k| key.is_ident(k)) {
        Depends::Type
    } else {
        Depends::Nothing
    }
}
