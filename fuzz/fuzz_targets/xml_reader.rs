//! Arbitrary bytes into the hardened reader; every event is drained and its accessors touched.
//! Errors are fine (their messages are formatted too), panics are not. The asserts check the
//! documented span contract: byte offsets are into the whole input.
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

fuzz_target!(|data: &[u8]| {
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
