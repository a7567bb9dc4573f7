//! A test PKI: a CA and a certificate for 127.0.0.1 and localhost.

use std::path::PathBuf;

/// The PEM files of [`make_pki`].
pub struct Pki {
    /// The certificate (127.0.0.1, localhost).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// The CA that signed it.
    pub ca: PathBuf,
}

/// A test CA and a certificate for 127.0.0.1 signed by it, in `dir`.
pub fn make_pki(dir: &std::path::Path) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "switchboard test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let out = Pki {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        ca: dir.join("ca.pem"),
    };
    std::fs::write(&out.cert, cert.pem()).unwrap();
    std::fs::write(&out.key, key.serialize_pem()).unwrap();
    std::fs::write(&out.ca, ca.pem()).unwrap();
    out
}
