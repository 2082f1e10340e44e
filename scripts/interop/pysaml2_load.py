#!/usr/bin/env python3
"""Loads a signed SAML metadata file with pysaml2's MetadataStore machinery (MetaDataFile with the
signer's certificate, signature checked by pysaml2 through xmlsec1) and prints what it found.

usage: pysaml2_load.py FILE CERT_PEM
Output: one line per entity, `ENTITY <entityID> <role,...>`, then `OK <N>`. Exit 1 with a
one-line reason when the document is unsigned, badly signed or unparseable.

pysaml2 accepts an unsigned document even when a certificate is configured; this driver refuses
it, so that a pass means pysaml2 checked our signature.
"""
import sys

from saml2.attribute_converter import ac_factory
from saml2.config import Config
from saml2.mdstore import MetaDataFile
from saml2.sigver import security_context


def main():
    path, cert = sys.argv[1], sys.argv[2]
    conf = Config()
    conf.xmlsec_binary = "/usr/bin/xmlsec1"
    conf.cert_file = cert
    sec = security_context(conf)
    md = MetaDataFile(ac_factory(), path, cert=cert, security=sec)
    try:
        md.load()
    except Exception as e:  # pysaml2 raises several types; all are failures here
        print(f"pysaml2 refused the document: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if not md.signed():
        print("document is not signed", file=sys.stderr)
        return 1
    roles = {
        "idpsso_descriptor": "idp",
        "spsso_descriptor": "sp",
        "attribute_authority_descriptor": "aa",
    }
    for eid, ent in md.items():
        found = [short for key, short in roles.items() if ent.get(key)]
        print(f"ENTITY {eid} {','.join(found) or '-'}")
    print(f"OK {len(md.items())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
