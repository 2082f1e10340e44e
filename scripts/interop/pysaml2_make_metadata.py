#!/usr/bin/env python3
"""pysaml2's make_metadata, for signed output.

pysaml2 7.5.5's `make_metadata -s` crashes after signing (it calls .decode() on the signed str),
so this driver runs the same library calls as saml2/tools/make_metadata.py (Config().load_file,
entity_descriptor, entities_descriptor with signing through xmlsec1, valid_instance,
metadata_tostring_fix) and prints the document.

usage: pysaml2_make_metadata.py KEY CERT ID NAME VALID_DAYS ALG CONF.py [CONF.py ...]
ALG: `default` (pysaml2's default, RSA-SHA1 with a SHA-1 digest) or `rsa-sha256`.
"""
import os
import sys

from saml2.config import Config
from saml2.metadata import entities_descriptor, entity_descriptor, metadata_tostring_fix
from saml2.sigver import security_context
from saml2.validate import valid_instance
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256


def main():
    key, cert, ident, name, days, alg, *confs = sys.argv[1:]
    sign_alg, digest_alg = (SIG_RSA_SHA256, DIGEST_SHA256) if alg == "rsa-sha256" else (None, None)
    valid_for = int(days) * 24
    eds = []
    for spec in confs:
        base, fil = os.path.split(spec)
        if base:
            sys.path.insert(0, base)
        cnf = Config().load_file(fil[:-3] if fil.endswith(".py") else fil)
        cnf.valid_for = valid_for
        eds.append(entity_descriptor(cnf))
    conf = Config()
    conf.key_file = key
    conf.cert_file = cert
    conf.xmlsec_binary = "/usr/bin/xmlsec1"
    secc = security_context(conf)
    desc, xmldoc = entities_descriptor(
        eds, valid_for, name, ident, True, secc, sign_alg=sign_alg, digest_alg=digest_alg
    )
    valid_instance(desc)
    xmldoc = metadata_tostring_fix(desc, {"xs": "http://www.w3.org/2001/XMLSchema"}, xmldoc)
    if isinstance(xmldoc, bytes):
        xmldoc = xmldoc.decode("utf-8")
    sys.stdout.write(xmldoc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
