//! What do we generate? The older-version structs, the hops between them,
//! and the `StateEvent`/`Upcast` impls.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit, Meta, Path, Type};

use crate::ast::Input;
use crate::attr::Kind;
use crate::describe::{self, Described};
use crate::history::{Conversion, FieldAt, Fill, History, RemovedAt, Version};
use crate::passthrough::{Depends, Item};
use crate::read::SlotReads;

/// Everything for a valid input, from its resolved history.
pub fn derive(history: &History) -> TokenStream {
    let cx = Gen::new(history);
    if history.input.is_enum {
        let enums = (1..cx.version).map(|v| cx.version_enum(v));
        let hops = (2..=cx.version).map(|v| cx.enum_hop(v));
        let upgrades = cx.upgrades();
        return quote! {
            #(#enums)*
            #[doc(hidden)]
            #[allow(non_upper_case_globals, unused_qualifications)]
            const _: () = {
                #(#hops)*
                #upgrades
            };
        };
    }
    let older = || history.versions.iter().filter(|v| v.number < cx.version);
    let structs = older().map(|v| cx.version_struct(v.number));
    let hops = history.versions.iter().skip(1).map(|v| cx.hop(v));
    let reads = cx.reads.expand(&cx.private);
    let json_schemas = cx.json_schema_impls();
    if history.input.kind == Kind::Nested {
        let defaults = older().map(|v| cx.default_impl(v.number));
        let upgrades = cx.upgrades();
        return quote! {
            #(#structs)*
            #[doc(hidden)]
            #[allow(non_upper_case_globals, unused_qualifications)]
            const _: () = {
                #reads
                #(#hops)*
                #upgrades
                #(#defaults)*
            };
        };
    }
    let upcasts = (1..=cx.version).map(|v| cx.upcast(v));
    let defaults = older().map(|v| cx.default_impl(v.number));
    let state_event = cx.state_event();
    let entity_claim = cx.entity_claim();
    quote! {
        #(#structs)*
        #entity_claim
        #[doc(hidden)]
        #[allow(non_upper_case_globals, unused_qualifications)]
        const _: () = {
            #reads
            #json_schemas
            #(#hops)*
            #(#upcasts)*
            #(#defaults)*
            #state_event
        };
    }
}

/// A stand-in impl emitted beside the errors, so that uses of the type do
/// not add a second wave of "StateEvent is not implemented" errors.
pub fn fallback(input: &syn::DeriveInput, krate: Option<&Path>) -> TokenStream {
    // Generic structs would need bounds; unions cannot derive serde's traits,
    // so an impl would only add "`Serialize` is not implemented" errors.
    if !input.generics.params.is_empty() || matches!(input.data, syn::Data::Union(_)) {
        return TokenStream::new();
    }
    let private = private_path(krate);
    let ident = &input.ident;
    quote! {
        const _: () = {
            impl #private::StateEvent for #ident {
                type Key = #private::String;
                const ENTITY: &'static str = "";
                const VERSION: u32 = 1;
                fn key(&self) -> &Self::Key {
                    ::core::unreachable!()
                }
                fn deserialize_version<'de, D>(
                    _: u32,
                    _: D,
                ) -> #private::Result<Self, #private::DecodeVersionError<D::Error>>
                where
                    D: #private::serde::Deserializer<'de>,
                {
                    ::core::unreachable!()
                }
                fn schema(_: u32) -> #private::Option<#private::schemars::Schema> {
                    ::core::unreachable!()
                }
            }
        };
    }
}

/// `Some(path)` if `item` is the container's `#[serde(default ..)]`.
fn container_default_item(item: &Item) -> Option<Option<Path>> {
    match item.serde.as_ref()? {
        Meta::Path(path) if path.is_ident("default") => Some(None),
        Meta::NameValue(nv) if nv.path.is_ident("default") => match &nv.value {
            Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            }) => lit.parse().ok().map(Some),
            _ => None,
        },
        _ => None,
    }
}

fn private_path(krate: Option<&Path>) -> TokenStream {
    match krate {
        Some(path) => quote!(#path::__private),
        None => quote!(::ecst::__private),
    }
}

struct Gen<'h, 'a> {
    history: &'h History<'a>,
    input: &'a Input<'a>,
    version: u32,
    entity: &'h str,
    private: TokenStream,
    krate: String,
    /// The older versions read through shared slots instead of serde's
    /// derive.
    reads: SlotReads<'h, 'a>,
}

impl<'h, 'a> Gen<'h, 'a> {
    fn new(history: &'h History<'a>) -> Self {
        let krate = &history.krate;
        Gen {
            history,
            input: history.input,
            version: history.newest(),
            entity: &history.entity,
            private: private_path(Some(krate)),
            krate: krate.to_token_stream().to_string().replace(' ', ""),
            reads: SlotReads::plan(history),
        }
    }

    /// The type of version `v`: `CustomerV1`, ..., and the struct itself last.
    fn type_of(&self, v: u32) -> TokenStream {
        if v == self.version {
            self.input.ident.to_token_stream()
        } else {
            format_ident!("{}V{}", self.input.ident, v).to_token_stream()
        }
    }

    /// A hidden item named after the entity, in the struct's own module:
    /// two `StateEvent` types of one module that declare the same entity
    /// collide, and rustc reports both `entity = ".."` literals. Types in
    /// different modules may share an entity (generations of it kept side
    /// by side, as tests and tools do); there `Catalog::registered` refuses
    /// the second one, naming both types.
    fn entity_claim(&self) -> TokenStream {
        let Some(lit) = &self.input.attrs.entity else {
            return TokenStream::new();
        };
        // Spanned at the literal, so that rustc points at both `entity`s.
        let ident = syn::Ident::new(&entity_claim_name(self.entity), lit.span());
        quote_spanned! {lit.span()=>
            #[doc(hidden)]
            #[allow(dead_code, non_upper_case_globals)]
            const #ident: () = ();
        }
    }

    /// The struct of version `v`. An older version is read and described,
    /// never written: it derives `Deserialize` and `JsonSchema` only (most of
    /// the derive's compile time is these structs' expansion), and whatever
    /// the user lists in `derive(..)`, e.g. `Serialize, Clone, Debug` to
    /// build old payloads in tests.
    fn version_struct(&self, v: u32) -> TokenStream {
        let input = self.input;
        let private = &self.private;
        let name = self.type_of(v);
        let vis = input.vis;
        let mut schema_name = None;
        let doc = match input.kind {
            Kind::Entity => {
                let doc = entity_version_doc(input.ident, v);
                quote!(#[doc = #doc])
            }
            // The newest type's docs and schema name: they are part of the
            // schema of every entity version that held this one.
            Kind::Nested => {
                let docs = &input.docs;
                let renamed = input
                    .serde
                    .iter()
                    .any(|item| item.key.as_ref().is_some_and(|key| key.is_ident("rename")));
                let name = input.ident.unraw().to_string();
                schema_name = (!renamed).then(|| quote!(#[schemars(rename = #name)]));
                quote!(#(#docs)*)
            }
        };
        let serde_crate = format!("{}::__private::serde", self.krate);
        let schemars_crate = format!("{}::__private::schemars", self.krate);
        // A container `#[serde(default)]` fills missing fields from the
        // newest struct's default (see `default_impl`), so each version gets
        // a bare `default` and an impl of its own.
        // Read through the entity's slots (`read.rs`) where serde's derive
        // is not needed to read it exactly, and described by a table
        // (`describe.rs`) where schemars' derive is not needed either.
        let deserialize = (!self.reads.covers(v)).then(|| quote!(#private::serde::Deserialize,));
        let (json_schema, keep_serde) = match describe::described(input, self.reads.version(v)) {
            Described::Derive => (Some(quote!(#private::schemars::JsonSchema,)), true),
            Described::Table { keep_serde } => (None, keep_serde),
        };
        let schemars_crate = json_schema
            .is_some()
            .then(|| quote!(#[schemars(crate = #schemars_crate)]));
        let serde_crate = keep_serde.then(|| quote!(#[serde(crate = #serde_crate)]));
        let container_serde = input
            .serde
            .iter()
            .filter(|item| container_default_item(item).is_none())
            .filter(|item| keep_serde || !item.is_serde)
            .map(|item| &item.tokens);
        let default = self.container_default().map(|_| quote!(#[serde(default)]));
        let extra = &input.attrs.derives;
        let derive = (deserialize.is_some() || json_schema.is_some() || !extra.is_empty())
            .then(|| quote!(#[derive(#deserialize #json_schema #(#extra,)*)]));
        let fields = self.history.fields_at(v).map(|f| field_at(&f));
        let removed = self
            .history
            .removed_at(v)
            .into_iter()
            .map(|r| removed_field(&r, vis));
        quote! {
            #doc
            #derive
            #serde_crate
            #schemars_crate
            #schema_name
            #(#container_serde)*
            #default
            #vis struct #name {
                #(#fields,)*
                #(#removed,)*
            }
        }
    }

    /// The `JsonSchema` impls of the older versions that `describe.rs`
    /// describes.
    fn json_schema_impls(&self) -> TokenStream {
        let mut out = TokenStream::new();
        for v in 1..self.version {
            let version = self.reads.version(v);
            if let (Described::Table { .. }, Some(version)) =
                (describe::described(self.input, version), version)
            {
                let doc = entity_version_doc(self.input.ident, v);
                out.extend(describe::json_schema_impl(
                    self.input,
                    version,
                    &doc,
                    &self.private,
                ));
            }
        }
        out
    }

    /// The container's `#[serde(default)]` (`Some(None)`) or
    /// `#[serde(default = "path")]` (`Some(Some(path))`).
    fn container_default(&self) -> Option<Option<Path>> {
        self.input.serde.iter().find_map(container_default_item)
    }

    /// `impl Default for V(v)` for a container `#[serde(default)]`: a field
    /// missing from an old payload gets what the newest struct's default
    /// holds for it (where it has the same type), exactly as it would in a
    /// newest-version payload; fields of another type get their type's
    /// `Default`.
    fn default_impl(&self, v: u32) -> TokenStream {
        let Some(source) = self.container_default() else {
            return TokenStream::new();
        };
        let private = &self.private;
        let latest = self.input.ident;
        let this = self.type_of(v);
        let mut taken = false;
        let mut inits = Vec::new();
        for FieldAt {
            field, name, ty, ..
        } in self.history.fields_at(v)
        {
            if core::ptr::eq(ty, field.ty) {
                let current = field.ident;
                inits.push(quote!(#name: latest.#current));
                taken = true;
            } else {
                inits.push(quote!(#name: <#ty as #private::Default>::default()));
            }
        }
        for RemovedAt { name, ty, .. } in self.history.removed_at(v) {
            inits.push(quote!(#name: <#ty as #private::Default>::default()));
        }
        let latest_value = match source {
            Some(path) => quote_spanned!(path.span()=> #path()),
            None => quote!(<#latest as #private::Default>::default()),
        };
        let binding = taken.then(|| quote!(let latest: #latest = #latest_value;));
        quote! {
            #[automatically_derived]
            impl #private::Default for #this {
                fn default() -> Self {
                    #binding
                    Self { #(#inits,)* }
                }
            }
        }
    }

    /// `impl TryFrom<V(v-1)> for V(v)`.
    fn hop(&self, version: &Version) -> TokenStream {
        let private = &self.private;
        let v = version.number;
        let prev = self.type_of(v - 1);
        let next = self.type_of(v);
        let entity = self.entity;
        let from = v - 1;
        let body = match version.hop() {
            Some(with) => {
                let signature = quote!(fn(#prev) -> #private::Result<#next, _>);
                let call = call_through(with, signature, quote!(previous));
                quote! {
                    #private::convert(#call, #entity, #from, #v, #private::None)
                }
            }
            None => self.generated_hop(version),
        };
        quote! {
            #[automatically_derived]
            impl #private::TryFrom<#prev> for #next {
                type Error = #private::UpcastError;
                fn try_from(previous: #prev) -> #private::Result<Self, #private::UpcastError> {
                    #body
                }
            }
        }
    }

    fn generated_hop(&self, version: &Version) -> TokenStream {
        let private = &self.private;
        let v = version.number;
        let prev = self.type_of(v - 1);
        let entity = self.entity;
        let from = v - 1;
        let mut fresh = Vec::new(); // values of fields added at v
        let mut moved = Vec::new(); // `old_name: binding` patterns
        let mut inits = Vec::new(); // `new_name: value`

        // Bindings are numbered, not named after fields: `__ecst_old_{name}`
        // would not be snake case for `_id` or `fullName`.
        let before: Vec<FieldAt> = self.history.fields_at(v - 1).collect();
        for FieldAt {
            index,
            field,
            name,
            ty,
        } in self.history.fields_at(v)
        {
            let binding = format_ident!("__ecst_field_{}", index);
            if let Some(fill) = version.added(field) {
                let value = added_value(fill, ty, &prev, private);
                fresh.push(quote!(let #binding: #ty = #value;));
                inits.push(quote!(#name: #binding));
                continue;
            }
            // Not added at `v`, so it existed at `v - 1`.
            let Some(old) = before.iter().find(|f| f.index == index) else {
                continue;
            };
            let old_name = old.name;
            moved.push(quote!(#old_name: #binding));
            match version.retyped(field) {
                Some((old_ty, Conversion::Function(with))) => {
                    let field_name = field.ident.unraw().to_string();
                    let signature = quote!(fn(#old_ty) -> #private::Result<#ty, _>);
                    let call = call_through(with, signature, quote!(#binding));
                    inits.push(quote! {
                        #name: #private::convert(#call, #entity, #from, #v, #private::Some(#field_name))?
                    });
                }
                Some((old_ty, Conversion::Nested)) => {
                    let field_name = field.ident.unraw().to_string();
                    let call = quote_spanned! {old_ty.span()=>
                        <#old_ty as #private::UpgradeTo<#ty>>::upgrade(#binding)
                    };
                    inits.push(quote! {
                        #name: #private::convert(#call, #entity, #from, #v, #private::Some(#field_name))?
                    });
                }
                // A hop converts the whole version, so it is not generated.
                Some((_, Conversion::Hop)) | None => inits.push(quote!(#name: #binding)),
            }
        }
        for RemovedAt { index, name, .. } in self.history.removed_at(v) {
            let binding = format_ident!("__ecst_removed_{}", index);
            moved.push(quote!(#name: #binding));
            inits.push(quote!(#name: #binding));
        }
        quote! {
            #(#fresh)*
            let #prev { #(#moved,)* .. } = previous;
            #private::Ok(Self { #(#inits,)* })
        }
    }

    fn upcast(&self, v: u32) -> TokenStream {
        let private = &self.private;
        let this = self.type_of(v);
        let latest = self.input.ident;
        let body = if v == self.version {
            quote!(#private::Ok(self))
        } else {
            let next = self.type_of(v + 1);
            quote! {
                let next = <#next as #private::TryFrom<#this>>::try_from(self)?;
                <#next as #private::Upcast>::upcast(next)
            }
        };
        quote! {
            #[automatically_derived]
            impl #private::Upcast for #this {
                type Latest = #latest;
                const VERSION: u32 = #v;
                fn upcast(self) -> #private::Result<#latest, #private::UpcastError> {
                    #body
                }
            }
        }
    }

    /// Version `v` of a nested enum: the variants that exist there, under
    /// their names there, with the newest enum's docs and schema name.
    fn version_enum(&self, v: u32) -> TokenStream {
        let input = self.input;
        let private = &self.private;
        let name = self.type_of(v);
        let vis = input.vis;
        let docs = &input.docs;
        let serde_crate = format!("{}::__private::serde", self.krate);
        let schemars_crate = format!("{}::__private::schemars", self.krate);
        let renamed = input
            .serde
            .iter()
            .any(|item| item.key.as_ref().is_some_and(|key| key.is_ident("rename")));
        let schema_name = input.ident.unraw().to_string();
        let schema_name = (!renamed).then(|| quote!(#[schemars(rename = #schema_name)]));
        let container_serde = input.serde.iter().map(|item| &item.tokens);
        let extra = &input.attrs.derives;
        let variants = input
            .variants
            .iter()
            .filter(|variant| variant.added_at() <= v)
            .map(|variant| {
                let name = variant.name_at(v);
                let same_name = name == variant.ident;
                let attrs = variant
                    .passthrough
                    .iter()
                    .filter(|item| same_name || item.depends != Depends::Name)
                    .map(|item| &item.tokens);
                let fields = variant.fields;
                quote!(#(#attrs)* #name #fields)
            });
        quote! {
            #(#docs)*
            #[derive(
                #private::serde::Deserialize,
                #private::schemars::JsonSchema,
                #(#extra,)*
            )]
            #[serde(crate = #serde_crate)]
            #[schemars(crate = #schemars_crate)]
            #schema_name
            #(#container_serde)*
            #vis enum #name {
                #(#variants,)*
            }
        }
    }

    /// `impl TryFrom<V(v-1)> for V(v)` of a nested enum: each variant to
    /// the variant of the same history, its fields moved as they are.
    fn enum_hop(&self, v: u32) -> TokenStream {
        let private = &self.private;
        let prev = self.type_of(v - 1);
        let next = self.type_of(v);
        let arms = self
            .input
            .variants
            .iter()
            .filter(|variant| variant.added_at() < v)
            .map(|variant| {
                let old = variant.name_at(v - 1);
                let new = variant.name_at(v);
                match variant.fields {
                    syn::Fields::Named(named) => {
                        let names: Vec<_> = named
                            .named
                            .iter()
                            .filter_map(|f| f.ident.as_ref())
                            .collect();
                        quote!(#prev::#old { #(#names,)* } => #next::#new { #(#names,)* })
                    }
                    syn::Fields::Unnamed(unnamed) => {
                        let bindings: Vec<_> = (0..unnamed.unnamed.len())
                            .map(|i| format_ident!("__ecst_field_{}", i))
                            .collect();
                        quote!(#prev::#old(#(#bindings,)*) => #next::#new(#(#bindings,)*))
                    }
                    syn::Fields::Unit => quote!(#prev::#old => #next::#new),
                }
            });
        quote! {
            #[automatically_derived]
            impl #private::TryFrom<#prev> for #next {
                type Error = #private::UpcastError;
                fn try_from(previous: #prev) -> #private::Result<Self, #private::UpcastError> {
                    #private::Ok(match previous {
                        #(#arms,)*
                    })
                }
            }
        }
    }

    /// `UpgradeTo<V(j)> for V(i)` for every `i < j`: the hops from `i` to
    /// `j`, chained, for an entity version that held version `i` of this
    /// nested type while the next held version `j`.
    fn upgrades(&self) -> TokenStream {
        let private = &self.private;
        let mut out = TokenStream::new();
        for i in 1..self.version {
            for j in i + 1..=self.version {
                let this = self.type_of(i);
                let target = self.type_of(j);
                let next = self.type_of(i + 1);
                let body = if i + 1 == j {
                    quote!(<#next as #private::TryFrom<#this>>::try_from(self))
                } else {
                    quote! {
                        let next = <#next as #private::TryFrom<#this>>::try_from(self)?;
                        <#next as #private::UpgradeTo<#target>>::upgrade(next)
                    }
                };
                out.extend(quote! {
                    #[automatically_derived]
                    impl #private::UpgradeTo<#target> for #this {
                        fn upgrade(self) -> #private::Result<#target, #private::UpcastError> {
                            #body
                        }
                    }
                });
            }
        }
        out
    }

    fn state_event(&self) -> TokenStream {
        let private = &self.private;
        let ident = self.input.ident;
        let entity = self.entity;
        let version = self.version;
        let Some(key) = self.history.key else {
            return TokenStream::new();
        };
        let key_ident = key.ident;
        let compatibility = self
            .input
            .attrs
            .compatibility
            .as_ref()
            .map(|mode| quote!(const COMPATIBILITY: #private::Mode = #private::Mode::#mode;));
        let key_ty = key.ty;
        let key_ty = quote_spanned!(key_ty.span()=> #key_ty);
        let decode_arms = (1..=version).map(|v| {
            let ty = self.type_of(v);
            quote!(#v => #private::deserialize_and_upcast::<#ty, D>(deserializer),)
        });
        let schema_arms = (1..=version).map(|v| {
            let ty = self.type_of(v);
            let json_schema = quote!(<#ty as #private::schemars::JsonSchema>);
            quote!(#v => #private::Some(#private::root_schema(#private::SchemaOf {
                name: #json_schema::schema_name,
                id: #json_schema::schema_id,
                json: #json_schema::json_schema,
            })),)
        });
        quote! {
            #[automatically_derived]
            impl #private::StateEvent for #ident {
                type Key = #key_ty;
                const ENTITY: &'static str = #entity;
                const VERSION: u32 = #version;
                #compatibility

                fn key(&self) -> &Self::Key {
                    &self.#key_ident
                }

                fn deserialize_version<'de, D>(
                    version: u32,
                    deserializer: D,
                ) -> #private::Result<Self, #private::DecodeVersionError<D::Error>>
                where
                    D: #private::serde::Deserializer<'de>,
                {
                    match version {
                        #(#decode_arms)*
                        _ => #private::Err(#private::DecodeVersionError::UnknownVersion {
                            version,
                            newest: #version,
                        }),
                    }
                }

                fn schema(version: u32) -> #private::Option<#private::schemars::Schema> {
                    match version {
                        #(#schema_arms)*
                        _ => #private::None,
                    }
                }
            }

            #private::inventory::submit! {
                #private::Registration(#private::EventType::of::<#ident>())
            }
        }
    }
}

/// The doc comment of an entity's older version `v`.
fn entity_version_doc(ident: &syn::Ident, v: u32) -> String {
    format!(
        " Version {v} of [`{ident}`], the shape its events had before version \
         {next}.\n\n Generated by `#[derive(StateEvent)]` from `{ident}`'s declared \
         history. Decode a payload of any version with `{ident}::from_json_version`, \
         or bring this one up to date with `Upcast::upcast`.",
        next = v + 1,
    )
}

/// The name of the item that claims `entity` in its module. Entity names
/// are `[A-Za-z][A-Za-z0-9_-]*` (checked by validation); one without `-`
/// is used as it is, and one with `-` is spelled after a `0` (which no
/// entity name starts with) with `_` as `__` and `-` as `_h`, so that two
/// names never share a spelling.
fn entity_claim_name(entity: &str) -> String {
    if !entity.contains('-') {
        return format!("entity_{entity}_declared_twice_in_one_module");
    }
    let mut spelled = String::from("entity_0_");
    for c in entity.chars() {
        match c {
            '_' => spelled.push_str("__"),
            '-' => spelled.push_str("_h"),
            c => spelled.push(c),
        }
    }
    spelled.push_str("_declared_twice_in_one_module");
    spelled
}

/// The value of a field added at this hop: `Default`, `default = f` (called
/// with nothing) or `with = f` (called with the previous version).
fn added_value(fill: &Fill, ty: &Type, prev: &TokenStream, private: &TokenStream) -> TokenStream {
    match fill {
        Fill::FromPrevious(with) => {
            call_through(with, quote!(fn(&#prev) -> #ty), quote!(&previous))
        }
        Fill::Function(default) => call_through(default, quote!(fn() -> #ty), TokenStream::new()),
        // The type too gets the attribute's span: a missing `Default` is
        // then reported at `added`, not at the field's type.
        Fill::Default { span } => {
            let ty = respan(ty.to_token_stream(), *span);
            quote_spanned!(*span=> <#ty as #private::AddedDefault>::added_default())
        }
    }
}

/// A field of a version's struct, with the `#[serde]` and other attributes
/// that still apply to its name and type there.
fn field_at(at: &FieldAt) -> TokenStream {
    let FieldAt {
        field, name, ty, ..
    } = at;
    let same_name = *name == field.ident;
    let same_type = core::ptr::eq(*ty, field.ty);
    let attrs = field.passthrough.iter().filter(|item| match item.depends {
        Depends::Name => same_name,
        Depends::Type => same_type,
        Depends::Nothing => true,
    });
    let attrs = attrs.map(|item| &item.tokens);
    let vis = field.vis;
    quote! {
        #(#attrs)*
        #vis #name: #ty
    }
}

/// Calls the user's function `with` through a function pointer of the
/// expected `signature`, so that a mismatch is reported at `with` as
/// "expected fn pointer `fn(u32) -> Result<u64, _>`, found fn item `..`",
/// not as a type error inside the generated code.
fn call_through(with: &Path, signature: TokenStream, args: TokenStream) -> TokenStream {
    let signature = respan(signature, with.span());
    // The binding keeps the macro's span, so that lints about underscore
    // bindings see generated code, not the user's attribute.
    let binding = format_ident!("__ecst_fn");
    quote_spanned! {with.span()=>
        {
            let #binding: #signature = #with;
            #binding(#args)
        }
    }
}

/// `tokens` with every span set to `span`, so that rustc's "expected due to
/// this" labels point at the user's attribute rather than at the derive.
fn respan(tokens: TokenStream, span: proc_macro2::Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tt| {
            if let proc_macro2::TokenTree::Group(group) = &tt {
                let mut inner =
                    proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                tt = proc_macro2::TokenTree::Group(inner);
            } else {
                tt.set_span(span);
            }
            tt
        })
        .collect()
}

fn removed_field(removed: &RemovedAt, vis: &syn::Visibility) -> TokenStream {
    let RemovedAt {
        name, ty, since, ..
    } = removed;
    let doc = format!(" Removed in version {since}.");
    quote! {
        #[doc = #doc]
        #vis #name: #ty
    }
}
