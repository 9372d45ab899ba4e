//! The schema lock: the committed `schemas/` directory that `cargo test`
//! checks against the code.
//!
//! Layout: `schemas/<entity>/v<N>.json` (one file per version) and
//! `schemas/asyncapi.json`. Every committed version is frozen: its schema
//! may not change, except in documentation (`title`, `description`,
//! `$comment`, `examples`), which never constrains data: the derive rewrites
//! a version's `title` and `description` when it stops being the newest, and
//! a doc comment may be edited. The newest version's relation to the earlier
//! ones must satisfy the entity's compatibility mode (`#[state_event(
//! compatibility = "..")]`; `NONE` unless declared, see
//! [`StateEvent::COMPATIBILITY`](ecst_runtime::StateEvent::COMPATIBILITY)). Set
//! `ECST_SCHEMA_LOCK=overwrite` to rewrite the files on purpose, then read
//! the diff before committing.

use core::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::asyncapi::{asyncapi, AsyncApiOptions};
use crate::compat::{self, Direction, Mode, Policy, Report, SchemaError};
use crate::{canonical, jsondiff};
use ecst_runtime::catalog::{Catalog, DuplicateEntity};

/// The environment variable that rewrites the lock: set it to `overwrite`.
pub const OVERWRITE_ENV: &str = "ECST_SCHEMA_LOCK";

/// How the lock is checked.
#[derive(Clone, Debug)]
pub struct LockOptions {
    /// Confluent's strict (default) or lenient rule set.
    pub policy: Policy,
    /// What the generated AsyncAPI document says.
    pub asyncapi: AsyncApiOptions,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            policy: Policy::Strict,
            asyncapi: AsyncApiOptions::default(),
        }
    }
}

/// The lock could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// A lock file is not valid JSON (hand-edited or corrupt).
    #[error(
        "{}:{line}:{column}: not valid JSON ({reason}); restore it from version control, or \
         rewrite the lock with {OVERWRITE_ENV}=overwrite",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What is wrong.
        reason: String,
    },
    /// A schema could not be compared (a `$ref` to nowhere, a cycle, a
    /// value that is not a schema).
    #[error(
        "{}: cannot compare this schema: at {}: {}; restore the file from version control, or \
         rewrite the lock with {OVERWRITE_ENV}=overwrite",
        path.display(),
        source.path,
        source.reason
    )]
    Schema {
        /// The file of the schema (for a schema of the code, the file that
        /// holds or would hold that version).
        path: PathBuf,
        /// Where in the schema, and why.
        source: SchemaError,
    },
    /// Two types claim one entity.
    #[error(transparent)]
    Catalog(#[from] DuplicateEntity),
}

/// One way the code and the lock disagree.
#[derive(Debug)]
#[non_exhaustive]
pub enum Problem {
    /// A committed version's schema changed.
    FrozenChanged {
        /// The lock file.
        path: PathBuf,
        /// Structural changes, one line each (`pointer: change`).
        changes: Vec<String>,
        /// The change judged by the compatibility rules in both directions.
        compatibility: Report,
    },
    /// A version exists in code but not in the lock.
    Unlocked {
        /// The file that would hold it.
        path: PathBuf,
    },
    /// The lock holds a version the code no longer has.
    VersionRemoved {
        /// The lock file.
        path: PathBuf,
        /// The newest version in code.
        newest_in_code: u32,
    },
    /// The lock holds an entity the code no longer has.
    EntityRemoved {
        /// The entity's directory.
        path: PathBuf,
    },
    /// The newest version breaks the entity's compatibility mode.
    Incompatible {
        /// The file that holds (or would hold) the newest version.
        path: PathBuf,
        /// The entity.
        entity: &'static str,
        /// The newest version.
        version: u32,
        /// What the rules found.
        report: Report,
    },
    /// `asyncapi.json` is missing or differs from the generated document.
    AsyncApiStale {
        /// The file.
        path: PathBuf,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::FrozenChanged {
                path,
                changes,
                compatibility,
            } => {
                writeln!(
                    f,
                    "{}: a committed schema changed; committed versions are frozen",
                    path.display()
                )?;
                for change in changes {
                    writeln!(f, "    {change}")?;
                }
                if !compatibility.is_compatible() {
                    writeln!(
                        f,
                        "  events already written in this version break readers \
                         (old = the committed schema, new = the code's):"
                    )?;
                    for difference in compatibility.incompatibilities() {
                        writeln!(
                            f,
                            "    {} ({}): {}: {}",
                            difference.path,
                            difference.direction,
                            difference.change(),
                            difference.explanation
                        )?;
                    }
                }
                write!(
                    f,
                    "  declare a new version instead (raise `version` and describe the change), \
                     or restore the committed schema"
                )
            }
            Problem::Unlocked { path } => write!(
                f,
                "{}: this version is not locked yet; review it and lock it with {OVERWRITE_ENV}=overwrite",
                path.display()
            ),
            Problem::VersionRemoved { path, newest_in_code } => write!(
                f,
                "{}: the lock has this version but the code stops at v{newest_in_code}; versions \
                 cannot be removed while events of them may exist (restore it, or delete the \
                 file on purpose)",
                path.display()
            ),
            Problem::EntityRemoved { path } => write!(
                f,
                "{}: the lock has this entity but no `StateEvent` type declares it any more \
                 (restore the type, or delete the directory on purpose)",
                path.display()
            ),
            Problem::Incompatible {
                path,
                entity,
                version,
                report,
            } => {
                writeln!(
                    f,
                    "{}: `{entity}` v{version} breaks its declared compatibility mode {} ({} policy):",
                    path.display(),
                    report.mode(),
                    report.policy()
                )?;
                for difference in report.incompatibilities() {
                    // `against` indexes the history, which starts at v1.
                    let earlier = difference.against + 1;
                    let (reader, data) = match difference.direction {
                        Direction::Backward => (*version as usize, earlier),
                        Direction::Forward => (earlier, *version as usize),
                    };
                    writeln!(
                        f,
                        "    {} ({}: a v{reader} reader, v{data} data): {}: {}",
                        difference.path,
                        difference.direction,
                        difference.change(),
                        difference.explanation
                    )?;
                }
                write!(
                    f,
                    "  change v{version} so that it is compatible, or declare the mode consumers \
                     rely on with `#[state_event(compatibility = \"..\")]`"
                )
            }
            Problem::AsyncApiStale { path } => write!(
                f,
                "{}: missing or out of date with the event types; regenerate it with \
                 {OVERWRITE_ENV}=overwrite",
                path.display()
            ),
        }
    }
}

/// Everything the lock check found.
#[derive(Debug, Default)]
pub struct LockReport {
    /// The disagreements; empty when code and lock agree.
    pub problems: Vec<Problem>,
}

impl LockReport {
    /// `true` when code and lock agree.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for LockReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.problems.is_empty() {
            return f.write_str("the schema lock matches the code");
        }
        let count = self.problems.len();
        let plural = if count == 1 { "" } else { "s" };
        writeln!(
            f,
            "the schema lock does not match the code ({count} problem{plural}):"
        )?;
        for problem in &self.problems {
            writeln!(f, "- {problem}")?;
        }
        Ok(())
    }
}

/// Checks the lock in `dir` against every registered event type, panicking
/// with the report if they disagree; with `ECST_SCHEMA_LOCK=overwrite`,
/// rewrites the lock first. The one line a user adds to a test:
///
/// ```no_run
/// #[test]
/// fn schema_lock() {
///     ecst::schema::assert_lock("schemas");
/// }
/// ```
#[track_caller]
pub fn assert_lock(dir: impl AsRef<Path>) {
    let catalog = match Catalog::registered() {
        Ok(catalog) => catalog,
        Err(e) => panic!("{e}"),
    };
    assert_lock_with(dir, &catalog, &LockOptions::default());
}

/// [`assert_lock`] with an explicit catalog and options.
///
/// `ECST_SCHEMA_LOCK` may be unset, empty, or `overwrite`; any other value
/// is a mistake (a typo would otherwise leave the lock as it is) and panics.
#[track_caller]
pub fn assert_lock_with(dir: impl AsRef<Path>, catalog: &Catalog, options: &LockOptions) {
    let dir = dir.as_ref();
    let overwrite = match std::env::var(OVERWRITE_ENV) {
        Ok(value) if value.trim().eq_ignore_ascii_case("overwrite") => true,
        Ok(value) if value.trim().is_empty() => false,
        Ok(value) => panic!(
            "{OVERWRITE_ENV}={value:?} is not understood: set it to `overwrite` to rewrite the \
             schema lock, or unset it to check it"
        ),
        Err(_) => false,
    };
    if overwrite {
        if let Err(e) = write_lock(dir, catalog, options) {
            panic!("writing the schema lock failed: {e}");
        }
    }
    match check_lock(dir, catalog, options) {
        Ok(report) if report.is_clean() => {}
        Ok(report) => panic!("{report}"),
        Err(e) => panic!("checking the schema lock failed: {e}"),
    }
}

/// Writes every version's schema and the AsyncAPI document into `dir`.
/// Files of versions or entities the code no longer has are left alone:
/// removing them is a decision for a person.
pub fn write_lock(dir: &Path, catalog: &Catalog, options: &LockOptions) -> Result<(), LockError> {
    for event in catalog.iter() {
        let entity_dir = dir.join(event.entity());
        fs::create_dir_all(&entity_dir).map_err(|source| io_error(&entity_dir, source))?;
        for (version, schema) in event.schemas() {
            write_json(&version_path(dir, event.entity(), version), &schema)?;
        }
    }
    fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
    write_json(
        &dir.join("asyncapi.json"),
        &asyncapi(catalog, &options.asyncapi),
    )
}

/// Compares the lock in `dir` with `catalog` without changing anything.
pub fn check_lock(
    dir: &Path,
    catalog: &Catalog,
    options: &LockOptions,
) -> Result<LockReport, LockError> {
    let mut report = LockReport::default();
    for event in catalog.iter() {
        let entity = event.entity();
        let newest = event.version();
        let mut history = Vec::new();
        for (version, schema) in event.schemas() {
            let path = version_path(dir, entity, version);
            match read_json(&path)? {
                None => {
                    report.problems.push(Problem::Unlocked { path });
                    history.push(schema);
                }
                // Documentation may change (the derive retitles a version
                // when it stops being the newest); the AsyncAPI check asks
                // for the files to be rewritten then.
                Some(locked) if without_annotations(&locked) == without_annotations(&schema) => {
                    history.push(schema)
                }
                Some(locked) => {
                    let compatibility =
                        compat::check_with(&locked, &schema, Mode::Full, Policy::Strict).map_err(
                            |source| LockError::Schema {
                                path: path.clone(),
                                source,
                            },
                        )?;
                    report.problems.push(Problem::FrozenChanged {
                        path,
                        changes: jsondiff::diff(
                            &without_annotations(&locked),
                            &without_annotations(&schema),
                        ),
                        compatibility,
                    });
                    // The committed schema is what old events were written in.
                    history.push(locked);
                }
            }
        }
        for (version, path) in locked_versions(&dir.join(entity))? {
            if version > newest {
                report.problems.push(Problem::VersionRemoved {
                    path,
                    newest_in_code: newest,
                });
            }
        }
        if history.len() >= 2 {
            // The newest version is judged as written in code.
            if let (Some(last), Some((_, code))) = (history.last_mut(), event.schemas().pop()) {
                *last = code;
            }
            let mode = event.compatibility();
            let verdict =
                compat::check_history(&history, mode, options.policy).map_err(|source| {
                    // `source.version` indexes the history, which starts at v1.
                    let version = u32::try_from(source.version + 1).unwrap_or(newest);
                    LockError::Schema {
                        path: version_path(dir, entity, version),
                        source,
                    }
                })?;
            if !verdict.is_compatible() {
                report.problems.push(Problem::Incompatible {
                    path: version_path(dir, entity, newest),
                    entity,
                    version: newest,
                    report: verdict,
                });
            }
        }
    }
    if dir.is_dir() {
        let mut removed = Vec::new();
        let entries = fs::read_dir(dir).map_err(|source| io_error(dir, source))?;
        for entry in entries {
            let entry = entry.map_err(|source| io_error(dir, source))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() && catalog.get(&name).is_none() {
                removed.push(path);
            }
        }
        // `read_dir` order depends on the file system.
        removed.sort();
        report.problems.extend(
            removed
                .into_iter()
                .map(|path| Problem::EntityRemoved { path }),
        );
    }
    let asyncapi_path = dir.join("asyncapi.json");
    let expected = asyncapi(catalog, &options.asyncapi);
    if read_json(&asyncapi_path)?.as_ref() != Some(&expected) {
        report.problems.push(Problem::AsyncApiStale {
            path: asyncapi_path,
        });
    }
    Ok(report)
}

pub(crate) fn version_path(dir: &Path, entity: &str, version: u32) -> PathBuf {
    dir.join(entity).join(format!("v{version}.json"))
}

/// The `v<N>.json` files in an entity's directory.
fn locked_versions(entity_dir: &Path) -> Result<Vec<(u32, PathBuf)>, LockError> {
    if !entity_dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let entries = fs::read_dir(entity_dir).map_err(|source| io_error(entity_dir, source))?;
    for entry in entries {
        let entry = entry.map_err(|source| io_error(entity_dir, source))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let version = name
            .strip_prefix('v')
            .and_then(|rest| rest.strip_suffix(".json"))
            .and_then(|digits| digits.parse::<u32>().ok());
        if let Some(version) = version {
            out.push((version, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn read_json(path: &Path) -> Result<Option<Value>, LockError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io_error(path, source)),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        // The position is in the message already, as `path:line:column`.
        let message = e.to_string();
        let position = format!(" at line {} column {}", e.line(), e.column());
        LockError::Corrupt {
            path: path.to_owned(),
            line: e.line(),
            column: e.column(),
            reason: message
                .strip_suffix(&position)
                .unwrap_or(&message)
                .to_owned(),
        }
    })
}

/// Keywords that document a schema and never constrain data.
const ANNOTATIONS: [&str; 4] = ["title", "description", "$comment", "examples"];

/// `schema` without [`ANNOTATIONS`], wherever a schema sits in it. Values
/// that are data (`enum`, `const`, `default`, `required`, property names)
/// and keywords this walk does not know are kept as they are.
fn without_annotations(schema: &Value) -> Value {
    // Keywords whose value is a schema or a list of schemas.
    const SCHEMAS: [&str; 16] = [
        "items",
        "prefixItems",
        "additionalItems",
        "contains",
        "additionalProperties",
        "unevaluatedItems",
        "unevaluatedProperties",
        "propertyNames",
        "not",
        "if",
        "then",
        "else",
        "allOf",
        "anyOf",
        "oneOf",
        "contentSchema",
    ];
    // Keywords whose value maps names to schemas.
    const MAPS: [&str; 5] = [
        "properties",
        "patternProperties",
        "dependentSchemas",
        "$defs",
        "definitions",
    ];
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    map.iter()
        .filter(|(key, _)| !ANNOTATIONS.contains(&key.as_str()))
        .map(|(key, value)| {
            let value = match value {
                Value::Object(named) if MAPS.contains(&key.as_str()) => Value::Object(
                    named
                        .iter()
                        .map(|(name, schema)| (name.clone(), without_annotations(schema)))
                        .collect(),
                ),
                Value::Array(list) if SCHEMAS.contains(&key.as_str()) => {
                    Value::Array(list.iter().map(without_annotations).collect())
                }
                _ if SCHEMAS.contains(&key.as_str()) => without_annotations(value),
                _ => value.clone(),
            };
            (key.clone(), value)
        })
        .collect()
}

pub(crate) fn write_json(path: &Path, value: &Value) -> Result<(), LockError> {
    fs::write(path, canonical::to_string(value)).map_err(|source| io_error(path, source))
}

pub(crate) fn io_error(path: &Path, source: io::Error) -> LockError {
    LockError::Io {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn annotations_are_dropped_only_where_a_schema_sits() {
        let schema = json!({
            "title": "TicketV1",
            "description": "Version 1 of [`Ticket`]",
            "required": ["title"],
            "properties": {
                "title": { "type": "string", "description": "The title.", "examples": ["x"] },
                "tags": { "items": [{ "title": "tag", "const": { "title": "data" } }] }
            },
            "$defs": { "description": { "$comment": "a def named description" } },
            "enum": [{ "description": "data" }]
        });
        assert_eq!(
            without_annotations(&schema),
            json!({
                "required": ["title"],
                "properties": {
                    "title": { "type": "string" },
                    "tags": { "items": [{ "const": { "title": "data" } }] }
                },
                "$defs": { "description": {} },
                "enum": [{ "description": "data" }]
            })
        );
    }
}
