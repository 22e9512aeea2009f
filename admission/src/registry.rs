//! The static registry of mechanisms: which mechanisms the admission may run, pinned by id
//! and version, how to start each, what each may touch, its budgets and, per operation, the
//! least deterministic level admitted.
//!
//! The registry is a `mechanism.registry/v0` artifact. The shipped one,
//! `registry/mechanisms.json`, is embedded in the binary and used unless `--registry FILE`
//! names another. Either way it is parsed as strict I-JSON, validated against
//! `protocol/schemas/registry.v0.json`, read into the typed view, and checked further here
//! (unique ids, grant globs in the grant language, well-formed argument templates). Its
//! digest is the policy digest every AdmissionWitness records, so a witness says which policy
//! judged.
//!
//! # Starting a mechanism
//!
//! `command.program` is a bare name or an absolute path. A bare name is looked for next to
//! the running `admission` executable first (so an installed pair of binaries always finds
//! each other, whatever PATH says), then in each absolute directory of `PATH` (empty and
//! relative entries are skipped: they would run whatever sits in the current directory).
//! A relative path with separators is refused: relative to what would be a guess.
//!
//! `command.args` are templates; the admission fills them in:
//! - `{workspace}` becomes the workspace directory (`--workspace`, default `.`), as an
//!   absolute path; the mechanism's root, which every granted resource glob is relative to;
//! - `{store}` becomes the object store directory (`--store`), as an absolute path;
//! - `{{` and `}}` stand for literal braces; any other `{` or `}` is an error when the
//!   registry is loaded, so a typo never reaches a mechanism as a literal argument;
//! - placeholders may sit inside a longer argument, e.g. `--root={workspace}`.
//!
//! When trusted force-ack signers are configured (`--allowed-signers FILE`), the admission
//! appends `--force-ack-signers FILE` (absolute) after the templated arguments, so the
//! mechanism checks force-acks against the same file the admission does. A registry may not
//! pass that flag or name an `{allowed_signers}` placeholder itself: the file would be given
//! twice, or given when the operator configured none.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use protocol::artifact::kinds::{self, RegistryEntry};
use protocol::artifact::{Artifact, ArtifactError};
use protocol::schema::{self, SchemaError, SchemaName};
use protocol::Digest;

use crate::gates::ResourceGlob;

/// The shipped registry, `registry/mechanisms.json`, as built into this binary.
pub const EMBEDDED: &str = include_str!("../../registry/mechanisms.json");

/// The flag the admission appends, with the allowed_signers file, to every mechanism command.
pub const FORCE_ACK_SIGNERS_FLAG: &str = "--force-ack-signers";

/// Where a registry was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryOrigin {
    /// The registry built into the binary.
    Embedded,
    /// A file given with `--registry`.
    File(PathBuf),
}

impl fmt::Display for RegistryOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryOrigin::Embedded => f.write_str("(embedded registry/mechanisms.json)"),
            RegistryOrigin::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Why a registry cannot be used, or a mechanism cannot be started from it.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A file could not be read, or a path could not be made absolute.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The registry is not strict I-JSON, or not a JSON object with a `kind`.
    #[error("registry {origin}: {source}")]
    NotAnArtifact {
        /// Where it came from.
        origin: RegistryOrigin,
        /// Why.
        source: ArtifactError,
    },
    /// The registry does not match `protocol/schemas/registry.v0.json`.
    #[error("registry {origin}: {source}")]
    Schema {
        /// Where it came from.
        origin: RegistryOrigin,
        /// The violations.
        source: SchemaError,
    },
    /// The registry matches its schema but says something unusable.
    #[error("registry {origin}: {reason}")]
    Invalid {
        /// Where it came from.
        origin: RegistryOrigin,
        /// What is wrong.
        reason: String,
    },
    /// No mechanism with this id is registered.
    #[error("mechanism {id:?} is not in the registry {origin}; it pins: {known}")]
    UnknownMechanism {
        /// The id asked for.
        id: String,
        /// The registry searched.
        origin: RegistryOrigin,
        /// The ids it does pin, comma-separated.
        known: String,
    },
    /// A registered command cannot be turned into a process to start.
    #[error("mechanism {mechanism}: {reason}")]
    Command {
        /// The mechanism id.
        mechanism: String,
        /// What is wrong.
        reason: String,
    },
    /// The program is neither a bare name nor an absolute path.
    #[error("{reason}")]
    InvalidProgram {
        /// The program as the registry names it.
        program: String,
        /// What is wrong.
        reason: String,
    },
    /// The program was not found, or is not executable, anywhere it was looked for.
    #[error(
        "cannot find the executable {program:?}; looked for {}",
        list_paths(searched)
    )]
    ProgramNotFound {
        /// The program as the registry names it.
        program: String,
        /// Every path tried, in order.
        searched: Vec<PathBuf>,
    },
}

fn list_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "it nowhere (no directory to search)".to_owned();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A loaded, validated registry.
#[derive(Debug, Clone)]
pub struct Registry {
    origin: RegistryOrigin,
    artifact: Artifact,
    document: kinds::Registry,
}

impl Registry {
    /// Reads `--registry FILE` when given, else the embedded registry; validates either (the
    /// embedded one against the schema by a test, since both are fixed when the binary is built).
    pub fn load(path: Option<&Path>) -> Result<Self, RegistryError> {
        match path {
            None => Self::embedded(),
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|source| RegistryError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
                Self::from_bytes(&bytes, RegistryOrigin::File(path.to_path_buf()))
            }
        }
    }

    /// The registry built into the binary.
    pub fn embedded() -> Result<Self, RegistryError> {
        // Compiling the registry schema to check a document fixed at build time would be a
        // few milliseconds of every command's start for an answer that cannot change; the
        // test `the_embedded_registry_validates` gives it once.
        Self::read(EMBEDDED.as_bytes(), RegistryOrigin::Embedded, false)
    }

    /// Parses strictly and validates registry bytes read from `origin`.
    pub fn from_bytes(bytes: &[u8], origin: RegistryOrigin) -> Result<Self, RegistryError> {
        Self::read(bytes, origin, true)
    }

    /// Parses strictly, validates against the schema when `validate`, and makes the checks
    /// the schema cannot.
    fn read(bytes: &[u8], origin: RegistryOrigin, validate: bool) -> Result<Self, RegistryError> {
        let artifact =
            Artifact::from_bytes(bytes).map_err(|source| RegistryError::NotAnArtifact {
                origin: origin.clone(),
                source,
            })?;
        // Validate against the registry schema by name, not by the artifact's own `kind`:
        // a plan passed as `--registry` must fail as a registry, not pass as a plan.
        if validate {
            schema::validate(SchemaName::Registry, artifact.value()).map_err(|source| {
                RegistryError::Schema {
                    origin: origin.clone(),
                    source,
                }
            })?;
        }
        let document =
            artifact
                .view::<kinds::Registry>()
                .map_err(|source| RegistryError::NotAnArtifact {
                    origin: origin.clone(),
                    source,
                })?;
        if let Err(reason) = check_document(&document) {
            return Err(RegistryError::Invalid { origin, reason });
        }
        Ok(Self {
            origin,
            artifact,
            document,
        })
    }

    /// The policy digest: the registry artifact's digest, recorded in every witness.
    pub fn policy_digest(&self) -> Digest {
        self.artifact.digest()
    }

    /// The registry artifact as read.
    pub fn artifact(&self) -> &Artifact {
        &self.artifact
    }

    /// Where it was read from.
    pub fn origin(&self) -> &RegistryOrigin {
        &self.origin
    }

    /// Every pinned mechanism.
    pub fn mechanisms(&self) -> &[RegistryEntry] {
        &self.document.mechanisms
    }

    /// The entry for mechanism `id`.
    pub fn entry(&self, id: &str) -> Result<&RegistryEntry, RegistryError> {
        self.document
            .mechanisms
            .iter()
            .find(|entry| entry.id == id)
            .ok_or_else(|| RegistryError::UnknownMechanism {
                id: id.to_owned(),
                origin: self.origin.clone(),
                known: self
                    .document
                    .mechanisms
                    .iter()
                    .map(|entry| entry.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// What the schema cannot check: unique ids, startable commands, globs in the grant language.
fn check_document(document: &kinds::Registry) -> Result<(), String> {
    let mut ids = BTreeSet::new();
    for entry in &document.mechanisms {
        let id = &entry.id;
        if !ids.insert(id.as_str()) {
            return Err(format!("mechanism {id} is registered twice"));
        }
        check_program(&entry.command.program).map_err(|e| format!("mechanism {id}: {e}"))?;
        for arg in &entry.command.args {
            if arg == FORCE_ACK_SIGNERS_FLAG
                || arg.starts_with(&format!("{FORCE_ACK_SIGNERS_FLAG}="))
            {
                return Err(format!(
                    "mechanism {id}: args must not pass {FORCE_ACK_SIGNERS_FLAG}; the admission appends it when signers are configured"
                ));
            }
            parse_template(arg).map_err(|e| format!("mechanism {id}: argument {arg:?}: {e}"))?;
        }
        for grant in &entry.grants {
            for glob in &grant.resources {
                ResourceGlob::parse(glob)
                    .map_err(|e| format!("mechanism {id}, grant {}: {e}", grant.capability))?;
            }
        }
    }
    Ok(())
}

/// A program must be a bare name (searched for) or an absolute path.
fn check_program(program: &str) -> Result<(), String> {
    let path = Path::new(program);
    let bare = path.components().count() == 1
        && matches!(
            path.components().next(),
            Some(std::path::Component::Normal(_))
        );
    if path.is_absolute() || bare {
        Ok(())
    } else {
        Err(format!(
            "program {program:?} must be a bare name (looked for next to admission, then on PATH) or an absolute path"
        ))
    }
}

/// One piece of an argument template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Workspace,
    Store,
}

/// Splits an argument template into literal text and placeholders (rules in the module doc).
fn parse_template(arg: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = arg.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '}' => return Err("a lone } (write }} for a literal brace)".to_owned()),
            '{' => {
                let mut name = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    name.push(c);
                }
                if !closed || name.contains('{') {
                    return Err("an unclosed { (write {{ for a literal brace)".to_owned());
                }
                let piece = match name.as_str() {
                    "workspace" => Piece::Workspace,
                    "store" => Piece::Store,
                    "allowed_signers" => {
                        return Err(format!(
                            "{{allowed_signers}} is not a placeholder: the admission appends {FORCE_ACK_SIGNERS_FLAG} itself when signers are configured"
                        ))
                    }
                    _ => {
                        return Err(format!(
                            "unknown placeholder {{{name}}}; the placeholders are {{workspace}} and {{store}}"
                        ))
                    }
                };
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(piece);
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// The paths the admission fills into a mechanism's command.
#[derive(Debug, Clone, Copy)]
pub struct LaunchPaths<'a> {
    /// The workspace: `{workspace}`, the mechanism's root.
    pub workspace: &'a Path,
    /// The object store: `{store}`.
    pub store: &'a Path,
    /// The trusted force-ack signers, appended as `--force-ack-signers FILE` when given.
    pub allowed_signers: Option<&'a Path>,
}

/// A mechanism ready to spawn: the program found and the arguments filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The executable to run.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
}

/// Resolves the entry's program and fills in its arguments.
pub fn launch(entry: &RegistryEntry, paths: &LaunchPaths<'_>) -> Result<Launch, RegistryError> {
    Ok(Launch {
        program: resolve_program(&entry.command.program)?,
        args: command_args(entry, paths)?,
    })
}

/// The entry's arguments with placeholders filled in (paths made absolute) and, when
/// signers are configured, `--force-ack-signers FILE` appended.
pub fn command_args(
    entry: &RegistryEntry,
    paths: &LaunchPaths<'_>,
) -> Result<Vec<OsString>, RegistryError> {
    fill_args(&entry.id, &entry.command.args, paths)
}

/// Fills in argument templates of `mechanism`'s command (rules in the module doc), as
/// [`command_args`] does for a registry entry.
pub fn fill_args(
    mechanism: &str,
    templates: &[String],
    paths: &LaunchPaths<'_>,
) -> Result<Vec<OsString>, RegistryError> {
    let workspace = absolute(paths.workspace)?;
    let store = absolute(paths.store)?;
    let mut args = Vec::with_capacity(templates.len() + 2);
    for template in templates {
        let pieces = parse_template(template).map_err(|reason| RegistryError::Command {
            mechanism: mechanism.to_owned(),
            reason: format!("argument {template:?}: {reason}"),
        })?;
        let mut arg = OsString::new();
        for piece in &pieces {
            match piece {
                Piece::Text(text) => arg.push(text),
                Piece::Workspace => arg.push(&workspace),
                Piece::Store => arg.push(&store),
            }
        }
        args.push(arg);
    }
    if let Some(signers) = paths.allowed_signers {
        args.push(FORCE_ACK_SIGNERS_FLAG.into());
        args.push(absolute(signers)?.into_os_string());
    }
    Ok(args)
}

/// The path made absolute against the current directory, without touching the filesystem,
/// so the mechanism's working directory does not change what it is given.
fn absolute(path: &Path) -> Result<PathBuf, RegistryError> {
    std::path::absolute(path).map_err(|source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Finds `program`: an absolute path as is; a bare name next to the running executable,
/// then on `PATH`.
pub fn resolve_program(program: &str) -> Result<PathBuf, RegistryError> {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    let path_var = std::env::var_os("PATH");
    resolve_program_in(program, exe_dir.as_deref(), path_var.as_deref())
}

/// [`resolve_program`] with the executable's directory and `PATH` given, for tests.
pub fn resolve_program_in(
    program: &str,
    exe_dir: Option<&Path>,
    path_var: Option<&OsStr>,
) -> Result<PathBuf, RegistryError> {
    let not_found = |searched| RegistryError::ProgramNotFound {
        program: program.to_owned(),
        searched,
    };
    check_program(program).map_err(|reason| RegistryError::InvalidProgram {
        program: program.to_owned(),
        reason,
    })?;
    let as_path = Path::new(program);
    if as_path.is_absolute() {
        return if is_executable(as_path) {
            Ok(as_path.to_path_buf())
        } else {
            Err(not_found(vec![as_path.to_path_buf()]))
        };
    }
    let file_name = format!("{program}{}", std::env::consts::EXE_SUFFIX);
    let path_dirs = path_var
        .map(|var| std::env::split_paths(var).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut searched = Vec::new();
    let dirs = exe_dir
        .map(Path::to_path_buf)
        .into_iter()
        .chain(path_dirs.into_iter().filter(|dir| dir.is_absolute()));
    for dir in dirs {
        let candidate = dir.join(&file_name);
        // The executable's directory is often on PATH too (`cargo install` puts both in
        // ~/.cargo/bin): each place is looked at, and named, once.
        if searched.contains(&candidate) {
            continue;
        }
        if is_executable(&candidate) {
            return Ok(candidate);
        }
        searched.push(candidate);
    }
    Err(not_found(searched))
}

/// A regular file (after symlinks) that someone may execute.
#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A regular file (after symlinks); other platforms have no execute bit to check.
#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_registry_validates() {
        let registry = Registry::embedded().expect("the embedded registry loads");
        schema::validate(SchemaName::Registry, registry.artifact().value())
            .expect("the embedded registry fits the registry schema");
        assert_eq!(
            Registry::from_bytes(EMBEDDED.as_bytes(), RegistryOrigin::Embedded)
                .expect("validated as any registry")
                .policy_digest(),
            registry.policy_digest()
        );
    }

    #[test]
    fn templates_fill_placeholders_and_keep_escaped_braces() {
        assert_eq!(
            parse_template("--root={workspace}").unwrap(),
            vec![Piece::Text("--root=".into()), Piece::Workspace]
        );
        assert_eq!(parse_template("{store}").unwrap(), vec![Piece::Store]);
        assert_eq!(
            parse_template("{{literal}}").unwrap(),
            vec![Piece::Text("{literal}".into())]
        );
        assert_eq!(parse_template("").unwrap(), vec![]);
    }

    #[test]
    fn bad_templates_are_refused_with_a_reason() {
        for (arg, says) in [
            ("{root}", "unknown placeholder {root}"),
            ("{allowed_signers}", "appends --force-ack-signers"),
            ("{workspace", "unclosed"),
            ("a{b{c}", "unclosed"),
            ("a}b", "lone }"),
        ] {
            let err = parse_template(arg).unwrap_err();
            assert!(err.contains(says), "{arg}: {err}");
        }
    }

    #[test]
    fn programs_are_bare_names_or_absolute_paths() {
        assert!(check_program("mechanism-server").is_ok());
        assert!(check_program("/usr/bin/env").is_ok());
        assert!(check_program("bin/mechanism-server").is_err());
        assert!(check_program("./mechanism-server").is_err());
        assert!(check_program("..").is_err());
        assert!(matches!(
            resolve_program_in("bin/mechanism-server", None, None),
            Err(RegistryError::InvalidProgram { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn programs_are_found_next_to_the_executable_then_on_path() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let (exe_dir, on_path) = (tmp.path().join("bin"), tmp.path().join("path"));
        for dir in [&exe_dir, &on_path] {
            std::fs::create_dir(dir).unwrap();
            let file = dir.join("mech");
            std::fs::write(&file, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path_var = std::env::join_paths([Path::new("relative"), &on_path]).unwrap();
        let found = resolve_program_in("mech", Some(&exe_dir), Some(&path_var)).unwrap();
        assert_eq!(found, exe_dir.join("mech"));
        let found = resolve_program_in("mech", None, Some(&path_var)).unwrap();
        assert_eq!(found, on_path.join("mech"));

        // Not executable: skipped, and the error lists where it looked.
        std::fs::set_permissions(on_path.join("mech"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let err = resolve_program_in("mech", None, Some(&path_var)).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, RegistryError::ProgramNotFound { .. }));
        assert!(
            text.contains(&on_path.join("mech").display().to_string()),
            "{text}"
        );
        assert!(
            !text.contains("relative"),
            "relative PATH entries are skipped: {text}"
        );

        let absolute = exe_dir.join("mech");
        let found = resolve_program_in(absolute.to_str().unwrap(), None, None).unwrap();
        assert_eq!(found, absolute);

        // The executable's directory also on PATH, twice: looked at and named once.
        let path_var = std::env::join_paths([&on_path, &exe_dir, &exe_dir]).unwrap();
        let err = resolve_program_in("other", Some(&exe_dir), Some(&path_var)).unwrap_err();
        let RegistryError::ProgramNotFound { searched, .. } = &err else {
            panic!("{err}")
        };
        assert_eq!(searched, &[exe_dir.join("other"), on_path.join("other")]);
        let text = err.to_string();
        assert_eq!(
            text.matches(&exe_dir.join("other").display().to_string())
                .count(),
            1,
            "{text}"
        );
    }
}
