#!/usr/bin/env python3
"""GNU SASL's SAML20 *server* (libgsasl18, through ctypes), for testing our client against it.

usage: libgsasl_server.py REDIRECT_URL [reject]
Reads base64 client messages, one per line, on stdin; after each gsasl_step64 prints
`STEP <rc> <base64 output>` (rc 0 = GSASL_OK, 1 = GSASL_NEEDS_MORE; others are errors). The
callback answers SAML20_REDIRECT_URL (property 20) with REDIRECT_URL and VALIDATE_SAML20 (505)
with GSASL_OK, or GSASL_AUTHENTICATION_ERROR when `reject` is given. At the end prints
`IDP <value of SAML20_IDP_IDENTIFIER>` and `AUTHZID <value or ->`.
"""
import ctypes
import ctypes.util
import sys

GSASL_OK = 0
GSASL_NO_CALLBACK = 51
GSASL_AUTHENTICATION_ERROR = 31
AUTHZID = 2
SAML20_IDP_IDENTIFIER = 19
SAML20_REDIRECT_URL = 20
VALIDATE_SAML20 = 505


def main():
    url = sys.argv[1].encode()
    reject = len(sys.argv) > 2 and sys.argv[2] == "reject"
    lib = ctypes.CDLL(ctypes.util.find_library("gsasl") or "libgsasl.so.18")
    lib.gsasl_property_fast.restype = ctypes.c_char_p
    lib.gsasl_property_fast.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.gsasl_property_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p]
    lib.gsasl_step64.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)]
    lib.gsasl_server_start.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.gsasl_free.argtypes = [ctypes.c_void_p]
    CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)

    def callback(ctx, sctx, prop):
        if prop == SAML20_REDIRECT_URL:
            return lib.gsasl_property_set(sctx, SAML20_REDIRECT_URL, url)
        if prop == VALIDATE_SAML20:
            return GSASL_AUTHENTICATION_ERROR if reject else GSASL_OK
        return GSASL_NO_CALLBACK

    cb = CB(callback)
    ctx = ctypes.c_void_p()
    if lib.gsasl_init(ctypes.byref(ctx)) != GSASL_OK:
        print("gsasl_init failed", file=sys.stderr)
        return 1
    lib.gsasl_callback_set(ctx, cb)
    sctx = ctypes.c_void_p()
    rc = lib.gsasl_server_start(ctx, b"SAML20", ctypes.byref(sctx))
    if rc != GSASL_OK:
        print(f"gsasl_server_start: {rc}", file=sys.stderr)
        return 1
    for line in sys.stdin:
        out = ctypes.c_char_p()
        rc = lib.gsasl_step64(sctx, line.strip().encode(), ctypes.byref(out))
        value = out.value.decode() if out.value else ""
        print(f"STEP {rc} {value}", flush=True)
        if rc not in (0, 1):
            break
        if rc == 0:
            break
    idp = lib.gsasl_property_fast(sctx, SAML20_IDP_IDENTIFIER)
    authz = lib.gsasl_property_fast(sctx, AUTHZID)
    print(f"IDP {idp.decode() if idp else '-'}")
    print(f"AUTHZID {authz.decode() if authz else '-'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
