//! Arbitrary bytes into the hardened reader; every event is drained and its accessors touched.
//! Errors are fine (their messages are formatted too), panics are not. The asserts check the
//! documented span contract: byte offsets are into the whole input. A range of the input (from
//! its first two bytes) is also read as a fragment of the unchecked input
//! (`Reader::new_fragment`), which must read exactly as the same fragment of the checked input
//! does whenever that one can be read. And the reader's tokenizer must cut the text into the
//! same tokens as `quick_xml::Reader` (configured as the reader used to configure it) and refuse
//! the same ones (`quick_xml`'s DOCTYPE events count as refused: the reader refuses DTDs).
#![no_main]

use libfuzzer_sys::fuzz_target;
use saml_core::xml::{Event, Limits, Reader};

fn check_span(data: &[u8], span: &std::ops::Range<usize>, what: &str) {
    assert!(
        span.start <= span.end && span.end <= data.len(),
        "{what} span {span:?} outside the {}-byte input",
        data.len()
    );
}

/// Every event and the error that ends a reader, as text (what an event says, not the
/// reader's internal state, whose hash maps print in any order).
fn drain(mut r: Reader<'_>) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        match r.next() {
            Ok(Some(Event::Start(s))) => out.push(format!(
                "S {:?} {} {:?} {:?} {:?} {:?} {} {}",
                s.name,
                s.namespace,
                s.attributes,
                s.namespace_decls,
                s.scope,
                s.span,
                s.empty,
                s.depth
            )),
            Ok(Some(ev)) => out.push(format!("{ev:?}")),
            Ok(None) => return out,
            Err(e) => {
                out.push(e.to_string());
                return out;
            }
        }
    }
}

fn fragment(data: &[u8]) {
    let (Some(&a), Some(&b)) = (data.first(), data.get(1)) else {
        return;
    };
    let start = usize::from(a) % data.len();
    let end = start + (usize::from(b) * 31) % (data.len() - start + 1);
    let unchecked = Reader::new_fragment(data, start..end, &[], Limits::default());
    let checked =
        Reader::new(data, Limits::default()).and_then(|r| r.fragment_reader(start..end, &[]));
    match (checked, unchecked) {
        (Ok(c), Ok(u)) => {
            let (c, u) = (drain(c), drain(u));
            if let Some(i) = (0..c.len().max(u.len())).find(|&i| c.get(i) != u.get(i)) {
                panic!(
                    "fragment {start}..{end}, event {i}: checked {:?}, unchecked {:?}",
                    c.get(i),
                    u.get(i)
                );
            }
        }
        (Ok(_), Err(e)) => panic!("fragment {start}..{end} of a good document refused: {e}"),
        (Err(_), Ok(u)) => {
            drain(u);
        }
        (Err(_), Err(e)) => {
            let _ = e.to_string();
        }
    }
}

/// The tokenizer against `quick_xml::Reader`: same kinds, same byte ranges, refused at the same
/// token.
fn tokens(data: &[u8]) {
    use quick_xml::events::Event as Q;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The reader strips one byte-order mark before tokenizing; quick-xml strips one more.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.starts_with('\u{feff}') {
        return;
    }
    let ours = saml_core::xml::tokens_for_fuzzing(text);
    let mut q = quick_xml::Reader::from_str(text);
    let cfg = q.config_mut();
    cfg.check_end_names = false;
    cfg.check_comments = true;
    cfg.expand_empty_elements = false;
    cfg.trim_text(false);
    cfg.allow_dangling_amp = false;
    cfg.allow_unmatched_ends = true;
    let mut theirs: Vec<Result<(String, std::ops::Range<usize>), ()>> = Vec::new();
    loop {
        let start = q.buffer_position() as usize;
        let kind = match q.read_event() {
            Ok(Q::Eof) => break,
            Ok(Q::DocType(_)) | Err(_) => {
                theirs.push(Err(()));
                break;
            }
            Ok(Q::Start(_)) => "Start",
            Ok(Q::Empty(_)) => "Empty",
            Ok(Q::End(_)) => "End",
            Ok(Q::Text(_)) => "Text",
            Ok(Q::GeneralRef(_)) => "Ref",
            Ok(Q::Comment(_)) => "Comment",
            Ok(Q::CData(_)) => "CData",
            Ok(Q::Decl(_)) => "Decl",
            Ok(Q::PI(_)) => "Pi",
        };
        theirs.push(Ok((kind.to_owned(), start..q.buffer_position() as usize)));
    }
    let ours: Vec<_> = ours.into_iter().map(|t| t.map_err(|_| ())).collect();
    if let Some(i) = (0..ours.len().max(theirs.len())).find(|&i| ours.get(i) != theirs.get(i)) {
        panic!(
            "token {i}: ours {:?}, quick-xml {:?}",
            ours.get(i),
            theirs.get(i)
        );
    }
}

fuzz_target!(|data: &[u8]| {
    tokens(data);
    fragment(data);
    let mut reader = match Reader::new(data, Limits::default()) {
        Ok(r) => r,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    loop {
        match reader.next() {
            Ok(Some(ev)) => match ev {
                Event::Start(s) => {
                    check_span(data, &s.span, "start tag");
                    assert_eq!(
                        data[s.span.start], b'<',
                        "start tag span does not begin at '<'"
                    );
                    assert!(s.depth >= 1, "start tag at depth 0");
                    for a in s.attributes {
                        let _ = a.value();
                    }
                    let _ = s.lookup(s.name.prefix);
                    let _ = s.is(s.namespace, s.name.local);
                }
                Event::End(e) => check_span(data, &e.span, "end tag"),
                Event::Text(t) | Event::Comment(t) => {
                    check_span(data, &t.span, "text");
                    let _ = t.value();
                    let _ = t.is_whitespace();
                }
            },
            Ok(None) => break,
            Err(e) => {
                let _ = e.to_string();
                break;
            }
        }
        assert!(
            reader.position() <= data.len(),
            "position past the end of the input"
        );
    }
});
