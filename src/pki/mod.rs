//! The PKI: federation CA, CSRs, signing, revocation, CRLs and certificate inspection.
