//! Which output folders a run may write: never an empty path (which would
//! resolve to the working directory without anyone having said so) and never a
//! file-system root (a run writes `.creative/`, assets, `manifest.json` and
//! `report.json` at the top of its folder).

use std::path::{Component, Path, PathBuf};

use crate::spec::campaign::CampaignError;
use crate::store::StoreError;

/// An output folder a run refuses to write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeOutputDir {
    /// The path is empty (`--out ""`, `out_dir: ""`).
    #[error("the output folder is an empty path; name a folder (for example `out`), or `.` for the current directory")]
    Empty,
    /// The path is a file-system root (`/`, `C:\`), or resolves to one.
    #[error("the output folder `{}` is a file-system root; name a folder inside it", .0.display())]
    Root(PathBuf),
}

/// Refuse an output folder that is empty or a file-system root. `.` is allowed:
/// writing into the current directory is fine when it is said.
///
/// ```
/// use creative_campaign::spec::{check_out_dir, UnsafeOutputDir};
/// assert_eq!(check_out_dir("".as_ref()), Err(UnsafeOutputDir::Empty));
/// assert!(matches!(check_out_dir("/".as_ref()), Err(UnsafeOutputDir::Root(_))));
/// assert!(check_out_dir("out".as_ref()).is_ok());
/// ```
pub fn check_out_dir(path: &Path) -> Result<(), UnsafeOutputDir> {
    if path.as_os_str().is_empty() {
        return Err(UnsafeOutputDir::Empty);
    }
    let root = || UnsafeOutputDir::Root(path.to_path_buf());
    if path.has_root() || path.is_absolute() {
        // Lexically: `/`, `//`, `/.`, `/a/..` all name the root.
        let mut depth = 0usize;
        for c in path.components() {
            match c {
                Component::Normal(_) => depth += 1,
                Component::ParentDir => depth = depth.saturating_sub(1),
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
        if depth == 0 {
            return Err(root());
        }
    }
    // A folder that exists may still be the root through a symbolic link.
    if let Ok(real) = path.canonicalize() {
        if real.parent().is_none() {
            return Err(root());
        }
    }
    Ok(())
}

impl From<UnsafeOutputDir> for CampaignError {
    fn from(e: UnsafeOutputDir) -> Self {
        CampaignError::Store(StoreError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_root_paths_are_refused_and_folders_are_not() {
        assert_eq!(check_out_dir(Path::new("")), Err(UnsafeOutputDir::Empty));
        for p in ["/", "//", "/.", "/tmp/..", "/../.."] {
            assert!(
                matches!(check_out_dir(Path::new(p)), Err(UnsafeOutputDir::Root(_))),
                "{p}"
            );
        }
        for p in [".", "out", "./out/", "/tmp/creative-out", "../x"] {
            assert_eq!(check_out_dir(Path::new(p)), Ok(()), "{p}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_link_to_the_root_is_refused() {
        let dir = std::env::temp_dir().join(format!("creative-outdir-link-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("out");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/", &link).unwrap();
        let refused = check_out_dir(&link);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(refused, Err(UnsafeOutputDir::Root(_))), "{refused:?}");
    }

    #[test]
    fn the_message_says_what_to_do() {
        assert!(UnsafeOutputDir::Empty.to_string().contains("name a folder"));
        assert!(UnsafeOutputDir::Root("/".into())
            .to_string()
            .contains("`/` is a file-system root"));
    }
}
