#!/usr/bin/env python3
"""Writes a SAML metadata aggregate of N entities built from real-world metadata, signed by xmlsec1.

Usage: realworld_aggregate.py N SHAPE OUT KEY CERT [--vectors DIR] [--now YYYY-MM-DDTHH:MM:SSZ]
       [--xmlsec1 PATH]

Nothing in the output comes from this workspace's code (issue 15, "Proof"): the entities are
the EntityDescriptor elements of the real-world documents in /work/shared/vectors/metadata (see
its README.md), and the signature is made by `xmlsec1 --sign` from a template.

* Every EntityDescriptor of every document is taken, in document order, documents sorted by
  name; `switch-aaitest-2008-signed.invalid.xml` (a tampered twin) is skipped. Nested
  EntitiesDescriptors are flattened (their own attributes are not carried).
* Each copy drops its own ds:Signature elements (anywhere inside the entity) and every
  validUntil attribute earlier than --now (default: the current time), gets
  entityID="<original>?rw=<i>" and ID="_rw<i>" (i = 0..N-1), and is otherwise kept as parsed:
  text, comments, attribute values, xml:base/xml:lang, whitespace. Prefixes are reassigned by
  the shape; QName-valued xsi:type values are rewritten to the new prefixes.
* The entities are cycled through until N are written.

SHAPE:
  prefix    `md:` prefix on the metadata namespace; every namespace declared once on the root
            (the eduGAIN layout)
  default   the metadata namespace as the default namespace (no prefix); the root declares only
            it and ds; each EntityDescriptor redeclares xmlns and declares every other namespace
            it uses (the layout of per-entity concatenations)
  crlf      as prefix, with CRLF line ends throughout, put in after signing (xmlsec1 writes LF;
            the parser normalizes CRLF to LF, XML 1.0 section 2.11, so the signed content is
            the same)
  longcert  as prefix, with each ds:X509Certificate's base64 on one line (no wrapping), the
            way many IdPs publish it

The root EntitiesDescriptor gets ID="_rwagg<N>", Name="urn:rw:aggregate:<shape>:<N>" and an
enveloped ds:Signature template as first child (Reference URI="#_rwagg<N>", exc-c14n,
rsa-sha256, sha256, KeyInfo/X509Data filled by xmlsec1 from CERT). The output is deterministic
for given inputs and --now (xmlsec1's RSA PKCS#1 v1.5 signature is deterministic too).

Needs lxml (the venv from scripts/setup.sh has it) and xmlsec1.
"""

import argparse
import datetime
import os
import re
import subprocess
import sys
import tempfile

from lxml import etree

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XML_NS = "http://www.w3.org/XML/1998/namespace"

# Conventional prefixes; namespaces not listed keep the prefix their source document used.
PREFERRED = {
    MD: "md",
    DS: "ds",
    XSI: "xsi",
    "http://www.w3.org/2001/XMLSchema": "xs",
    "urn:oasis:names:tc:SAML:2.0:assertion": "saml",
    "urn:oasis:names:tc:SAML:metadata:ui": "mdui",
    "urn:oasis:names:tc:SAML:metadata:rpi": "mdrpi",
    "urn:oasis:names:tc:SAML:metadata:attribute": "mdattr",
    "urn:oasis:names:tc:SAML:metadata:algsupport": "alg",
    "urn:mace:shibboleth:metadata:1.0": "shibmd",
    "urn:oasis:names:tc:SAML:profiles:SSO:idp-discovery-protocol": "idpdisc",
    "urn:oasis:names:tc:SAML:profiles:SSO:request-init": "init",
    "http://www.w3.org/2001/04/xmlenc#": "xenc",
    "http://www.w3.org/2009/xmlenc11#": "xenc11",
    "http://docs.oasis-open.org/wsfed/federation/200706": "fed",
    "http://docs.oasis-open.org/wsfed/authorization/200706": "auth",
    "http://www.w3.org/2005/08/addressing": "wsa",
}

SKIP_FILES = {"switch-aaitest-2008-signed.invalid.xml"}
SHAPES = ("prefix", "default", "crlf", "longcert")
QNAME_RE = re.compile(r"^\s*(?:([A-Za-z_][\w.\-]*):)?([A-Za-z_][\w.\-]*)\s*$")


def parse_time(v):
    v = v.strip()
    if v.endswith("Z"):
        v = v[:-1] + "+00:00"
    t = datetime.datetime.fromisoformat(v)
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    return t


def collect_entities(vectors):
    """The EntityDescriptor elements of every document, documents sorted by name."""
    out = []
    parser = etree.XMLParser(remove_blank_text=False, resolve_entities=False, no_network=True,
                             huge_tree=False)
    for name in sorted(os.listdir(vectors)):
        if not name.endswith(".xml") or name in SKIP_FILES:
            continue
        tree = etree.parse(os.path.join(vectors, name), parser)
        root = tree.getroot()
        if root.tag == f"{{{MD}}}EntityDescriptor":
            found = [root]
        else:
            found = list(root.iter(f"{{{MD}}}EntityDescriptor"))
        out.extend((name, e) for e in found)
    if not out:
        sys.exit(f"realworld_aggregate.py: no EntityDescriptor found in {vectors}")
    return out


def split_name(tag):
    if tag.startswith("{"):
        uri, local = tag[1:].split("}", 1)
        return uri, local
    return "", tag


def esc_text(s):
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("\r", "&#13;"))


def esc_attr(s):
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
            .replace("\t", "&#9;").replace("\n", "&#10;").replace("\r", "&#13;"))


class Writer:
    """Serializes lxml elements with prefixes chosen by the shape."""

    def __init__(self, shape, now):
        self.default_md = shape == "default"
        self.longcert = shape == "longcert"
        self.now = now
        self.parts = []
        self.source_prefix = {}  # URI -> prefix, for namespaces without a preferred prefix

    def prefix_for(self, uri, elem_prefix_hint=None, attribute=False):
        if uri == MD and self.default_md and not attribute:
            return ""
        p = PREFERRED.get(uri)
        if p is None:
            p = self.source_prefix.get(uri)
        if p is None:
            p = elem_prefix_hint or f"ns{len(self.source_prefix)}"
            used = set(PREFERRED.values()) | set(self.source_prefix.values())
            base, k = p, 1
            while p in used:
                p, k = f"{base}{k}", k + 1
            self.source_prefix[uri] = p
        return p

    def learn(self, elem):
        """Registers the prefixes of every namespace used under elem (in document order)."""
        for e in elem.iter():
            if not isinstance(e.tag, str):
                continue
            for p, uri in e.nsmap.items():
                if uri not in PREFERRED and uri not in self.source_prefix and uri != XML_NS:
                    self.prefix_for(uri, p or None)

    def used_namespaces(self, elem):
        """Namespace URIs (besides xml) that elements, attributes and xsi:type values under elem
        use, as a sorted list of (prefix, uri) in the target prefixes."""
        used = {}
        for e in elem.iter():
            if not isinstance(e.tag, str) or self.dropped(e):
                continue
            uri, _ = split_name(e.tag)
            if uri:
                used[uri] = self.prefix_for(uri, e.prefix)
            for k, v in e.attrib.items():
                auri, _ = split_name(k)
                if auri and auri != XML_NS:
                    used[auri] = self.prefix_for(auri, None, attribute=True)
                if k == f"{{{XSI}}}type":
                    t = self.resolve_qname(e, v)
                    if t:
                        used[t[0]] = self.prefix_for(t[0], t[2])
        return sorted((p, u) for u, p in used.items())

    @staticmethod
    def resolve_qname(e, v):
        m = QNAME_RE.match(v)
        if not m:
            return None
        uri = e.nsmap.get(m.group(1))
        if uri is None:
            return None
        return uri, m.group(2), m.group(1)

    @staticmethod
    def dropped(e):
        return e.tag == f"{{{DS}}}Signature"

    def start_tag(self, e, scope, extra_decls, override_attrs=None):
        uri, local = split_name(e.tag)
        decls = dict(extra_decls)
        p = self.prefix_for(uri, e.prefix) if uri else ""
        if uri:
            if scope.get(p) != uri and decls.get(p) != uri:
                decls[p] = uri
        elif scope.get("", "") != "":
            decls[""] = ""
        attrs = []
        items = list(e.attrib.items())
        if override_attrs is not None:
            items = override_attrs(items)
        for k, v in items:
            auri, alocal = split_name(k)
            if auri == XML_NS:
                name = f"xml:{alocal}"
            elif auri:
                ap = self.prefix_for(auri, None, attribute=True)
                if scope.get(ap) != auri and decls.get(ap) != auri:
                    decls[ap] = auri
                name = f"{ap}:{alocal}"
            else:
                name = alocal
            if k == f"{{{XSI}}}type":
                t = self.resolve_qname(e, v)
                if t:
                    tp = self.prefix_for(t[0], t[2])
                    if scope.get(tp) != t[0] and decls.get(tp) != t[0]:
                        decls[tp] = t[0]
                    v = f"{tp}:{t[1]}" if tp else t[1]
            if local and k == "validUntil" and parse_time(v) < self.now:
                continue
            attrs.append(f' {name}="{esc_attr(v)}"')
        qname = f"{p}:{local}" if p else local
        ns = "".join(
            f' xmlns="{esc_attr(u)}"' if dp == "" else f' xmlns:{dp}="{esc_attr(u)}"'
            for dp, u in sorted(decls.items())
        )
        new_scope = dict(scope)
        new_scope.update(decls)
        return qname, f"<{qname}{ns}{''.join(attrs)}", new_scope

    def element(self, e, scope, extra_decls=(), override_attrs=None):
        qname, head, inner = self.start_tag(e, scope, extra_decls, override_attrs)
        out = self.parts
        children = [c for c in e if not (isinstance(c.tag, str) and self.dropped(c))]
        text = e.text or ""
        if self.longcert and e.tag == f"{{{DS}}}X509Certificate":
            text = "".join(text.split())
        if not text and not children:
            out.append(head + "/>")
        else:
            out.append(head + ">")
            out.append(esc_text(text))
            for c in e:
                if isinstance(c.tag, str) and self.dropped(c):
                    continue  # its tail, white space between elements, is dropped with it
                self.node(c, inner)
            out.append(f"</{qname}>")

    def node(self, c, scope):
        if isinstance(c.tag, str):
            self.element(c, scope)
        elif c.tag is etree.Comment:
            self.parts.append(f"<!--{c.text or ''}-->")
        elif c.tag is etree.PI:
            self.parts.append(f"<?{c.target} {c.text or ''}?>")
        self.parts.append(esc_text(c.tail or ""))


def build(n, shape, now, vectors):
    entities = collect_entities(vectors)
    w = Writer(shape, now)
    for _, e in entities:
        w.learn(e)
    agg_id = f"_rwagg{n}"
    root_decls = {"": MD} if shape == "default" else {"md": MD}
    root_decls["ds"] = DS
    if shape != "default":
        for _, e in entities:
            for p, u in w.used_namespaces(e):
                root_decls[p] = u
    md_q = "" if shape == "default" else "md:"
    scope = {"xml": XML_NS, "": ""}
    scope.update(root_decls)
    ns = "".join(
        f' xmlns="{u}"' if p == "" else f' xmlns:{p}="{u}"' for p, u in sorted(root_decls.items())
    )
    parts = w.parts
    parts.append('<?xml version="1.0" encoding="UTF-8"?>\n')
    parts.append(f'<{md_q}EntitiesDescriptor{ns} ID="{agg_id}" '
                 f'Name="urn:rw:aggregate:{shape}:{n}">\n')
    parts.append(
        "<ds:Signature>\n<ds:SignedInfo>\n"
        '<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>\n'
        '<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>\n'
        f'<ds:Reference URI="#{agg_id}">\n<ds:Transforms>\n'
        '<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>\n'
        '<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>\n'
        "</ds:Transforms>\n"
        '<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>\n'
        "<ds:DigestValue/>\n</ds:Reference>\n</ds:SignedInfo>\n"
        "<ds:SignatureValue/>\n<ds:KeyInfo>\n<ds:X509Data/>\n</ds:KeyInfo>\n</ds:Signature>\n"
    )
    per_entity = {}
    for i in range(n):
        src_name, e = entities[i % len(entities)]
        new_id = f"_rw{i}"

        def attrs(items, i=i, new_id=new_id):
            out = []
            for k, v in items:
                if k == "entityID":
                    v = f"{v}?rw={i}"
                elif k == "ID":
                    continue
                out.append((k, v))
            return [("ID", new_id)] + out

        extra = {}
        if shape == "default":
            key = id(e)
            if key not in per_entity:
                per_entity[key] = dict(w.used_namespaces(e))
            extra = dict(per_entity[key])
            extra[""] = MD
        w.element(e, scope, extra.items(), attrs)
        parts.append("\n")
    parts.append(f"</{md_q}EntitiesDescriptor>\n")
    return "".join(parts), agg_id


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", type=int)
    ap.add_argument("shape", choices=SHAPES)
    ap.add_argument("out")
    ap.add_argument("key")
    ap.add_argument("cert")
    ap.add_argument("--vectors", default="/work/shared/vectors/metadata")
    ap.add_argument("--now", help="drop validUntil earlier than this (default: now)")
    ap.add_argument("--xmlsec1", default=os.environ.get("XMLSEC1", "xmlsec1"))
    a = ap.parse_args()
    if a.n < 1:
        sys.exit("realworld_aggregate.py: N must be at least 1")
    now = parse_time(a.now) if a.now else datetime.datetime.now(datetime.timezone.utc)
    text, _ = build(a.n, a.shape, now, a.vectors)
    out_dir = os.path.dirname(os.path.abspath(a.out))
    with tempfile.NamedTemporaryFile("wb", dir=out_dir, suffix=".template.xml",
                                     delete=False) as f:
        f.write(text.encode("utf-8"))
        template = f.name
    try:
        r = subprocess.run(
            [a.xmlsec1, "--sign", "--privkey-pem", f"{a.key},{a.cert}",
             "--id-attr:ID", f"{MD}:EntitiesDescriptor", "--output", a.out, template],
            capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"realworld_aggregate.py: xmlsec1 --sign failed:\n{r.stderr}")
    finally:
        os.unlink(template)
    if a.shape == "crlf":
        # xmlsec1 writes LF (libxml2 normalizes line ends on input): CRLF goes in after signing,
        # which leaves the signed (LF-normalized) content unchanged.
        with open(a.out, "rb") as f:
            data = f.read()
        if b"\r" in data:
            sys.exit("realworld_aggregate.py: a carriage return in xmlsec1's output")
        with open(a.out, "wb") as f:
            f.write(data.replace(b"\n", b"\r\n"))
    print(f"OK {a.n} entities ({a.shape}) -> {a.out}")


if __name__ == "__main__":
    main()
