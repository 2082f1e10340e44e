#!/usr/bin/env python3
"""pysaml2 (7.5.5) as an independent SAML peer for the Rust interop tests.

Subcommands (all print results on stdout; exit 1 with a one-line reason on stderr when pysaml2
refuses a message):

  idp-respond DIR SP_METADATA BINDING REQUEST [RELAY SIGALG SIGNATURE] [--no-sign-response]
              [--no-sign-assertion] [--encrypt 3des|aes256-gcm|aes128-cbc]
      pysaml2 as IdP (entityID https://idp.pysaml2.test/idp, key DIR/idp.key, cert
      DIR/idp.crt, SSO https://idp.pysaml2.test/sso for Redirect and POST): parses the
      AuthnRequest received with BINDING (redirect: REQUEST is the SAMLRequest value, with
      RELAY/SIGALG/SIGNATURE; post: the SAMLRequest form value) and checks its signature with the
      SP's certificate from SP_METADATA (want_authn_requests_signed), then prints the base64
      SAMLResponse for user alice with mail and eduPersonPrincipalName attributes.

  sp-request DIR IDP_METADATA
      pysaml2 as SP (entityID https://sp.pysaml2.test/sp, key DIR/sp.key, cert DIR/sp.crt, ACS
      https://sp.pysaml2.test/acs): prints `ID <request id>` and `URL <redirect URL>` of a
      Redirect-binding AuthnRequest signed with RSA-SHA256, to the IdP in IDP_METADATA.

  sp-validate DIR IDP_METADATA REQUEST_ID SAMLRESPONSE
      pysaml2 as that SP: validates the base64 SAMLResponse answering REQUEST_ID and prints
      `NAMEID <value>`, `ATTR <name> <value>` lines and `OK`.

  sp-bench DIR IDP_METADATA REQUEST_ID SAMLRESPONSE N
      validates the same Response N times in one process (pysaml2 keeps no replay cache, so it
      accepts every repetition) and prints `SECONDS <total>` of the N validations, start-up and
      configuration excluded (the benches' peer figure).
"""
import time
import base64
import functools
import os
import sys

import saml2.entity
import saml2.sigver
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import Config, SPConfig
from saml2.saml import NAME_FORMAT_URI, NAMEID_FORMAT_PERSISTENT, NameID
from saml2.server import Server
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

XMLSEC = "/usr/bin/xmlsec1"
IDP_ID = "https://idp.pysaml2.test/idp"
SP_ID = "https://sp.pysaml2.test/sp"
ACS = "https://sp.pysaml2.test/acs"


def fail(msg):
    print(msg.replace("\n", " "), file=sys.stderr)
    return 1


def use_encryption(alg):
    """pysaml2 always encrypts with TripleDES-CBC; for AES, patch the template and xmlsec1's
    session key the way a deployment would have to."""
    if alg == "3des":
        return
    uri, session = {
        "aes256-gcm": ("http://www.w3.org/2009/xmlenc11#aes256-gcm", "aes-256"),
        "aes128-cbc": ("http://www.w3.org/2001/04/xmlenc#aes128-cbc", "aes-128"),
    }[alg]
    saml2.entity.pre_encryption_part = functools.partial(saml2.sigver.pre_encryption_part, msg_enc=uri)
    original = saml2.sigver.CryptoBackendXmlSec1.encrypt_assertion

    def encrypt_assertion(self, statement, enc_key, template, key_type="des-192", node_xpath=None, node_id=None):
        return original(self, statement, enc_key, template, key_type=session, node_xpath=node_xpath, node_id=node_id)

    saml2.sigver.CryptoBackendXmlSec1.encrypt_assertion = encrypt_assertion


def idp_respond(args):
    d, sp_md, binding, request = args[:4]
    rest = args[4:]
    flags = [a for a in rest if a.startswith("--")]
    positional = [a for a in rest if not a.startswith("--") and a not in ("3des", "aes256-gcm", "aes128-cbc")]
    encrypt = None
    if "--encrypt" in rest:
        encrypt = rest[rest.index("--encrypt") + 1]
        use_encryption(encrypt)
    conf = Config()
    conf.load(
        {
            "entityid": IDP_ID,
            "key_file": os.path.join(d, "idp.key"),
            "cert_file": os.path.join(d, "idp.crt"),
            "xmlsec_binary": XMLSEC,
            "metadata": {"local": [sp_md]},
            "service": {
                "idp": {
                    "endpoints": {
                        "single_sign_on_service": [
                            ("https://idp.pysaml2.test/sso", BINDING_HTTP_REDIRECT),
                            ("https://idp.pysaml2.test/sso", BINDING_HTTP_POST),
                        ]
                    },
                    "want_authn_requests_signed": True,
                    "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                    "policy": {"default": {"lifetime": {"minutes": 5}, "name_form": NAME_FORMAT_URI}},
                }
            },
        }
    )
    idp = Server(config=conf)
    try:
        if binding == "redirect":
            relay, sigalg, signature = positional
            req = idp.parse_authn_request(
                request, BINDING_HTTP_REDIRECT, relay_state=relay, sigalg=sigalg, signature=signature
            )
        else:
            req = idp.parse_authn_request(request, BINDING_HTTP_POST)
    except Exception as e:
        return fail(f"pysaml2 IdP refused the AuthnRequest: {type(e).__name__}: {e}")
    if req is None:
        return fail("pysaml2 IdP refused the AuthnRequest")
    if binding == "post" and not req.message.signature:
        return fail("the POST AuthnRequest is not signed")
    resp_args = idp.response_args(req.message)
    identity = {"mail": ["alice@example.org"], "eduPersonPrincipalName": ["alice@example.org"]}
    resp = idp.create_authn_response(
        identity,
        userid="alice",
        name_id=NameID(format=NAMEID_FORMAT_PERSISTENT, text="alice-pysaml2"),
        authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"},
        sign_response="--no-sign-response" not in flags,
        sign_assertion="--no-sign-assertion" not in flags,
        encrypt_assertion=encrypt is not None,
        encrypt_assertion_self_contained=True,
        sign_alg=SIG_RSA_SHA256,
        digest_alg=DIGEST_SHA256,
        **resp_args,
    )
    print(base64.b64encode(str(resp).encode("utf-8")).decode("ascii"))
    return 0


def sp_client(d, idp_md):
    conf = SPConfig()
    conf.load(
        {
            "entityid": SP_ID,
            "key_file": os.path.join(d, "sp.key"),
            "cert_file": os.path.join(d, "sp.crt"),
            "encryption_keypairs": [
                {"key_file": os.path.join(d, "sp.key"), "cert_file": os.path.join(d, "sp.crt")}
            ],
            "xmlsec_binary": XMLSEC,
            "metadata": {"local": [idp_md]},
            "service": {
                "sp": {
                    "endpoints": {"assertion_consumer_service": [(ACS, BINDING_HTTP_POST)]},
                    "authn_requests_signed": True,
                    "want_assertions_signed": True,
                    "want_response_signed": False,
                    "allow_unsolicited": False,
                }
            },
        }
    )
    return Saml2Client(config=conf)


def sp_request(args):
    d, idp_md = args
    client = sp_client(d, idp_md)
    req_id, info = client.prepare_for_authenticate(
        binding=BINDING_HTTP_REDIRECT, sign=True, sigalg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256
    )
    url = dict(info["headers"])["Location"]
    print(f"ID {req_id}")
    print(f"URL {url}")
    return 0


def sp_validate(args):
    d, idp_md, req_id, saml_response = args
    client = sp_client(d, idp_md)
    try:
        resp = client.parse_authn_request_response(saml_response, BINDING_HTTP_POST, outstanding={req_id: "/"})
    except Exception as e:
        return fail(f"pysaml2 SP refused the Response: {type(e).__name__}: {e}")
    if resp is None:
        return fail("pysaml2 SP refused the Response")
    print(f"NAMEID {resp.name_id.text}")
    for name, values in sorted(resp.get_identity().items()):
        for v in values:
            print(f"ATTR {name} {v}")
    print("OK")
    return 0


def sp_bench(args):
    d, idp_md, req_id, saml_response, n = args
    client = sp_client(d, idp_md)
    client.parse_authn_request_response(saml_response, BINDING_HTTP_POST, outstanding={req_id: "/"})
    start = time.perf_counter()
    for _ in range(int(n)):
        resp = client.parse_authn_request_response(saml_response, BINDING_HTTP_POST, outstanding={req_id: "/"})
        if resp is None:
            return fail("pysaml2 SP refused the Response")
    print(f"SECONDS {time.perf_counter() - start}")
    return 0


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    return {
        "idp-respond": idp_respond,
        "sp-request": sp_request,
        "sp-validate": sp_validate,
        "sp-bench": sp_bench,
    }[cmd](args)


if __name__ == "__main__":
    sys.exit(main())
