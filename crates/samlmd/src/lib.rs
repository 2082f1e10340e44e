//! `samlmd`: SAML 2.0 metadata from the command line, for federation operators and interop
//! testers. A thin layer over [`saml_metadata`] and [`saml_core::dsig`]: every command that reads
//! metadata verifies its signature first (against the certificates given with `--cert`, never
//! against a key the document carries) and works only on what was verified.
//!
//! ```text
//! samlmd verify --cert PEM [--cert PEM ...] [--legacy] [--single-threaded] [--max-size MIB]
//!               [--now DATETIME] [--models] [--format text|json] FILE
//!     exit 0, last stdout line `OK <N> entities`; exit 1 and a one-line reason on stderr;
//!     --models also builds every entity's model, as `load` does, and names (and does not
//!     count) the entities whose metadata is invalid, which `load` and the other commands
//!     leave out
//! samlmd sign --key PEM --cert PEM [--alg rsa-sha256|rsa-sha512|ecdsa-sha256] IN OUT
//! samlmd lookup --cert PEM [--legacy] [--now DATETIME] [--format text|json] FILE ENTITYID
//!     ENTITYID is an entityID or its {sha1} form (`{sha1}` + 40 hex digits)
//! samlmd split --cert PEM [--legacy] [--now DATETIME] [--key PEM --sign-cert PEM
//!        [--valid-days N]] [--keep-stale] [--format text|json] FILE OUTDIR
//!     one file per entity, named by the lowercase hex SHA-1 of its entityID (the layout of
//!     Shibboleth's LocalDynamic provider and of MDQ servers), signed when --key is given,
//!     carrying the validUntil that applied to the entity (when signed, at most now + N days,
//!     default 7, as `select`); entities whose validUntil has
//!     passed are named and left out. All files are written under new names, then renamed
//!     into place, then the `<sha1>.xml` files of entities no longer published are removed
//!     and named (`--keep-stale` keeps them); a failure leaves OUTDIR as it was
//! samlmd select --cert PEM [--legacy] [--single-threaded] [--now DATETIME] [--role idp|sp|aa]
//!        [--category URI] [--registrar URI] [--entity ENTITYID ...] [--name NAME] [--valid-days N]
//!        [--format text|json] --key PEM --sign-cert PEM FILE OUT
//!     verify FILE, keep the entities matching every criterion given, write them as a new
//!     aggregate (validUntil now + N days, default 7) signed with --key, streamed into a
//!     temporary file beside OUT and renamed over it once complete
//! samlmd gen N OUT
//!     an eduGAIN-shaped unsigned aggregate of N entities (see [`aggregate`])
//! samlmd --help | --version
//! ```
//!
//! `--now` takes an xs:dateTime (default: the system clock); `--legacy` admits RSA-SHA1 and
//! SHA-1 digests (older federation feeds); `--single-threaded` keeps reading the document and
//! verifying its signature on the main thread (documents of 4 MiB or more are otherwise read by
//! two threads and hashed on one helper thread; the result is the same); `--max-size MIB` raises (or lowers) the 256 MiB document limit, up to 4096 MiB (a larger
//! file is refused before it is read).
//! `--format json` prints one JSON object on stdout
//! instead of text lines: `{"entities": N}` for verify, the entity's description for lookup,
//! `{"entities": [{"entityID": .., "sha1": .., "file": ..}, ..]}` for split and select.
//!
//! ## Exit codes
//! 0 success; 1 the input was refused or an operation failed, with a one-line reason
//! `samlmd: ...` on stderr; 2 a usage error, with the usage on stderr.
//!
//! ## Examples
//! ```text
//! # what xmlsectool --verifySignature does, plus the metadata rules (validUntil, entity IDs):
//! samlmd verify --cert federation-signer.pem edugain.xml
//! # pyFF's "select + sign" in one step: the identity providers of a category, re-signed
//! samlmd select --cert fed.pem --role idp --category http://refeds.org/category/research-and-scholarship \
//!     --key mine.key --sign-cert mine.pem --valid-days 4 edugain.xml rs-idps.xml
//! # an MDQ server's or LocalDynamic directory's files
//! samlmd split --cert fed.pem --key mine.key --sign-cert mine.pem edugain.xml md/
//! samlmd lookup --cert fed.pem --format json edugain.xml https://idp.example.org/idp
//! ```
//!
//! The same commands run in process through [`run`] (which is what the binary calls), so a
//! program or a test can drive the tool without spawning it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod aggregate;
mod cli;
mod exit;

pub use cli::run;
