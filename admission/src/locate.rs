//! Where the store and the workspace are when the flags do not say: the store is found as git
//! finds `.git`, so commands work from any subdirectory; and a store made inside a git work
//! tree is kept out of its `git status`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The store's directory name, looked for in the current directory and each one above it.
pub const STORE_DIR: &str = ".mechanism";

/// The store and workspace a command works with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The store directory.
    pub store: PathBuf,
    /// The workspace.
    pub workspace: PathBuf,
}

/// The store and workspace for the flags given (`None`: not given), from `cwd`.
///
/// A store given is used as it is; otherwise the nearest `.mechanism` directory in `cwd` or
/// above it, whose parent is then the workspace unless one is given; otherwise the given
/// workspace's `.mechanism`, or `./.mechanism`. Paths found in `cwd` itself stay relative
/// (`.mechanism`, `.`), as they were before the search, so what commands print is unchanged.
pub fn locate(store: Option<&Path>, workspace: Option<&Path>, cwd: &Path) -> Located {
    let here = Path::new(".");
    if let Some(store) = store {
        return Located {
            store: store.to_path_buf(),
            workspace: workspace.unwrap_or(here).to_path_buf(),
        };
    }
    if let Some(root) = cwd.ancestors().find(|dir| dir.join(STORE_DIR).is_dir()) {
        let (store, found_root) = if root == cwd {
            (PathBuf::from(STORE_DIR), here.to_path_buf())
        } else {
            (root.join(STORE_DIR), root.to_path_buf())
        };
        return Located {
            store,
            workspace: workspace.map_or(found_root, Path::to_path_buf),
        };
    }
    let workspace = workspace.unwrap_or(here);
    Located {
        store: if workspace == here {
            PathBuf::from(STORE_DIR)
        } else {
            workspace.join(STORE_DIR)
        },
        workspace: workspace.to_path_buf(),
    }
}

/// Why a new store could not be kept out of `git status`.
#[derive(Debug, thiserror::Error)]
pub enum ExcludeError {
    /// The repository around the store could not be read.
    #[error("{0}")]
    Git(#[from] git2::Error),
    /// `info/exclude` could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The exclude file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// When `store` (just created) lies inside a git work tree and git does not ignore it yet,
/// lists it in the repository's `info/exclude`, so the store never shows up as untracked
/// nor is committed by `git add -A`. Returns the exclude file written, if any.
pub fn exclude_from_git(store: &Path) -> Result<Option<PathBuf>, ExcludeError> {
    let Ok(store) = store.canonicalize() else {
        return Ok(None);
    };
    let Ok(repo) = git2::Repository::discover(&store) else {
        return Ok(None);
    };
    let Some(workdir) = repo.workdir().and_then(|w| w.canonicalize().ok()) else {
        return Ok(None);
    };
    let Ok(inside) = store.strip_prefix(&workdir) else {
        return Ok(None);
    };
    let Some(inside) = inside.to_str().filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if repo.is_path_ignored(inside)? {
        return Ok(None);
    }
    let info = repo.commondir().join("info");
    let path = info.join("exclude");
    let io = |source| ExcludeError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&info).map_err(io)?;
    let existing = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(e)),
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io)?;
    // Anchored at the work tree's top, so only this directory is excluded.
    let newline = if existing.is_empty() || existing.ends_with(b"\n") {
        ""
    } else {
        "\n"
    };
    writeln!(file, "{newline}/{inside}/").map_err(io)?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_store_is_used_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(STORE_DIR)).unwrap();
        let found = locate(Some(Path::new("st")), None, dir.path());
        assert_eq!(found.store, Path::new("st"));
        assert_eq!(found.workspace, Path::new("."));
        let found = locate(Some(Path::new("st")), Some(Path::new("ws")), dir.path());
        assert_eq!(found.workspace, Path::new("ws"));
    }

    #[test]
    fn the_nearest_store_above_is_found_and_its_parent_is_the_workspace() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join(STORE_DIR)).unwrap();
        let deep = root.join("a/b");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(
            locate(None, None, &deep),
            Located {
                store: root.join(STORE_DIR),
                workspace: root.clone()
            }
        );
        // A named workspace is kept; the store is still the one found.
        let found = locate(None, Some(Path::new("ws")), &deep);
        assert_eq!(found.store, root.join(STORE_DIR));
        assert_eq!(found.workspace, Path::new("ws"));
        // Found right here, both stay relative, as before the search.
        assert_eq!(
            locate(None, None, &root),
            Located {
                store: PathBuf::from(STORE_DIR),
                workspace: PathBuf::from(".")
            }
        );
        // A nearer store wins.
        std::fs::create_dir(root.join("a").join(STORE_DIR)).unwrap();
        assert_eq!(
            locate(None, None, &deep).store,
            root.join("a").join(STORE_DIR)
        );
    }

    #[test]
    fn without_a_store_above_it_is_the_workspace_s() {
        let dir = tempfile::tempdir().unwrap();
        let found = locate(None, None, dir.path());
        assert_eq!(found.store, Path::new(STORE_DIR));
        assert_eq!(found.workspace, Path::new("."));
        let found = locate(None, Some(Path::new("ws")), dir.path());
        assert_eq!(found.store, Path::new("ws").join(STORE_DIR));
        assert_eq!(found.workspace, Path::new("ws"));
    }

    #[test]
    fn a_store_inside_a_work_tree_is_excluded_once_and_one_outside_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init(dir.path().join("repo")).unwrap();
        let store = dir.path().join("repo/sub").join(STORE_DIR);
        std::fs::create_dir_all(&store).unwrap();
        let exclude = exclude_from_git(&store).unwrap().expect("written");
        assert_eq!(exclude, repo.path().join("info/exclude"));
        let text = std::fs::read_to_string(&exclude).unwrap();
        assert!(text.ends_with("\n/sub/.mechanism/\n"), "{text:?}");
        assert!(repo.is_path_ignored("sub/.mechanism").unwrap());
        // Ignored already: nothing is added.
        assert_eq!(exclude_from_git(&store).unwrap(), None);
        assert_eq!(std::fs::read_to_string(&exclude).unwrap(), text);

        let outside = dir.path().join("elsewhere").join(STORE_DIR);
        std::fs::create_dir_all(&outside).unwrap();
        assert_eq!(exclude_from_git(&outside).unwrap(), None);
    }
}
