//! A strict parser for unified diffs: git-style (`diff --git` with extended headers) and
//! plain (`---`/`+++` only), bare or as the mails of `git format-patch` (an mbox).
//!
//! We parse ourselves rather than through libgit2 because libgit2 is lenient where we must
//! be strict (it accepts a deletion hunk that does not match the file) and because we need
//! every header (modes, renames) to check it against the base tree ourselves.

use super::error::ApplyError;
use super::paths;

/// Git's mode for a regular file.
pub(crate) const MODE_FILE: u32 = 0o100644;
/// Git's mode for an executable file.
pub(crate) const MODE_EXEC: u32 = 0o100755;
/// Git's mode for a symbolic link.
const MODE_SYMLINK: u32 = 0o120000;
/// Git's mode for a submodule (gitlink).
const MODE_GITLINK: u32 = 0o160000;

/// A parsed patch: one entry per file, in patch order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Patch {
    /// The file patches.
    pub files: Vec<FilePatch>,
}

/// What a file patch does to the tree. Every path has passed [`paths::check_patch_path`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Creates `path` with `mode`.
    Create { path: String, mode: u32 },
    /// Deletes `path`.
    Delete { path: String },
    /// Edits `path` in place.
    Modify { path: String },
    /// Moves `from` to `to`, with optional edits.
    Rename { from: String, to: String },
}

/// The patch of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FilePatch {
    /// The 1-based patch line where this file's header starts, for messages.
    pub line: usize,
    /// The mail of an mbox it is in, counted from 0; 0 for a bare diff.
    pub mail: usize,
    /// What happens to the file.
    pub change: Change,
    /// An explicit mode change (`old mode` / `new mode`).
    pub mode_change: Option<(u32, u32)>,
    /// The hunks, in order.
    pub hunks: Vec<Hunk>,
}

impl FilePatch {
    /// The path read from the base tree, if any.
    pub fn old_path(&self) -> Option<&str> {
        match &self.change {
            Change::Create { .. } => None,
            Change::Delete { path } | Change::Modify { path } => Some(path),
            Change::Rename { from, .. } => Some(from),
        }
    }

    /// The path written in the new tree, if any.
    pub fn new_path(&self) -> Option<&str> {
        match &self.change {
            Change::Delete { .. } => None,
            Change::Create { path, .. } | Change::Modify { path } => Some(path),
            Change::Rename { to, .. } => Some(to),
        }
    }
}

/// One hunk: `@@ -old_start,old_count +new_start,new_count @@` and its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hunk {
    /// The 1-based patch line of the `@@` header.
    pub line: usize,
    /// First old line (1-based; for an insertion, the line after which it goes).
    pub old_start: usize,
    /// Number of old lines.
    pub old_count: usize,
    /// First new line (1-based).
    pub new_start: usize,
    /// Number of new lines.
    pub new_count: usize,
    /// The lines, each with its line ending unless `\ No newline at end of file` followed.
    pub lines: Vec<HunkLine>,
}

/// A line of a hunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HunkLine {
    /// In both old and new.
    Context(Vec<u8>),
    /// Only in old.
    Remove(Vec<u8>),
    /// Only in new.
    Add(Vec<u8>),
}

impl HunkLine {
    fn text_mut(&mut self) -> &mut Vec<u8> {
        match self {
            HunkLine::Context(t) | HunkLine::Remove(t) | HunkLine::Add(t) => t,
        }
    }
}

impl Hunk {
    /// Context lines after the last change.
    pub fn trailing_context(&self) -> usize {
        self.lines
            .iter()
            .rev()
            .take_while(|l| matches!(l, HunkLine::Context(_)))
            .count()
    }
}

/// Parses a whole patch, `strip` leading directories removed from the names on `diff --git`
/// and `---`/`+++` lines (as `patch -p`). Input that starts as an mbox (`git format-patch`)
/// is read as its mails, each diff in turn: the mails' own messages and authors are skipped.
/// Malformed input is `InvalidParams` naming the line; binary and empty patches are
/// `InvalidParams`; symlink and submodule modes are `PathRefused`, and so is every unsafe name
/// (absolute, `..`, `.git`, ...) wherever it is spelled: checked as it is read, so that no
/// consistency check between names answers first.
pub(crate) fn parse(input: &[u8], strip: usize) -> Result<Patch, ApplyError> {
    let lines = Lines::new(input);
    let mut parser = Parser {
        lines,
        pos: 0,
        strip,
        mail: 0,
        mbox: false,
    };
    let mut files = Vec::new();
    if parser.peek().is_some_and(is_mail_start) {
        parser.mbox = true;
        while parser.peek().is_some() {
            parser.mail(&mut files)?;
            parser.mail += 1;
        }
    } else {
        parser.files(&mut files)?;
    }
    if files.is_empty() {
        return Err(ApplyError::InvalidParams(
            "the patch is empty: it changes no file".to_owned(),
        ));
    }
    Ok(Patch { files })
}

/// The input split into lines; each keeps its `\n` (a missing final `\n` is added, as
/// editors often drop it).
struct Lines {
    lines: Vec<Vec<u8>>,
}

impl Lines {
    fn new(input: &[u8]) -> Self {
        let lines = input
            .split_inclusive(|&b| b == b'\n')
            .map(|line| {
                let mut line = line.to_vec();
                if line.last() != Some(&b'\n') {
                    line.push(b'\n');
                }
                line
            })
            .collect();
        Self { lines }
    }
}

struct Parser {
    lines: Lines,
    pos: usize,
    /// How many leading directories to strip from names (`patch -p`).
    strip: usize,
    /// The mail being read, counted from 0.
    mail: usize,
    /// Whether the input is an mbox.
    mbox: bool,
}

/// Extended git headers of one file, as read.
#[derive(Default)]
struct GitHeaders {
    old_mode: Option<u32>,
    new_mode: Option<u32>,
    new_file_mode: Option<u32>,
    deleted_file_mode: Option<u32>,
    rename_from: Option<String>,
    rename_to: Option<String>,
}

impl Parser {
    /// The current line without its `\n`.
    fn peek(&self) -> Option<&[u8]> {
        self.lines
            .lines
            .get(self.pos)
            .map(|l| &l[..l.len().saturating_sub(1)])
    }

    /// The current line with its `\n`.
    fn peek_raw(&self) -> Option<&[u8]> {
        self.lines.lines.get(self.pos).map(Vec::as_slice)
    }

    /// File patches until the end, or, in a mail, until what ends its diff: a line that is
    /// empty, the signature separator `-- ` or the start of the next mail.
    fn files(&mut self, files: &mut Vec<FilePatch>) -> Result<(), ApplyError> {
        while let Some(line) = self.peek() {
            let number = self.pos + 1;
            let file = if line.starts_with(b"diff --git ") {
                self.git_file()?
            } else if line.starts_with(b"--- ") {
                self.plain_file()?
            } else if is_binary_marker(line) {
                return Err(binary(number));
            } else if self.ends_mail(line) {
                return Ok(());
            } else {
                let or_mail_end = if self.mbox {
                    ", the signature `-- ` or the next mail"
                } else {
                    ""
                };
                return Err(malformed(
                    number,
                    format!(
                        "expected a file header (`diff --git` or `---`/`+++`){or_mail_end}, \
                         found {}",
                        show(line)
                    ),
                ));
            };
            files.push(file);
        }
        Ok(())
    }

    /// One mail of an mbox, from its `From <commit> <date>` line: its headers and message
    /// are skipped to the first `diff --git` line, its diff read, and its signature (after
    /// `-- `) and trailing empty lines skipped to the next mail.
    fn mail(&mut self, files: &mut Vec<FilePatch>) -> Result<(), ApplyError> {
        let start = self.pos + 1;
        self.pos += 1;
        let mut in_headers = true;
        loop {
            let Some(line) = self.peek() else {
                return Err(malformed(
                    start,
                    "the mail starting here has no `diff --git`",
                ));
            };
            if line.starts_with(b"diff --git ") {
                break;
            }
            if is_mail_start(line) {
                return Err(malformed(
                    start,
                    "the mail starting here has no `diff --git`",
                ));
            }
            if line.is_empty() {
                in_headers = false;
            } else if in_headers && is_encoded(line) {
                return Err(malformed(
                    self.pos + 1,
                    format!(
                        "{}: only a mail in plain text (7bit or 8bit) can be read;                          write it with `git format-patch`",
                        show(line)
                    ),
                ));
            }
            self.pos += 1;
        }
        self.files(files)?;
        if self.peek() == Some(b"-- ") {
            while self.peek().is_some_and(|line| !is_mail_start(line)) {
                self.pos += 1;
            }
        }
        while self.peek().is_some_and(<[u8]>::is_empty) {
            self.pos += 1;
        }
        match self.peek() {
            Some(line) if !is_mail_start(line) => Err(malformed(
                self.pos + 1,
                format!(
                    "expected a file header (`diff --git` or `---`/`+++`), the signature \
                     `-- ` or the next mail, found {}",
                    show(line)
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Whether `line`, outside a hunk, ends the diff of a mail.
    fn ends_mail(&self, line: &[u8]) -> bool {
        self.mbox && (line.is_empty() || line == b"-- " || is_mail_start(line))
    }

    fn git_file(&mut self) -> Result<FilePatch, ApplyError> {
        let start = self.pos + 1;
        let header = self.peek().unwrap_or_default().to_vec();
        let header_names = git_header_names(&header[b"diff --git ".len()..], self.strip, start)?;
        self.pos += 1;

        let mut h = GitHeaders::default();
        while let Some(line) = self.peek() {
            let number = self.pos + 1;
            if line.starts_with(b"diff --git ") || line.starts_with(b"--- ") || self.ends_mail(line)
            {
                break;
            }
            if line.starts_with(b"@@") {
                return Err(malformed(number, "a hunk without `---`/`+++` lines"));
            }
            if is_binary_marker(line) {
                return Err(binary(number));
            }
            let line = line.to_vec();
            header_line(&line, number, &mut h)?;
            self.pos += 1;
        }

        let mut old_name: Option<Option<String>> = None;
        let mut new_name: Option<Option<String>> = None;
        if self.peek().is_some_and(|l| l.starts_with(b"--- ")) {
            let (old, new) = self.file_names()?;
            old_name = Some(old);
            new_name = Some(new);
        }
        let hunks = self.hunks()?;

        let creating = h.new_file_mode.is_some();
        let deleting = h.deleted_file_mode.is_some();
        if creating && deleting {
            return Err(malformed(start, "a file both created and deleted"));
        }
        if (creating || deleting) && (h.old_mode.is_some() || h.new_mode.is_some()) {
            return Err(malformed(
                start,
                "`old mode`/`new mode` on a created or deleted file",
            ));
        }
        if (creating || deleting) && (h.rename_from.is_some() || h.rename_to.is_some()) {
            return Err(malformed(start, "a rename of a created or deleted file"));
        }
        // Without `---`/`+++` (an empty file created or deleted) the headers alone speak.
        if old_name.is_some() && matches!(old_name, Some(None)) != creating {
            return Err(malformed(
                start,
                "`--- /dev/null` and `new file mode` must come together",
            ));
        }
        if new_name.is_some() && matches!(new_name, Some(None)) != deleting {
            return Err(malformed(
                start,
                "`+++ /dev/null` and `deleted file mode` must come together",
            ));
        }

        let pick = |from_lines: &Option<Option<String>>,
                    from_rename: &Option<String>,
                    from_header: Option<&String>|
         -> Result<String, ApplyError> {
            let named = [
                from_lines.clone().flatten(),
                from_rename.clone(),
                from_header.cloned(),
            ];
            let mut known = named.into_iter().flatten();
            let first = known.next().ok_or_else(|| {
                malformed(
                    start,
                    "cannot tell the file name from the `diff --git` line",
                )
            })?;
            if let Some(other) = known.find(|n| *n != first) {
                return Err(malformed(
                    start,
                    format!("inconsistent file names {first:?} and {other:?}"),
                ));
            }
            Ok(first)
        };
        let (header_old, header_new) = match &header_names {
            Some((a, b)) => (Some(a), Some(b)),
            None => (None, None),
        };

        let change = if let Some(mode) = h.new_file_mode {
            let path = pick(&new_name, &None, header_new)?;
            Change::Create { path, mode }
        } else if deleting {
            let path = pick(&old_name, &None, header_old)?;
            Change::Delete { path }
        } else if h.rename_from.is_some() || h.rename_to.is_some() {
            let (Some(_), Some(_)) = (&h.rename_from, &h.rename_to) else {
                return Err(malformed(
                    start,
                    "`rename from` without `rename to`, or back",
                ));
            };
            let from = pick(&old_name, &h.rename_from, header_old)?;
            let to = pick(&new_name, &h.rename_to, header_new)?;
            Change::Rename { from, to }
        } else {
            let old = pick(&old_name, &None, header_old)?;
            let new = pick(&new_name, &None, header_new)?;
            if old != new {
                return Err(malformed(
                    start,
                    format!("old name {old:?} and new name {new:?} differ without a rename"),
                ));
            }
            Change::Modify { path: old }
        };

        let mode_change = match (h.old_mode, h.new_mode) {
            (Some(old), Some(new)) if old != new => Some((old, new)),
            (Some(_), Some(_)) | (None, None) => None,
            _ => {
                return Err(malformed(
                    start,
                    "`old mode` and `new mode` must come together",
                ))
            }
        };
        if hunks.is_empty() && mode_change.is_none() && matches!(change, Change::Modify { .. }) {
            return Err(malformed(start, "a file header that changes nothing"));
        }
        Ok(FilePatch {
            line: start,
            mail: self.mail,
            change,
            mode_change,
            hunks,
        })
    }

    fn plain_file(&mut self) -> Result<FilePatch, ApplyError> {
        let start = self.pos + 1;
        let (old, new) = self.file_names()?;
        let hunks = self.hunks()?;
        if hunks.is_empty() {
            return Err(malformed(start, "`---`/`+++` without any hunk"));
        }
        let change = match (old, new) {
            (None, None) => return Err(malformed(start, "both names are /dev/null")),
            (None, Some(path)) => Change::Create {
                path,
                mode: MODE_FILE,
            },
            (Some(path), None) => Change::Delete { path },
            (Some(old), Some(new)) if old == new => Change::Modify { path: old },
            (Some(old), Some(new)) => {
                return Err(malformed(
                    start,
                    format!(
                        "`---` names {old:?} but `+++` names {new:?}; a plain diff must name \
                         one file (make renames with git diff)"
                    ),
                ))
            }
        };
        Ok(FilePatch {
            line: start,
            mail: self.mail,
            change,
            mode_change: None,
            hunks,
        })
    }

    /// The `---` and `+++` lines: each a name (prefix stripped) or `None` for /dev/null.
    fn file_names(&mut self) -> Result<(Option<String>, Option<String>), ApplyError> {
        let number = self.pos + 1;
        let old_line = self.peek().unwrap_or_default().to_vec();
        let old = side_name(&old_line[b"--- ".len()..], self.strip, number)?;
        self.pos += 1;
        let new_line = match self.peek() {
            Some(line) if line.starts_with(b"+++ ") => line.to_vec(),
            _ => return Err(malformed(number + 1, "`---` is not followed by `+++`")),
        };
        let new = side_name(&new_line[b"+++ ".len()..], self.strip, number + 1)?;
        self.pos += 1;
        Ok((old, new))
    }

    /// Hunks until the next file header or the end.
    fn hunks(&mut self) -> Result<Vec<Hunk>, ApplyError> {
        let mut hunks: Vec<Hunk> = Vec::new();
        while let Some(line) = self.peek() {
            if !line.starts_with(b"@@") {
                break;
            }
            let hunk = self.hunk()?;
            if let Some(previous) = hunks.last() {
                if hunk.old_start < old_end(previous) || hunk.new_start < new_end(previous) {
                    return Err(malformed(hunk.line, "hunks out of order or overlapping"));
                }
            }
            hunks.push(hunk);
        }
        Ok(hunks)
    }

    fn hunk(&mut self) -> Result<Hunk, ApplyError> {
        let header_number = self.pos + 1;
        let header = self.peek().unwrap_or_default().to_vec();
        let (old_start, old_count, new_start, new_count) =
            parse_hunk_header(&header, header_number)?;
        self.pos += 1;
        let mut lines: Vec<HunkLine> = Vec::new();
        let (mut old_left, mut new_left) = (old_count, new_count);
        while let Some(raw) = self.peek_raw() {
            let number = self.pos + 1;
            // `\ No newline at end of file` strips the ending of the line before it, and
            // may follow the hunk's last line.
            if raw.starts_with(b"\\") {
                let Some(last) = lines.last_mut() else {
                    return Err(malformed(number, "`\\` marker before any hunk line"));
                };
                let text = last.text_mut();
                if text.pop() != Some(b'\n') {
                    return Err(malformed(number, "a repeated `\\ No newline` marker"));
                }
                self.pos += 1;
                continue;
            }
            if old_left == 0 && new_left == 0 {
                break;
            }
            let (kind, text) = match raw.split_first() {
                Some((b' ', rest)) => (b' ', rest.to_vec()),
                Some((b'-', rest)) => (b'-', rest.to_vec()),
                Some((b'+', rest)) => (b'+', rest.to_vec()),
                // git accepts an empty line as an empty context line (editors strip the
                // trailing space).
                Some((b'\n', _)) => (b' ', b"\n".to_vec()),
                _ => {
                    return Err(malformed(
                        number,
                        format!(
                            "the hunk at line {header_number} ends early: {old_left} old and \
                             {new_left} new lines still expected, found {}",
                            show(raw)
                        ),
                    ))
                }
            };
            let line = match kind {
                b' ' => {
                    take(&mut old_left, number)?;
                    take(&mut new_left, number)?;
                    HunkLine::Context(text)
                }
                b'-' => {
                    take(&mut old_left, number)?;
                    HunkLine::Remove(text)
                }
                _ => {
                    take(&mut new_left, number)?;
                    HunkLine::Add(text)
                }
            };
            lines.push(line);
            self.pos += 1;
        }
        if old_left != 0 || new_left != 0 {
            return Err(malformed(
                self.pos + 1,
                format!(
                    "the patch ends inside the hunk at line {header_number}: {old_left} old and \
                     {new_left} new lines missing"
                ),
            ));
        }
        if !lines
            .iter()
            .any(|l| matches!(l, HunkLine::Add(_) | HunkLine::Remove(_)))
        {
            return Err(malformed(header_number, "a hunk that changes nothing"));
        }
        Ok(Hunk {
            line: header_number,
            old_start,
            old_count,
            new_start,
            new_count,
            lines,
        })
    }
}

/// One extended header line of a git file patch.
fn header_line(line: &[u8], number: usize, h: &mut GitHeaders) -> Result<(), ApplyError> {
    let mode_of = |rest: &[u8]| parse_mode(rest, number);
    let once = |slot: &mut Option<u32>, value: u32| {
        if slot.replace(value).is_some() {
            Err(malformed(number, "a repeated header"))
        } else {
            Ok(())
        }
    };
    if let Some(rest) = line.strip_prefix(b"old mode ") {
        once(&mut h.old_mode, mode_of(rest)?)
    } else if let Some(rest) = line.strip_prefix(b"new mode ") {
        once(&mut h.new_mode, mode_of(rest)?)
    } else if let Some(rest) = line.strip_prefix(b"new file mode ") {
        once(&mut h.new_file_mode, mode_of(rest)?)
    } else if let Some(rest) = line.strip_prefix(b"deleted file mode ") {
        once(&mut h.deleted_file_mode, mode_of(rest)?)
    } else if let Some(rest) = line.strip_prefix(b"rename from ") {
        let name = parse_name(rest, number)?;
        set_name(&mut h.rename_from, name, number)
    } else if let Some(rest) = line.strip_prefix(b"rename to ") {
        let name = parse_name(rest, number)?;
        set_name(&mut h.rename_to, name, number)
    } else if line.starts_with(b"copy from ") || line.starts_with(b"copy to ") {
        Err(ApplyError::InvalidParams(format!(
            "patch line {number}: copies are not supported; make the patch without -C"
        )))
    } else if let Some(rest) = line
        .strip_prefix(b"similarity index ")
        .or_else(|| line.strip_prefix(b"dissimilarity index "))
    {
        let digits = rest.strip_suffix(b"%").unwrap_or(b"");
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return Err(malformed(number, "a similarity index that is not `N%`"));
        }
        Ok(())
    } else if let Some(rest) = line.strip_prefix(b"index ") {
        parse_index_line(rest, number)
    } else {
        Err(malformed(
            number,
            format!("unknown extended header {}", show(line)),
        ))
    }
}

/// Counts one line against a hunk's header count.
fn take(left: &mut usize, number: usize) -> Result<(), ApplyError> {
    *left = left
        .checked_sub(1)
        .ok_or_else(|| malformed(number, "the hunk has more lines than its header says"))?;
    Ok(())
}

/// The 1-based old line just past a hunk (for ordering checks).
fn old_end(h: &Hunk) -> usize {
    if h.old_count == 0 {
        h.old_start + 1
    } else {
        h.old_start + h.old_count
    }
}

/// The 1-based new line just past a hunk (for ordering checks).
fn new_end(h: &Hunk) -> usize {
    if h.new_count == 0 {
        h.new_start + 1
    } else {
        h.new_start + h.new_count
    }
}

fn set_name(slot: &mut Option<String>, name: String, number: usize) -> Result<(), ApplyError> {
    if slot.replace(name).is_some() {
        return Err(malformed(number, "a repeated header"));
    }
    Ok(())
}

/// `@@ -a[,b] +c[,d] @@[ section]`.
fn parse_hunk_header(
    line: &[u8],
    number: usize,
) -> Result<(usize, usize, usize, usize), ApplyError> {
    let bad = || malformed(number, format!("a malformed hunk header {}", show(line)));
    let rest = line.strip_prefix(b"@@ -").ok_or_else(bad)?;
    let end = find(rest, b" @@").ok_or_else(bad)?;
    let tail = &rest[end + b" @@".len()..];
    if !(tail.is_empty() || tail.starts_with(b" ")) {
        return Err(bad());
    }
    let ranges = std::str::from_utf8(&rest[..end]).map_err(|_| bad())?;
    let (old, new) = ranges.split_once(" +").ok_or_else(bad)?;
    let range = |s: &str| -> Option<(usize, usize)> {
        let (start, count) = match s.split_once(',') {
            Some((start, count)) => (start, digits(count)?),
            None => (s, 1),
        };
        Some((digits(start)?, count))
    };
    let (old_start, old_count) = range(old).ok_or_else(bad)?;
    let (new_start, new_count) = range(new).ok_or_else(bad)?;
    // A non-empty range starts at line 1 or later; an empty one names the line before it.
    if (old_count > 0 && old_start == 0) || (new_count > 0 && new_start == 0) {
        return Err(bad());
    }
    Ok((old_start, old_count, new_start, new_count))
}

/// A decimal number of plain ASCII digits (no sign, no spaces).
fn digits(s: &str) -> Option<usize> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `index <hex>..<hex>[ <mode>]`: checked for shape; a mode on it is checked for type.
fn parse_index_line(rest: &[u8], number: usize) -> Result<(), ApplyError> {
    let bad = || malformed(number, format!("a malformed index line {}", show(rest)));
    let text = std::str::from_utf8(rest).map_err(|_| bad())?;
    let (ids, mode) = match text.split_once(' ') {
        Some((ids, mode)) => (ids, Some(mode)),
        None => (text, None),
    };
    let (a, b) = ids.split_once("..").ok_or_else(bad)?;
    let hex = |s: &str| (4..=64).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_hexdigit());
    if !hex(a) || !hex(b) {
        return Err(bad());
    }
    if let Some(mode) = mode {
        parse_mode(mode.as_bytes(), number)?;
    }
    Ok(())
}

/// An octal git mode; symlinks and submodules are refused here, before anything else.
fn parse_mode(text: &[u8], number: usize) -> Result<u32, ApplyError> {
    let bad = || malformed(number, format!("a malformed mode {}", show(text)));
    let s = std::str::from_utf8(text).map_err(|_| bad())?;
    if s.len() != 6 || !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(bad());
    }
    let mode = u32::from_str_radix(s, 8).map_err(|_| bad())?;
    match mode {
        MODE_SYMLINK => Err(ApplyError::PathRefused(format!(
            "patch line {number}: the patch creates or changes a symbolic link (mode 120000)"
        ))),
        MODE_GITLINK => Err(ApplyError::PathRefused(format!(
            "patch line {number}: the patch creates or changes a submodule (mode 160000)"
        ))),
        MODE_FILE | MODE_EXEC => Ok(mode),
        // Old git wrote group-writable files as 100664; git reads it as a regular file.
        0o100664 => Ok(MODE_FILE),
        _ => Err(malformed(
            number,
            format!("unsupported mode {s}; only 100644 and 100755 files"),
        )),
    }
}

/// The name on a `---`/`+++` line: `/dev/null`, or a name with its first `strip`
/// directories (the `a/`, `b/` prefix for 1, as `git apply -p1`) removed; any other absolute
/// name is refused, never made relative. A tab ends the name (git and diff put a tab before
/// timestamps, and after names that contain spaces).
fn side_name(rest: &[u8], strip: usize, number: usize) -> Result<Option<String>, ApplyError> {
    let name = if rest.starts_with(b"\"") {
        let (name, tail) = unquote(rest).ok_or_else(|| bad_name(rest, number))?;
        if !(tail.is_empty() || tail.starts_with(b"\t")) {
            return Err(bad_name(rest, number));
        }
        name
    } else {
        let end = rest.iter().position(|&b| b == b'\t').unwrap_or(rest.len());
        rest[..end].to_vec()
    };
    if name == b"/dev/null" {
        return Ok(None);
    }
    let stripped = without_prefix(&name, strip).ok_or_else(|| no_prefix(&name, strip, number))?;
    checked(utf8_name(stripped.to_vec(), number)?, number).map(Some)
}

/// A name on a `rename from`/`rename to` line: the whole rest, quoted or not, no prefix.
fn parse_name(rest: &[u8], number: usize) -> Result<String, ApplyError> {
    let name = if rest.starts_with(b"\"") {
        match unquote(rest) {
            Some((name, [])) => name,
            _ => return Err(bad_name(rest, number)),
        }
    } else {
        rest.to_vec()
    };
    checked(utf8_name(name, number)?, number)
}

/// `name` without its first `strip` directories (for 1, the `a/` or `b/` prefix), or `None`
/// when it has fewer. An absolute name is kept whole, so that [`checked`] refuses it:
/// stripping its empty first directory would turn `/etc/x` into `etc/x`.
fn without_prefix(name: &[u8], strip: usize) -> Option<&[u8]> {
    if name.starts_with(b"/") {
        return Some(name);
    }
    let mut rest = name;
    for _ in 0..strip {
        let slash = rest.iter().position(|&b| b == b'/')?;
        rest = &rest[slash + 1..];
    }
    Some(rest)
}

fn no_prefix(name: &[u8], strip: usize, number: usize) -> ApplyError {
    let what = if strip == 1 {
        "no leading directory (like `a/`)".to_owned()
    } else {
        format!("fewer than {strip} leading directories")
    };
    malformed(
        number,
        format!(
            "the name {} has {what} to strip; for a diff whose names have no `a/` `b/` \
             prefix, set the param `strip` to 0",
            show(name)
        ),
    )
}

/// `name` if [`paths::check_patch_path`] accepts it; its refusal names the patch line.
fn checked(name: String, number: usize) -> Result<String, ApplyError> {
    match paths::check_patch_path(&name) {
        Ok(()) => Ok(name),
        Err(ApplyError::PathRefused(why)) => Err(ApplyError::PathRefused(format!(
            "patch line {number}: {why}"
        ))),
        Err(other) => Err(other),
    }
}

fn utf8_name(name: Vec<u8>, number: usize) -> Result<String, ApplyError> {
    if name.is_empty() {
        return Err(malformed(number, "an empty file name"));
    }
    String::from_utf8(name).map_err(|e| {
        malformed(
            number,
            format!("the file name {} is not UTF-8", show(e.as_bytes())),
        )
    })
}

fn bad_name(rest: &[u8], number: usize) -> ApplyError {
    malformed(number, format!("a malformed file name {}", show(rest)))
}

/// The two names of a `diff --git a/X b/Y` line with their prefixes stripped, when they
/// can be told apart: quoted names always, unquoted ones when both are equal or there is
/// only one space. Otherwise `None`, and the `---`/`+++` or rename lines must name them.
/// The names told apart must be safe ([`checked`]): an absolute one is refused.
fn git_header_names(
    rest: &[u8],
    strip: usize,
    number: usize,
) -> Result<Option<(String, String)>, ApplyError> {
    match split_git_header(rest, strip) {
        Some((a, b)) => Ok(Some((checked(a, number)?, checked(b, number)?))),
        None => Ok(None),
    }
}

/// The split of [`git_header_names`], the names unchecked.
fn split_git_header(rest: &[u8], strip: usize) -> Option<(String, String)> {
    let strip = |n: &[u8]| utf8_name(without_prefix(n, strip)?.to_vec(), 0).ok();
    if rest.starts_with(b"\"") {
        let (a, tail) = unquote(rest)?;
        let tail = tail.strip_prefix(b" ")?;
        let b = if tail.starts_with(b"\"") {
            let (b, end) = unquote(tail)?;
            if !end.is_empty() {
                return None;
            }
            b
        } else {
            tail.to_vec()
        };
        return Some((strip(&a)?, strip(&b)?));
    }
    let spaces: Vec<usize> = (0..rest.len()).filter(|&i| rest[i] == b' ').collect();
    // `a/NAME "b/NAME"`: an unquoted first name and a quoted second one.
    for &i in &spaces {
        if rest.get(i + 1) == Some(&b'"') {
            if let Some((b, end)) = unquote(&rest[i + 1..]) {
                if end.is_empty() {
                    return Some((strip(&rest[..i])?, strip(&b)?));
                }
            }
        }
    }
    let split = |i: usize| Some((strip(&rest[..i])?, strip(&rest[i + 1..])?));
    let equal: Vec<(String, String)> = spaces
        .iter()
        .filter_map(|&i| split(i))
        .filter(|(a, b)| a == b)
        .collect();
    match (equal.as_slice(), spaces.as_slice()) {
        ([one], _) => Some(one.clone()),
        ([], [only]) => split(*only),
        _ => None,
    }
}

/// Undoes git's C-style quoting of a name starting with `"`: returns the bytes and what
/// follows the closing quote.
fn unquote(s: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut out = Vec::new();
    let mut i = 1;
    loop {
        match *s.get(i)? {
            b'"' => return Some((out, &s[i + 1..])),
            b'\\' => {
                let c = *s.get(i + 1)?;
                i += 2;
                let byte = match c {
                    b'a' => 0x07,
                    b'b' => 0x08,
                    b't' => b'\t',
                    b'n' => b'\n',
                    b'v' => 0x0b,
                    b'f' => 0x0c,
                    b'r' => b'\r',
                    b'"' => b'"',
                    b'\\' => b'\\',
                    b'0'..=b'3' => {
                        let d1 = *s.get(i)?;
                        let d2 = *s.get(i + 1)?;
                        if !(b'0'..=b'7').contains(&d1) || !(b'0'..=b'7').contains(&d2) {
                            return None;
                        }
                        i += 2;
                        ((c - b'0') << 6) | ((d1 - b'0') << 3) | (d2 - b'0')
                    }
                    _ => return None,
                };
                out.push(byte);
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
}

/// Whether `line` starts a mail of an mbox as `git format-patch` writes it:
/// `From <commit id> Mon Sep 17 00:00:00 2001` (the date is git's fixed one).
fn is_mail_start(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"From ") else {
        return false;
    };
    let Some(id) = rest.strip_suffix(b" Mon Sep 17 00:00:00 2001") else {
        return false;
    };
    matches!(id.len(), 40 | 64) && id.iter().all(u8::is_ascii_hexdigit)
}

/// Whether a mail header line says its body is encoded (quoted-printable, base64), which
/// would have to be decoded before its diff could be read.
fn is_encoded(line: &[u8]) -> bool {
    let text = String::from_utf8_lossy(line).to_ascii_lowercase();
    text.strip_prefix("content-transfer-encoding:")
        .is_some_and(|value| !matches!(value.trim(), "7bit" | "8bit"))
}

fn is_binary_marker(line: &[u8]) -> bool {
    line == b"GIT binary patch"
        || (line.starts_with(b"Binary files ") && line.ends_with(b" differ"))
}

fn binary(number: usize) -> ApplyError {
    ApplyError::InvalidParams(format!(
        "patch line {number}: binary patches are not supported"
    ))
}

fn malformed(number: usize, message: impl std::fmt::Display) -> ApplyError {
    ApplyError::InvalidParams(format!("malformed patch: line {number}: {message}"))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A line for messages: quoted, shortened.
fn show(line: &[u8]) -> String {
    const MAX: usize = 80;
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches('\n');
    if text.chars().count() > MAX {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut:?}...")
    } else {
        format!("{text:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Patch, ApplyError> {
        parse(s.as_bytes(), 1)
    }

    #[test]
    fn git_modify_with_two_hunks_and_no_newline_marker() {
        let p = parse_str(
            "diff --git a/f.txt b/f.txt\nindex 1111111..2222222 100644\n--- a/f.txt\n+++ b/f.txt\n\
             @@ -1,2 +1,2 @@\n-a\n+b\n c\n@@ -10 +10 @@\n-x\n\\ No newline at end of file\n+y\n",
        )
        .unwrap();
        assert_eq!(p.files.len(), 1);
        let f = &p.files[0];
        assert_eq!(
            f.change,
            Change::Modify {
                path: "f.txt".into()
            }
        );
        assert_eq!(f.hunks.len(), 2);
        assert_eq!(f.hunks[1].lines[0], HunkLine::Remove(b"x".to_vec()));
        assert_eq!(f.hunks[1].lines[1], HunkLine::Add(b"y\n".to_vec()));
    }

    #[test]
    fn quoted_names_are_unquoted() {
        let p = parse_str(
            "diff --git \"a/caf\\303\\251 x\" \"b/caf\\303\\251 x\"\nnew file mode 100755\n\
             --- /dev/null\n+++ \"b/caf\\303\\251 x\"\n@@ -0,0 +1 @@\n+hi\n",
        )
        .unwrap();
        assert_eq!(
            p.files[0].change,
            Change::Create {
                path: "café x".into(),
                mode: MODE_EXEC
            }
        );
    }

    #[test]
    fn pure_rename_and_mode_change_need_no_hunks() {
        let p = parse_str(
            "diff --git a/a b/b\nsimilarity index 100%\nrename from a\nrename to b\n\
             diff --git a/x y b/x y\nold mode 100644\nnew mode 100755\n",
        )
        .unwrap();
        assert_eq!(
            p.files[0].change,
            Change::Rename {
                from: "a".into(),
                to: "b".into()
            }
        );
        assert_eq!(p.files[1].change, Change::Modify { path: "x y".into() });
        assert_eq!(p.files[1].mode_change, Some((MODE_FILE, MODE_EXEC)));
    }

    #[test]
    fn plain_diff_with_timestamps() {
        let p = parse_str(
            "--- a/f\t2020-01-01 00:00:00\n+++ b/f\t2020-01-02 00:00:00\n@@ -1 +1 @@\n-a\n+b\n",
        )
        .unwrap();
        assert_eq!(p.files[0].change, Change::Modify { path: "f".into() });
    }

    #[test]
    fn malformed_inputs_name_their_line() {
        for (patch, line) in [
            (
                "diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n-a\n+b\n",
                7,
            ),
            (
                "diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n+c\n",
                7,
            ),
            ("diff --git a/f b/f\nfrobnicate\n", 2),
            ("hello\n", 1),
            ("diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -x +1 @@\n", 4),
            ("--- a/f\n@@ -1 +1 @@\n", 2),
        ] {
            let err = parse_str(patch).unwrap_err();
            let ApplyError::InvalidParams(message) = &err else {
                panic!("{err:?}")
            };
            assert!(message.contains(&format!("line {line}")), "{message}");
        }
    }

    #[test]
    fn absolute_names_are_refused_not_made_relative() {
        for (patch, line) in [
            ("--- /etc/x\n+++ /etc/x\n@@ -1 +1 @@\n-a\n+b\n", 1),
            ("--- a/etc/x\n+++ /etc/x\n@@ -1 +1 @@\n-a\n+b\n", 2),
            ("--- /dev/null\n+++ /etc/x\n@@ -0,0 +1 @@\n+b\n", 2),
            (
                "--- /dev/null\n+++ \"/etc/x\"\t2020-01-01\n@@ -0,0 +1 @@\n+b\n",
                2,
            ),
            ("--- /dev/null\n+++ b//etc/x\n@@ -0,0 +1 @@\n+b\n", 2),
            ("diff --git /etc/x /etc/x\nnew file mode 100644\n", 1),
            ("diff --git a//etc/x b//etc/x\nnew file mode 100644\n", 1),
            (
                "diff --git \"/etc/x\" \"/etc/x\"\nnew file mode 100644\n",
                1,
            ),
            ("diff --git a/etc/x /etc/x\nnew file mode 100644\n", 1),
            (
                "diff --git /f /f\n--- a/f\n+++ b/f\n@@ -1 +1 @@\n-a\n+b\n",
                1,
            ),
            (
                "diff --git a/f b/g\nsimilarity index 100%\nrename from f\nrename to /etc/x\n",
                4,
            ),
            ("diff --git a/f b/g\nrename from /etc/x\nrename to g\n", 2),
        ] {
            let err = parse_str(patch).unwrap_err();
            let ApplyError::PathRefused(message) = &err else {
                panic!("{patch:?}: {err:?}")
            };
            assert!(
                message.contains(&format!("patch line {line}:")) && message.contains("absolute"),
                "{patch:?}: {message}"
            );
        }
    }

    #[test]
    fn prefixes_are_stripped_and_dev_null_is_no_file() {
        let p = parse_str(
            "--- /dev/null\n+++ b/etc/x\n@@ -0,0 +1 @@\n+b\n\
             --- x/y/z\n+++ w/y/z\n@@ -1 +1 @@\n-a\n+b\n\
             diff --git a/gone b/gone\ndeleted file mode 100644\n--- a/gone\n+++ /dev/null\n\
             @@ -1 +0,0 @@\n-a\n",
        )
        .unwrap();
        let changes: Vec<_> = p.files.iter().map(|f| f.change.clone()).collect();
        assert_eq!(
            changes,
            [
                Change::Create {
                    path: "etc/x".into(),
                    mode: MODE_FILE
                },
                Change::Modify { path: "y/z".into() },
                Change::Delete {
                    path: "gone".into()
                },
            ]
        );
    }

    #[test]
    fn unsafe_names_are_refused_before_names_are_compared() {
        // The names differ, but the answer is about the unsafe one.
        for patch in [
            "--- a/x\n+++ b/.git/config\n@@ -1 +1 @@\n-a\n+b\n",
            "diff --git a/x b/x\n--- a/x\n+++ b/../x\n@@ -1 +1 @@\n-a\n+b\n",
            "diff --git a/.gitmodules b/.gitmodules\nnew file mode 100644\n",
        ] {
            assert!(
                matches!(parse_str(patch), Err(ApplyError::PathRefused(_))),
                "{patch:?}"
            );
        }
    }

    #[test]
    fn binary_empty_symlink_and_submodule_patches_are_refused() {
        assert!(matches!(parse_str(""), Err(ApplyError::InvalidParams(_))));
        assert!(matches!(
            parse_str("diff --git a/b b/b\nindex 1111..2222 100644\nGIT binary patch\n"),
            Err(ApplyError::InvalidParams(m)) if m.contains("binary")
        ));
        assert!(matches!(
            parse_str("diff --git a/b b/b\nindex 1111..2222\nBinary files a/b and b/b differ\n"),
            Err(ApplyError::InvalidParams(m)) if m.contains("binary")
        ));
        assert!(matches!(
            parse_str("diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+x\n"),
            Err(ApplyError::PathRefused(_))
        ));
        assert!(matches!(
            parse_str("diff --git a/s b/s\nindex 1111..2222 160000\n--- a/s\n+++ b/s\n@@ -1 +1 @@\n-Subproject commit 1\n+Subproject commit 2\n"),
            Err(ApplyError::PathRefused(_))
        ));
    }

    const MAIL_1: &str = "From 1111111111111111111111111111111111111111 Mon Sep 17 00:00:00 2001\n\
From: A <a@example.com>\nSubject: [PATCH 1/2] one\n\nbody\n---\n f | 1 +\n\n\
diff --git a/f b/f\nnew file mode 100644\n--- /dev/null\n+++ b/f\n@@ -0,0 +1 @@\n+- \n-- \n2.47.3\n\n";

    const MAIL_2: &str = "From 2222222222222222222222222222222222222222 Mon Sep 17 00:00:00 2001\n\
From: A <a@example.com>\nSubject: [PATCH 2/2] two\n\n---\n\
diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -1 +1 @@\n-- \n+x\n";

    #[test]
    fn mails_are_read_in_order_each_diff_numbered_by_its_mail() {
        let p = parse_str(&format!("{MAIL_1}{MAIL_2}")).unwrap();
        let read: Vec<_> = p.files.iter().map(|f| (f.mail, f.change.clone())).collect();
        assert_eq!(
            read,
            [
                (
                    0,
                    Change::Create {
                        path: "f".into(),
                        mode: MODE_FILE
                    }
                ),
                (1, Change::Modify { path: "f".into() }),
            ]
        );
        // `-- ` inside a hunk is a removed line `- `, not the signature.
        assert_eq!(
            p.files[1].hunks[0].lines[0],
            HunkLine::Remove(b"- \n".to_vec())
        );
        assert_eq!(
            p.files[0].hunks[0].lines[0],
            HunkLine::Add(b"- \n".to_vec())
        );
    }

    #[test]
    fn mails_without_a_diff_encoded_or_with_junk_after_it_are_refused() {
        let no_diff = "From 1111111111111111111111111111111111111111 Mon Sep 17 00:00:00 2001\n\
Subject: [PATCH 0/2] cover\n\nletter\n";
        let encoded = MAIL_2.replace("\n\n---", "\nContent-Transfer-Encoding: base64\n\n---");
        let junk = format!("{MAIL_2}junk\n");
        for (mbox, needle) in [
            (
                format!("{no_diff}{MAIL_1}"),
                "line 1: the mail starting here has no `diff --git`",
            ),
            (encoded, "line 4: \"Content-Transfer-Encoding: base64\""),
            (
                junk,
                "line 12: expected a file header (`diff --git` or `---`/`+++`), the signature `-- ` or the next mail, found \"junk\"",
            ),
        ] {
            let err = parse_str(&mbox).unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn strip_removes_that_many_directories_and_never_makes_a_name_relative() {
        assert_eq!(without_prefix(b"a/b/c", 0), Some(&b"a/b/c"[..]));
        assert_eq!(without_prefix(b"a/b/c", 2), Some(&b"c"[..]));
        assert_eq!(without_prefix(b"a/b/c", 3), None);
        assert_eq!(without_prefix(b"/etc/x", 2), Some(&b"/etc/x"[..]));
        let plain = "--- f\n+++ f\n@@ -1 +1 @@\n-a\n+b\n";
        assert_eq!(
            parse(plain.as_bytes(), 0).unwrap().files[0].change,
            Change::Modify { path: "f".into() }
        );
        let err = parse_str(plain).unwrap_err().to_string();
        assert!(
            err.contains("has no leading directory (like `a/`) to strip"),
            "{err}"
        );
        let err = parse(b"--- a/f\n+++ a/f\n@@ -1 +1 @@\n-a\n+b\n", 2).unwrap_err();
        assert!(
            err.to_string().contains("fewer than 2 leading directories"),
            "{err}"
        );
    }
}
