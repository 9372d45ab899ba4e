//! Parsing `#[state_event(...)]`: what did the user write?
//!
//! Every mistake is recorded in the [`Ctxt`] and parsing goes on with the
//! next item, so that one compile shows them all. Required arguments of a
//! list (`removed(since, field, ty)`) are checked here, except a missing
//! `with`, whose message names types that only `valid.rs` knows; how the
//! attributes fit together is `valid.rs`'s job.
//!
//! Each key the user wrote is remembered in `written` even when its value
//! was malformed or it sat on the wrong item, so that validation does not
//! add a second "missing `version`" error to the first "bad `version`" one.

use proc_macro2::{Span, TokenTree};
use syn::meta::ParseNestedMeta;
use syn::parse::ParseStream;
use syn::{Attribute, Ident, Lit, LitInt, LitStr, Meta, Path, Token, Type};

use crate::ctxt::Ctxt;
use crate::symbol::*;

/// Which derive is reading: an entity's `#[state_event(..)]` or a nested
/// type's `#[versioned(..)]`, which shares the vocabulary of changes but has
/// no entity, key or compatibility mode.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Entity,
    Nested,
}

impl Kind {
    /// The attribute's name.
    pub fn attr(self) -> &'static str {
        match self {
            Kind::Entity => STATE_EVENT,
            Kind::Nested => VERSIONED,
        }
    }

    fn container_keys(self) -> &'static [&'static str] {
        match self {
            Kind::Entity => CONTAINER_KEYS,
            Kind::Nested => NESTED_CONTAINER_KEYS,
        }
    }

    fn field_keys(self) -> &'static [&'static str] {
        match self {
            Kind::Entity => FIELD_KEYS,
            Kind::Nested => NESTED_FIELD_KEYS,
        }
    }
}

/// A version number as written: `since = 3`.
#[derive(Clone)]
pub struct Since {
    pub version: u32,
    pub lit: LitInt,
}

/// A field name written as a string (or a bare identifier).
#[derive(Clone)]
pub struct Name {
    pub ident: Ident,
    pub span: Span,
}

pub struct Removed {
    pub since: Option<Since>,
    pub field: Option<Name>,
    pub ty: Option<Type>,
}

pub struct Hop {
    pub keyword: Ident,
    pub since: Option<Since>,
    pub with: Option<Path>,
    /// `with` was written, even if its value did not parse.
    pub with_written: bool,
}

#[derive(Default)]
pub struct Container {
    pub entity: Option<LitStr>,
    pub version: Option<Since>,
    pub removed: Vec<Removed>,
    pub hops: Vec<Hop>,
    pub derives: Vec<Path>,
    pub krate: Option<Path>,
    /// `compatibility = "FULL"`: the runtime `Mode` variant's name.
    pub compatibility: Option<Ident>,
    /// Every key written on the struct, including malformed, misplaced and
    /// (as the key they most resemble) misspelled ones.
    pub written: Vec<&'static str>,
    /// Every `since = N` written on the struct, like [`Sinces`].
    pub sinces: Sinces,
}

/// Every `since = ..` written in an item's `#[state_event(..)]` attributes,
/// read from the raw tokens, so also those inside an attribute that did not
/// parse: a version gap is reported beside other mistakes only if none of
/// them can fill it.
#[derive(Default)]
pub struct Sinces {
    pub versions: Vec<u32>,
    /// A `since` whose value is not a version number: it might fill any gap.
    pub unreadable: bool,
}

pub struct Added {
    pub keyword: Ident,
    pub since: Option<Since>,
    pub default: Option<Path>,
    pub with: Option<Path>,
}

pub struct Renamed {
    pub since: Option<Since>,
    pub from: Option<Name>,
}

pub struct Retyped {
    /// `retyped`, or `nested` for a change of a nested type's version.
    pub keyword: Ident,
    pub since: Option<Since>,
    pub from: Option<Type>,
    pub with: Option<Path>,
    /// `with` was written, even if its value did not parse.
    pub with_written: bool,
    /// `nested(since = N, from = TypeVk)`: the nested type's own history
    /// converts, so there is no `with`.
    pub nested: bool,
}

#[derive(Default)]
pub struct Field {
    pub key: Option<Ident>,
    pub added: Option<Added>,
    pub renamed: Vec<Renamed>,
    pub retyped: Vec<Retyped>,
    /// Every key written on the field, like [`Container::written`].
    pub written: Vec<&'static str>,
    /// Every `since = N` written on the field, like [`Sinces`].
    pub sinces: Sinces,
}

/// Reads the container's `#[state_event(...)]` (or `#[versioned(..)]`)
/// attributes.
pub fn container(cx: &mut Ctxt, attrs: &[Attribute], kind: Kind) -> Container {
    let mut out = Container {
        sinces: sinces(attrs, kind),
        ..Container::default()
    };
    let without_list = match kind {
        Kind::Entity => {
            "`state_event` needs a list of arguments: write \
                         `#[state_event(entity = \"customer\", version = 1)]`"
        }
        Kind::Nested => "`versioned` needs a list of arguments: write `#[versioned(version = 2)]`",
    };
    let without_list = each_item(cx, attrs, kind, without_list, |cx, meta| {
        out.written.extend(written_key(&meta.path, ALL_KEYS));
        container_item(cx, &mut out, meta, kind)
    });
    if without_list {
        // Do not also report the missing `entity` and `version`.
        out.written.extend([ENTITY, VERSION]);
    }
    out
}

fn container_item(
    cx: &mut Ctxt,
    out: &mut Container,
    meta: &ParseNestedMeta,
    kind: Kind,
) -> syn::Result<()> {
    let path = &meta.path;
    if kind == Kind::Nested && (path.is_ident(ENTITY) || path.is_ident(COMPATIBILITY)) {
        return Err(meta.error(format!(
            "`{}` belongs on the `#[derive(StateEvent)]` entity: a `Versioned` type is nested in \
             one, and has only a `version` and its changes; remove it here",
            quote::quote!(#path),
        )));
    }
    if path.is_ident(ENTITY) {
        let lit: LitStr = parse_string(meta, "entity = \"customer\"")?;
        set_once(cx, &mut out.entity, lit, path);
    } else if path.is_ident(VERSION) {
        let since = parse_version(meta, VERSION, 3)?;
        set_once(cx, &mut out.version, since, path);
    } else if path.is_ident(REMOVED) {
        let (mut since, mut field, mut ty) = (None, None, None);
        list(
            cx,
            meta,
            "removed(since = 3, field = \"fax\", ty = Option<String>)",
            &[
                Arg::required(
                    SINCE,
                    "the version the field was removed at, e.g. `since = 3`",
                ),
                Arg::required(FIELD, "the removed field's name, e.g. `field = \"fax\"`"),
                Arg::required(TY, "the removed field's type, e.g. `ty = Option<String>`"),
            ],
            |cx, arg| {
                if arg.path.is_ident(SINCE) {
                    set_once(cx, &mut since, parse_version(arg, SINCE, 3)?, &arg.path);
                } else if arg.path.is_ident(FIELD) {
                    set_once(cx, &mut field, parse_name(arg)?, &arg.path);
                } else {
                    set_once(cx, &mut ty, parse_type(arg)?, &arg.path);
                }
                Ok(())
            },
        )?;
        out.removed.push(Removed { since, field, ty });
    } else if path.is_ident(HOP) {
        let keyword = keyword(meta)?;
        let (mut since, mut with) = (None, None);
        // A missing `with` is reported by validation, which knows the types.
        let written = list(
            cx,
            meta,
            "hop(since = 2, with = path::to::function)",
            &[
                Arg::required(SINCE, "the version the hop leads to, e.g. `since = 2`"),
                Arg::optional(WITH),
            ],
            |cx, arg| {
                if arg.path.is_ident(SINCE) {
                    set_once(cx, &mut since, parse_version(arg, SINCE, 2)?, &arg.path);
                } else {
                    set_once(cx, &mut with, parse_path(arg)?, &arg.path);
                }
                Ok(())
            },
        )?;
        out.hops.push(Hop {
            keyword,
            since,
            with,
            with_written: written.contains(&WITH),
        });
    } else if path.is_ident(DERIVE) {
        if !meta.input.peek(syn::token::Paren) {
            return Err(meta.error("expected a list of derives, e.g. `derive(Eq, Hash)`"));
        }
        meta.parse_nested_meta(|arg| {
            out.derives.push(arg.path.clone());
            Ok(())
        })?;
    } else if path.is_ident(COMPATIBILITY) {
        let lit: LitStr = parse_string(meta, "compatibility = \"BACKWARD\"")?;
        let value = lit.value();
        let Some((_, variant)) = MODES.iter().find(|(name, _)| *name == value) else {
            let names: Vec<&str> = MODES.iter().map(|(name, _)| *name).collect();
            return Err(syn::Error::new(
                lit.span(),
                format!(
                    "unknown compatibility mode `{value}`; expected {} (Confluent Schema \
                     Registry's names)",
                    one_of(&names)
                ),
            ));
        };
        set_once(
            cx,
            &mut out.compatibility,
            Ident::new(variant, lit.span()),
            path,
        );
    } else if path.is_ident(CRATE) {
        let lit: LitStr = parse_string(meta, "crate = \"path::to::ecst\"")?;
        let krate: Path = lit.parse()?;
        set_once(cx, &mut out.krate, krate, path);
    } else if FIELD_KEYS.iter().any(|k| path.is_ident(k)) {
        return Err(meta.error(format!(
            "`{}` belongs on a field, not on the struct: put `#[{}({})]` above the field",
            quote::quote!(#path),
            kind.attr(),
            as_written(meta).unwrap_or_else(|| example(path).to_owned()),
        )));
    } else {
        return Err(meta.error(unknown_key(path, "a struct", kind.container_keys())));
    }
    Ok(())
}

/// Reads a field's `#[state_event(...)]` (or `#[versioned(..)]`)
/// attributes.
pub fn field(cx: &mut Ctxt, attrs: &[Attribute], kind: Kind) -> Field {
    let mut out = Field {
        sinces: sinces(attrs, kind),
        ..Field::default()
    };
    let without_list = match kind {
        Kind::Entity => {
            "`state_event` needs a list of arguments, e.g. `#[state_event(key)]` or \
                         `#[state_event(added(since = 2))]`"
        }
        Kind::Nested => {
            "`versioned` needs a list of arguments, e.g. \
                         `#[versioned(added(since = 2))]`"
        }
    };
    each_item(cx, attrs, kind, without_list, |cx, meta| {
        out.written.extend(written_key(&meta.path, ALL_KEYS));
        field_item(cx, &mut out, meta, kind)
    });
    out
}

fn field_item(
    cx: &mut Ctxt,
    out: &mut Field,
    meta: &ParseNestedMeta,
    kind: Kind,
) -> syn::Result<()> {
    let path = &meta.path;
    if kind == Kind::Nested && path.is_ident(KEY) {
        return Err(meta.error(
            "a `Versioned` type is nested in an entity and has no key of its own: remove `key`; \
             the entity's `#[state_event(key)]` field identifies it",
        ));
    }
    if path.is_ident(KEY) {
        if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
            return Err(meta.error("`key` takes no arguments: write `#[state_event(key)]`"));
        }
        let ident = keyword(meta)?;
        set_once(cx, &mut out.key, ident, path);
    } else if path.is_ident(ADDED) {
        let keyword = keyword(meta)?;
        let (mut since, mut default, mut with) = (None, None, None);
        list(
            cx,
            meta,
            "added(since = 2)",
            &[
                Arg::required(
                    SINCE,
                    "the version the field was added at, e.g. `since = 2`",
                ),
                Arg::optional(DEFAULT),
                Arg::optional(WITH),
            ],
            |cx, arg| {
                if arg.path.is_ident(SINCE) {
                    set_once(cx, &mut since, parse_version(arg, SINCE, 2)?, &arg.path);
                } else if arg.path.is_ident(DEFAULT) {
                    set_once(cx, &mut default, parse_path(arg)?, &arg.path);
                } else {
                    set_once(cx, &mut with, parse_path(arg)?, &arg.path);
                }
                Ok(())
            },
        )?;
        let added = Added {
            keyword,
            since,
            default,
            with,
        };
        if out.added.is_some() {
            cx.error_spanned_by(
                &added.keyword,
                "duplicate `added`: a field is added once; keep one `added(since = ..)`",
            );
        } else {
            out.added = Some(added);
        }
    } else if path.is_ident(RENAMED) {
        let (mut since, mut from) = (None, None);
        list(
            cx,
            meta,
            "renamed(since = 2, from = \"old_name\")",
            &[
                Arg::required(
                    SINCE,
                    "the version the new name starts at, e.g. `since = 2`",
                ),
                Arg::required(
                    FROM,
                    "the field's previous name, e.g. `from = \"old_name\"`",
                ),
            ],
            |cx, arg| {
                if arg.path.is_ident(SINCE) {
                    set_once(cx, &mut since, parse_version(arg, SINCE, 2)?, &arg.path);
                } else {
                    set_once(cx, &mut from, parse_name(arg)?, &arg.path);
                }
                Ok(())
            },
        )?;
        out.renamed.push(Renamed { since, from });
    } else if path.is_ident(RETYPED) {
        let keyword = keyword(meta)?;
        let (mut since, mut from, mut with) = (None, None, None);
        // A missing `with` is reported by validation, which knows the types.
        let written = list(
            cx,
            meta,
            "retyped(since = 2, from = u32, with = path::to::function)",
            &[
                Arg::required(
                    SINCE,
                    "the version the new type starts at, e.g. `since = 2`",
                ),
                Arg::required(FROM, "the field's previous type, e.g. `from = u32`"),
                Arg::optional(WITH),
            ],
            |cx, arg| {
                if arg.path.is_ident(SINCE) {
                    set_once(cx, &mut since, parse_version(arg, SINCE, 2)?, &arg.path);
                } else if arg.path.is_ident(FROM) {
                    set_once(cx, &mut from, parse_type(arg)?, &arg.path);
                } else {
                    set_once(cx, &mut with, parse_path(arg)?, &arg.path);
                }
                Ok(())
            },
        )?;
        out.retyped.push(Retyped {
            keyword,
            since,
            from,
            with,
            with_written: written.contains(&WITH),
            nested: false,
        });
    } else if path.is_ident(NESTED) {
        let keyword = keyword(meta)?;
        let (mut since, mut from) = (None, None);
        list(
            cx,
            meta,
            "nested(since = 2, from = AddressV1)",
            &[
                Arg::required(
                    SINCE,
                    "the version whose events hold the field's type as it is now, e.g. \
                     `since = 2`",
                ),
                Arg::required(
                    FROM,
                    "the version of the nested type that the events before it held, e.g. \
                     `from = AddressV1`",
                ),
            ],
            |cx, arg| {
                if arg.path.is_ident(SINCE) {
                    set_once(cx, &mut since, parse_version(arg, SINCE, 2)?, &arg.path);
                } else {
                    set_once(cx, &mut from, parse_type(arg)?, &arg.path);
                }
                Ok(())
            },
        )?;
        out.retyped.push(Retyped {
            keyword,
            since,
            from,
            with: None,
            with_written: false,
            nested: true,
        });
    } else if CONTAINER_KEYS.iter().any(|k| path.is_ident(k)) {
        return Err(meta.error(format!(
            "`{}` belongs on the struct, not on a field: put `#[{}({})]` above the struct",
            quote::quote!(#path),
            kind.attr(),
            as_written(meta).unwrap_or_else(|| example(path).to_owned()),
        )));
    } else {
        return Err(meta.error(unknown_key(path, "a field", kind.field_keys())));
    }
    Ok(())
}

/// Calls `item` for each item of every `#[state_event(...)]` among `attrs`,
/// recording each error and going on with the next item. A
/// `#[state_event]` without a list is reported with `without_list`; returns
/// whether there was one.
fn each_item(
    cx: &mut Ctxt,
    attrs: &[Attribute],
    kind: Kind,
    without_list: &str,
    mut item: impl FnMut(&mut Ctxt, &ParseNestedMeta) -> syn::Result<()>,
) -> bool {
    let mut found_without_list = false;
    for attr in attrs.iter().filter(|a| a.path().is_ident(kind.attr())) {
        if !matches!(attr.meta, Meta::List(_)) {
            cx.error_spanned_by(&attr.meta, without_list);
            found_without_list = true;
            continue;
        }
        let result = attr.parse_nested_meta(|meta| {
            if let Err(e) = item(cx, &meta) {
                cx.syn_error(e);
                skip_rest(meta.input);
            }
            Ok(())
        });
        if let Err(e) = result {
            cx.syn_error(e);
        }
    }
    found_without_list
}

/// Every `since = ..` in the `#[state_event(..)]` attributes among `attrs`.
/// A change (`added`, .., or a misspelling of one) without a readable
/// `since`, such as `added = 2`, declares a version nobody can read.
fn sinces(attrs: &[Attribute], kind: Kind) -> Sinces {
    let mut out = Sinces::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident(kind.attr())) {
        let Meta::List(list) = &attr.meta else {
            continue;
        };
        let tokens: Vec<TokenTree> = list.tokens.clone().into_iter().collect();
        let items = tokens.split(|tt| matches!(tt, TokenTree::Punct(p) if p.as_char() == ','));
        for item in items {
            let mut found = Sinces::default();
            scan_sinces(item.iter().cloned().collect(), &mut found);
            let is_change = match item.first() {
                Some(TokenTree::Ident(key)) => {
                    let key = key.to_string();
                    CHANGE_KEYS.contains(&key.as_str()) || closest(&key, CHANGE_KEYS).is_some()
                }
                _ => false,
            };
            out.unreadable |= found.unreadable || (is_change && found.versions.is_empty());
            out.versions.extend(found.versions);
        }
    }
    out
}

fn scan_sinces(tokens: proc_macro2::TokenStream, out: &mut Sinces) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    for (i, token) in tokens.iter().enumerate() {
        match token {
            TokenTree::Group(group) => scan_sinces(group.stream(), out),
            TokenTree::Ident(ident) if ident == SINCE => {
                let (Some(TokenTree::Punct(eq)), value) = (tokens.get(i + 1), tokens.get(i + 2))
                else {
                    continue;
                };
                if eq.as_char() != '=' {
                    continue;
                }
                let version = match value {
                    Some(TokenTree::Literal(literal)) => match Lit::new(literal.clone()) {
                        Lit::Int(int) => int.base10_parse::<u32>().ok(),
                        Lit::Str(text) => text.value().trim().parse::<u32>().ok(),
                        _ => None,
                    },
                    _ => None,
                };
                match version {
                    Some(version) => out.versions.push(version),
                    None => out.unreadable = true,
                }
            }
            _ => {}
        }
    }
}

/// The item as the user wrote it, if it is a simple `name = literal`.
fn as_written(meta: &ParseNestedMeta) -> Option<String> {
    let fork = meta.input.fork();
    fork.parse::<Token![=]>().ok()?;
    let lit: Lit = fork.parse().ok()?;
    if !fork.is_empty() && !fork.peek(Token![,]) {
        return None;
    }
    let path = &meta.path;
    Some(format!(
        "{} = {}",
        quote::quote!(#path),
        quote::quote!(#lit)
    ))
}

/// How to write the item `path`, for messages that move it.
fn example(path: &Path) -> &'static str {
    const EXAMPLES: &[(&str, &str)] = &[
        (ENTITY, "entity = \"customer\""),
        (VERSION, "version = 2"),
        (
            REMOVED,
            "removed(since = 2, field = \"fax\", ty = Option<String>)",
        ),
        (HOP, "hop(since = 2, with = path::to::function)"),
        (DERIVE, "derive(Eq, Hash)"),
        (CRATE, "crate = \"path::to::ecst\""),
        (COMPATIBILITY, "compatibility = \"FULL\""),
        (KEY, "key"),
        (ADDED, "added(since = 2)"),
        (RENAMED, "renamed(since = 2, from = \"old_name\")"),
        (
            RETYPED,
            "retyped(since = 2, from = u32, with = path::to::function)",
        ),
        (NESTED, "nested(since = 2, from = AddressV1)"),
    ];
    EXAMPLES
        .iter()
        .find(|(k, _)| path.is_ident(k))
        .map_or("..", |(_, example)| example)
}

fn unknown_key(path: &Path, on: &str, allowed: &[&'static str]) -> String {
    let written = quote::quote!(#path).to_string();
    match closest(&written, allowed) {
        Some(suggestion) => format!(
            "unknown `state_event` attribute `{written}` on {on}; did you mean `{suggestion}`?"
        ),
        None => format!(
            "unknown `state_event` attribute `{written}` on {on}; expected {}",
            one_of(allowed),
        ),
    }
}

/// The vocabulary key `path` is, or most likely means.
fn written_key(path: &Path, keys: &[&'static str]) -> Option<&'static str> {
    let ident = path.get_ident()?.to_string();
    keys.iter()
        .find(|k| **k == ident)
        .copied()
        .or_else(|| closest(&ident, keys))
}

/// The keyword itself, for spans.
fn keyword(meta: &ParseNestedMeta) -> syn::Result<Ident> {
    meta.path
        .get_ident()
        .cloned()
        .ok_or_else(|| meta.error("expected an identifier"))
}

/// An argument a list takes (`since` in `removed(since = 3, ..)`).
struct Arg {
    key: &'static str,
    /// For a required argument, what it gives, for the error when it is
    /// missing; `None` for an optional one.
    needs: Option<&'static str>,
}

impl Arg {
    /// An argument the list needs; `what` says what it gives, with an
    /// example.
    fn required(key: &'static str, what: &'static str) -> Self {
        Arg {
            key,
            needs: Some(what),
        }
    }

    /// An argument the list may go without (or whose absence validation
    /// reports).
    fn optional(key: &'static str) -> Self {
        Arg { key, needs: None }
    }
}

/// Parses `name(arg, arg, ..)`, recording each bad argument and going on,
/// then each required argument not written. `each` sees only the arguments
/// in `args`. Returns the arguments written, including malformed and (as
/// the argument they resemble) misspelled ones.
fn list(
    cx: &mut Ctxt,
    meta: &ParseNestedMeta,
    example: &str,
    args: &[Arg],
    mut each: impl FnMut(&mut Ctxt, &ParseNestedMeta) -> syn::Result<()>,
) -> syn::Result<Vec<&'static str>> {
    if !meta.input.peek(syn::token::Paren) {
        let name = &meta.path;
        return Err(meta.error(format!(
            "`{}` takes a list of arguments: write `{example}`",
            quote::quote!(#name),
        )));
    }
    let allowed: Vec<&'static str> = args.iter().map(|arg| arg.key).collect();
    let allowed = allowed.as_slice();
    let list = meta.path.get_ident().map(Ident::to_string);
    let mut written = Vec::new();
    meta.parse_nested_meta(|arg| {
        let result = match arg.path.get_ident().map(Ident::to_string) {
            Some(name) if allowed.contains(&name.as_str()) => {
                written.extend(allowed.iter().find(|k| **k == name));
                each(cx, &arg)
            }
            _ => {
                written.extend(written_key(&arg.path, allowed));
                Err(unknown_argument(
                    &arg,
                    list.as_deref().unwrap_or(""),
                    allowed,
                ))
            }
        };
        if let Err(e) = result {
            cx.syn_error(e);
            skip_rest(arg.input);
        }
        Ok(())
    })?;
    // A malformed argument was reported where it stands; only one never
    // written is missing. (A parsed argument was written too.)
    let keyword = keyword(meta)?;
    for arg in args {
        match arg.needs {
            Some(what) if !written.contains(&arg.key) => {
                cx.error_spanned_by(&keyword, format!("`{keyword}` needs {what}"));
            }
            _ => {}
        }
    }
    Ok(written)
}

fn set_once<T>(cx: &mut Ctxt, slot: &mut Option<T>, value: T, path: &Path) {
    if slot.is_some() {
        let name = quote::quote!(#path);
        cx.error_spanned_by(
            path,
            format!("duplicate `{name}`: it is already set; keep one `{name}`"),
        );
    } else {
        *slot = Some(value);
    }
}

fn unknown_argument(arg: &ParseNestedMeta, list: &str, allowed: &[&'static str]) -> syn::Error {
    let path = &arg.path;
    let written = quote::quote!(#path).to_string();
    match closest(&written, allowed) {
        Some(suggestion) => arg.error(format!(
            "unknown argument `{written}` in `{list}(..)`; did you mean `{suggestion}`?"
        )),
        None => arg.error(format!(
            "unknown argument `{written}` in `{list}(..)`; expected {}",
            one_of(allowed),
        )),
    }
}

/// `name = 3`: a version number, 1 or more (0 is checked by validation).
fn parse_version(meta: &ParseNestedMeta, name: &str, example: u32) -> syn::Result<Since> {
    let input = meta.value()?;
    let lit = match input.parse::<Lit>() {
        Ok(Lit::Int(lit)) => lit,
        Ok(Lit::Str(s)) if s.value().trim().parse::<u32>().is_ok() => {
            return Err(syn::Error::new(
                s.span(),
                format!(
                    "`{name}` takes a number, not a string: write `{name} = {}`",
                    s.value().trim()
                ),
            ));
        }
        Ok(other) => {
            return Err(syn::Error::new(
                other.span(),
                format!("expected a version number, e.g. `{name} = {example}`"),
            ));
        }
        Err(e) => {
            return Err(syn::Error::new(
                e.span(),
                format!("expected a version number, e.g. `{name} = {example}`"),
            ));
        }
    };
    let version = lit.base10_parse::<u32>().map_err(|_| {
        syn::Error::new(
            lit.span(),
            format!("expected a version number (a `u32`), e.g. `{name} = {example}`"),
        )
    })?;
    Ok(Since { version, lit })
}

/// `name = "text"`, with a message that shows how to write it.
fn parse_string(meta: &ParseNestedMeta, example: &str) -> syn::Result<LitStr> {
    let input = meta.value()?;
    input
        .parse::<LitStr>()
        .map_err(|e| syn::Error::new(e.span(), format!("expected a string, e.g. `{example}`")))
}

/// A field name: `"fax"` (or the bare identifier `fax`).
fn parse_name(meta: &ParseNestedMeta) -> syn::Result<Name> {
    let input = meta.value()?;
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        let mut ident = syn::parse_str::<Ident>(&lit.value()).map_err(|_| {
            syn::Error::new(
                lit.span(),
                format!(
                    "`{}` is not a field name: write the Rust field name, e.g. `\"full_name\"`",
                    lit.value()
                ),
            )
        })?;
        // Re-span rather than `Ident::new(&ident.to_string(), ..)`, which
        // panics on a raw identifier such as `"r#type"`.
        ident.set_span(lit.span());
        Ok(Name {
            ident,
            span: lit.span(),
        })
    } else {
        let ident: Ident = input.parse()?;
        Ok(Name {
            span: ident.span(),
            ident,
        })
    }
}

/// A type: `Option<String>`.
fn parse_type(meta: &ParseNestedMeta) -> syn::Result<Type> {
    meta.value()?.parse()
}

/// A function path: `path::to::f` (or the string `"path::to::f"`).
fn parse_path(meta: &ParseNestedMeta) -> syn::Result<Path> {
    let input = meta.value()?;
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        lit.parse()
    } else {
        input.parse()
    }
}

/// Skips to the next top-level `,` after an error, so parsing can go on.
fn skip_rest(input: ParseStream) {
    let _ = input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tt, next)) = rest.token_tree() {
            if let TokenTree::Punct(p) = &tt {
                if p.as_char() == ',' {
                    return Ok(((), rest));
                }
            }
            rest = next;
        }
        Ok(((), rest))
    });
}
