//! Does what the user wrote make sense together?

use std::collections::BTreeMap;

use proc_macro2::Span;
use quote::ToTokens;
use syn::ext::IdentExt;

use crate::ast::{Field, Input};
use crate::attr::{self, Kind, Since};
use crate::ctxt::Ctxt;
use crate::history::{Change, Conversion, Fill, History, Version};
use crate::symbol::{ENTITY, KEY, VERSION};

/// Checks the input and, if it holds no mistake, resolves its history.
pub fn check<'a>(cx: &mut Ctxt, input: &'a Input<'a>) -> Option<History<'a>> {
    if input.kind == Kind::Entity {
        check_entity(cx, input);
    }
    check_version(cx, input);
    if input.kind == Kind::Entity {
        check_key(cx, input);
    }
    if input.is_enum {
        check_variants(cx, input);
    }
    check_since_ranges(cx, input);
    check_field_histories(cx, input);
    check_hops(cx, input);
    check_removed(cx, input);
    check_every_version_declared(cx, input);
    // Last: it walks every version, which is only bounded once the
    // versions are known to be contiguous (each declared by an attribute).
    check_names_per_version(cx, input);
    check_serde(cx, input);
    if cx.has_errors() {
        return None;
    }
    resolve(input)
}

/// The history of an input without mistakes. Everything the user must
/// write was checked above, so `None` only if a check missed a mistake.
fn resolve<'a>(input: &'a Input<'a>) -> Option<History<'a>> {
    let newest = input.attrs.version.as_ref()?.version;
    // Each version after the first declares a change (checked above), so
    // this is bounded by the number of attributes.
    let mut versions: Vec<Version<'a>> = (1..=newest)
        .map(|number| Version {
            number,
            changes: Vec::new(),
        })
        .collect();
    let mut push = |since: &Option<Since>, change: Change<'a>| -> Option<()> {
        let index = usize::try_from(since.as_ref()?.version)
            .ok()?
            .checked_sub(1)?;
        versions.get_mut(index)?.changes.push(change);
        Some(())
    };
    for (index, removed) in input.attrs.removed.iter().enumerate() {
        let name = &removed.field.as_ref()?.ident;
        let ty = removed.ty.as_ref()?;
        push(&removed.since, Change::Removed { name, ty, index })?;
    }
    for hop in &input.attrs.hops {
        push(
            &hop.since,
            Change::Hop {
                with: hop.with.as_ref()?,
            },
        )?;
    }
    let hop_at =
        |since: &Option<Since>| {
            input.attrs.hops.iter().any(|hop| {
                hop.since.as_ref().map(|s| s.version) == since.as_ref().map(|s| s.version)
            })
        };
    for field in &input.fields {
        let attrs = &field.attrs;
        if let Some(added) = &attrs.added {
            let fill = match (&added.default, &added.with) {
                (Some(default), None) => Fill::Function(default),
                (None, Some(with)) => Fill::FromPrevious(with),
                (None, None) => Fill::Default {
                    span: added.keyword.span(),
                },
                (Some(_), Some(_)) => return None,
            };
            push(&added.since, Change::Added { field, fill })?;
        }
        for renamed in &attrs.renamed {
            let from = &renamed.from.as_ref()?.ident;
            push(&renamed.since, Change::Renamed { field, from })?;
        }
        for retyped in &attrs.retyped {
            let from = retyped.from.as_ref()?;
            let with = match &retyped.with {
                Some(with) => Conversion::Function(with),
                None if hop_at(&retyped.since) => Conversion::Hop,
                None if retyped.nested => Conversion::Nested,
                None => return None,
            };
            push(&retyped.since, Change::Retyped { field, from, with })?;
        }
    }
    let krate = input
        .attrs
        .krate
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::ecst));
    let (entity, key) = match input.kind {
        Kind::Entity => (input.attrs.entity.as_ref()?.value(), Some(input.key()?)),
        Kind::Nested => (input.ident.unraw().to_string(), None),
    };
    Some(History {
        input,
        entity,
        key,
        krate,
        versions,
    })
}

/// Whether the user wrote `key` anywhere, even malformed or misplaced:
/// then its error is already reported, and "missing `key`" would repeat it.
fn written(input: &Input, key: &str) -> bool {
    input.attrs.written.contains(&key)
        || input.fields.iter().any(|f| f.attrs.written.contains(&key))
}

/// The name of version `v`'s type: `CustomerV1`, ..., `Customer`.
fn type_name(input: &Input, v: u32) -> String {
    if v == input.version() {
        input.ident.to_string()
    } else {
        format!("{}V{v}", input.ident)
    }
}

fn check_entity(cx: &mut Ctxt, input: &Input) {
    let Some(lit) = &input.attrs.entity else {
        if written(input, ENTITY) {
            return;
        }
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
    if let Some(problem) = entity_name_problem(&name) {
        let suggestion = entity_suggestion(&name, &input.ident.to_string());
        cx.error_spanned_by(
            lit,
            format!(
                "{problem}; entity names are one subject token: letters, digits, `_` and `-`, \
                 starting with a letter; write `entity = \"{suggestion}\"`"
            ),
        );
    }
}

/// What is wrong with `name` as an entity name, if anything. The entity is
/// one token of the NATS subject `<prefix>.<entity>.<key>` (and the
/// CloudEvents `type`), so it must be `[A-Za-z][A-Za-z0-9_-]*`.
fn entity_name_problem(name: &str) -> Option<String> {
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let Some(first) = name.chars().next() else {
        return Some("the entity name is empty".to_owned());
    };
    if let Some((head, _)) = name.split_once('.') {
        let other = if head.is_empty() {
            "another entity".to_owned()
        } else {
            format!("the entity `{head}`")
        };
        return Some(format!(
            "`{name}` contains a `.`, so its NATS subjects `<prefix>.{name}.<key>` would collide \
             with the keys of {other}"
        ));
    }
    if let Some(wildcard) = name.chars().find(|c| matches!(c, '*' | '>')) {
        return Some(format!(
            "`{name}` contains `{wildcard}`, a NATS wildcard, which the subject of a published \
             event must not contain"
        ));
    }
    if name.chars().any(char::is_whitespace) {
        return Some(format!(
            "`{name}` contains whitespace, which ends a NATS subject"
        ));
    }
    if let Some(bad) = name.chars().find(|c| !is_token_char(*c)) {
        return Some(format!("`{name}` contains `{bad}`"));
    }
    if !first.is_ascii_alphabetic() {
        return Some(format!("`{name}` starts with `{first}`, not a letter"));
    }
    None
}

/// A valid entity name close to `name`: each run of other characters
/// becomes one `_`, leading `_` and `-` go, and a leading digit gets the
/// struct's name in snake case before it (which is also the answer if
/// nothing is left).
fn entity_suggestion(name: &str, ident: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let out = out.trim_matches(['_', '-']);
    match out.chars().next() {
        None => snake_case(ident),
        Some(first) if first.is_ascii_digit() => format!("{}_{out}", snake_case(ident)),
        Some(_) => out.to_owned(),
    }
}

fn check_version(cx: &mut Ctxt, input: &Input) {
    match &input.attrs.version {
        None if written(input, VERSION) => {}
        None => cx.error_spanned_by(
            input.ident,
            format!(
                "missing the current schema version: add `#[{}(version = 1)]` for a new \
                 {}, or the newest version number for one with history",
                input.kind.attr(),
                match input.kind {
                    Kind::Entity => "event type",
                    Kind::Nested => "nested type",
                }
            ),
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
        [] if written(input, KEY) => {}
        [] => {
            let likely = input.fields.iter().find(|f| {
                let name = f.ident.to_string();
                name == "id" || name.ends_with("_id") || name == "key"
            });
            let hint = match likely {
                Some(field) => format!(", e.g. above `{}`", field.ident),
                None => String::new(),
            };
            cx.error_spanned_by(
                input.ident,
                format!(
                    "no key field: mark the field that identifies the entity with \
                     `#[state_event(key)]`{hint}"
                ),
            );
        }
        [first, rest @ ..] => {
            for other in rest {
                if let Some(key) = &other.attrs.key {
                    cx.error_spanned_by(
                        key,
                        format!(
                            "only one field can be the key, and `{}` already is: remove this \
                             `key`, or put both values in one field (e.g. of a struct type) \
                             and make that the key",
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
                format!(
                    "the key field cannot be `{}`: replicas index old and new events by the \
                     same key type; keep the key's type and add a new field instead",
                    retyped.keyword
                ),
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
    for v in &input.variants {
        if let Some(a) = &v.attrs.added {
            out.extend(a.since.as_ref().map(|s| (s, "added")));
        }
        for r in &v.attrs.renamed {
            out.extend(r.since.as_ref().map(|s| (s, "renamed")));
        }
    }
    for f in &input.fields {
        if let Some(a) = &f.attrs.added {
            out.extend(a.since.as_ref().map(|s| (s, "added")));
        }
        for r in &f.attrs.renamed {
            out.extend(r.since.as_ref().map(|s| (s, "renamed")));
        }
        for r in &f.attrs.retyped {
            let what = if r.nested { "nested" } else { "retyped" };
            out.extend(r.since.as_ref().map(|s| (s, what)));
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
    let sinces = all_since(input);
    let newest = sinces
        .iter()
        .map(|(s, _)| s.version)
        .max()
        .unwrap_or(2)
        .max(2);
    for (since, what) in sinces {
        let v = since.version;
        if v < 2 {
            cx.error_spanned_by(
                &since.lit,
                format!(
                    "`{what}(since = {v})` is too early: version 1 is the first shape, so a \
                     change takes effect at version 2 or later; describe the field as it is \
                     now and write the version where it changed, e.g. `since = 2`"
                ),
            );
        } else if version == 1 {
            cx.error_spanned_by(
                &since.lit,
                format!(
                    "`{what}(since = {v})` declares history, but `version = 1` has none: raise \
                     it to the newest version, `version = {newest}`"
                ),
            );
        } else if v > version {
            cx.error_spanned_by(
                &since.lit,
                format!(
                    "`{what}(since = {v})` is after the current `version = {version}`: raise it \
                     to `version = {v}` if this change is the newest, or lower `since`"
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
                     `fn(&PreviousVersion) -> T`), not both: remove one",
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
                    let when = if since.version == added_at {
                        "as it is added"
                    } else {
                        "before it exists"
                    };
                    cx.error_spanned_by(
                        &since.lit,
                        format!(
                            "`{what}(since = {v})` would change `{field}` {when}: it is \
                             `added(since = {added_at})`, and a field's history starts there; \
                             remove this `{what}`, or make it later than version {added_at}",
                            v = since.version,
                            field = field.ident,
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
            // Beside a `hop`, the hop converts; `check_hops` rejects a `with`.
            let by_hop = retyped
                .since
                .as_ref()
                .is_some_and(|since| hop_at(input, since.version).is_some());
            if retyped.with.is_none() && !retyped.with_written && !by_hop && !retyped.nested {
                let old = retyped.from.as_ref().map_or("Old".to_owned(), type_text);
                let new = match &retyped.since {
                    Some(since) => type_text(field.ty_at(since.version)),
                    None => "New".to_owned(),
                };
                cx.error_spanned_by(
                    &retyped.keyword,
                    format!(
                        "`retyped` needs a conversion from the previous type: `with = f`, where \
                         `fn f(old: {old}) -> Result<{new}, E>`"
                    ),
                );
            }
            let (Some(since), Some(from)) = (&retyped.since, &retyped.from) else {
                continue;
            };
            let ty = field.ty_at(since.version);
            if tokens_eq(from, ty) {
                cx.error_spanned_by(
                    from,
                    format!(
                        "`{}` from `{}` to the same type changes nothing: remove it, or \
                         write the type the field had before version {}",
                        retyped.keyword,
                        type_text(from),
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

/// The `hop` into `version`, if there is one.
fn hop_at<'i>(input: &'i Input, version: u32) -> Option<&'i attr::Hop> {
    input
        .attrs
        .hops
        .iter()
        .find(|hop| hop.since.as_ref().is_some_and(|s| s.version == version))
}

fn check_hops(cx: &mut Ctxt, input: &Input) {
    // A hop builds its version whole, so a field's own conversion into that
    // version would never be called.
    for field in &input.fields {
        let attrs = &field.attrs;
        let added = attrs.added.iter().flat_map(|added| {
            [
                (&added.default, "default", "set"),
                (&added.with, "with", "set"),
            ]
            .map(|(path, key, what)| (&added.since, path, key, what))
        });
        let retyped = attrs
            .retyped
            .iter()
            .map(|retyped| (&retyped.since, &retyped.with, "with", "convert"));
        for (since, path, key, what) in added.chain(retyped) {
            let (Some(since), Some(path)) = (since, path) else {
                continue;
            };
            // A `since` below 2 is reported by `check_since_ranges`.
            if since.version < 2 || hop_at(input, since.version).is_none() {
                continue;
            }
            let v = since.version;
            cx.error_spanned_by(
                path,
                format!(
                    "`{key} = {}` is never called: `hop(since = {v}, ..)` builds version {v} from \
                     version {prev} by itself; remove this `{key}` and {what} `{field}` in the \
                     hop's function",
                    type_text(path),
                    prev = v - 1,
                    field = field.ident,
                ),
            );
        }
    }
    for hop in &input.attrs.hops {
        if hop.with.is_some() || hop.with_written {
            continue;
        }
        let signature = match &hop.since {
            Some(since) if (2..=input.version()).contains(&since.version) => format!(
                ", where `fn f(previous: {}) -> Result<{}, E>`",
                type_name(input, since.version - 1),
                type_name(input, since.version),
            ),
            _ => String::new(),
        };
        cx.error_spanned_by(
            &hop.keyword,
            format!("`hop` needs the function that performs it: `with = f`{signature}"),
        );
    }
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
    // Each clash is reported once, at the first version it occurs in.
    let mut reported: Vec<(String, String)> = Vec::new();
    for version in 1..=input.version() {
        let mut seen: BTreeMap<String, &Field> = BTreeMap::new();
        for field in input.fields.iter().filter(|f| f.exists_at(version)) {
            let name = field.name_at(version);
            let Some(other) = seen.get(&name.to_string()).copied() else {
                seen.insert(name.to_string(), field);
                continue;
            };
            let pair = (other.ident.to_string(), field.ident.to_string());
            if reported.contains(&pair) {
                continue;
            }
            reported.push(pair);
            let from = |f: &Field| {
                f.attrs
                    .renamed
                    .iter()
                    .filter_map(|r| r.from.as_ref())
                    .find(|from| from.ident == *name)
                    .map(|from| from.span)
            };
            let (this, that) = (field.ident, other.ident);
            match (from(field), from(other)) {
                (Some(span), Some(_)) => cx.error_at(
                    span,
                    format!(
                        "`{this}` and `{that}` are both renamed from `{name}`, so both are named \
                         `{name}` in version {version}: correct one of the `from`s"
                    ),
                ),
                (Some(span), None) => cx.error_at(
                    span,
                    format!(
                        "`{this}` was named `{name}` in version {version}, but so was the field \
                         `{that}`: correct this `from`, or declare `{that}`'s own history with \
                         `added(since = ..)` or `renamed(since = .., from = ..)`"
                    ),
                ),
                (None, Some(_)) => cx.error_spanned_by(
                    field.ident,
                    format!(
                        "`{this}` is named `{name}` in version {version}, but so was `{that}`, \
                         renamed from `{name}`: correct that `from`, or declare `{this}`'s own \
                         history with `added(since = ..)` or `renamed(since = .., from = ..)`"
                    ),
                ),
                (None, None) => cx.error_spanned_by(
                    field.ident,
                    format!("two fields are named `{name}` in version {version}: rename one"),
                ),
            }
        }
        for removed in input.attrs.removed.iter().filter(|r| r.exists_at(version)) {
            let Some(name) = &removed.field else { continue };
            let Some(other) = seen.get(&name.ident.to_string()).copied() else {
                continue;
            };
            let pair = (other.ident.to_string(), name.ident.to_string());
            if reported.contains(&pair) {
                continue;
            }
            reported.push(pair);
            let that = if *other.ident == name.ident {
                format!("the field `{}`", other.ident)
            } else {
                format!("`{}`, then named `{}`", other.ident, name.ident)
            };
            cx.error_at(
                name.span,
                format!(
                    "the removed field `{}` clashes in version {version} with {that}: if it is \
                     the same field, describe its change with `renamed` or `retyped` instead of \
                     `removed`; if it was added back later, mark it `added(since = ..)`",
                    name.ident
                ),
            );
        }
    }
}

/// Versions must be contiguous: every step 2..=version declares a change.
fn check_every_version_declared(cx: &mut Ctxt, input: &Input) {
    let Some(version) = &input.attrs.version else {
        return;
    };
    // Every `since` written, also in attributes that did not parse (whose
    // mistakes are reported already): a gap only they could fill is not
    // reported, and neither is any gap if one `since` cannot be read.
    let written = std::iter::once(&input.attrs.sinces)
        .chain(input.fields.iter().map(|f| &f.attrs.sinces))
        .chain(input.variants.iter().map(|v| &v.attrs.sinces));
    let mut declared: Vec<u32> = Vec::new();
    for sinces in written {
        if sinces.unreadable {
            return;
        }
        declared.extend(&sinces.versions);
    }
    // At most a few: `version = 4000000000` must not take forever.
    const SHOWN: usize = 5;
    let missing: Vec<u32> = (2..=version.version)
        .filter(|v| !declared.contains(v))
        .take(SHOWN + 1)
        .collect();
    if missing.is_empty() {
        return;
    }
    let mut list = missing
        .iter()
        .take(SHOWN)
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if missing.len() > SHOWN {
        list.push_str(" and more");
    }
    let plural = if missing.len() == 1 {
        "version"
    } else {
        "versions"
    };
    // Everything declared lies below the gap: `version` is simply too high.
    let fix = match declared.iter().max() {
        Some(max) if *max < missing[0] => format!("lower it to `version = {max}`"),
        None => "lower it to `version = 1`".to_owned(),
        Some(_) => format!(
            "if there was no version {}, number the versions without it: lower `version` and \
             the `since`s after it",
            missing[0]
        ),
    };
    cx.error_spanned_by(
        &version.lit,
        format!(
            "versions must be contiguous, but no change is declared for {plural} {list}: every \
             version after the first needs an `added`, `removed`, `renamed`, `retyped`, `nested` \
             or `hop` with that `since`; {fix}"
        ),
    );
}

/// A nested enum's history is its variants': each is `added` at a version
/// or there from the first, and may be `renamed`; its fields do not change.
fn check_variants(cx: &mut Ctxt, input: &Input) {
    for removed in &input.attrs.removed {
        if let Some(since) = &removed.since {
            cx.error_spanned_by(
                &since.lit,
                "`removed` takes a field of a struct, and an enum has none: a variant cannot be \
                 removed while events holding it may exist; keep it",
            );
        }
    }
    for hop in &input.attrs.hops {
        cx.error_spanned_by(
            &hop.keyword,
            "`hop` is for structs: an enum's versions map variant to variant, by name; remove it",
        );
    }
    for variant in &input.variants {
        let attrs = &variant.attrs;
        for retyped in &attrs.retyped {
            cx.error_spanned_by(
                &retyped.keyword,
                format!(
                    "`{}` does not apply to a variant: a variant is `added` or `renamed`, and its \
                     fields keep their types; to change them, add a new variant",
                    retyped.keyword
                ),
            );
        }
        if let Some(added) = &attrs.added {
            let since = added
                .since
                .as_ref()
                .map_or("..".to_owned(), |s| s.version.to_string());
            for (path, key) in [(&added.default, "default"), (&added.with, "with")] {
                if let Some(path) = path {
                    cx.error_spanned_by(
                        path,
                        format!(
                            "a variant needs no `{key}`: versions before it simply lack it, and \
                             their values are all still valid; write `added(since = {since})`"
                        ),
                    );
                }
            }
            let added_at = variant.added_at();
            for renamed in &attrs.renamed {
                if let Some(since) = renamed.since.as_ref().filter(|s| s.version <= added_at) {
                    cx.error_spanned_by(
                        &since.lit,
                        format!(
                            "`renamed(since = {v})` would rename `{name}` before it exists: it is \
                             `added(since = {added_at})`; remove this `renamed`, or make it later",
                            v = since.version,
                            name = variant.ident,
                        ),
                    );
                }
            }
        }
        for renamed in &attrs.renamed {
            let (Some(since), Some(from)) = (&renamed.since, &renamed.from) else {
                continue;
            };
            let name = variant.name_at(since.version);
            if from.ident == *name {
                cx.error_at(
                    from.span,
                    format!(
                        "`renamed` from `{name}` to `{name}` changes nothing: remove it, or write \
                         the name the variant had before version {}",
                        since.version
                    ),
                );
            }
        }
    }
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

/// A type as the user would write it: `Option<String>`, not `Option < String >`.
fn type_text(ty: &impl ToTokens) -> String {
    let mut text = ty.to_token_stream().to_string();
    for (from, to) in [
        (" <", "<"),
        ("< ", "<"),
        (" >", ">"),
        (" ,", ","),
        (" :: ", "::"),
        (":: ", "::"),
        ("& ", "&"),
    ] {
        text = text.replace(from, to);
    }
    text
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
