package tokenkv

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
)

// A token is stored sealed: a version byte, then AES-256-GCM with a random
// nonce, its key derived from the app's secret and bound to the app id, so
// that a token moved to another app's key does not open either.

const sealVersion = 1

func (s *Store) aead(appID string) (cipher.AEAD, error) {
	secret, ok := s.cfg.Secret(appID)
	if !ok || secret == "" {
		return nil, fmt.Errorf("%w: no secret for app %q", ErrInvalidConfig, appID)
	}
	key, err := hkdf.Key(sha256.New, []byte(secret), nil, "qualfile douyin token\x00"+appID, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal encrypts a token record of appID.
func (s *Store) seal(appID string, record []byte) ([]byte, error) {
	a, err := s.aead(appID)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+a.NonceSize(), 1+a.NonceSize()+len(record)+a.Overhead())
	out[0] = sealVersion
	_, _ = rand.Read(out[1:])
	return a.Seal(out, out[1:], record, []byte(appID)), nil
}

// open decrypts what seal made; errUnsealed when it does not open.
func (s *Store) open(appID string, sealed []byte) ([]byte, error) {
	a, err := s.aead(appID)
	if err != nil {
		return nil, err
	}
	if len(sealed) < 1+a.NonceSize() || sealed[0] != sealVersion {
		return nil, errUnsealed
	}
	out, err := a.Open(nil, sealed[1:1+a.NonceSize()], sealed[1+a.NonceSize():], []byte(appID))
	if err != nil {
		return nil, errUnsealed
	}
	return out, nil
}
