//! How the older versions are described: an older entity version read
//! through the slots (`read.rs`) whose fields carry no `#[schemars]`
//! attribute gets a small `JsonSchema` impl that hands a table of its
//! properties to `__private::object_schema`, instead of schemars' derive.
//! The schema is the one the derive builds (the lock in `tests/schemas/`
//! checks it byte for byte): the same schemars functions, called in the
//! same order, with the doc comments joined as schemars' derive joins them.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::ast::Input;
use crate::attr::Kind;
use crate::read::ReadVersion;

/// How version `v`'s struct gets its `JsonSchema`.
pub enum Described {
    /// schemars' derive, as before.
    Derive,
    /// The impl [`json_schema_impl`] writes; `keep_serde` says whether the
    /// struct keeps its `#[serde(..)]` attributes (for a `Serialize` the
    /// user asked for in `derive(..)`).
    Table { keep_serde: bool },
}

/// Whether the impl below can describe `version` exactly.
pub fn described(input: &Input, version: Option<&ReadVersion>) -> Described {
    let Some(version) = version else {
        return Described::Derive;
    };
    if input.kind != Kind::Entity
        || input.serde.iter().any(|item| item.is_schemars)
        || version.fields.iter().any(|f| f.doc.is_err())
    {
        return Described::Derive;
    }
    let derives = &input.attrs.derives;
    if derives.is_empty() {
        return Described::Table { keep_serde: false };
    }
    // Another derive must declare the `serde` helper attribute for the
    // struct to keep `#[serde(..)]`: serde's `Serialize` does.
    let serialize = derives
        .iter()
        .any(|path| path.segments.last().is_some_and(|s| s.ident == "Serialize"));
    if serialize {
        Described::Table { keep_serde: true }
    } else {
        Described::Derive
    }
}

/// The `JsonSchema` impl of `version`, whose struct has the doc comment
/// `doc` (one `#[doc]` line).
pub fn json_schema_impl(
    input: &Input,
    version: &ReadVersion,
    doc: &str,
    private: &TokenStream,
) -> TokenStream {
    let ident = format_ident!("{}V{}", input.ident, version.number);
    let name = ident.to_string();
    // schemars' `get_doc`: the line without one leading space.
    let doc = doc.strip_prefix(' ').unwrap_or(doc);
    let properties = version.fields.iter().map(|f| {
        let ty = f.ty;
        let ty = quote_spanned!(ty.span()=> #ty);
        let wire = &f.wire;
        let doc = match &f.doc {
            Ok(Some(doc)) => quote!(#private::Some(#doc)),
            _ => quote!(#private::None),
        };
        quote!(#private::property::<#ty>(#wire, #doc))
    });
    quote! {
        #[automatically_derived]
        impl #private::schemars::JsonSchema for #ident {
            fn schema_name() -> #private::Cow<'static, str> {
                #private::Cow::Borrowed(#name)
            }

            fn schema_id() -> #private::Cow<'static, str> {
                #private::Cow::Borrowed(::core::concat!(::core::module_path!(), "::", #name))
            }

            fn json_schema(
                generator: &mut #private::schemars::SchemaGenerator,
            ) -> #private::schemars::Schema {
                #private::object_schema(generator, #doc, &[#(#properties,)*])
            }

            fn inline_schema() -> bool {
                false
            }
        }
    }
}
