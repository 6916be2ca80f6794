package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// KeyType is the algorithm of a generated key.
type KeyType int

const (
	// ECDSAP256 is herd's default: every peer (Go, kube-apiserver, etcd)
	// accepts it, and it is cheap to generate.
	ECDSAP256 KeyType = iota
	// RSA2048 is for consumers that want RSA, e.g. a Kubernetes
	// service-account signing key every kube-apiserver version accepts.
	RSA2048
)

func (t KeyType) String() string {
	switch t {
	case ECDSAP256:
		return "ECDSA P-256"
	case RSA2048:
		return "RSA 2048"
	}
	return fmt.Sprintf("KeyType(%d)", int(t))
}

// KeyEncoding is how a private key is PEM-encoded.
type KeyEncoding int

const (
	// PKCS8 writes "PRIVATE KEY" blocks (herd's default).
	PKCS8 KeyEncoding = iota
	// Traditional writes SEC 1 "EC PRIVATE KEY" or PKCS#1 "RSA PRIVATE
	// KEY" blocks, the encoding kubeadm writes.
	Traditional
)

const (
	pemTypeRSAKey    = "RSA PRIVATE KEY"
	pemTypePublicKey = "PUBLIC KEY"
)

// GenerateKey generates a private key of type t.
func GenerateKey(t KeyType) (crypto.Signer, error) {
	switch t {
	case ECDSAP256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("pki: generate %s key: %w", t, err)
		}
		return k, nil
	case RSA2048:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, fmt.Errorf("pki: generate %s key: %w", t, err)
		}
		return k, nil
	}
	return nil, fmt.Errorf("pki: unsupported key type %v", t)
}

// EncodePrivateKeyPEM PEM-encodes key (ECDSA or RSA) with encoding e.
// Errors never contain key material.
func EncodePrivateKeyPEM(key crypto.Signer, e KeyEncoding) ([]byte, error) {
	var (
		typ = pemTypePKCS8Key
		der []byte
		err error
	)
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if e == Traditional {
			typ = pemTypeECKey
			der, err = x509.MarshalECPrivateKey(k)
		} else {
			der, err = x509.MarshalPKCS8PrivateKey(k)
		}
	case *rsa.PrivateKey:
		if e == Traditional {
			typ = pemTypeRSAKey
			der = x509.MarshalPKCS1PrivateKey(k)
		} else {
			der, err = x509.MarshalPKCS8PrivateKey(k)
		}
	default:
		return nil, fmt.Errorf("pki: unsupported private key type %T", key)
	}
	if err != nil {
		return nil, errors.New("pki: marshal private key failed")
	}
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), nil
}

// EncodePublicKeyPEM PEM-encodes pub as a PKIX "PUBLIC KEY" block.
func EncodePublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("pki: marshal public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemTypePublicKey, Bytes: der}), nil
}

// ParseSignerPEM parses the first private-key PEM block in data, of any
// algorithm and encoding EncodePrivateKeyPEM writes (PKCS#8, SEC 1,
// PKCS#1). Unlike ParsePrivateKeyPEM it does not insist on ECDSA P-256.
// Errors never contain key material.
func ParseSignerPEM(data []byte) (crypto.Signer, error) {
	key, typ, err := parseFirstKeyPEM(data)
	switch {
	case typ == "":
		return nil, errors.New("pki: no private key PEM block found")
	case err != nil:
		return nil, fmt.Errorf("pki: malformed %s PEM block", typ)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pki: unsupported private key type %T", key)
	}
	return s, nil
}

// parseFirstKeyPEM parses the first private-key block in data and says
// which type it was ("" for none). Its error is the parser's: callers
// must not pass it on, it might quote key bytes.
func parseFirstKeyPEM(data []byte) (key any, blockType string, err error) {
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, "", nil
		}
		switch block.Type {
		case pemTypePKCS8Key:
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case pemTypeECKey:
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case pemTypeRSAKey:
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		return key, block.Type, err
	}
}
