//! Path safety: where the repository is (inside the root), which paths a patch may name,
//! and when two names would collide on a case-insensitive or normalising file system.

use std::path::{Component, Path, PathBuf};

use unicode_normalization::UnicodeNormalization;

use super::error::ApplyError;

/// A repository directory resolved inside the root.
#[derive(Debug, Clone)]
pub(crate) struct RepoLocation {
    /// The canonical root.
    pub root: PathBuf,
    /// The canonical repository directory.
    pub dir: PathBuf,
    /// The directory relative to the root, `/`-separated; `.` for the root itself.
    pub name: String,
}

/// Resolves `repo` (relative to `root`, or absolute inside it). Anything that resolves
/// outside the root, through `..` or symlinks, is `CapabilityDenied`.
pub(crate) fn resolve_repo(root: &Path, repo: &str) -> Result<RepoLocation, ApplyError> {
    if repo.is_empty() {
        return Err(ApplyError::InvalidParams(
            "repo is empty; name a directory under the root (\".\" for the root)".to_owned(),
        ));
    }
    let root_canon = root.canonicalize().map_err(|e| {
        ApplyError::Internal(format!("the root {} is not usable: {e}", root.display()))
    })?;
    let requested = Path::new(repo);
    let joined = if requested.is_absolute() {
        requested.to_path_buf()
    } else {
        root_canon.join(requested)
    };
    let dir = match joined.canonicalize() {
        Ok(dir) => dir,
        // Say "outside" before "missing", so the answer does not reveal what exists
        // outside the root.
        Err(_) if !lexically_inside(&joined, root, &root_canon) => {
            return Err(outside(repo));
        }
        Err(e) => {
            return Err(ApplyError::InvalidParams(format!(
                "repo {repo:?} cannot be opened: {e}"
            )))
        }
    };
    let relative = dir.strip_prefix(&root_canon).map_err(|_| outside(repo))?;
    let mut parts = Vec::new();
    for component in relative.components() {
        let Component::Normal(part) = component else {
            return Err(outside(repo));
        };
        let part = part.to_str().ok_or_else(|| {
            ApplyError::InvalidParams(format!("repo {repo:?} is not a UTF-8 path"))
        })?;
        parts.push(part);
    }
    let name = if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    };
    Ok(RepoLocation {
        root: root_canon,
        dir,
        name,
    })
}

/// Fails with `CapabilityDenied` unless `path` (canonicalised) lies inside the root.
pub(crate) fn require_inside(root: &Path, path: &Path, what: &str) -> Result<(), ApplyError> {
    let canonical = path.canonicalize().map_err(|e| {
        ApplyError::Internal(format!("{what} {} is not usable: {e}", path.display()))
    })?;
    if canonical.starts_with(root) {
        Ok(())
    } else {
        Err(ApplyError::CapabilityDenied(format!(
            "the repository's {what} {} lies outside the root",
            canonical.display()
        )))
    }
}

fn outside(repo: &str) -> ApplyError {
    ApplyError::CapabilityDenied(format!("repo {repo:?} lies outside the root"))
}

/// Whether `path`, with `.` and `..` resolved by text alone, starts with the root.
fn lexically_inside(path: &Path, root: &Path, root_canon: &Path) -> bool {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    normal.starts_with(root) || normal.starts_with(root_canon)
}

/// Refuses a path a patch names unless it is a plain relative path of safe components:
/// not absolute, no empty, `.` or `..` component, no control character or backslash, and
/// no component that git or a file system would take for `.git` or `.gitmodules`.
pub(crate) fn check_patch_path(path: &str) -> Result<(), ApplyError> {
    let refuse = |why: &str| ApplyError::PathRefused(format!("path {path:?} refused: {why}"));
    if path.starts_with('/') {
        return Err(refuse("it is absolute"));
    }
    if path.chars().any(|c| c.is_control()) {
        return Err(refuse("it contains a control character"));
    }
    // A backslash is a separator on Windows, where it could smuggle `..\` or `.git\`.
    if path.contains('\\') {
        return Err(refuse("it contains a backslash"));
    }
    for component in path.split('/') {
        match component {
            "" => return Err(refuse("it has an empty component")),
            "." => return Err(refuse("it has a `.` component")),
            ".." => return Err(refuse("it has a `..` component")),
            _ if is_git_dir_name(component) => {
                return Err(refuse("it points into `.git`"));
            }
            // Submodules are out of scope, and writing `.gitmodules` is how submodule
            // attacks start; a directory of that name is refused too, for one simple rule.
            _ if is_gitmodules_name(component) => {
                return Err(refuse(
                    "it names `.gitmodules` (submodules are not supported)",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether a file system could resolve `component` to the `.git` directory: any case
/// (`.GIT`), NTFS's trailing dots and spaces, alternate streams (`.git::$INDEX_ALLOCATION`)
/// and short name (`git~1`), and HFS+'s ignorable code points (`.g\u{200c}it`).
pub(crate) fn is_git_dir_name(component: &str) -> bool {
    let name = file_system_name(component);
    name == ".git" || name == "git~1"
}

/// Whether a file system could resolve `component` to `.gitmodules`: the spellings of
/// [`is_git_dir_name`], plus NTFS's short names `gitmod~1` to `gitmod~4` and its
/// fall-back short names (a prefix of `gi7eba`, `~`, digits not starting with 0, eight
/// characters in all), as git's `is_ntfs_dotgitmodules` knows them.
pub(crate) fn is_gitmodules_name(component: &str) -> bool {
    let name = file_system_name(component);
    if name == ".gitmodules" {
        return true;
    }
    if let Some(n) = name.strip_prefix("gitmod~") {
        if matches!(n, "1" | "2" | "3" | "4") {
            return true;
        }
    }
    let Some((prefix, number)) = name.split_once('~') else {
        return false;
    };
    name.len() == 8
        && "gi7eba".starts_with(prefix)
        && number.starts_with(|c: char| ('1'..='9').contains(&c))
        && number.bytes().all(|b| b.is_ascii_digit())
}

/// `component` as a case-insensitive, normalising file system may see it: HFS+'s ignorable
/// code points dropped, lower case, and NTFS's alternate stream (`:...`) and trailing dots
/// and spaces cut off.
fn file_system_name(component: &str) -> String {
    let visible: String = component
        .chars()
        .filter(|&c| !is_hfs_ignorable(c))
        .flat_map(char::to_lowercase)
        .collect();
    let stream_free = visible.split(':').next().unwrap_or_default();
    stream_free.trim_end_matches(['.', ' ']).to_owned()
}

/// Code points HFS+ ignores when comparing names (the list git's `is_hfs_dotgit` uses).
fn is_hfs_ignorable(c: char) -> bool {
    matches!(c,
        '\u{200c}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{206a}'..='\u{206f}' | '\u{feff}')
}

/// The key under which two names collide on a case-insensitive, normalising file system.
pub(crate) fn collision_key(name: &str) -> String {
    // ASCII is its own NFD and NFC, and lowercases to ASCII: the common case, without the
    // normalising iterators (the keys of every sibling of a touched path are computed).
    if name.is_ascii() {
        return name.to_ascii_lowercase();
    }
    name.nfd().flat_map(char::to_lowercase).nfc().collect()
}

/// The resource string for `path` in repository `repo`: `/`-separated, relative to the root.
pub(crate) fn resource(repo: &str, path: &str) -> String {
    if repo == "." {
        path.to_owned()
    } else {
        format!("{repo}/{path}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_dir_spellings() {
        for name in [
            ".git",
            ".GIT",
            ".Git",
            ".git.",
            ".git ",
            ".git. .",
            "git~1",
            "GIT~1",
            ".git::$INDEX_ALLOCATION",
            ".g\u{200c}it",
            "\u{feff}.git",
        ] {
            assert!(is_git_dir_name(name), "{name:?}");
        }
        for name in [".gitignore", ".github", "git", ".gi", "x.git", "git~2"] {
            assert!(!is_git_dir_name(name), "{name:?}");
        }
    }

    #[test]
    fn gitmodules_spellings() {
        // Git's own list (t0060, `is_dotgitmodules`), and a directory-shaped stream name.
        for name in [
            ".gitmodules",
            ".git\u{200c}modules",
            ".Gitmodules",
            ".gitmoduleS",
            ".gitmodules ",
            ".gitmodules.",
            ".gitmodules. .",
            ".Gitmodules..",
            "GITMOD~1",
            "gitmod~1",
            "GITMOD~2",
            "gitmod~3",
            "GITMOD~4",
            "GITMOD~1 ",
            "gitmod~2.",
            "GI7EBA~1",
            "gi7eba~9",
            "GI7EB~10",
            "GI7EB~99",
            "GI7E~100",
            "GI7E~999",
            "~1000000",
            "~9999999",
            ".gitmodules:$DATA",
            "gitmod~4 . :$DATA",
        ] {
            assert!(is_gitmodules_name(name), "{name:?}");
        }
        for name in [
            ".gitmodules x",
            ".gitmodules .x",
            " .gitmodules",
            "..gitmodules",
            "gitmodules",
            ".gitmodule",
            ".gitmodules x ",
            "GI7EBA~",
            "GI7EBA~0",
            "GI7EBA~~1",
            "GI7EBA~X",
            "Gx7EBA~1",
            "GI7EBX~1",
            "GI7EB~1",
            "GI7EB~01",
            "GI7EB~1X",
            "gitmod~5",
            "gi7ebax~1",
            ".gitmodules,:$DATA",
            ".git",
        ] {
            assert!(!is_gitmodules_name(name), "{name:?}");
        }
    }

    #[test]
    fn patch_paths() {
        for ok in ["a", "a/b.txt", ".gitignore", "src/.github/x", "café"] {
            check_patch_path(ok).unwrap();
        }
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../b",
            "a/./b",
            "a//b",
            "a/",
            ".git/config",
            "sub/.GIT/hooks/x",
            ".gitmodules",
            "sub/GITMOD~1",
            ".gitmodules/x",
            "a\\b",
            "a\nb",
        ] {
            assert!(
                matches!(check_patch_path(bad), Err(ApplyError::PathRefused(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn collision_keys() {
        assert_eq!(collision_key("README"), collision_key("readme"));
        assert_eq!(collision_key("caf\u{e9}"), collision_key("cafe\u{301}"));
        assert_eq!(collision_key("CAF\u{c9}"), collision_key("cafe\u{301}"));
        assert_ne!(collision_key("a"), collision_key("b"));
        // The ASCII shortcut gives what the normalising path gives.
        for name in ["README", "Makefile.AM", "a-b_c.D~1", ""] {
            let full: String = name.nfd().flat_map(char::to_lowercase).nfc().collect();
            assert_eq!(collision_key(name), full, "{name:?}");
        }
    }
}
