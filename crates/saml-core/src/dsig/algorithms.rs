//! Algorithm identifiers (XML-DSig 1.1 §6, RFC 6931) and the allowlist (XMLDSIG.md rule 3).

use openssl::hash::MessageDigest;

use crate::error::SignatureError;

/// `http://www.w3.org/2000/09/xmldsig#enveloped-signature`
pub const ENVELOPED_SIGNATURE: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

/// A SignatureMethod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureAlgorithm {
    /// RSA PKCS#1 v1.5 with SHA-1 (legacy; verify only, with [`super::VerifyOptions::allow_sha1`]).
    RsaSha1,
    /// RSA PKCS#1 v1.5 with SHA-256.
    RsaSha256,
    /// RSA PKCS#1 v1.5 with SHA-384.
    RsaSha384,
    /// RSA PKCS#1 v1.5 with SHA-512.
    RsaSha512,
    /// ECDSA with SHA-1 (legacy; verify only, with `allow_sha1`).
    EcdsaSha1,
    /// ECDSA with SHA-256.
    EcdsaSha256,
    /// ECDSA with SHA-384.
    EcdsaSha384,
    /// ECDSA with SHA-512.
    EcdsaSha512,
}

impl SignatureAlgorithm {
    /// The algorithm URI.
    #[must_use]
    pub fn uri(self) -> &'static str {
        match self {
            Self::RsaSha1 => "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
            Self::RsaSha256 => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            Self::RsaSha384 => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
            Self::RsaSha512 => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
            Self::EcdsaSha1 => "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1",
            Self::EcdsaSha256 => "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
            Self::EcdsaSha384 => "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
            Self::EcdsaSha512 => "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
        }
    }

    /// Looks an algorithm up by URI, applying the allowlist.
    pub fn from_uri(uri: &str, allow_sha1: bool) -> Result<Self, SignatureError> {
        let alg = [
            Self::RsaSha1,
            Self::RsaSha256,
            Self::RsaSha384,
            Self::RsaSha512,
            Self::EcdsaSha1,
            Self::EcdsaSha256,
            Self::EcdsaSha384,
            Self::EcdsaSha512,
        ]
        .into_iter()
        .find(|a| a.uri() == uri)
        .ok_or_else(|| SignatureError::Algorithm(format!("signature method {uri}")))?;
        if alg.is_sha1() && !allow_sha1 {
            return Err(SignatureError::Algorithm(format!(
                "{uri} (SHA-1 needs the legacy opt-in)"
            )));
        }
        Ok(alg)
    }

    fn is_sha1(self) -> bool {
        matches!(self, Self::RsaSha1 | Self::EcdsaSha1)
    }

    /// Whether this is an ECDSA algorithm (SignatureValue is raw `r||s`).
    #[must_use]
    pub fn is_ecdsa(self) -> bool {
        matches!(
            self,
            Self::EcdsaSha1 | Self::EcdsaSha256 | Self::EcdsaSha384 | Self::EcdsaSha512
        )
    }

    /// The digest used inside the signature.
    #[must_use]
    pub fn message_digest(self) -> MessageDigest {
        match self {
            Self::RsaSha1 | Self::EcdsaSha1 => MessageDigest::sha1(),
            Self::RsaSha256 | Self::EcdsaSha256 => MessageDigest::sha256(),
            Self::RsaSha384 | Self::EcdsaSha384 => MessageDigest::sha384(),
            Self::RsaSha512 | Self::EcdsaSha512 => MessageDigest::sha512(),
        }
    }
}

/// A DigestMethod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DigestAlgorithm {
    /// SHA-1 (legacy; verify only, with `allow_sha1`).
    Sha1,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl DigestAlgorithm {
    /// The algorithm URI.
    #[must_use]
    pub fn uri(self) -> &'static str {
        match self {
            Self::Sha1 => "http://www.w3.org/2000/09/xmldsig#sha1",
            Self::Sha256 => "http://www.w3.org/2001/04/xmlenc#sha256",
            Self::Sha384 => "http://www.w3.org/2001/04/xmldsig-more#sha384",
            Self::Sha512 => "http://www.w3.org/2001/04/xmlenc#sha512",
        }
    }

    /// Looks an algorithm up by URI, applying the allowlist (MD5 and unknown URIs rejected).
    pub fn from_uri(uri: &str, allow_sha1: bool) -> Result<Self, SignatureError> {
        let alg = [Self::Sha1, Self::Sha256, Self::Sha384, Self::Sha512]
            .into_iter()
            .find(|a| a.uri() == uri)
            .ok_or_else(|| SignatureError::Algorithm(format!("digest method {uri}")))?;
        if alg == Self::Sha1 && !allow_sha1 {
            return Err(SignatureError::Algorithm(format!(
                "{uri} (SHA-1 needs the legacy opt-in)"
            )));
        }
        Ok(alg)
    }

    /// The OpenSSL digest.
    #[must_use]
    pub fn message_digest(self) -> MessageDigest {
        match self {
            Self::Sha1 => MessageDigest::sha1(),
            Self::Sha256 => MessageDigest::sha256(),
            Self::Sha384 => MessageDigest::sha384(),
            Self::Sha512 => MessageDigest::sha512(),
        }
    }
}
