//! Parsing `#[state_event(...)]`: what did the user write?
//!
//! Every mistake is recorded in the [`Ctxt`] and parsing goes on with the
//! next item, so that one compile shows them all. Required arguments of a
//! list (`removed(since, field, ty)`) are checked here; how the attributes fit
//! together is `valid.rs`'s job.

use proc_macro2::{Span, TokenTree};
use syn::meta::ParseNestedMeta;
use syn::parse::ParseStream;
use syn::{Attribute, Ident, LitInt, LitStr, Path, Token, Type};

use crate::ctxt::Ctxt;
use crate::symbol::*;

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
    pub since: Option<Since>,
    pub with: Option<Path>,
}

#[derive(Default)]
pub struct Container {
    pub entity: Option<LitStr>,
    pub version: Option<Since>,
    pub removed: Vec<Removed>,
    pub hops: Vec<Hop>,
    pub derives: Vec<Path>,
    pub krate: Option<Path>,
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
    pub keyword: Ident,
    pub since: Option<Since>,
    pub from: Option<Type>,
    pub with: Option<Path>,
}

#[derive(Default)]
pub struct Field {
    pub key: Option<Ident>,
    pub added: Option<Added>,
    pub renamed: Vec<Renamed>,
    pub retyped: Vec<Retyped>,
}

/// Reads the container's `#[state_event(...)]` attributes.
pub fn container(cx: &mut Ctxt, attrs: &[Attribute]) -> Container {
    let mut out = Container::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident(STATE_EVENT)) {
        let result = attr.parse_nested_meta(|meta| {
            if let Err(e) = container_item(cx, &mut out, &meta) {
                cx.syn_error(e);
                skip_rest(meta.input);
            }
            Ok(())
        });
        if let Err(e) = result {
            cx.syn_error(e);
        }
    }
    out
}

fn container_item(cx: &mut Ctxt, out: &mut Container, meta: &ParseNestedMeta) -> syn::Result<()> {
    let path = &meta.path;
    if path.is_ident(ENTITY) {
        let lit: LitStr = meta.value()?.parse()?;
        set_once(cx, &mut out.entity, lit, path);
    } else if path.is_ident(VERSION) {
        let since = parse_version(meta, "version = 3")?;
        set_once(cx, &mut out.version, since, path);
    } else if path.is_ident(REMOVED) {
        let keyword = keyword(meta)?;
        let (mut since, mut field, mut ty) = (None, None, None);
        list(
            cx,
            meta,
            "removed(since = 3, field = \"fax\", ty = Option<String>)",
            |cx, arg| {
                if arg.path.is_ident(SINCE) {
                    let v = parse_version(arg, "since = 3")?;
                    set_once(cx, &mut since, v, &arg.path);
                } else if arg.path.is_ident(FIELD) {
                    let v = parse_name(arg)?;
                    set_once(cx, &mut field, v, &arg.path);
                } else if arg.path.is_ident(TY) {
                    let v: Type = arg.value()?.parse()?;
                    set_once(cx, &mut ty, v, &arg.path);
                } else {
                    return Err(unknown_argument(arg, REMOVED, &[SINCE, FIELD, TY]));
                }
                Ok(())
            },
        )?;
        require(
            cx,
            &keyword,
            since.is_some(),
            "the version the field was removed at: `since = 3`",
        );
        require(
            cx,
            &keyword,
            field.is_some(),
            "the removed field's name: `field = \"fax\"`",
        );
        require(
            cx,
            &keyword,
            ty.is_some(),
            "the removed field's old type: `ty = Option<String>`",
        );
        out.removed.push(Removed { since, field, ty });
    } else if path.is_ident(HOP) {
        let keyword = keyword(meta)?;
        let (mut since, mut with) = (None, None);
        list(
            cx,
            meta,
            "hop(since = 2, with = path::to::function)",
            |cx, arg| {
                if arg.path.is_ident(SINCE) {
                    let v = parse_version(arg, "since = 2")?;
                    set_once(cx, &mut since, v, &arg.path);
                } else if arg.path.is_ident(WITH) {
                    let v = parse_path(arg)?;
                    set_once(cx, &mut with, v, &arg.path);
                } else {
                    return Err(unknown_argument(arg, HOP, &[SINCE, WITH]));
                }
                Ok(())
            },
        )?;
        require(
            cx,
            &keyword,
            since.is_some(),
            "the version the hop leads to: `since = 2`",
        );
        require(
            cx,
            &keyword,
            with.is_some(),
            "the hop function: `with = path::to::function`, a `fn(PreviousVersion) -> Result<NextVersion, E>`",
        );
        out.hops.push(Hop { since, with });
    } else if path.is_ident(DERIVE) {
        list(cx, meta, "derive(Eq, Hash)", |_, arg| {
            out.derives.push(arg.path.clone());
            Ok(())
        })?;
    } else if path.is_ident(CRATE) {
        let lit: LitStr = meta.value()?.parse()?;
        let krate: Path = lit.parse()?;
        set_once(cx, &mut out.krate, krate, path);
    } else if FIELD_KEYS.iter().any(|k| path.is_ident(k)) {
        return Err(meta.error(format!(
            "`{}` belongs on a field, not on the struct: put `#[state_event({})]` above the field",
            quote::quote!(#path),
            field_example(path),
        )));
    } else {
        return Err(meta.error(format!(
            "unknown `state_event` attribute `{}` on a struct; expected {}",
            quote::quote!(#path),
            one_of(CONTAINER_KEYS),
        )));
    }
    Ok(())
}

/// Reads a field's `#[state_event(...)]` attributes.
pub fn field(cx: &mut Ctxt, attrs: &[Attribute]) -> Field {
    let mut out = Field::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident(STATE_EVENT)) {
        let result = attr.parse_nested_meta(|meta| {
            if let Err(e) = field_item(cx, &mut out, &meta) {
                cx.syn_error(e);
                skip_rest(meta.input);
            }
            Ok(())
        });
        if let Err(e) = result {
            cx.syn_error(e);
        }
    }
    out
}

fn field_item(cx: &mut Ctxt, out: &mut Field, meta: &ParseNestedMeta) -> syn::Result<()> {
    let path = &meta.path;
    if path.is_ident(KEY) {
        if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
            return Err(meta.error("`key` takes no arguments: write `#[state_event(key)]`"));
        }
        let ident = keyword(meta)?;
        set_once(cx, &mut out.key, ident, path);
    } else if path.is_ident(ADDED) {
        let keyword = keyword(meta)?;
        let (mut since, mut default, mut with) = (None, None, None);
        list(cx, meta, "added(since = 2)", |cx, arg| {
            if arg.path.is_ident(SINCE) {
                let v = parse_version(arg, "since = 2")?;
                set_once(cx, &mut since, v, &arg.path);
            } else if arg.path.is_ident(DEFAULT) {
                let v = parse_path(arg)?;
                set_once(cx, &mut default, v, &arg.path);
            } else if arg.path.is_ident(WITH) {
                let v = parse_path(arg)?;
                set_once(cx, &mut with, v, &arg.path);
            } else {
                return Err(unknown_argument(arg, ADDED, &[SINCE, DEFAULT, WITH]));
            }
            Ok(())
        })?;
        require(
            cx,
            &keyword,
            since.is_some(),
            "the version the field was added at: `since = 2`",
        );
        let added = Added {
            keyword,
            since,
            default,
            with,
        };
        if out.added.is_some() {
            cx.error_spanned_by(&added.keyword, "duplicate `added`: a field is added once");
        } else {
            out.added = Some(added);
        }
    } else if path.is_ident(RENAMED) {
        let keyword = keyword(meta)?;
        let (mut since, mut from) = (None, None);
        list(
            cx,
            meta,
            "renamed(since = 2, from = \"old_name\")",
            |cx, arg| {
                if arg.path.is_ident(SINCE) {
                    let v = parse_version(arg, "since = 2")?;
                    set_once(cx, &mut since, v, &arg.path);
                } else if arg.path.is_ident(FROM) {
                    let v = parse_name(arg)?;
                    set_once(cx, &mut from, v, &arg.path);
                } else {
                    return Err(unknown_argument(arg, RENAMED, &[SINCE, FROM]));
                }
                Ok(())
            },
        )?;
        require(
            cx,
            &keyword,
            since.is_some(),
            "the version the new name starts at: `since = 2`",
        );
        require(
            cx,
            &keyword,
            from.is_some(),
            "the field's previous name: `from = \"old_name\"`",
        );
        out.renamed.push(Renamed { since, from });
    } else if path.is_ident(RETYPED) {
        let keyword = keyword(meta)?;
        let (mut since, mut from, mut with) = (None, None, None);
        list(
            cx,
            meta,
            "retyped(since = 2, from = u32, with = path::to::function)",
            |cx, arg| {
                if arg.path.is_ident(SINCE) {
                    let v = parse_version(arg, "since = 2")?;
                    set_once(cx, &mut since, v, &arg.path);
                } else if arg.path.is_ident(FROM) {
                    let v: Type = arg.value()?.parse()?;
                    set_once(cx, &mut from, v, &arg.path);
                } else if arg.path.is_ident(WITH) {
                    let v = parse_path(arg)?;
                    set_once(cx, &mut with, v, &arg.path);
                } else {
                    return Err(unknown_argument(arg, RETYPED, &[SINCE, FROM, WITH]));
                }
                Ok(())
            },
        )?;
        require(
            cx,
            &keyword,
            since.is_some(),
            "the version the new type starts at: `since = 2`",
        );
        require(
            cx,
            &keyword,
            from.is_some(),
            "the field's previous type: `from = u32`",
        );
        require(
            cx,
            &keyword,
            with.is_some(),
            "a conversion from the previous type: `with = path::to::function`, a `fn(Old) -> Result<New, E>`",
        );
        out.retyped.push(Retyped {
            keyword,
            since,
            from,
            with,
        });
    } else if CONTAINER_KEYS.iter().any(|k| path.is_ident(k)) {
        return Err(meta.error(format!(
            "`{}` belongs on the struct, not on a field: put `#[state_event({} ..)]` above the struct",
            quote::quote!(#path),
            quote::quote!(#path),
        )));
    } else {
        return Err(meta.error(format!(
            "unknown `state_event` attribute `{}` on a field; expected {}",
            quote::quote!(#path),
            one_of(FIELD_KEYS),
        )));
    }
    Ok(())
}

fn field_example(path: &Path) -> &'static str {
    if path.is_ident(KEY) {
        "key"
    } else if path.is_ident(ADDED) {
        "added(since = 2)"
    } else if path.is_ident(RENAMED) {
        "renamed(since = 2, from = \"old_name\")"
    } else {
        "retyped(since = 2, from = u32, with = path::to::function)"
    }
}

/// The keyword itself, for spans.
fn keyword(meta: &ParseNestedMeta) -> syn::Result<Ident> {
    meta.path
        .get_ident()
        .cloned()
        .ok_or_else(|| meta.error("expected an identifier"))
}

/// Parses `name(arg, arg, ..)`, recording each bad argument and going on.
fn list(
    cx: &mut Ctxt,
    meta: &ParseNestedMeta,
    example: &str,
    mut each: impl FnMut(&mut Ctxt, &ParseNestedMeta) -> syn::Result<()>,
) -> syn::Result<()> {
    if !meta.input.peek(syn::token::Paren) {
        return Err(meta.error(format!("expected a list: `{example}`")));
    }
    meta.parse_nested_meta(|arg| {
        if let Err(e) = each(cx, &arg) {
            cx.syn_error(e);
            skip_rest(arg.input);
        }
        Ok(())
    })
}

fn set_once<T>(cx: &mut Ctxt, slot: &mut Option<T>, value: T, path: &Path) {
    if slot.is_some() {
        cx.error_spanned_by(
            path,
            format!("duplicate `{}`: it is already set", quote::quote!(#path)),
        );
    } else {
        *slot = Some(value);
    }
}

fn require(cx: &mut Ctxt, keyword: &Ident, present: bool, what: &str) {
    if !present {
        cx.error_spanned_by(keyword, format!("`{keyword}` needs {what}"));
    }
}

fn unknown_argument(arg: &ParseNestedMeta, list: &str, allowed: &[&str]) -> syn::Error {
    let path = &arg.path;
    arg.error(format!(
        "unknown argument `{}` in `{list}(..)`; expected {}",
        quote::quote!(#path),
        one_of(allowed),
    ))
}

fn parse_version(meta: &ParseNestedMeta, example: &str) -> syn::Result<Since> {
    let input = meta.value()?;
    let lit: LitInt = input.parse().map_err(|e| {
        syn::Error::new(e.span(), format!("expected a version number: `{example}`"))
    })?;
    let version = lit.base10_parse::<u32>().map_err(|_| {
        syn::Error::new(
            lit.span(),
            format!("expected a version number: `{example}`"),
        )
    })?;
    Ok(Since { version, lit })
}

/// A field name: `"fax"` (or the bare identifier `fax`).
fn parse_name(meta: &ParseNestedMeta) -> syn::Result<Name> {
    let input = meta.value()?;
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        let ident = syn::parse_str::<Ident>(&lit.value()).map_err(|_| {
            syn::Error::new(
                lit.span(),
                format!(
                    "`{}` is not a field name: write the Rust field name, e.g. `\"full_name\"`",
                    lit.value()
                ),
            )
        })?;
        Ok(Name {
            ident: Ident::new(&ident.to_string(), lit.span()),
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
