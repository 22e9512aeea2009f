//! git_apply_patch (in progress).
