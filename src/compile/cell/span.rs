//! Where a piece of the cell lies: byte offsets of its lines, and the text of a span
//! cut out of the cell with the kernel's insertions, recorded as [`Snippet`]s.

use super::Snippet;
use proc_macro2::LineColumn;
use syn::spanned::Spanned;

/// Byte offsets of each line start, to turn span line/columns into slices.
pub(super) struct LineIndex<'a> {
    src: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(super) fn new(src: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { src, starts }
    }

    /// proc-macro2 lines are 1-based, columns count characters.
    fn offset(&self, lc: LineColumn) -> usize {
        // Line 0 is a span without a position (proc-macro2 gives those when fuzzing).
        let start = self.starts[lc.line.saturating_sub(1).min(self.starts.len() - 1)];
        let line = &self.src[start..];
        start
            + line
                .char_indices()
                .nth(lc.column)
                .map(|(i, _)| i)
                .unwrap_or(line.len())
    }
}

/// Cuts the text of a span out of the wrapped source, inserting `edits` (byte offset,
/// text) on the way, and records its position in the cell.
pub(super) fn snippet(
    span: proc_macro2::Span,
    index: &LineIndex,
    edits: &[(usize, String)],
) -> Snippet {
    let start = index.offset(span.start());
    let end = index.offset(span.end());
    let mut text = String::new();
    let mut at = start;
    let mut edits: Vec<_> = edits
        .iter()
        .filter(|(o, _)| *o >= start && *o <= end)
        .collect();
    edits.sort_by_key(|(o, _)| *o);
    let mut inserted = Vec::new();
    for (offset, insert) in edits {
        text.push_str(&index.src[at..*offset]);
        let line = text.matches('\n').count();
        let here = text.rsplit('\n').next().unwrap_or("").chars().count();
        let indent = if line == 0 { span.start().column } else { 0 };
        inserted.push((line, here + indent, insert.chars().count()));
        text.push_str(insert);
        at = *offset;
    }
    text.push_str(&index.src[at..end]);
    Snippet {
        text,
        line: span.start().line.saturating_sub(1),
        column: span.start().column,
        inserted,
    }
}

/// Where an item's own tokens start, after its outer attributes.
pub(super) fn head_offset(
    attrs: &[syn::Attribute],
    whole: proc_macro2::Span,
    index: &LineIndex,
) -> usize {
    let after = match attrs
        .iter()
        .rfind(|a| matches!(a.style, syn::AttrStyle::Outer))
    {
        Some(a) => index.offset(a.span().end()),
        None => return index.offset(whole.start()),
    };
    let rest = &index.src[after..];
    after + (rest.len() - rest.trim_start().len())
}
