//! Applying hunks to a file's bytes in memory, as `git apply` does without fuzz: every
//! context and removed line must match exactly (line endings included); a hunk may be
//! found at an offset from where its header says, but never over lines an earlier hunk
//! produced; a hunk starting at line 1 must match at the start, and a hunk without trailing
//! context must match at the end.

use super::patch::{Hunk, HunkLine};

/// The content after applying `hunks` in order, or the reason one does not apply.
pub(crate) fn apply(content: &[u8], hunks: &[Hunk]) -> Result<Vec<u8>, String> {
    let mut image: Vec<&[u8]> = content.split_inclusive(|&b| b == b'\n').collect();
    // Lines before `floor` were produced by an earlier hunk and may not match again.
    let mut floor = 0;
    for hunk in hunks {
        let before: Vec<&[u8]> = hunk
            .lines
            .iter()
            .filter_map(|l| match l {
                HunkLine::Context(t) | HunkLine::Remove(t) => Some(t.as_slice()),
                HunkLine::Add(_) => None,
            })
            .collect();
        let after: Vec<&[u8]> = hunk
            .lines
            .iter()
            .filter_map(|l| match l {
                HunkLine::Context(t) | HunkLine::Add(t) => Some(t.as_slice()),
                HunkLine::Remove(_) => None,
            })
            .collect();
        let at = find(&image, &before, hunk, floor).ok_or_else(|| {
            format!(
                "the hunk at patch line {} (@@ -{},{} @@) does not match",
                hunk.line, hunk.old_start, hunk.old_count
            )
        })?;
        image.splice(at..at + before.len(), after.iter().copied());
        floor = at + after.len();
    }
    Ok(image.concat())
}

/// Where `before` matches in `image`: the hinted line first, then alternately one line
/// further down and up, as git searches.
fn find(image: &[&[u8]], before: &[&[u8]], hunk: &Hunk, floor: usize) -> Option<usize> {
    let last = image.len().checked_sub(before.len())?;
    if last < floor {
        return None;
    }
    let matches = |at: usize| image[at..at + before.len()] == *before;
    let must_start = hunk.old_start <= 1;
    let must_end = hunk.trailing_context() == 0;
    match (must_start, must_end) {
        (true, true) => (floor == 0 && last == 0 && matches(0)).then_some(0),
        (true, false) => (floor == 0 && matches(0)).then_some(0),
        (false, true) => matches(last).then_some(last),
        (false, false) => {
            // The new start counts the lines earlier hunks added or removed, so it is
            // where the hunk lands in the image as patched so far.
            let hint = hunk.new_start.saturating_sub(1).clamp(floor, last);
            interleave(hint..=last, (floor..hint).rev()).find(|&at| matches(at))
        }
    }
}

/// `a0, b0, a1, b1, ...`, continuing with the longer one when the other runs out.
fn interleave(
    a: impl Iterator<Item = usize>,
    b: impl Iterator<Item = usize>,
) -> impl Iterator<Item = usize> {
    let mut a = a.fuse();
    let mut b = b.fuse();
    let mut from_a = true;
    std::iter::from_fn(move || {
        let next = if from_a {
            a.next().or_else(|| b.next())
        } else {
            b.next().or_else(|| a.next())
        };
        from_a = !from_a;
        next
    })
}

#[cfg(test)]
mod tests {
    use super::super::patch::parse;
    use super::*;

    fn hunks(patch: &str) -> Vec<Hunk> {
        parse(patch.as_bytes(), 1).unwrap().files.remove(0).hunks
    }

    fn lines(range: std::ops::RangeInclusive<u32>) -> String {
        range.map(|i| format!("{i}\n")).collect()
    }

    #[test]
    fn applies_at_the_stated_place_and_at_an_offset() {
        let h = hunks(
            "--- a/f\n+++ b/f\n@@ -4,3 +4,3 @@\n 4\n-5\n+five\n 6\n@@ -10,3 +10,4 @@\n 10\n 11\n+11.5\n 12\n",
        );
        let out = apply(lines(1..=15).as_bytes(), &h).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            lines(1..=4) + "five\n" + &lines(6..=11) + "11.5\n" + &lines(12..=15)
        );
        // Two lines inserted at the top: both hunks are found two lines further down.
        let shifted = String::from("a\nb\n") + &lines(1..=15);
        let out = apply(shifted.as_bytes(), &h).unwrap();
        assert!(String::from_utf8(out).unwrap().contains("4\nfive\n6\n"));
    }

    #[test]
    fn mismatch_end_anchor_and_missing_newline() {
        let h = hunks("--- a/f\n+++ b/f\n@@ -2,2 +2,2 @@\n 2\n-3\n+x\n");
        // Without trailing context the hunk must match at the end of the file.
        assert!(apply(lines(1..=3).as_bytes(), &h).is_ok());
        assert!(apply(lines(1..=4).as_bytes(), &h).is_err());
        let h = hunks("--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+a\n");
        assert_eq!(apply(b"a", &h).unwrap(), b"a\n");
        assert!(apply(b"a\n", &h).is_err());
    }

    #[test]
    fn a_deletion_must_match_every_line() {
        let h = hunks("--- a/f\n+++ /dev/null\n@@ -1,3 +0,0 @@\n-1\n-2\n-3\n");
        assert_eq!(apply(lines(1..=3).as_bytes(), &h).unwrap(), b"");
        assert!(apply(lines(1..=4).as_bytes(), &h).is_err());
        assert!(apply(b"1\n2\nthree\n", &h).is_err());
    }
}
