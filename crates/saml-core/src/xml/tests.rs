use super::*;

fn events(doc: &str) -> Result<Vec<String>, Error> {
    let mut r = Reader::new(doc.as_bytes(), Limits::default())?;
    let mut out = Vec::new();
    while let Some(ev) = r.next()? {
        out.push(match ev {
            Event::Start(s) => format!(
                "S {}{{{}}} {:?} {}",
                s.name.raw,
                s.namespace,
                s.attributes
                    .iter()
                    .map(|a| (a.name.raw, a.namespace, a.value().into_owned()))
                    .collect::<Vec<_>>(),
                &doc[s.span.clone()]
            ),
            Event::End(e) => format!("E {} {}", e.name.raw, &doc[e.span.clone()]),
            Event::Text(t) => format!("T {:?} {}", t.value(), t.cdata),
            Event::Comment(c) => format!("C {}", c.raw),
        });
    }
    Ok(out)
}

#[test]
fn spans_names_and_namespaces() {
    let doc = "<a:r xmlns:a='urn:a' xmlns='urn:d' x='1&gt;2' a:y=\"'\"><b c='>'/>x&amp;y<![CDATA[<&>]]></a:r>";
    let ev = events(doc).expect("events");
    assert_eq!(
        ev[0],
        format!(
            "S a:r{{urn:a}} [(\"x\", \"\", \"1>2\"), (\"a:y\", \"urn:a\", \"'\")] {}",
            &doc[..doc.find("<b").expect("b")]
        )
    );
    assert_eq!(ev[1], "S b{urn:d} [(\"c\", \"\", \">\")] <b c='>'/>");
    assert_eq!(ev[2], "E b ");
    assert_eq!(ev[3], "T \"x\" false");
    assert_eq!(ev[4], "T \"&\" false");
    assert_eq!(ev[5], "T \"y\" false");
    assert_eq!(ev[6], "T \"<&>\" true");
    assert_eq!(ev[7], "E a:r </a:r>");
}

#[test]
fn default_namespace_undeclared_and_prefix_shadowed() {
    let doc = "<r xmlns='urn:1' xmlns:p='urn:p'><s xmlns=''><p:t xmlns:p='urn:q'/></s></r>";
    let ev = events(doc).expect("events");
    assert!(ev[0].starts_with("S r{urn:1}"));
    assert!(ev[1].starts_with("S s{}"));
    assert!(ev[2].starts_with("S p:t{urn:q}"));
}

#[test]
fn cdata_end_marker_in_text_is_refused() {
    assert!(matches!(
        events("<r>a]]>b</r>"),
        Err(Error::Xml {
            kind: XmlError::Syntax(_),
            ..
        })
    ));
}

#[test]
fn fragment_reader_keeps_offsets_and_scope() {
    let doc = "<r xmlns:p='urn:p'><p:a x='1'><b/></p:a><c/></r>";
    let r = Reader::new(doc.as_bytes(), Limits::default()).expect("reader");
    let start = doc.find("<p:a").expect("a");
    let end = doc.find("<c/>").expect("c");
    let scope = [NsDecl {
        prefix: "p",
        uri: "urn:p",
    }];
    let mut f = r.fragment_reader(start..end, &scope).expect("fragment");
    let mut seen = Vec::new();
    while let Some(ev) = f.next().expect("event") {
        if let Event::Start(s) = ev {
            seen.push((s.name.raw.to_owned(), s.namespace.to_owned(), s.span.start));
        }
    }
    assert_eq!(
        seen,
        [
            ("p:a".to_owned(), "urn:p".to_owned(), start),
            ("b".to_owned(), String::new(), doc.find("<b/>").expect("b"))
        ]
    );
}

/// A fragment of an unchecked document reads as the same fragment of a checked one, and its
/// bytes are checked as a document's are, with whole-document offsets in the errors.
#[test]
fn fragment_of_an_unchecked_document_is_checked_and_reads_the_same() {
    let doc = "<r xmlns:p='urn:p'><p:a x='1'>é<b/></p:a><c/></r>";
    let start = doc.find("<p:a").expect("a");
    let end = doc.find("<c/>").expect("c");
    let scope = [NsDecl {
        prefix: "p",
        uri: "urn:p",
    }];
    let drain = |mut r: Reader<'_>| {
        let mut out = Vec::new();
        while let Some(ev) = r.next().expect("event") {
            out.push(format!("{ev:?}"));
        }
        out
    };
    let checked = Reader::new(doc.as_bytes(), Limits::default()).expect("reader");
    let a = drain(
        checked
            .fragment_reader(start..end, &scope)
            .expect("fragment"),
    );
    let b = drain(
        Reader::new_fragment(doc.as_bytes(), start..end, &scope, Limits::default())
            .expect("fragment"),
    );
    assert_eq!(a, b);
    assert!(a.len() > 3);

    let bad = |doc: &[u8], range: std::ops::Range<usize>| {
        Reader::new_fragment(doc, range, &[], Limits::default()).expect_err("refused")
    };
    // Not UTF-8 (a lone continuation byte at 9), a control character at 8, a range cutting
    // a character, a range outside the document, a fragment over the size limit.
    assert!(matches!(
        bad(b"<r>xx<a>x\x80</a></r>", 5..14),
        Error::Xml {
            offset: 9,
            kind: XmlError::NotUtf8
        }
    ));
    assert!(matches!(
        bad(b"<r>xx<a>\x01</a></r>", 5..13),
        Error::Xml {
            offset: 8,
            kind: XmlError::InvalidChar(1)
        }
    ));
    let doc = "<r><a>é</a></r>";
    let cut = doc.find('é').expect("é") + 1;
    assert!(matches!(
        bad(doc.as_bytes(), cut..doc.len()),
        Error::Xml {
            kind: XmlError::NotUtf8,
            ..
        }
    ));
    assert!(matches!(bad(doc.as_bytes(), 3..99), Error::Usage(_)));
    let small = Limits {
        max_document_size: 4,
        ..Limits::default()
    };
    assert!(matches!(
        Reader::new_fragment(doc.as_bytes(), 3..doc.len() - 4, &[], small),
        Err(Error::Limit { .. })
    ));
}

#[test]
fn omitted_subtree_produces_no_events() {
    let doc = "<r><s><x/>t</s><u/></r>";
    let mut r = Reader::new(doc.as_bytes(), Limits::default()).expect("reader");
    r.omit_subtree_at(3);
    let mut names = Vec::new();
    while let Some(ev) = r.next().expect("event") {
        if let Event::Start(s) = ev {
            names.push(s.name.raw.to_owned());
        }
    }
    assert_eq!(names, ["r", "u"]);
}

#[test]
fn second_byte_order_mark_is_refused_without_panic() {
    for doc in [
        &b"\xEF\xBB\xBF\xEF\xBB\xBFx"[..],
        b"\xEF\xBB\xBF\xEF\xBB\xBFoc<?xml ve\"1.",
    ] {
        assert!(matches!(
            Reader::new(doc, Limits::default()),
            Err(Error::Xml {
                kind: XmlError::ContentBeforeRoot,
                offset: 3
            })
        ));
    }
}

#[test]
fn fuzz_regressions_do_not_panic() {
    // Inputs found by cargo-fuzz before the second-BOM check (fuzz/artifacts at the time).
    let inputs: [&[u8]; 3] = [
        b"\xEF\xBB\xBF\xEF\xBB\xBF.",
        b"\xEF\xBB\xBF\xEF\xBB\xBF<>\r\nline\rniel<3/a>\r\n",
        b"\xEF\xBB\xBF\xEF\xBB\xBFm\n<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\"/>",
    ];
    for doc in inputs {
        let mut r = match Reader::new(doc, Limits::default()) {
            Ok(r) => r,
            Err(e) => {
                assert!(matches!(e, Error::Xml { .. }), "{e}");
                continue;
            }
        };
        while let Ok(Some(_)) = r.next() {}
    }
}

/// The prefix index is kept only above `SCAN_BINDINGS` bindings: through pushes and truncations
/// that cross that size back and forth, every lookup still finds the innermost binding.
#[test]
fn bindings_lookup_across_the_index_threshold() {
    const PREFIXES: [&str; 5] = ["", "a", "b", "md", "ds"];
    let uris: Vec<String> = (0..200).map(|i| format!("urn:x:{i}")).collect();
    let mut b = Bindings::default();
    let mut model: Vec<NsDecl<'_>> = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    for step in 0..20_000 {
        if next(3) > 0 && model.len() < 60 {
            let d = NsDecl {
                prefix: PREFIXES[next(PREFIXES.len())],
                uri: &uris[step % uris.len()],
            };
            b.push(d);
            model.push(d);
        } else {
            let to = next(model.len() + 1);
            b.truncate(to);
            model.truncate(to);
        }
        assert_eq!(b.as_slice(), model.as_slice());
        for p in PREFIXES.iter().chain(["zz"].iter()) {
            let want = model.iter().rposition(|d| d.prefix == *p);
            assert_eq!(
                b.index_of(p),
                want,
                "step {step}, prefix {p:?}, {} bindings",
                model.len()
            );
        }
        // The reader's memo of recent lookups (4 entries, 6 prefixes here, in random order so
        // that it both hits and evicts) answers as the index does, however the bindings
        // changed since it was filled.
        for _ in 0..8 {
            let p = ["", "a", "b", "md", "ds", "zz"][next(6)];
            let want = match model.iter().rev().find(|d| d.prefix == p) {
                Some(d) => Some(d.uri),
                None if p.is_empty() => Some(""),
                None => None,
            };
            assert_eq!(
                b.lookup_memo(p),
                want,
                "step {step}, prefix {p:?}, {} bindings",
                model.len()
            );
        }
    }
}

/// The one-pass ASCII QName split answers as the general split does: every string of up to four
/// characters over an alphabet of name starts, name characters, colons, a space and a non-ASCII
/// letter.
#[test]
fn qname_fast_path_agrees_with_the_general_path() {
    const ALPHABET: [&str; 9] = ["a", "Z", "_", "1", "-", ".", ":", " ", "é"];
    let mut names = vec![String::new()];
    let mut last = vec![String::new()];
    for _ in 0..4 {
        let mut longer = Vec::new();
        for n in &last {
            for c in ALPHABET {
                longer.push(format!("{n}{c}"));
            }
        }
        names.extend(longer.iter().cloned());
        last = longer;
    }
    let mut fast = 0;
    for n in &names {
        let general = QName::parse_general(n);
        assert_eq!(QName::parse(n), general, "{n:?}");
        if let Some(colon) = super::chars::ascii_qname_colon(n) {
            fast += 1;
            let q = general.expect("the fast path accepts only QNames");
            assert_eq!(colon.map(|i| &n[..i]).unwrap_or(""), q.prefix, "{n:?}");
        }
    }
    assert!(fast > 800, "the fast path decided only {fast} names");
}

/// XML 1.0 §3.1: only S (space, TAB, CR, LF) may follow the name in an end tag. The reader once
/// trimmed the name with `str::trim_end`, which also drops Unicode spaces, and accepted
/// `</a\u{a0}>` as the end of `<a>`.
#[test]
fn end_tag_name_is_followed_by_xml_white_space_only() {
    assert!(events("<a></a \t\r\n>").is_ok());
    for space in ['\u{a0}', '\u{2003}', '\u{3000}', '\u{85}'] {
        let doc = format!("<a></a{space}>");
        assert!(
            matches!(
                events(&doc),
                Err(Error::Xml {
                    kind: XmlError::MismatchedEndTag { .. },
                    ..
                })
            ),
            "{doc:?}: {:?}",
            events(&doc)
        );
    }
}

/// Dsig review M1: one local name in many namespaces whose long URIs differ only at their end
/// made the duplicate-attribute check compare every pair's URIs byte by byte (1,953 pairs of
/// up to 64 KiB for each 570-byte tag, before any signature check). Namespaces are now
/// compared by identity: each URI's text is looked at once per binding, and the document reads
/// in work linear in its size. A real duplicate (two prefixes bound to one URI) is still found.
#[test]
fn attributes_in_long_namespaces_are_compared_by_identity() {
    let uri = |n: usize| format!("urn:x:{}{n:02}", "a".repeat(20_000));
    let decls: String = (1..=63)
        .map(|n| format!(" xmlns:p{n:02}=\"{}\"", uri(n)))
        .collect();
    let tag: String = format!(
        "<e{}/>",
        (1..=63)
            .map(|n| format!(" p{n:02}:a=\"\""))
            .collect::<String>()
    );
    let doc = format!("<r{decls}>{}</r>", tag.repeat(60));
    let limits = Limits {
        max_attribute_len: 64 << 10,
        ..Limits::default()
    };
    let _ = work::take();
    let mut r = Reader::new(doc.as_bytes(), limits).expect("reader");
    let mut tags = 0;
    while let Some(ev) = r.next().expect("a valid document") {
        if matches!(ev, Event::Start(_)) {
            tags += 1;
        }
    }
    assert_eq!(tags, 61);
    if work::ENABLED {
        let w = work::take();
        assert!(
            w <= 8 * doc.len() as u64,
            "{w} units for {} bytes",
            doc.len()
        );
    }
    // Two prefixes of one URI on one element: a duplicate, however long the URI.
    let dup = format!(
        "<r xmlns:a=\"{u}\" xmlns:b=\"{u}\"><e a:x=\"\" b:x=\"\"/></r>",
        u = uri(1)
    );
    let mut r = Reader::new(dup.as_bytes(), limits).expect("reader");
    let e = loop {
        match r.next() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the duplicate was not found"),
            Err(e) => break e,
        }
    };
    assert!(e.to_string().contains("b:x"), "{e}");
}

/// Dsig review L1: `max_text_len` held for one text token only: a CDATA section was exempt,
/// and text split by references or comments was joined into one value without a bound. Both
/// are now one text node, limited as such.
#[test]
fn the_text_limit_holds_for_cdata_and_for_split_text() {
    let limits = Limits {
        max_text_len: 1000,
        ..Limits::default()
    };
    let is_text_limit = |e: &Error| {
        matches!(
            e,
            Error::Limit {
                limit: LimitExceeded::TextLength(1000),
                ..
            }
        )
    };
    let cdata = format!("<r><![CDATA[{}]]></r>", "a".repeat(1001));
    let mut r = Reader::new(cdata.as_bytes(), limits).expect("reader");
    let e = loop {
        match r.next() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the CDATA section was read"),
            Err(e) => break e,
        }
    };
    assert!(is_text_limit(&e), "{e:?}");
    for split in [
        format!("<r>{}</r>", "a&amp;".repeat(501)),
        format!("<r>{}</r>", "aa<!---->".repeat(600)),
    ] {
        let mut r = Reader::new(split.as_bytes(), limits).expect("reader");
        assert!(matches!(r.next(), Ok(Some(Event::Start(_)))));
        let e = read_text(&mut r).unwrap_err();
        assert!(is_text_limit(&e), "{e:?}");
    }
    // At the limit, all three read.
    for ok in [
        format!("<r><![CDATA[{}]]></r>", "a".repeat(1000)),
        format!("<r>{}</r>", "a&amp;".repeat(500)),
    ] {
        let mut r = Reader::new(ok.as_bytes(), limits).expect("reader");
        assert!(matches!(r.next(), Ok(Some(Event::Start(_)))));
        assert_eq!(read_text(&mut r).expect("text").len(), 1000);
    }
}

/// Review C3: an end tag's name was neither bounded nor checked before it was compared and
/// copied into the error (a 1 MB end tag made a 1 MB error line). It is held to
/// `max_name_len`, as a start tag's is.
#[test]
fn an_end_tag_name_is_bounded_like_a_start_tag_name() {
    let doc = format!("<a></{}>", "b".repeat(1_000_000));
    let Err(e) = events(&doc) else {
        panic!("accepted");
    };
    assert!(
        matches!(
            e,
            Error::Limit {
                offset: 3,
                limit: LimitExceeded::NameLength(512)
            }
        ),
        "{e:?}"
    );
    let doc = format!("<a></{}>", "b".repeat(512));
    let Err(e) = events(&doc) else {
        panic!("accepted");
    };
    assert!(
        matches!(
            e,
            Error::Xml {
                kind: XmlError::MismatchedEndTag { .. },
                ..
            }
        ),
        "{e}"
    );
}
