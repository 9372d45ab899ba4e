//! Does what the user wrote make sense together?

use std::collections::BTreeMap;

use proc_macro2::Span;
use quote::ToTokens;

use crate::ast::Input;
use crate::attr::Since;
use crate::ctxt::Ctxt;

pub fn check(cx: &mut Ctxt, input: &Input) {
    check_entity(cx, input);
    check_version(cx, input);
    check_key(cx, input);
    check_since_ranges(cx, input);
    check_field_histories(cx, input);
    check_removed(cx, input);
    check_names_per_version(cx, input);
    check_every_version_declared(cx, input);
    check_serde(cx, input);
}

fn check_entity(cx: &mut Ctxt, input: &Input) {
    let Some(lit) = &input.attrs.entity else {
        cx.error_spanned_by(
            input.ident,
            format!(
                "missing the entity name: add `#[state_event(entity = \"{}\")]`",
                snake_case(&input.ident.to_string())
            ),
        );
        return;
    };
    let name = lit.value();
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if name.is_empty()
        || !valid_chars
        || name.starts_with('.')
        || name.ends_with('.')
        || name.contains("..")
    {
        cx.error_spanned_by(
            lit,
            format!(
                "`{name}` is not a valid entity name: use ASCII letters, digits, `_`, `-` and \
                 inner dots, e.g. `entity = \"{}\"`; it becomes the CloudEvents `type` and a \
                 broker subject token",
                snake_case(&input.ident.to_string())
            ),
        );
    }
}

fn check_version(cx: &mut Ctxt, input: &Input) {
    match &input.attrs.version {
        None => cx.error_spanned_by(
            input.ident,
            "missing the current schema version: add `#[state_event(version = 1)]` for a new \
             event type, or the newest version number for one with history",
        ),
        Some(v) if v.version == 0 => cx.error_spanned_by(
            &v.lit,
            "versions start at 1: write `version = 1` for an event type without history",
        ),
        Some(_) => {}
    }
}

fn check_key(cx: &mut Ctxt, input: &Input) {
    let keys: Vec<_> = input
        .fields
        .iter()
        .filter(|f| f.attrs.key.is_some())
        .collect();
    match keys.as_slice() {
        [] => cx.error_spanned_by(
            input.ident,
            "no key field: mark the field that identifies the entity with `#[state_event(key)]`",
        ),
        [first, rest @ ..] => {
            for other in rest {
                if let Some(key) = &other.attrs.key {
                    cx.error_spanned_by(
                        key,
                        format!(
                            "only one field can be the key, and `{}` already is: remove this \
                             `key`, or key on a struct field that combines both",
                            first.ident
                        ),
                    );
                }
            }
        }
    }
    for field in &keys {
        if let Some(added) = &field.attrs.added {
            cx.error_spanned_by(
                &added.keyword,
                "the key field must exist in every version, so it cannot be `added`; remove \
                 `added` here, or key on another field",
            );
        }
        for retyped in &field.attrs.retyped {
            cx.error_spanned_by(
                &retyped.keyword,
                "the key field cannot be `retyped`: replicas index old and new events by the \
                 same key type; keep the key's type and add a new field instead",
            );
        }
    }
}

/// Every `since` in every change, with a description for messages.
fn all_since<'i>(input: &'i Input) -> Vec<(&'i Since, &'static str)> {
    let mut out = Vec::new();
    for r in &input.attrs.removed {
        out.extend(r.since.as_ref().map(|s| (s, "removed")));
    }
    for h in &input.attrs.hops {
        out.extend(h.since.as_ref().map(|s| (s, "hop")));
    }
    for f in &input.fields {
        if let Some(a) = &f.attrs.added {
            out.extend(a.since.as_ref().map(|s| (s, "added")));
        }
        for r in &f.attrs.renamed {
            out.extend(r.since.as_ref().map(|s| (s, "renamed")));
        }
        for r in &f.attrs.retyped {
            out.extend(r.since.as_ref().map(|s| (s, "retyped")));
        }
    }
    out
}

fn check_since_ranges(cx: &mut Ctxt, input: &Input) {
    let Some(version) = input
        .attrs
        .version
        .as_ref()
        .map(|v| v.version)
        .filter(|v| *v > 0)
    else {
        return;
    };
    for (since, what) in all_since(input) {
        let v = since.version;
        if version == 1 {
            cx.error_spanned_by(
                &since.lit,
                format!(
                    "`{what}(since = {v})` declares history, but `version = 1` has none: raise \
                     `version` to the newest version number"
                ),
            );
        } else if v < 2 || v > version {
            cx.error_spanned_by(
                &since.lit,
                format!(
                    "`since = {v}` is outside 2..={version}: a change takes effect at a version \
                     after the first and at most the current `version = {version}`"
                ),
            );
        }
    }
}

fn check_field_histories(cx: &mut Ctxt, input: &Input) {
    for field in &input.fields {
        let attrs = &field.attrs;
        if let Some(added) = &attrs.added {
            if let (Some(default), Some(_)) = (&added.default, &added.with) {
                cx.error_spanned_by(
                    default,
                    "`added` takes `default = f` (a `fn() -> T`) or `with = f` (a \
                     `fn(&PreviousVersion) -> T`), not both",
                );
            }
            let added_at = field.added_at();
            let changes = attrs
                .renamed
                .iter()
                .map(|r| (r.since.as_ref(), "renamed"))
                .chain(attrs.retyped.iter().map(|r| (r.since.as_ref(), "retyped")));
            for (since, what) in changes {
                if let Some(since) = since.filter(|s| s.version <= added_at) {
                    cx.error_spanned_by(
                        &since.lit,
                        format!(
                            "`{what}(since = {})` is not after `added(since = {added_at})`: a \
                             field can only change after it exists; declare the field's first \
                             shape in `added` instead",
                            since.version
                        ),
                    );
                }
            }
        }
        duplicates(
            cx,
            attrs.renamed.iter().filter_map(|r| r.since.as_ref()),
            |v| {
                format!(
                    "`{}` is renamed twice at version {v}: keep one `renamed(since = {v}, ..)`",
                    field.ident
                )
            },
        );
        duplicates(
            cx,
            attrs.retyped.iter().filter_map(|r| r.since.as_ref()),
            |v| {
                format!(
                    "`{}` is retyped twice at version {v}: keep one `retyped(since = {v}, ..)`",
                    field.ident
                )
            },
        );
        for renamed in &attrs.renamed {
            let (Some(since), Some(from)) = (&renamed.since, &renamed.from) else {
                continue;
            };
            let name = field.name_at(since.version);
            if from.ident == *name {
                cx.error_at(
                    from.span,
                    format!(
                        "`renamed` from `{name}` to `{name}` changes nothing: remove it, or write \
                         the name the field had before version {}",
                        since.version
                    ),
                );
            }
        }
        for retyped in &attrs.retyped {
            let (Some(since), Some(from)) = (&retyped.since, &retyped.from) else {
                continue;
            };
            let ty = field.ty_at(since.version);
            if tokens_eq(from, ty) {
                cx.error_spanned_by(
                    from,
                    format!(
                        "`retyped` from `{}` to the same type changes nothing: remove it, or \
                         write the type the field had before version {}",
                        from.to_token_stream(),
                        since.version
                    ),
                );
            }
        }
    }
    duplicates(
        cx,
        input.attrs.hops.iter().filter_map(|h| h.since.as_ref()),
        |v| format!("two `hop`s lead to version {v}: keep one `hop(since = {v}, ..)`"),
    );
}

fn check_removed(cx: &mut Ctxt, input: &Input) {
    let mut seen: BTreeMap<String, Span> = BTreeMap::new();
    for removed in &input.attrs.removed {
        let Some(name) = &removed.field else { continue };
        let text = name.ident.to_string();
        if seen.insert(text.clone(), name.span).is_some() {
            cx.error_at(
                name.span,
                format!("`{text}` is removed twice: keep one `removed(field = \"{text}\", ..)`"),
            );
        }
    }
}

/// No two fields may share a name in any one version.
fn check_names_per_version(cx: &mut Ctxt, input: &Input) {
    if cx.has_errors() {
        return; // names are only meaningful once the history itself is sound
    }
    for version in 1..=input.version() {
        let mut seen: BTreeMap<String, ()> = BTreeMap::new();
        for field in input.fields.iter().filter(|f| f.exists_at(version)) {
            let name = field.name_at(version);
            if seen.insert(name.to_string(), ()).is_some() {
                let span = field
                    .attrs
                    .renamed
                    .iter()
                    .filter_map(|r| r.from.as_ref())
                    .find(|f| f.ident == *name)
                    .map_or(field.ident.span(), |f| f.span);
                cx.error_at(
                    span,
                    format!(
                        "two fields are named `{name}` in version {version}: rename one of them"
                    ),
                );
            }
        }
        for removed in input.attrs.removed.iter().filter(|r| r.exists_at(version)) {
            let Some(name) = &removed.field else { continue };
            if seen.insert(name.ident.to_string(), ()).is_some() {
                cx.error_at(
                    name.span,
                    format!(
                        "removed field `{}` clashes with a field of the same name in version \
                         {version}: in that version only one field can have this name",
                        name.ident
                    ),
                );
            }
        }
    }
}

/// Versions must be contiguous: every step 2..=version declares a change.
fn check_every_version_declared(cx: &mut Ctxt, input: &Input) {
    let Some(version) = &input.attrs.version else {
        return;
    };
    let declared: Vec<u32> = all_since(input).iter().map(|(s, _)| s.version).collect();
    let missing: Vec<u32> = (2..=version.version)
        .filter(|v| !declared.contains(v))
        .collect();
    if missing.is_empty() {
        return;
    }
    let list = missing
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let plural = if missing.len() == 1 {
        "version"
    } else {
        "versions"
    };
    cx.error_spanned_by(
        &version.lit,
        format!(
            "versions must be contiguous, but no change is declared for {plural} {list}: every \
             version after the first needs an `added`, `removed`, `renamed`, `retyped` or `hop` \
             with that `since`; lower `version` if there was no such version"
        ),
    );
}

fn check_serde(cx: &mut Ctxt, input: &Input) {
    if input.version() < 2 {
        return;
    }
    for item in &input.serde {
        let Some(key) = &item.key else { continue };
        for bad in ["from", "try_from", "into", "remote"] {
            if key.is_ident(bad) {
                cx.error_spanned_by(
                    key,
                    format!(
                        "`#[serde({bad} = ..)]` converts the newest struct only, so the generated \
                         older versions cannot share it; remove it, or convert in a `hop`"
                    ),
                );
            }
        }
    }
}

fn duplicates<'s>(
    cx: &mut Ctxt,
    sinces: impl Iterator<Item = &'s Since>,
    message: impl Fn(u32) -> String,
) {
    let mut seen = Vec::new();
    for since in sinces {
        if seen.contains(&since.version) {
            cx.error_spanned_by(&since.lit, message(since.version));
        } else {
            seen.push(since.version);
        }
    }
}

fn tokens_eq(a: &impl ToTokens, b: &impl ToTokens) -> bool {
    a.to_token_stream().to_string() == b.to_token_stream().to_string()
}

fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, ch) in name.chars().enumerate() {
        if ch.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(ch.to_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}
