//! Escaping for XML output (XML 1.0 §2.4, §3.3.3): what every writer in the workspace uses.

/// Escapes text content: `&`, `<`, `>` and CR (as `&#13;`, so that line-end normalization keeps
/// it).
#[must_use]
pub fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes an attribute value for double quotes: `&`, `<`, `"`, and TAB/LF/CR as character
/// references so that attribute-value normalization keeps them.
#[must_use]
pub fn escape_attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{Event, Limits, Reader};

    #[test]
    fn escaped_values_read_back() {
        let text = "a & b < c > d \r e \"quoted\"";
        let attr = "x\ty\nz\r & < \" '";
        let doc = format!("<r a=\"{}\">{}</r>", escape_attr(attr), escape_text(text));
        let mut r = Reader::new(doc.as_bytes(), Limits::default()).expect("reader");
        let Some(Event::Start(s)) = r.next().expect("start") else {
            panic!("no start")
        };
        assert_eq!(s.attribute("a").expect("a").value(), attr);
        assert_eq!(crate::xml::read_text(&mut r).expect("text"), text);
    }
}
