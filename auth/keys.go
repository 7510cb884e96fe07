package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// MinSecretBytes is the shortest HMAC secret accepted: 32 bytes, the size
// of an HS256 hash (RFC 7518 section 3.2). Use random bytes.
const MinSecretBytes = 32

// MinRSABits is the smallest RSA key accepted.
const MinRSABits = 2048

var (
	hmacAlgs  = []string{"HS256", "HS384", "HS512"}
	rsaAlgs   = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	ecAlgs    = []string{"ES256", "ES384", "ES512"}
	edAlgs    = []string{"EdDSA"}
	asymAlgs  = append(append(append([]string{}, rsaAlgs...), ecAlgs...), edAlgs...)
	knownAlgs = append(append([]string{}, hmacAlgs...), asymAlgs...)
)

// keyAlgs returns the algorithms key can verify: the key's type pins them.
func keyAlgs(key any) []string {
	switch k := key.(type) {
	case []byte:
		return hmacAlgs
	case *rsa.PublicKey:
		return rsaAlgs
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return []string{"ES256"}
		case elliptic.P384():
			return []string{"ES384"}
		case elliptic.P521():
			return []string{"ES512"}
		}
	case ed25519.PublicKey:
		return edAlgs
	}
	return nil
}

// keyAllows reports whether key may verify a token signed with alg.
func keyAllows(key any, alg string) bool {
	for _, a := range keyAlgs(key) {
		if a == alg {
			return true
		}
	}
	return false
}

// publicKey returns the public half of key when it is a private key.
func publicKey(key any) any {
	if pk, ok := key.(interface{ Public() crypto.PublicKey }); ok {
		return pk.Public()
	}
	return key
}

// parsePublicKeyPEM reads the first PEM block of data: a PUBLIC KEY (PKIX:
// RSA, ECDSA or Ed25519), an RSA PUBLIC KEY (PKCS #1) or a CERTIFICATE.
// Errors never quote the data.
func parsePublicKeyPEM(data []byte) (any, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("public key: no PEM block found")
	}
	var key any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "OPENSSH PRIVATE KEY":
		return nil, fmt.Errorf("public key: a %s was given; give the hub the public key only", block.Type)
	default:
		return nil, fmt.Errorf("public key: unsupported PEM block type %q", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("public key: %v", err)
	}
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("public key: %v", err)
	}
	return key, nil
}

// checkKey refuses keys Herald cannot use or that are too weak.
func checkKey(key any) error {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < MinRSABits {
			return fmt.Errorf("RSA key of %d bits is too small (at least %d)", k.N.BitLen(), MinRSABits)
		}
	case *ecdsa.PublicKey:
		if keyAlgs(k) == nil {
			return errors.New("unsupported ECDSA curve (P-256, P-384 and P-521 are)")
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("unsupported key type %T (RSA, ECDSA and Ed25519 are)", key)
	}
	return nil
}
